//! `App` (namespaced): one Blueprint deployed into one environment, with the images of the
//! branch under test.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A Blueprint deployed into an environment.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "jango-fett.dev",
    version = "v1alpha1",
    kind = "App",
    namespaced,
    status = "AppStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A Blueprint deployed into an environment's namespace, with the images of the branch under test.",
    printcolumn(name = "Blueprint", type_ = "string", json_path = ".spec.blueprint"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 40").message("metadata.name: an App name may be at most 40 characters, so that its host name fits").reason(Reason::FieldValueInvalid),
)]
#[serde(rename_all = "camelCase")]
pub struct AppSpec {
    /// The Blueprint to deploy.
    #[schemars(length(min = 1, max = 253))]
    pub blueprint: String,

    /// Images for the branch under test, by container name: every container of that name,
    /// in any workload of the Blueprint, runs this image.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.all(container, container.size() <= 63 && self[container].size() > 0 && self[container].size() <= 512)").message("images: container names are at most 63 characters and images are non-empty").reason(Reason::FieldValueInvalid))]
    pub images: BTreeMap<String, String>,

    /// Replicas of every Deployment and StatefulSet, instead of the Blueprint's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: Option<i32>,
}

/// What the operator observed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppStatus {
    /// The App's URL, `https://<app>-<environment>.<domain>`, when the Blueprint exposes a
    /// Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,

    /// Every object deployed, with its readiness.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<AppObject>,

    /// The Blueprint's generation that was deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blueprint_generation: Option<i64>,

    /// The latest observations; `Ready` is always present, and names the root cause when
    /// something is not ready (ImagePullBackOff, CrashLoopBackOff, Unschedulable,
    /// QuotaExceeded, DependencyNotReady…).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The generation of the spec these observations are about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One deployed object.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AppObject {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub ready: bool,
    /// Why it is not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt as _;

    use super::*;

    #[test]
    fn crd_names_and_scope() {
        let crd = App::crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("apps.jango-fett.dev"));
        assert_eq!(crd.spec.scope, "Namespaced");
    }
}
