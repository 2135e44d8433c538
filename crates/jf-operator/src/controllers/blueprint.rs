//! The Blueprint controller: a Blueprint has no children, only a verdict. Admission refuses
//! what its schema can see; this checks the rest (a resource whose `apiVersion` and `kind` are
//! each allowed but not together, two resources of one kind and name) and says so in
//! `Ready`, with a Warning Event, before anyone deploys it.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt as _;
use jf_api::Blueprint;
use jf_api::blueprint::BlueprintStatus;
use jf_api::conditions::{self, READY};
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::{EventType, Recorder};
use kube::{Client, Resource, ResourceExt as _};
use tracing::instrument;

use crate::telemetry::Metrics;

/// The field manager of the Blueprint controller's writes.
pub const FIELD_MANAGER: &str = "jango-fett-blueprint";

const KIND: &str = "Blueprint";

#[derive(Debug, thiserror::Error)]
#[error("failed to write the status")]
pub struct Error(#[source] kube::Error);

struct Context {
    client: Client,
    recorder: Recorder,
    metrics: Arc<Metrics>,
}

/// The status a Blueprint should have.
pub fn status(blueprint: &Blueprint) -> BlueprintStatus {
    let generation = blueprint.meta().generation;
    let mut status = blueprint.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    let condition = match blueprint.problem() {
        None => conditions::condition(
            READY,
            true,
            "Published",
            format!(
                "{} resources; deploy it with `jf deploy ENV {}`",
                blueprint.spec.resources.len(),
                blueprint.name_any()
            ),
            generation,
        ),
        Some(problem) => {
            conditions::condition(READY, false, "InvalidBlueprint", problem, generation)
        }
    };
    conditions::set(&mut status.conditions, condition);
    status
}

/// Runs the controller until `shutdown` completes.
pub async fn run(
    client: Client,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let blueprints: Api<Blueprint> = Api::all(client.clone());
    super::check_listable(&blueprints, "Blueprints").await?;
    let context = Arc::new(Context {
        recorder: super::recorder(client.clone()),
        client,
        metrics,
    });
    super::controller(blueprints)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(|result| super::log_outcome("blueprint", result))
        .await;
    Ok(())
}

#[instrument(skip_all, fields(blueprint = %blueprint.name_any()))]
async fn reconcile(blueprint: Arc<Blueprint>, context: Arc<Context>) -> Result<Action, Error> {
    let _in_flight = context.metrics.in_flight(KIND);
    let started = Instant::now();
    let status = status(&blueprint);
    let current = blueprint.status.as_ref();
    let result = super::apply_status(
        &context.client,
        blueprint.as_ref(),
        current,
        &status,
        FIELD_MANAGER,
    )
    .await
    .map_err(Error);
    let writes = u64::from(result.as_ref().is_ok_and(|wrote| *wrote));
    // A new reason not to deploy it: a Warning Event says so.
    let verdict = |status: Option<&BlueprintStatus>| {
        status
            .and_then(|status| conditions::find(&status.conditions, READY))
            .map(|condition| (condition.status.clone(), condition.message.clone()))
    };
    if writes > 0
        && let Some(condition) = conditions::find(&status.conditions, READY)
        && condition.status == "False"
        && verdict(current) != verdict(Some(&status))
    {
        super::publish(
            &context.recorder,
            blueprint.as_ref(),
            EventType::Warning,
            &condition.reason,
            condition.message.clone(),
        )
        .await;
    }
    context.metrics.reconciled(KIND, started.elapsed());
    context.metrics.wrote(KIND, writes);
    if result.is_err() {
        context.metrics.failed(KIND, "StatusFailed");
    }
    result.map(|_| Action::await_change())
}

fn error_policy(_blueprint: Arc<Blueprint>, _error: &Error, _context: Arc<Context>) -> Action {
    Action::requeue(std::time::Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use jf_api::BlueprintSpec;
    use serde_json::json;

    use super::*;

    #[test]
    fn ready_unless_there_is_a_problem_and_stable_once_written() {
        let deployment =
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api"}});
        let mut blueprint = Blueprint::new(
            "api",
            BlueprintSpec {
                resources: vec![deployment.clone()],
                ..BlueprintSpec::default()
            },
        );
        blueprint.metadata.generation = Some(1);
        let published = status(&blueprint);
        let ready = conditions::find(&published.conditions, READY).expect("Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "Published")
        );
        assert_eq!(published.observed_generation, Some(1));
        blueprint.status = Some(published.clone());
        assert_eq!(status(&blueprint), published, "nothing more to write");

        blueprint.spec.resources.push(deployment);
        blueprint.metadata.generation = Some(2);
        let invalid = status(&blueprint);
        let ready = conditions::find(&invalid.conditions, READY).expect("Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "InvalidBlueprint")
        );
        assert!(ready.message.contains("a second Deployment"));
    }
}
