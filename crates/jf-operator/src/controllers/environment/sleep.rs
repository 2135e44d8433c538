//! Sleep and wake: every Deployment and StatefulSet of a sleeping environment is scaled to
//! zero, its replicas remembered in an annotation; waking restores them.

use jf_api::naming::REPLICAS_BEFORE_SLEEP_ANNOTATION;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::FIELD_MANAGER;

/// What a sleep or wake pass changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Scaled {
    /// Workloads scaled (down or up) by this pass.
    pub changed: u64,
}

/// Scales the workloads in `namespace` to zero (`sleeping`) or back to their replicas.
pub async fn sync(client: &Client, namespace: &str, sleeping: bool) -> Result<Scaled, kube::Error> {
    let deployments = scale::<Deployment>(client, namespace, sleeping, |deployment| {
        deployment.spec.as_ref().and_then(|spec| spec.replicas)
    })
    .await?;
    let stateful_sets = scale::<StatefulSet>(client, namespace, sleeping, |stateful_set| {
        stateful_set.spec.as_ref().and_then(|spec| spec.replicas)
    })
    .await?;
    Ok(Scaled {
        changed: deployments + stateful_sets,
    })
}

/// The patch that puts one workload to sleep or wakes it, if it needs one.
pub fn patch_for(
    sleeping: bool,
    replicas: Option<i32>,
    remembered: Option<&str>,
) -> Option<serde_json::Value> {
    // Kubernetes defaults replicas to 1.
    let replicas = replicas.unwrap_or(1);
    match (sleeping, remembered) {
        (true, None) if replicas > 0 => Some(json!({
            "metadata": {"annotations": {REPLICAS_BEFORE_SLEEP_ANNOTATION: replicas.to_string()}},
            "spec": {"replicas": 0},
        })),
        (false, Some(remembered)) => Some(json!({
            "metadata": {"annotations": {REPLICAS_BEFORE_SLEEP_ANNOTATION: null}},
            "spec": {"replicas": remembered.parse::<i32>().unwrap_or(1)},
        })),
        _ => None,
    }
}

async fn scale<K>(
    client: &Client,
    namespace: &str,
    sleeping: bool,
    replicas: impl Fn(&K) -> Option<i32>,
) -> Result<u64, kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let mut changed = 0;
    for workload in api.list(&ListParams::default()).await? {
        let remembered = workload.annotations().get(REPLICAS_BEFORE_SLEEP_ANNOTATION);
        if let Some(patch) = patch_for(
            sleeping,
            replicas(&workload),
            remembered.map(String::as_str),
        ) {
            api.patch(
                &workload.name_any(),
                &PatchParams {
                    field_manager: Some(FIELD_MANAGER.to_owned()),
                    ..PatchParams::default()
                },
                &Patch::Merge(&patch),
            )
            .await?;
            changed += 1;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeping_remembers_and_waking_restores() {
        assert_eq!(
            patch_for(true, Some(3), None),
            Some(json!({
                "metadata": {"annotations": {"jango-fett.dev/replicas-before-sleep": "3"}},
                "spec": {"replicas": 0}
            }))
        );
        assert_eq!(
            patch_for(true, None, None).map(|patch| patch["metadata"]["annotations"].clone()),
            Some(json!({"jango-fett.dev/replicas-before-sleep": "1"}))
        );
        // Already asleep, or nothing to scale.
        assert_eq!(patch_for(true, Some(0), Some("3")), None);
        assert_eq!(patch_for(true, Some(0), None), None);
        assert_eq!(
            patch_for(false, Some(0), Some("3")),
            Some(json!({
                "metadata": {"annotations": {"jango-fett.dev/replicas-before-sleep": null}},
                "spec": {"replicas": 3}
            }))
        );
        assert_eq!(patch_for(false, Some(2), None), None);
    }
}
