//! `Blueprint` (cluster-scoped, short name `bp`): a service's recipe, published by the
//! platform team from the same manifests as production. An `App` deploys one into an
//! environment.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::{Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The kinds a Blueprint may hold: namespaced workloads and their configuration, nothing
/// cluster-scoped and no RBAC. `apiVersion/kind`.
pub const ALLOWED_KINDS: [&str; 8] = [
    "apps/v1/Deployment",
    "apps/v1/StatefulSet",
    "v1/Service",
    "v1/ConfigMap",
    "v1/Secret",
    "batch/v1/Job",
    "batch/v1/CronJob",
    "v1/ServiceAccount",
];

/// A recipe for deploying a service into an environment.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "jango-fett.dev",
    version = "v1alpha1",
    kind = "Blueprint",
    shortname = "bp",
    status = "BlueprintStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A service's recipe: the manifests it is deployed from (the same as production's), the PostgreSQL and Redis it needs and what it exposes.",
    printcolumn(
        name = "Description",
        type_ = "string",
        json_path = ".spec.description"
    ),
    printcolumn(name = "Exposes", type_ = "string", json_path = ".spec.expose.service"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    validation = Rule::new("!has(self.spec.expose) || self.spec.resources.exists(r, r.kind == 'Service' && r.metadata.name == self.spec.expose.service)").message("spec.expose.service must name a Service among spec.resources").reason(Reason::FieldValueInvalid),
)]
#[serde(rename_all = "camelCase")]
pub struct BlueprintSpec {
    /// What the service is, shown by `jf blueprints`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub description: Option<String>,

    /// The service's manifests: Deployments, StatefulSets, Services, ConfigMaps, Secrets,
    /// Jobs, CronJobs and ServiceAccounts. Each is deployed into the App's namespace (its own
    /// `namespace` is replaced). Strings may use `${environment}`, `${namespace}`,
    /// `${domain}` and `${host}`.
    #[schemars(schema_with = "manifests_schema")]
    pub resources: Vec<Value>,

    /// A PostgreSQL database the service needs, made for each App as the PostgreSQL
    /// resource named like the App (Secret `<app>-postgresql`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgresql: Option<BlueprintPostgreSQL>,

    /// A Redis the service needs, made for each App as the Redis resource named like the App
    /// (Secret `<app>-redis`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<BlueprintRedis>,

    /// The Service and port published at the App's host, `<app>-<environment>.<domain>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expose: Option<Expose>,
}

/// The PostgreSQL database of a Blueprint: the spec of the PostgreSQL resource made.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BlueprintPostgreSQL {
    /// Extensions to create (from the operator's allowlist; `uuid` is `uuid-ossp`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 32),
        inner(regex(pattern = r"^[a-z][a-z0-9_-]{0,62}$"), length(max = 63)),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub extensions: Vec<String>,

    /// A template database to clone, with its data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9_-]{0,62}$"), length(max = 63))]
    pub template: Option<String>,
}

/// The Redis of a Blueprint: the spec of the Redis resource made.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BlueprintRedis {
    /// The Redis image tag; the Redis resource's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::redis::VERSION_PATTERN))]
    pub version: Option<String>,

    /// The memory limit, as Redis writes it (`64mb`); the Redis resource's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::redis::MAX_MEMORY_PATTERN))]
    pub max_memory: Option<String>,
}

/// What a Blueprint publishes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Expose {
    /// The name of a Service among the resources.
    #[schemars(length(min = 1, max = 63))]
    pub service: String,

    /// Its port, by number.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

/// What the operator observed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BlueprintStatus {
    /// `Ready` is true when the Blueprint can be deployed; if not, its message says why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The generation of the spec these observations are about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The schema of `spec.resources`: whole Kubernetes objects, each of an allowed kind.
fn manifests_schema(_: &mut SchemaGenerator) -> Schema {
    let quoted = |parts: Vec<&str>| {
        let mut parts: Vec<String> = parts.into_iter().map(|part| format!("'{part}'")).collect();
        parts.dedup();
        parts.join(", ")
    };
    let kinds: Vec<&str> = ALLOWED_KINDS
        .iter()
        .filter_map(|kind| kind.rsplit('/').next())
        .collect();
    let mut versions: Vec<&str> = ALLOWED_KINDS
        .iter()
        .filter_map(|kind| kind.rsplit_once('/').map(|(version, _)| version))
        .collect();
    versions.sort_unstable();
    let names = kinds.join(", ");
    let (kinds, versions) = (quoted(kinds), quoted(versions));
    json_schema!({
        "type": "array",
        "maxItems": 64,
        "items": {
            "type": "object",
            "x-kubernetes-embedded-resource": true,
            "x-kubernetes-preserve-unknown-fields": true,
            // Bounded, so that the rules' cost is.
            "properties": {
                "apiVersion": {"type": "string", "maxLength": 64},
                "kind": {"type": "string", "maxLength": 64},
            },
            "x-kubernetes-validations": [
                {
                    // Each part on its own, which keeps the rule's cost low; the operator checks
                    // the pair.
                    "rule": format!("self.kind in [{kinds}] && self.apiVersion in [{versions}]"),
                    "messageExpression": format!("self.kind + ' (' + self.apiVersion + ') is not allowed in a Blueprint: only namespaced workloads and their configuration ({names})'"),
                    "reason": "FieldValueForbidden",
                },
                {
                    "rule": "has(self.metadata.name) && self.metadata.name.size() > 0",
                    "message": "every resource needs metadata.name",
                    "reason": "FieldValueRequired",
                },
            ],
        },
    })
}

