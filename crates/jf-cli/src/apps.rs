//! Apps: Blueprints deployed into environments. `jf deploy` server-side applies the App, so
//! that deploying again with other images changes it (and an image no longer given is the
//! Blueprint's again), then follows its status: the operator lists every object with its
//! readiness, and names the root cause when one is not ready.

use std::collections::BTreeMap;
use std::pin::pin;

use futures::StreamExt as _;
use jf_api::conditions::{self, READY};
use jf_api::{App, AppObject, Blueprint, Environment};
use k8s_openapi::jiff::SignedDuration;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Resource as _, ResourceExt as _};
use serde_json::json;

use crate::api_error::ApiError;
use crate::databases::{self, namespace_of};
use crate::duration;
use crate::environments::{self, FIELD_MANAGER};
use crate::wait::{self, Spinner, WaitArgs};

/// `Ready=False` reasons that waiting cannot lift: the App, its Blueprint, its images or the
/// environment's quota must change first.
pub const FAILURE_REASONS: &[&str] = &[
    "ImagePullBackOff",
    "CrashLoopBackOff",
    "Unschedulable",
    "QuotaExceeded",
    "FailedCreate",
    "ContainerConfigError",
    "BlueprintNotFound",
    "UnknownContainer",
    "InvalidBlueprint",
    "NotInEnvironment",
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Environment(#[from] environments::Error),
    #[error("blueprint \"{name}\" not found")]
    BlueprintNotFound { name: String },
    #[error("failed to read blueprint \"{name}\"")]
    GetBlueprint {
        name: String,
        #[source]
        source: ApiError,
    },
    #[error("failed to list the blueprints")]
    ListBlueprints(#[source] ApiError),
    #[error(
        "blueprint \"{blueprint}\" has no container \"{container}\"; its containers are: {known}"
    )]
    UnknownContainer {
        blueprint: String,
        container: String,
        known: String,
    },
    #[error("failed to deploy \"{name}\" to environment \"{environment}\"")]
    Apply {
        environment: String,
        name: String,
        #[source]
        source: ApiError,
    },
    #[error("app \"{name}\" not found in environment \"{environment}\"")]
    NotFound { environment: String, name: String },
    #[error("failed to undeploy \"{name}\" from environment \"{environment}\"")]
    Delete {
        environment: String,
        name: String,
        #[source]
        source: ApiError,
    },
    #[error("failed to list the apps of environment \"{environment}\"")]
    List {
        environment: String,
        #[source]
        source: ApiError,
    },
    #[error("\"{name}\" is not ready: {message} ({reason})")]
    NotReady {
        environment: String,
        name: String,
        reason: String,
        message: String,
        /// The object at fault, as `Kind name`, when the status names one.
        object: Option<(String, String)>,
        /// The Blueprint deployed.
        blueprint: String,
    },
    #[error("app \"{name}\" was deleted while waiting for it")]
    Deleted { environment: String, name: String },
    #[error(
        "timed out after {after} waiting for \"{name}\" {goal}{last}",
        after = duration::display(*.after),
        last = .last.as_deref().map(|last| format!("; last status: {last}")).unwrap_or_default()
    )]
    Timeout {
        environment: String,
        name: String,
        goal: &'static str,
        after: SignedDuration,
        last: Option<String>,
    },
    #[error("failed to watch app \"{name}\"")]
    Watch {
        environment: String,
        name: String,
        #[source]
        source: ApiError,
    },
    #[error("the watch of \"{name}\" ended unexpectedly")]
    WatchEnded { name: String },
    #[error("failed to watch \"{name}\": the API server sent no resource version")]
    NoResourceVersion { name: String },
}

impl Error {
    fn unfollowable(unfollowable: wait::Unfollowable, environment: &str, name: &str) -> Self {
        let name = name.to_owned();
        match unfollowable {
            wait::Unfollowable::Ended => Self::WatchEnded { name },
            wait::Unfollowable::NoResourceVersion => Self::NoResourceVersion { name },
            wait::Unfollowable::Failed(source) => Self::Watch {
                environment: environment.to_owned(),
                name,
                source,
            },
        }
    }

