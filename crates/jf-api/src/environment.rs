//! `Environment` (cluster-scoped, short name `env`): a developer environment. The operator
//! gives it a namespace `jf-<name>` with access for its users, its configuration as the
//! ConfigMap `env-config`, network isolation, quota and an expiry.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// The desired state of a developer environment.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "jango-fett.dev",
    version = "v1alpha1",
    kind = "Environment",
    shortname = "env",
    status = "EnvironmentStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A developer environment: a namespace with access for its users, its configuration, network isolation, quota and an expiry.",
    printcolumn(name = "Namespace", type_ = "string", json_path = ".status.namespace"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".spec.expiresAt"),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 40").message("metadata.name: an environment name may be at most 40 characters").reason(Reason::FieldValueInvalid),
    validation = Rule::new("self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("metadata.name: an environment name must be a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit").reason(Reason::FieldValueInvalid),
)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentSpec {
    /// Users granted access to the environment: the role `role` in its namespace, and the
    /// right to read and change this Environment. `jf create env` adds its caller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 253)))]
    pub users: Vec<String>,

    /// Groups granted the same access as `users`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 253)))]
    pub groups: Vec<String>,

    /// The ClusterRole the users and groups get in the namespace. It must be one the operator
    /// allows (by default `admin`, `edit` and `view`); `cluster-admin` is never allowed.
    /// Empty means the operator's default, `admin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self != 'cluster-admin'").message("cluster-admin can never be granted to an environment's users").reason(Reason::FieldValueForbidden))]
    pub role: Option<String>,

    /// Configuration of the environment's services, published in the ConfigMap `env-config`
    /// together with the reserved keys `JF_ENVIRONMENT`, `JF_NAMESPACE`, `JF_DOMAIN` and
    /// `JF_URL`. Keys may hold letters, digits, `-`, `_` and `.`, and may not start with `JF_`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(length(max = 512))]
    #[x_kube(
        validation = Rule::new("self.all(key, key.matches('^[-._a-zA-Z0-9]+$'))").message("keys may only contain letters, digits, '-', '_' and '.'").reason(Reason::FieldValueInvalid),
        validation = Rule::new("self.all(key, !key.startsWith('JF_'))").message("keys starting with JF_ are reserved for the values Jango Fett sets").reason(Reason::FieldValueForbidden),
    )]
    pub config: BTreeMap<String, String>,

    /// When the operator deletes the environment (RFC 3339). It records an Event an hour
    /// before. `jf create env --ttl 72h` sets it and `jf extend` moves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,

    /// Scale every Deployment and StatefulSet in the namespace to zero, remembering their
    /// replicas; back to false restores them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sleeping: bool,

    /// Limits of the namespace; unset parts take the operator's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<EnvironmentQuota>,

    /// The App that answers at the environment's own host, `<environment>.<domain>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub default_app: Option<String>,
}

/// Limits of an environment's namespace (a ResourceQuota on requests).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentQuota {
    /// Total CPU the pods may request, e.g. `4` or `500m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    /// Total memory the pods may request, e.g. `8Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
    /// How many pods may exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10000))]
    pub pods: Option<i32>,
}

/// What the operator observed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentStatus {
    /// Pending, Ready, Sleeping, Terminating or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<EnvironmentPhase>,

    /// The environment's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,

    /// The environment's URL, `https://<environment>.<domain>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,

    /// When the environment will be deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,

    /// The expiry for which the one-hour warning was recorded, so it is recorded once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_warning_for: Option<Time>,

    /// The latest observations; `Ready` is always present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The generation of the spec these observations are about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The lifecycle phase of an environment.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvironmentPhase {
    Pending,
    Ready,
    Sleeping,
    Terminating,
    Failed,
}

impl std::fmt::Display for EnvironmentPhase {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Self::Pending => "Pending",
            Self::Ready => "Ready",
            Self::Sleeping => "Sleeping",
            Self::Terminating => "Terminating",
            Self::Failed => "Failed",
        })
    }
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt as _;
    use serde_json::{Value, json};

    use super::*;

    fn schema() -> Value {
        let crd = serde_json::to_value(Environment::crd()).expect("the CRD serializes");
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
    }

    #[test]
    fn crd_names_and_scope() {
        let crd = Environment::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("environments.jango-fett.dev")
        );
        assert_eq!(crd.spec.scope, "Cluster");
        assert_eq!(crd.spec.names.short_names, Some(vec!["env".to_owned()]));
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(version.storage && version.served);
        let columns: Vec<&str> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|column| column.name.as_str())
            .collect();
        assert_eq!(
            columns,
            ["Namespace", "Ready", "Status", "Expires", "URL", "Age"]
        );
    }

    #[test]
    fn schema_pins_the_validation_rules() {
        let schema = schema();
        let root_rules: Vec<&str> = schema["x-kubernetes-validations"]
            .as_array()
            .expect("root rules")
            .iter()
            .filter_map(|rule| rule["rule"].as_str())
            .collect();
        assert!(root_rules.iter().any(|rule| rule.contains("size() <= 40")));
        assert!(
            root_rules
                .iter()
                .any(|rule| rule.contains("matches('^[a-z0-9]"))
        );

        let spec = &schema["properties"]["spec"]["properties"];
        let config_rules = spec["config"]["x-kubernetes-validations"].to_string();
        assert!(config_rules.contains("startsWith('JF_')"), "{config_rules}");
        assert!(config_rules.contains("^[-._a-zA-Z0-9]+$"), "{config_rules}");
        assert_eq!(spec["expiresAt"]["format"], json!("date-time"));
        assert_eq!(spec["users"]["items"]["minLength"], json!(1));
        assert!(
            spec["role"]["x-kubernetes-validations"]
                .to_string()
                .contains("cluster-admin")
        );

        let conditions = &schema["properties"]["status"]["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], json!("map"));
        assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
    }

    #[test]
    fn an_empty_spec_serializes_to_an_empty_object() {
        let environment = Environment::new("fix-bug", EnvironmentSpec::default());
        let value = serde_json::to_value(&environment).expect("serializes");
        assert_eq!(value["spec"], json!({}));
        assert_eq!(value["apiVersion"], json!("jango-fett.dev/v1alpha1"));
    }
}
