//! The workloads of an environment: its Deployments and StatefulSets, restarted the way
//! `kubectl rollout restart` does it (a new annotation on the pod template, so the pods are
//! replaced one by one) and read through their pods' logs.

use std::collections::BTreeMap;
use std::pin::pin;

use futures::{AsyncBufReadExt as _, Stream, StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ListParams, LogParams, Patch, PatchParams};
use kube::{Client, Resource as _, ResourceExt};
use serde_json::json;

use crate::api_error::ApiError;
use crate::databases::namespace_of;
use crate::duration;
use crate::environments::{self, FIELD_MANAGER};
use crate::wait::{self, Spinner};

/// The pod template annotation whose change makes a rollout, as `kubectl rollout restart`
/// writes it.
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Environment(#[from] environments::Error),
    #[error("environment \"{environment}\" has no workload \"{name}\"{known}",
        known = if .known.is_empty() {
            "; it has none".to_owned()
        } else {
            format!("; its workloads are: {}", .known.join(", "))
        })]
    NotFound {
        environment: String,
        name: String,
        known: Vec<String>,
    },
    #[error("failed to read workload \"{name}\" of environment \"{environment}\"")]
    Read {
        environment: String,
        name: String,
        #[source]
        source: ApiError,
    },
    #[error("failed to restart \"{name}\"")]
    Restart {
        environment: String,
        name: String,
        #[source]
        source: ApiError,
    },
    #[error("the rollout of \"{name}\" failed: {message}")]
    RolloutFailed {
        environment: String,
        name: String,
        message: String,
    },
    #[error(
        "timed out after {after} waiting for \"{name}\" to restart{last}",
        after = duration::display(*.after),
        last = .last.as_deref().map(|last| format!("; last status: {last}")).unwrap_or_default()
    )]
    Timeout {
        environment: String,
        name: String,
        after: SignedDuration,
        last: Option<String>,
    },
    #[error("\"{name}\" was deleted while it restarted")]
    Deleted { environment: String, name: String },
    #[error("failed to watch \"{name}\"")]
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
    #[error("\"{name}\" has no pods{why}",
        why = if *.scaled_to_zero { "; it is scaled to zero (is the environment asleep?)" } else { "" })]
    NoPods {
        environment: String,
        name: String,
        scaled_to_zero: bool,
    },
    #[error("\"{name}\" has no container \"{container}\"; its containers are: {}", .known.join(", "))]
    UnknownContainer {
        name: String,
        container: String,
        known: Vec<String>,
    },
    #[error("failed to read the logs of pod \"{pod}\"")]
    Logs {
        environment: String,
        pod: String,
        #[source]
        source: ApiError,
    },
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
        match self {
            Self::Environment(error) => error.hint(),
            Self::Read {
                environment,
                source,
                ..
            }
            | Self::Restart {
                environment,
                source,
                ..
            }
            | Self::Logs {
                environment,
                source,
                ..
            } if source.is_forbidden() => Some(format!(
                "only the users of environment \"{environment}\" may use its workloads; \
                 ask one of them to run `jf users add {environment} YOUR-USER-NAME`"
            )),
            Self::NotFound { environment, .. } => Some(format!(
                "run `jf status {environment}` to see what is deployed in it"
            )),
            Self::NoPods {
                environment,
                scaled_to_zero: true,
                ..
            } => Some(format!("wake it with `jf wake {environment}`")),
            Self::RolloutFailed { environment, .. } | Self::Timeout { environment, .. } => Some(
                format!("run `jf status {environment}` to see why its pods are not ready"),
            ),
            _ => None,
        }
    }
}

/// A Deployment or a StatefulSet.
#[derive(Debug, Clone)]
pub enum Workload {
    Deployment(Deployment),
    StatefulSet(StatefulSet),
}

impl Workload {
    pub fn name(&self) -> String {
        match self {
            Self::Deployment(deployment) => deployment.name_any(),
            Self::StatefulSet(stateful_set) => stateful_set.name_any(),
        }
    }

    /// The labels that select its pods.
    fn selector(&self) -> BTreeMap<String, String> {
        let selector = match self {
            Self::Deployment(deployment) => {
                deployment.spec.as_ref().map(|spec| spec.selector.clone())
            }
            Self::StatefulSet(stateful_set) => {
                stateful_set.spec.as_ref().map(|spec| spec.selector.clone())
            }
        };
        selector
            .and_then(|selector| selector.match_labels)
            .unwrap_or_default()
    }

    fn replicas(&self) -> i32 {
        match self {
            Self::Deployment(deployment) => deployment.spec.as_ref().and_then(|spec| spec.replicas),
            Self::StatefulSet(stateful_set) => {
                stateful_set.spec.as_ref().and_then(|spec| spec.replicas)
            }
        }
        // Kubernetes defaults replicas to 1.
        .unwrap_or(1)
    }
}

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    Done,
    /// Still rolling, with how far.
    Rolling(String),
    Failed(String),
}