    /// What the user can do about it, if anything.
    pub fn hint(&self) -> Option<String> {
        let not_a_user = |environment: &str| {
            format!(
                "only the users of environment \"{environment}\" may deploy to it; \
                 ask one of them to run `jf users add {environment} YOUR-USER-NAME`"
            )
        };
        match self {
            Self::Environment(error) => error.hint(),
            Self::BlueprintNotFound { .. } => {
                Some("run `jf blueprints` to see what can be deployed".to_owned())
            }
            Self::ListBlueprints(source) | Self::GetBlueprint { source, .. }
                if source.is_forbidden() =>
            {
                Some(
                    "seeing the blueprints needs the developer or viewer role; ask your \
                     platform team for it"
                        .to_owned(),
                )
            }
            Self::UnknownContainer { .. } => Some(
                "--image takes CONTAINER=IMAGE, with CONTAINER one of the blueprint's containers"
                    .to_owned(),
            ),
            Self::Apply {
                environment,
                source,
                ..
            }
            | Self::Delete {
                environment,
                source,
                ..
            }
            | Self::List {
                environment,
                source,
            }
            | Self::Watch {
                environment,
                source,
                ..
            } if source.is_forbidden() => Some(not_a_user(environment)),
            Self::NotFound { environment, .. } => Some(format!(
                "run `jf status {environment}` to see what is deployed in it"
            )),
            Self::NotReady {
                environment,
                name,
                reason,
                object,
                blueprint,
                ..
            } => Some(not_ready_hint(
                environment,
                (name, blueprint),
                reason,
                object.as_ref().map(|(_, name)| name.as_str()),
            )),
            Self::Timeout { environment, .. } => Some(format!(
                "run `jf status {environment}` to see what it waits for; if nothing changes, \
                 the operator may be down: ask your platform team"
            )),
            _ => None,
        }
    }
}

/// What to do about an App that is not ready for `reason`.
fn not_ready_hint(
    environment: &str,
    (app, blueprint): (&str, &str),
    reason: &str,
    object: Option<&str>,
) -> String {
    let workload = object.unwrap_or("WORKLOAD");
    match reason {
        "ImagePullBackOff" => format!(
            "check the image's name and tag, and that the cluster may pull it; deploy another \
             with `jf deploy {environment} {blueprint} --image CONTAINER=IMAGE`"
        ),
        "CrashLoopBackOff" => format!("see why with `jf logs {environment} {workload}`"),
        "Unschedulable" => "no node has room for its pods: lower their requests in the \
             Blueprint, or ask your platform team about the cluster's capacity"
            .to_owned(),
        "QuotaExceeded" => format!(
            "the environment's quota is used up: undeploy something with `jf undeploy \
             {environment} APP`, or ask your platform team for a larger quota"
        ),
        "ContainerConfigError" => format!(
            "check the ConfigMaps and Secrets its pods read; `jf status {environment}` lists them"
        ),
        "BlueprintNotFound" => "run `jf blueprints` to see what can be deployed".to_owned(),
        "InvalidBlueprint" => {
            "the Blueprint cannot be deployed as it is; tell the platform team that publishes it"
                .to_owned()
        }
        "UnknownContainer" => format!(
            "deploy again with --image naming one of the Blueprint's containers, or undeploy \
             with `jf undeploy {environment} {app}`"
        ),
        _ => format!("run `jf status {environment}` to see every object and its state"),
    }
}

/// The Apps of `namespace`.
pub fn api(client: &Client, namespace: &str) -> Api<App> {
    Api::namespaced(client.clone(), namespace)
}

/// Every Blueprint, by name.
pub async fn blueprints(client: &Client) -> Result<Vec<Blueprint>, Error> {
    let mut blueprints = Api::<Blueprint>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|error| Error::ListBlueprints(error.into()))?
        .items;
    blueprints.sort_by_key(|blueprint| blueprint.name_any());
    Ok(blueprints)
}

