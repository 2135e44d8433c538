//! Why a workload is not ready, read the way a person would: from its pods' container
//! states and scheduling, and from its ReplicaSets' failures to create pods.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;

/// A root cause, with a reason for the condition and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub reason: &'static str,
    pub message: String,
}

/// The first cause found in the pods, then in the ReplicaSets.
pub fn diagnose(workload: &str, pods: &[Pod], replica_sets: &[ReplicaSet]) -> Option<Cause> {
    for pod in pods {
        let Some(status) = &pod.status else { continue };
        let containers = status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten());
        for container in containers {
            let Some(waiting) = container
                .state
                .as_ref()
                .and_then(|state| state.waiting.as_ref())
            else {
                continue;
            };
            let cause = |reason: &'static str, hint: &str| Cause {
                reason,
                message: format!(
                    "{workload}: container {} {}{}; {hint}",
                    container.name,
                    waiting.reason.as_deref().unwrap_or_default(),
                    waiting
                        .message
                        .as_ref()
                        .map(|message| format!(" ({message})"))
                        .unwrap_or_default()
                ),
            };
            match waiting.reason.as_deref() {
                Some(
                    "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" | "ErrImageNeverPull",
                ) => {
                    return Some(cause(
                        "ImagePullBackOff",
                        &format!(
                            "check that the image {} exists and can be pulled",
                            container.image
                        ),
                    ));
                }
                Some("CrashLoopBackOff") => {
                    let exit = container
                        .last_state
                        .as_ref()
                        .and_then(|state| state.terminated.as_ref())
                        .map(|terminated| format!(", last exit code {}", terminated.exit_code))
                        .unwrap_or_default();
                    return Some(Cause {
                        reason: "CrashLoopBackOff",
                        message: format!(
                            "{workload}: container {} keeps crashing ({} restarts{exit}); run `jf logs` to see why",
                            container.name, container.restart_count
                        ),
                    });
                }
                Some("CreateContainerConfigError" | "CreateContainerError") => {
                    return Some(cause(
                        "ContainerConfigError",
                        "check the ConfigMaps and Secrets it reads",
                    ));
                }
                _ => {}
            }
        }
        let unschedulable = status.conditions.iter().flatten().find(|condition| {
            condition.type_ == "PodScheduled"
                && condition.status == "False"
                && condition.reason.as_deref() == Some("Unschedulable")
        });
        if let Some(condition) = unschedulable {
            return Some(Cause {
                reason: "Unschedulable",
                message: format!(
                    "{workload}: its pods cannot be scheduled: {}",
                    condition.message.as_deref().unwrap_or("no node fits")
                ),
            });
        }
    }
    for replica_set in replica_sets {
        let failure = replica_set
            .status
            .as_ref()
            .and_then(|status| status.conditions.as_ref())
            .into_iter()
            .flatten()
            .find(|condition| condition.type_ == "ReplicaFailure" && condition.status == "True");
        if let Some(failure) = failure {
            let message = failure.message.clone().unwrap_or_default();
            let reason = if message.contains("exceeded quota")
                || message.contains("must specify limits")
                || message.contains("must specify requests")
            {
                "QuotaExceeded"
            } else {
                "FailedCreate"
            };
            return Some(Cause {
                reason,
                message: format!("{workload}: pods cannot be created: {message}"),
            });
        }
    }
    None
}

/// The ReplicaSet annotation with the Deployment revision it holds.
const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";

/// The ReplicaSet of a Deployment's latest revision and its pods: during a rollout, what the
/// previous revision's pods do (say, an image that failed to pull and is being replaced) is
/// no longer the cause. With no revision to go by, everything is kept.
pub fn latest_revision(
    pods: Vec<Pod>,
    replica_sets: Vec<ReplicaSet>,
) -> (Vec<Pod>, Vec<ReplicaSet>) {
    let revision = |replica_set: &ReplicaSet| {
        replica_set
            .metadata
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(REVISION_ANNOTATION))
            .and_then(|revision| revision.parse::<u64>().ok())
    };
    let Some(latest) = replica_sets
        .iter()
        .filter(|replica_set| revision(replica_set).is_some())
        .max_by_key(|replica_set| revision(replica_set))
        .cloned()
    else {
        return (pods, replica_sets);
    };
    let uid = latest.metadata.uid.clone();
    let pods = pods
        .into_iter()
        .filter(|pod| {
            pod.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|owner| Some(&owner.uid) == uid.as_ref())
        })
        .collect();
    (pods, vec![latest])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "status": status})).expect("a pod")
    }

    #[test]
    fn image_pull_back_off() {
        let pods = [pod(json!({"containerStatuses": [{
            "name": "api", "image": "registry.example/api:nope", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}
        }]}))];
        let cause = diagnose("Deployment api", &pods, &[]).expect("a cause");
        assert_eq!(cause.reason, "ImagePullBackOff");
        assert!(
            cause.message.contains("registry.example/api:nope"),
            "{}",
            cause.message
        );
    }

    #[test]
    fn crash_loop_back_off() {
        let pods = [pod(json!({"containerStatuses": [{
            "name": "worker", "image": "w", "imageID": "", "ready": false, "restartCount": 4,
            "lastState": {"terminated": {"exitCode": 1}},
            "state": {"waiting": {"reason": "CrashLoopBackOff"}}
        }]}))];
        let cause = diagnose("Deployment worker", &pods, &[]).expect("a cause");
        assert_eq!(cause.reason, "CrashLoopBackOff");
        assert!(
            cause.message.contains("4 restarts, last exit code 1"),
            "{}",
            cause.message
        );
    }

    #[test]
    fn unschedulable_and_quota() {
        let pods = [pod(json!({"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient cpu."
        }]}))];
        let cause = diagnose("Deployment api", &pods, &[]).expect("a cause");
        assert_eq!(cause.reason, "Unschedulable");
        assert!(cause.message.contains("Insufficient cpu"));

        let replica_set: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "api-1"},
            "status": {"replicas": 0, "conditions": [{
                "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                "message": "pods \"api-1-x\" is forbidden: exceeded quota: jf-quota, requested: requests.cpu=2, used: requests.cpu=0, limited: requests.cpu=1"
            }]}
        }))
        .expect("a replica set");
        let cause = diagnose("Deployment api", &[], &[replica_set]).expect("a cause");
        assert_eq!(cause.reason, "QuotaExceeded");
        assert_eq!(diagnose("Deployment api", &[], &[]), None);
    }

    #[test]
    fn only_the_latest_revision_counts() {
        let replica_set = |uid: &str, revision: &str| -> ReplicaSet {
            serde_json::from_value(json!({"metadata": {
                "name": format!("api-{uid}"), "uid": uid,
                "annotations": {REVISION_ANNOTATION: revision}
            }}))
            .expect("a replica set")
        };
        let owned = |name: &str, uid: &str| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("api-{uid}"), "uid": uid}
            ]}}))
            .expect("a pod")
        };
        let (pods, replica_sets) = latest_revision(
            vec![owned("old", "a"), owned("new", "b")],
            vec![replica_set("a", "9"), replica_set("b", "10")],
        );
        let names = |pods: &[Pod]| {
            pods.iter()
                .map(|pod| pod.metadata.name.clone().unwrap_or_default())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&pods), ["new"]);
        assert_eq!(replica_sets.len(), 1);
        assert_eq!(replica_sets[0].metadata.uid.as_deref(), Some("b"));

        let (pods, _) = latest_revision(vec![owned("any", "a")], Vec::new());
        assert_eq!(names(&pods), ["any"]);
    }
}