/// Where the rollout of `workload` stands, the way `kubectl rollout status` judges it: its
/// controller has seen the latest spec, every replica runs it and is available, and no pod
/// of an older one is left.
pub fn rollout(workload: &Workload) -> Rollout {
    let replicas = workload.replicas();
    match workload {
        Workload::Deployment(deployment) => {
            let status = deployment.status.clone().unwrap_or_default();
            if status.observed_generation < deployment.metadata.generation {
                return Rollout::Rolling("waiting for the rollout to start".to_owned());
            }
            let deadline_exceeded = status.conditions.iter().flatten().find(|condition| {
                condition.type_ == "Progressing"
                    && condition.reason.as_deref() == Some("ProgressDeadlineExceeded")
            });
            if let Some(condition) = deadline_exceeded {
                return Rollout::Failed(condition.message.clone().unwrap_or_default());
            }
            let updated = status.updated_replicas.unwrap_or(0);
            let available = status.available_replicas.unwrap_or(0);
            let total = status.replicas.unwrap_or(0);
            if updated >= replicas && available >= replicas && total <= replicas {
                Rollout::Done
            } else {
                Rollout::Rolling(format!(
                    "{updated} of {replicas} pods updated, {available} available"
                ))
            }
        }
        Workload::StatefulSet(stateful_set) => {
            let status = stateful_set.status.clone().unwrap_or_default();
            if status.observed_generation < stateful_set.metadata.generation {
                return Rollout::Rolling("waiting for the rollout to start".to_owned());
            }
            let updated = status.updated_replicas.unwrap_or(0);
            let ready = status.ready_replicas.unwrap_or(0);
            if updated >= replicas
                && ready >= replicas
                && status.current_revision == status.update_revision
            {
                Rollout::Done
            } else {
                Rollout::Rolling(format!(
                    "{updated} of {replicas} pods updated, {ready} ready"
                ))
            }
        }
    }
}

/// The workload `name` of `environment`, in `namespace`: a Deployment, else a StatefulSet.
pub async fn find(
    client: &Client,
    environment: &str,
    namespace: &str,
    name: &str,
) -> Result<Workload, Error> {
    let read = |source: kube::Error| Error::Read {
        environment: environment.to_owned(),
        name: name.to_owned(),
        source: source.into(),
    };
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    if let Some(deployment) = deployments.get_opt(name).await.map_err(read)? {
        return Ok(Workload::Deployment(deployment));
    }
    let stateful_sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    if let Some(stateful_set) = stateful_sets.get_opt(name).await.map_err(read)? {
        return Ok(Workload::StatefulSet(stateful_set));
    }
    let mut known: Vec<String> = deployments
        .list_metadata(&ListParams::default())
        .await
        .map_err(read)?
        .items
        .iter()
        .map(ResourceExt::name_any)
        .chain(
            stateful_sets
                .list_metadata(&ListParams::default())
                .await
                .map_err(read)?
                .items
                .iter()
                .map(ResourceExt::name_any),
        )
        .collect();
    known.sort();
    Err(Error::NotFound {
        environment: environment.to_owned(),
        name: name.to_owned(),
        known,
    })
}

/// The patch that restarts a workload's pods.
pub fn restart_patch(now: Timestamp) -> serde_json::Value {
    json!({"spec": {"template": {"metadata": {"annotations": {
        RESTARTED_AT_ANNOTATION: now.to_string(),
    }}}}})
}

/// A restart asked for.
#[derive(Debug, Clone)]
pub struct Restarted {
    pub environment: String,
    pub namespace: String,
    /// The workload as the patch returned it.
    pub workload: Workload,
}

/// Restarts the workload `name` of `environment`: its pods are replaced, one by one.
pub async fn restart(client: &Client, environment: &str, name: &str) -> Result<Restarted, Error> {
    let namespace = namespace_of(&environments::get(client, environment).await?);
    let workload = find(client, environment, &namespace, name).await?;
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    let patch = Patch::Merge(restart_patch(Timestamp::now()));
    let failed = |source: kube::Error| Error::Restart {
        environment: environment.to_owned(),
        name: name.to_owned(),
        source: source.into(),
    };
    let workload = match workload {
        Workload::Deployment(_) => Workload::Deployment(
            Api::<Deployment>::namespaced(client.clone(), &namespace)
                .patch(name, &params, &patch)
                .await
                .map_err(failed)?,
        ),
        Workload::StatefulSet(_) => Workload::StatefulSet(
            Api::<StatefulSet>::namespaced(client.clone(), &namespace)
                .patch(name, &params, &patch)
                .await
                .map_err(failed)?,
        ),
    };
    Ok(Restarted {
        environment: environment.to_owned(),
        namespace,
        workload,
    })
}