/// Checks that `blueprint` exists and has the containers `images` names. A caller who may
/// not read Blueprints is not stopped here: the operator checks the same.
pub async fn check_blueprint(
    client: &Client,
    blueprint: &str,
    images: &BTreeMap<String, String>,
) -> Result<(), Error> {
    let found = match Api::<Blueprint>::all(client.clone()).get(blueprint).await {
        Ok(found) => found,
        Err(error) => {
            return match ApiError(error) {
                error if error.is_not_found() => Err(Error::BlueprintNotFound {
                    name: blueprint.to_owned(),
                }),
                error if error.is_forbidden() => Ok(()),
                source => Err(Error::GetBlueprint {
                    name: blueprint.to_owned(),
                    source,
                }),
            };
        }
    };
    let containers = found.containers();
    match images
        .keys()
        .find(|container| !containers.contains(*container))
    {
        Some(container) => Err(Error::UnknownContainer {
            blueprint: blueprint.to_owned(),
            container: container.clone(),
            known: containers.into_iter().collect::<Vec<_>>().join(", "),
        }),
        None => Ok(()),
    }
}

/// The App `jf deploy` applies.
pub fn build(name: &str, blueprint: &str, images: &BTreeMap<String, String>) -> serde_json::Value {
    let mut spec = json!({"blueprint": blueprint});
    if !images.is_empty() {
        spec["images"] = json!(images);
    }
    json!({
        "apiVersion": App::api_version(&()),
        "kind": App::kind(&()),
        "metadata": {"name": name},
        "spec": spec,
    })
}

/// An App deployed, as the write returned it.
#[derive(Debug, Clone)]
pub struct Deployed {
    pub environment: String,
    pub namespace: String,
    pub app: App,
}

/// Deploys `blueprint` as the App `name` into `environment`.
pub async fn deploy(
    client: &Client,
    environment: &str,
    name: &str,
    blueprint: &str,
    images: &BTreeMap<String, String>,
) -> Result<Deployed, Error> {
    let namespace = namespace_of(&environments::get(client, environment).await?);
    check_blueprint(client, blueprint, images).await?;
    let app = api(client, &namespace)
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(build(name, blueprint, images)),
        )
        .await
        .map_err(|error| Error::Apply {
            environment: environment.to_owned(),
            name: name.to_owned(),
            source: error.into(),
        })?;
    Ok(Deployed {
        environment: environment.to_owned(),
        namespace,
        app,
    })
}

/// Deletes the App `name` of `environment`, and everything deployed with it. Returns its
/// namespace.
pub async fn undeploy(client: &Client, environment: &str, name: &str) -> Result<String, Error> {
    let namespace = namespace_of(&environments::get(client, environment).await?);
    // In the foreground: the App stays until the garbage collector has deleted its objects,
    // so waiting for it to be gone waits for them.
    match api(client, &namespace)
        .delete(name, &DeleteParams::foreground())
        .await
    {
        Ok(_) => Ok(namespace),
        Err(error) => Err(match ApiError(error) {
            error if error.is_not_found() => Error::NotFound {
                environment: environment.to_owned(),
                name: name.to_owned(),
            },
            source => Error::Delete {
                environment: environment.to_owned(),
                name: name.to_owned(),
                source,
            },
        }),
    }
}

/// The Apps of an environment as `jf status` shows them.
#[derive(Debug, Clone, PartialEq)]
pub enum Listing {
    Listed(Vec<App>),
    /// The caller may read the Environment but not list in its namespace.
    NotAllowed,
}

/// The Apps of `environment`, by name; a refusal to list is part of the answer.
pub async fn listing(client: &Client, environment: &Environment) -> Result<Listing, Error> {
    match api(client, &namespace_of(environment))
        .list(&ListParams::default())
        .await
    {
        Ok(list) => {
            let mut apps = list.items;
            apps.sort_by_key(|app| app.name_any());
            Ok(Listing::Listed(apps))
        }
        Err(error) => match ApiError(error) {
            error if error.is_forbidden() => Ok(Listing::NotAllowed),
            source => Err(Error::List {
                environment: environment.name_any(),
                source,
            }),
        },
    }
}

/// Where an App stands, for the generation that was written.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    Ready,
    Waiting,
    /// Not ready for a reason that waiting cannot lift.
    Failed {
        reason: String,
        message: String,
        object: Option<(String, String)>,
    },
    Deleted,
}