/// Where the pod spec of a workload of `kind` is, as a JSON pointer.
pub fn pod_spec_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Deployment" | "StatefulSet" | "Job" => Some("/spec/template/spec"),
        "CronJob" => Some("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

impl Blueprint {
    /// Why the Blueprint cannot be deployed, beyond what admission checks: a resource whose
    /// `apiVersion` and `kind` are each allowed but not together, or two resources of the same
    /// kind and name.
    pub fn problem(&self) -> Option<String> {
        let mut seen = BTreeSet::new();
        for (index, resource) in self.spec.resources.iter().enumerate() {
            let field = |name: &str| {
                resource
                    .get(name)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            };
            let (api_version, kind) = (field("apiVersion"), field("kind"));
            if !ALLOWED_KINDS.contains(&format!("{api_version}/{kind}").as_str()) {
                return Some(format!(
                    "spec.resources[{index}]: {kind} ({api_version}) is not allowed in a Blueprint"
                ));
            }
            let name = resource
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !seen.insert((kind, name)) {
                return Some(format!(
                    "spec.resources[{index}]: a second {kind} named {name:?}"
                ));
            }
        }
        None
    }

    /// The names of the containers (and init containers) of every workload: what an App's
    /// `images` may name.
    pub fn containers(&self) -> BTreeSet<String> {
        self.spec
            .resources
            .iter()
            .filter_map(|resource| {
                resource.pointer(pod_spec_pointer(resource.get("kind")?.as_str()?)?)
            })
            .flat_map(|pod| {
                ["containers", "initContainers"]
                    .into_iter()
                    .filter_map(|list| pod.get(list)?.as_array())
                    .flatten()
                    .filter_map(|container| Some(container.get("name")?.as_str()?.to_owned()))
            })
            .collect()
    }

    /// The resources of `kind` (`apiVersion/kind`, as in [`ALLOWED_KINDS`]), by name.
    pub fn resources_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.spec.resources.iter().filter_map(move |resource| {
            let this = format!(
                "{}/{}",
                resource.get("apiVersion")?.as_str()?,
                resource.get("kind")?.as_str()?
            );
            (this == kind)
                .then(|| resource.pointer("/metadata/name")?.as_str())
                .flatten()
        })
    }
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt as _;
    use serde_json::json;

    use super::*;

    #[test]
    fn crd_names_and_scope() {
        let crd = Blueprint::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("blueprints.jango-fett.dev")
        );
        assert_eq!(crd.spec.scope, "Cluster");
        assert_eq!(crd.spec.names.short_names, Some(vec!["bp".to_owned()]));
    }

    #[test]
    fn resources_are_embedded_objects_of_allowed_kinds() {
        let crd = serde_json::to_value(Blueprint::crd()).expect("serializes");
        let resources = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["resources"];
        let items = &resources["items"];
        assert_eq!(items["x-kubernetes-embedded-resource"], json!(true));
        assert_eq!(items["x-kubernetes-preserve-unknown-fields"], json!(true));
        let rule = items["x-kubernetes-validations"][0]["rule"]
            .as_str()
            .unwrap_or_default();
        assert_eq!(
            rule,
            "self.kind in ['Deployment', 'StatefulSet', 'Service', 'ConfigMap', 'Secret', 'Job', 'CronJob', 'ServiceAccount'] \
             && self.apiVersion in ['apps/v1', 'batch/v1', 'v1']"
        );
        assert!(!rule.contains("ClusterRole") && !rule.contains("Namespace"));
    }

    #[test]
    fn finds_resources_by_kind() {
        let blueprint = Blueprint::new(
            "api",
            BlueprintSpec {
                resources: vec![
                    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api"}}),
                    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api"}}),
                    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "worker"}}),
                ],
                ..BlueprintSpec::default()
            },
        );
        let deployments: Vec<&str> = blueprint.resources_of("apps/v1/Deployment").collect();
        assert_eq!(deployments, ["api", "worker"]);
    }

    #[test]
    fn problems_admission_cannot_see() {
        let blueprint = |resources: Vec<Value>| {
            Blueprint::new(
                "api",
                BlueprintSpec {
                    resources,
                    ..BlueprintSpec::default()
                },
            )
        };
        let deployment =
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api"}});
        assert_eq!(blueprint(vec![deployment.clone()]).problem(), None);
        assert_eq!(
            blueprint(vec![deployment.clone(), deployment]).problem(),
            Some("spec.resources[1]: a second Deployment named \"api\"".to_owned())
        );
        assert_eq!(
            blueprint(vec![
                json!({"apiVersion": "v1", "kind": "Deployment", "metadata": {"name": "api"}})
            ])
            .problem(),
            Some("spec.resources[0]: Deployment (v1) is not allowed in a Blueprint".to_owned())
        );
    }

    #[test]
    fn lists_the_containers_of_every_workload() {
        let pod = |containers: Value| json!({"spec": {"template": {"spec": containers}}});
        let mut deployment = pod(json!({
            "initContainers": [{"name": "migrate"}],
            "containers": [{"name": "api"}, {"name": "proxy"}],
        }));
        deployment["kind"] = json!("Deployment");
        let mut cron_job = json!({"kind": "CronJob", "spec": {"jobTemplate": pod(json!({"containers": [{"name": "cleanup"}, {"name": "api"}]}))}});
        cron_job["apiVersion"] = json!("batch/v1");
        let blueprint = Blueprint::new(
            "api",
            BlueprintSpec {
                resources: vec![
                    deployment,
                    cron_job,
                    json!({"kind": "ConfigMap", "data": {"containers": "no"}}),
                ],
                ..BlueprintSpec::default()
            },
        );
        assert_eq!(
            blueprint.containers().into_iter().collect::<Vec<_>>(),
            ["api", "cleanup", "migrate", "proxy"]
        );
    }
}