/// Waits until the rollout `restarted` started is done, for at most `timeout`.
pub async fn until_rolled_out(
    client: &Client,
    restarted: &Restarted,
    timeout: SignedDuration,
    spinner: &Spinner,
) -> Result<(), Error> {
    let name = restarted.workload.name();
    let mut last = None;
    let watching = async {
        match &restarted.workload {
            Workload::Deployment(_) => {
                let api = Api::<Deployment>::namespaced(client.clone(), &restarted.namespace);
                watch_rollout(restarted, api, Workload::Deployment, &mut last, spinner).await
            }
            Workload::StatefulSet(_) => {
                let api = Api::<StatefulSet>::namespaced(client.clone(), &restarted.namespace);
                watch_rollout(restarted, api, Workload::StatefulSet, &mut last, spinner).await
            }
        }
    };
    match tokio::time::timeout(timeout.unsigned_abs(), watching).await {
        Ok(result) => result,
        Err(_elapsed) => Err(Error::Timeout {
            environment: restarted.environment.clone(),
            name,
            after: timeout,
            last,
        }),
    }
}

async fn watch_rollout<K>(
    restarted: &Restarted,
    api: Api<K>,
    workload: impl Fn(K) -> Workload,
    last: &mut Option<String>,
    spinner: &Spinner,
) -> Result<(), Error>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
{
    let name = restarted.workload.name();
    let environment = restarted.environment.clone();
    let mut states = pin!(wait::follow(api, &name));
    loop {
        let current = match states.next().await {
            Some(Ok(Some(current))) => workload(current),
            Some(Ok(None)) => return Err(Error::Deleted { environment, name }),
            Some(Err(unfollowable)) => {
                return Err(Error::unfollowable(unfollowable, &environment, &name));
            }
            None => return Err(Error::WatchEnded { name }),
        };
        match rollout(&current) {
            Rollout::Done => return Ok(()),
            Rollout::Failed(message) => {
                return Err(Error::RolloutFailed {
                    environment,
                    name,
                    message,
                });
            }
            Rollout::Rolling(how_far) => {
                spinner.set_message(format!("Restarting \"{name}\": {how_far}"));
                *last = Some(how_far);
            }
        }
    }
}

/// What `jf logs` reads.
#[derive(Debug, Clone, Default)]
pub struct LogRequest {
    pub follow: bool,
    /// Only this container; every container otherwise.
    pub container: Option<String>,
    /// Only the last lines of each.
    pub tail: Option<i64>,
}

/// One container's log: `pod/container`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub pod: String,
    pub container: String,
}

/// Which containers' logs to read, pod by pod: every container, or the one asked for. A
/// container none of the pods has is refused with those they have.
pub fn sources(pods: &[Pod], container: Option<&str>) -> Result<Vec<Source>, Vec<String>> {
    let mut sources = Vec::new();
    let mut known = Vec::new();
    for pod in pods {
        for present in pod.spec.iter().flat_map(|spec| &spec.containers) {
            if !known.contains(&present.name) {
                known.push(present.name.clone());
            }
            if container.is_none_or(|container| container == present.name) {
                sources.push(Source {
                    pod: pod.name_any(),
                    container: present.name.clone(),
                });
            }
        }
    }
    if sources.is_empty() && container.is_some() && !known.is_empty() {
        return Err(known);
    }
    Ok(sources)
}