/// Where `app` stands as of `generation`: what the operator says counts only once it has seen
/// that generation, so an older failure never ends the wait.
pub fn progress(app: Option<&App>, generation: Option<i64>) -> Progress {
    let Some(app) = app else {
        return Progress::Deleted;
    };
    let status = app.status.clone().unwrap_or_default();
    let Some(ready) = conditions::find(&status.conditions, READY) else {
        return Progress::Waiting;
    };
    if ready.observed_generation < generation || status.observed_generation < generation {
        return Progress::Waiting;
    }
    if ready.status == "True" {
        return Progress::Ready;
    }
    let at_fault = |reason: &str| {
        status
            .objects
            .iter()
            .find(|object| object.reason.as_deref() == Some(reason))
            .map(|object| (object.kind.clone(), object.name.clone()))
    };
    if FAILURE_REASONS.contains(&ready.reason.as_str()) {
        return Progress::Failed {
            reason: ready.reason.clone(),
            message: ready.message.clone(),
            object: at_fault(&ready.reason),
        };
    }
    // A dependency that failed for good fails the App.
    let failed_dependency = status.objects.iter().find(|object| {
        object.kind == "PostgreSQL"
            && object
                .reason
                .as_deref()
                .is_some_and(|reason| databases::FAILURE_REASONS.contains(&reason))
    });
    if let Some(object) = failed_dependency {
        return Progress::Failed {
            reason: object.reason.clone().unwrap_or_default(),
            message: format!(
                "{} {}: {}",
                object.kind,
                object.name,
                object.message.clone().unwrap_or_default()
            ),
            object: Some((object.kind.clone(), object.name.clone())),
        };
    }
    Progress::Waiting
}

/// A line on how far an App is: how many of its objects are ready, and what the first one
/// that is not waits for.
pub fn summary(app: &App) -> Option<String> {
    let status = app.status.as_ref()?;
    let ready = status.objects.iter().filter(|object| object.ready).count();
    let waiting = status
        .objects
        .iter()
        .find(|object| !object.ready)
        .map(|object| {
            format!(
                "; {} {}: {}",
                object.kind,
                object.name,
                object
                    .message
                    .as_deref()
                    .or(object.reason.as_deref())
                    .unwrap_or("not ready")
            )
        })
        .unwrap_or_default();
    Some(format!(
        "{ready} of {} objects ready{waiting}",
        status.objects.len()
    ))
}

/// What `jf deploy` says about each object it deployed, in the order the seed's transcript
/// has them: workloads, then Services, then the PostgreSQL database and the Redis server.
/// Configuration (ConfigMaps, Secrets, ServiceAccounts) and the Ingress go without saying;
/// the URL ends the output.
pub fn deployed_lines(objects: &[AppObject]) -> Vec<String> {
    let rank = |kind: &str| match kind {
        "Deployment" | "StatefulSet" | "Job" | "CronJob" => Some(0),
        "Service" => Some(1),
        "PostgreSQL" => Some(2),
        "Redis" => Some(3),
        _ => None,
    };
    let mut lines: Vec<(u8, String)> = objects
        .iter()
        .filter_map(|object| {
            let rank = rank(&object.kind)?;
            let line = match object.kind.as_str() {
                "Service" => format!("Created service \"{}\"", object.name),
                "PostgreSQL" | "Redis" => format!("Deployed {} \"{}\"", object.kind, object.name),
                _ => format!("Deployed \"{}\"", object.name),
            };
            Some((rank, line))
        })
        .collect();
    // Stable: within a rank, the Blueprint's order.
    lines.sort_by_key(|(rank, _)| *rank);
    lines.into_iter().map(|(_, line)| line).collect()
}

/// Waits until the App of `deployed` is ready, for at most `timeout`, telling `spinner`
/// how far it is. Returns the App as it was then.
pub async fn until_ready(
    client: &Client,
    deployed: &Deployed,
    timeout: SignedDuration,
    spinner: &Spinner,
) -> Result<App, Error> {
    let mut last = Some(deployed.app.clone());
    let watching = watch_ready(client, deployed, &mut last, spinner);
    match tokio::time::timeout(timeout.unsigned_abs(), watching).await {
        Ok(result) => result,
        Err(_elapsed) => Err(Error::Timeout {
            environment: deployed.environment.clone(),
            name: deployed.app.name_any(),
            goal: "to be ready",
            after: timeout,
            last: last.as_ref().and_then(summary),
        }),
    }
}

async fn watch_ready(
    client: &Client,
    deployed: &Deployed,
    last: &mut Option<App>,
    spinner: &Spinner,
) -> Result<App, Error> {
    let name = deployed.app.name_any();
    let generation = deployed.app.meta().generation;
    let environment = deployed.environment.clone();
    let mut states = pin!(wait::follow(api(client, &deployed.namespace), &name));
    loop {
        let app = match states.next().await {
            Some(Ok(app)) => app,
            Some(Err(unfollowable)) => {
                return Err(Error::unfollowable(unfollowable, &environment, &name));
            }
            None => return Err(Error::WatchEnded { name }),
        };
        match progress(app.as_ref(), generation) {
            Progress::Ready => return Ok(app.unwrap_or_default()),
            Progress::Deleted => return Err(Error::Deleted { environment, name }),
            Progress::Failed {
                reason,
                message,
                object,
            } => {
                *last = app;
                return Err(Error::NotReady {
                    environment,
                    name,
                    reason,
                    message,
                    object,
                    blueprint: deployed.app.spec.blueprint.clone(),
                });
            }
            Progress::Waiting => {
                if let Some(summary) = app.as_ref().and_then(summary) {
                    spinner.set_message(format!("Deploying \"{name}\": {summary}"));
                }
                *last = app;
            }
        }
    }
}