/// The lines of the logs of workload `name` of `environment`, each with its source when
/// there is more than one; with `follow`, the stream goes on as the containers write.
pub async fn logs(
    client: &Client,
    environment: &str,
    name: &str,
    request: &LogRequest,
) -> Result<impl Stream<Item = Result<String, Error>> + use<>, Error> {
    let namespace = namespace_of(&environments::get(client, environment).await?);
    let workload = find(client, environment, &namespace, name).await?;
    let selector = workload
        .selector()
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let mut found = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| Error::Read {
            environment: environment.to_owned(),
            name: name.to_owned(),
            source: source.into(),
        })?
        .items;
    found.retain(|pod| pod.meta().deletion_timestamp.is_none());
    found.sort_by_key(|pod| pod.name_any());
    if found.is_empty() {
        return Err(Error::NoPods {
            environment: environment.to_owned(),
            name: name.to_owned(),
            scaled_to_zero: workload.replicas() == 0,
        });
    }
    let sources =
        sources(&found, request.container.as_deref()).map_err(|known| Error::UnknownContainer {
            name: name.to_owned(),
            container: request.container.clone().unwrap_or_default(),
            known,
        })?;
    let prefixed = sources.len() > 1;
    let mut streams = Vec::new();
    for source in sources {
        let params = LogParams {
            follow: request.follow,
            container: Some(source.container.clone()),
            tail_lines: request.tail,
            ..LogParams::default()
        };
        let failed = |error: kube::Error| Error::Logs {
            environment: environment.to_owned(),
            pod: source.pod.clone(),
            source: error.into(),
        };
        let reader = pods
            .log_stream(&source.pod, &params)
            .await
            .map_err(failed)?;
        let prefix = if prefixed {
            format!("[{}/{}] ", source.pod, source.container)
        } else {
            String::new()
        };
        let environment = environment.to_owned();
        let pod = source.pod.clone();
        streams.push(
            reader
                .lines()
                .map_ok(move |line| format!("{prefix}{line}"))
                .map_err(move |error| Error::Logs {
                    environment: environment.clone(),
                    pod: pod.clone(),
                    source: ApiError(kube::Error::ReadEvents(error)),
                })
                .boxed(),
        );
    }
    // Without follow, one container after another; with it, as the lines come.
    Ok(if request.follow {
        futures::stream::select_all(streams).boxed()
    } else {
        futures::stream::iter(streams).flatten().boxed()
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{DeploymentStatus, StatefulSetStatus};
    use serde_json::Value;

    use super::*;

    fn deployment(generation: i64, replicas: i32, status: Value) -> Workload {
        let mut deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "logistics-worker", "generation": generation},
            "spec": {"replicas": replicas, "selector": {}, "template": {}},
        }))
        .expect("a deployment");
        deployment.status =
            Some(serde_json::from_value::<DeploymentStatus>(status).expect("a status"));
        Workload::Deployment(deployment)
    }

    #[test]
    fn a_deployment_is_rolled_out_when_every_pod_is_new_and_available() {
        let rolling = deployment(
            3,
            2,
            json!({"observedGeneration": 3, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2}),
        );
        assert_eq!(
            rollout(&rolling),
            Rollout::Rolling("2 of 2 pods updated, 2 available".to_owned()),
            "an old pod is still there"
        );
        let unseen = deployment(
            3,
            2,
            json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
        );
        assert_eq!(
            rollout(&unseen),
            Rollout::Rolling("waiting for the rollout to start".to_owned())
        );
        let done = deployment(
            3,
            2,
            json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
        );
        assert_eq!(rollout(&done), Rollout::Done);
        let stuck = deployment(
            3,
            2,
            json!({"observedGeneration": 3, "replicas": 3, "updatedReplicas": 1, "conditions": [{
                "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                "message": "ReplicaSet \"w-2\" has timed out progressing."
            }]}),
        );
        assert_eq!(
            rollout(&stuck),
            Rollout::Failed("ReplicaSet \"w-2\" has timed out progressing.".to_owned())
        );
    }

    #[test]
    fn a_stateful_set_is_rolled_out_at_one_revision() {
        let mut stateful_set: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "cache", "generation": 2},
            "spec": {"replicas": 1, "selector": {}, "serviceName": "cache", "template": {}},
        }))
        .expect("a stateful set");
        let status = |current: &str| -> StatefulSetStatus {
            serde_json::from_value(
                json!({"observedGeneration": 2, "replicas": 1, "readyReplicas": 1,
                "updatedReplicas": 1, "currentRevision": current, "updateRevision": "r2"}),
            )
            .expect("a status")
        };
        stateful_set.status = Some(status("r1"));
        assert!(matches!(
            rollout(&Workload::StatefulSet(stateful_set.clone())),
            Rollout::Rolling(_)
        ));
        stateful_set.status = Some(status("r2"));
        assert_eq!(rollout(&Workload::StatefulSet(stateful_set)), Rollout::Done);
    }

    #[test]
    fn the_restart_patch_is_kubectls() {
        let now: Timestamp = "2026-11-23T10:00:00Z".parse().expect("a time");
        assert_eq!(
            restart_patch(now),
            json!({"spec": {"template": {"metadata": {"annotations": {
                "kubectl.kubernetes.io/restartedAt": "2026-11-23T10:00:00Z"
            }}}}})
        );
    }

    #[test]
    fn logs_of_every_container_or_the_one_asked_for() {
        let pod = |name: &str| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"containers": [
                {"name": "api"}, {"name": "proxy"}
            ]}}))
            .expect("a pod")
        };
        let pods = [pod("api-1"), pod("api-2")];
        let all = sources(&pods, None).expect("sources");
        assert_eq!(all.len(), 4);
        let proxies = sources(&pods, Some("proxy")).expect("sources");
        assert_eq!(
            proxies,
            [
                Source {
                    pod: "api-1".to_owned(),
                    container: "proxy".to_owned()
                },
                Source {
                    pod: "api-2".to_owned(),
                    container: "proxy".to_owned()
                },
            ]
        );
        assert_eq!(
            sources(&pods, Some("sidecar")),
            Err(vec!["api".to_owned(), "proxy".to_owned()])
        );
    }
}