/// Waits until the App `name` in `namespace` is gone, for at most `arguments.timeout`.
pub async fn until_gone(
    client: &Client,
    environment: &str,
    namespace: &str,
    name: &str,
    arguments: &WaitArgs,
) -> Result<(), Error> {
    let timeout = arguments.timeout;
    let gone = async {
        let mut states = pin!(wait::follow(api(client, namespace), name));
        while let Some(state) = states.next().await {
            match state {
                Ok(None) => return Ok(()),
                Ok(Some(_)) => {}
                Err(unfollowable) => {
                    return Err(Error::unfollowable(unfollowable, environment, name));
                }
            }
        }
        Err(Error::WatchEnded {
            name: name.to_owned(),
        })
    };
    match tokio::time::timeout(timeout.unsigned_abs(), gone).await {
        Ok(result) => result,
        Err(_elapsed) => Err(Error::Timeout {
            environment: environment.to_owned(),
            name: name.to_owned(),
            goal: "to be undeployed",
            after: timeout,
            last: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use jf_api::conditions::condition;
    use jf_api::{AppSpec, AppStatus};

    use super::*;

    fn object(kind: &str, name: &str, ready: bool, reason: Option<&str>) -> AppObject {
        AppObject {
            api_version: "v1".to_owned(),
            kind: kind.to_owned(),
            name: name.to_owned(),
            ready,
            reason: reason.map(str::to_owned),
            message: reason.map(|reason| format!("because {reason}")),
        }
    }

    fn app(generation: i64, status: Option<AppStatus>) -> App {
        let mut app = App::new("logistics-api", AppSpec::default());
        app.metadata.generation = Some(generation);
        app.status = status;
        app
    }

    fn status(ready: bool, reason: &str, observed: i64, objects: Vec<AppObject>) -> AppStatus {
        AppStatus {
            conditions: vec![condition(READY, ready, reason, "a message", Some(observed))],
            observed_generation: Some(observed),
            objects,
            ..AppStatus::default()
        }
    }

    #[test]
    fn the_seeds_lines_in_the_seeds_order() {
        let objects = [
            object("Deployment", "logistics-api", true, None),
            object("ConfigMap", "logistics-settings", true, None),
            object("Service", "logistics-api", true, None),
            object("Deployment", "logistics-worker", true, None),
            object("PostgreSQL", "logistics-api", true, None),
            object("Redis", "logistics-api", true, None),
            object("Ingress", "logistics-api", true, None),
        ];
        assert_eq!(
            deployed_lines(&objects),
            [
                "Deployed \"logistics-api\"",
                "Deployed \"logistics-worker\"",
                "Created service \"logistics-api\"",
                "Deployed PostgreSQL \"logistics-api\"",
                "Deployed Redis \"logistics-api\"",
            ]
        );
    }

    #[test]
    fn ready_only_at_the_generation_written() {
        assert_eq!(progress(Some(&app(2, None)), Some(2)), Progress::Waiting);
        let stale = app(2, Some(status(true, "Ready", 1, Vec::new())));
        assert_eq!(progress(Some(&stale), Some(2)), Progress::Waiting);
        let ready = app(2, Some(status(true, "Ready", 2, Vec::new())));
        assert_eq!(progress(Some(&ready), Some(2)), Progress::Ready);
        assert_eq!(progress(None, Some(2)), Progress::Deleted);
    }

    #[test]
    fn root_causes_end_the_wait_and_name_the_object() {
        let pulling = app(
            3,
            Some(status(
                false,
                "ImagePullBackOff",
                3,
                vec![
                    object(
                        "Deployment",
                        "logistics-api",
                        false,
                        Some("ImagePullBackOff"),
                    ),
                    object("Service", "logistics-api", true, None),
                ],
            )),
        );
        assert_eq!(
            progress(Some(&pulling), Some(3)),
            Progress::Failed {
                reason: "ImagePullBackOff".to_owned(),
                message: "a message".to_owned(),
                object: Some(("Deployment".to_owned(), "logistics-api".to_owned())),
            }
        );
        // The same failure, of the generation before the one written, is not the answer.
        assert_eq!(progress(Some(&pulling), Some(4)), Progress::Waiting);

        let progressing = app(
            1,
            Some(status(
                false,
                "DependencyNotReady",
                1,
                vec![object(
                    "PostgreSQL",
                    "logistics-api",
                    false,
                    Some("Pending"),
                )],
            )),
        );
        assert_eq!(progress(Some(&progressing), Some(1)), Progress::Waiting);
        let refused = app(
            1,
            Some(status(
                false,
                "DependencyNotReady",
                1,
                vec![object(
                    "PostgreSQL",
                    "logistics-api",
                    false,
                    Some("ExtensionNotAllowed"),
                )],
            )),
        );
        let Progress::Failed {
            reason, message, ..
        } = progress(Some(&refused), Some(1))
        else {
            panic!("a failed dependency fails the App");
        };
        assert_eq!(reason, "ExtensionNotAllowed");
        assert_eq!(
            message,
            "PostgreSQL logistics-api: because ExtensionNotAllowed"
        );
    }

    #[test]
    fn summaries_say_how_far_and_what_waits() {
        let waiting = app(
            1,
            Some(status(
                false,
                "Progressing",
                1,
                vec![
                    object("Service", "logistics-api", true, None),
                    object("Deployment", "logistics-worker", false, Some("Progressing")),
                ],
            )),
        );
        assert_eq!(
            summary(&waiting).as_deref(),
            Some("1 of 2 objects ready; Deployment logistics-worker: because Progressing")
        );
    }

    #[test]
    fn the_applied_app_holds_only_what_was_asked() {
        let images = BTreeMap::from([("api".to_owned(), "registry/api:fix".to_owned())]);
        assert_eq!(
            build("logistics-api", "logistics-api", &images),
            json!({
                "apiVersion": "jango-fett.dev/v1alpha1",
                "kind": "App",
                "metadata": {"name": "logistics-api"},
                "spec": {"blueprint": "logistics-api", "images": {"api": "registry/api:fix"}},
            })
        );
        assert_eq!(
            build("api", "logistics-api", &BTreeMap::new())["spec"],
            json!({"blueprint": "logistics-api"})
        );
    }

    #[test]
    fn hints_name_the_command_to_run() {
        let error = Error::NotReady {
            environment: "fix-bug".to_owned(),
            name: "logistics-api".to_owned(),
            reason: "CrashLoopBackOff".to_owned(),
            message: "Deployment logistics-worker: container worker keeps crashing".to_owned(),
            object: Some(("Deployment".to_owned(), "logistics-worker".to_owned())),
            blueprint: "logistics-api".to_owned(),
        };
        assert_eq!(
            error.hint().as_deref(),
            Some("see why with `jf logs fix-bug logistics-worker`")
        );
        assert_eq!(
            error.to_string(),
            "\"logistics-api\" is not ready: Deployment logistics-worker: container worker \
             keeps crashing (CrashLoopBackOff)"
        );
    }
}
