//! `PostgreSQL` (namespaced, short name `pg`): a database and its login role on the shared
//! PostgreSQL server the operator is configured with, and the Secret `<name>-postgresql`
//! holding the credentials.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A database of its own on the shared PostgreSQL server.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "jango-fett.dev",
    version = "v1alpha1",
    kind = "PostgreSQL",
    plural = "postgresqls",
    singular = "postgresql",
    shortname = "pg",
    namespaced,
    status = "PostgreSQLStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A database and its login role on the shared PostgreSQL server, with its credentials in the Secret <name>-postgresql.",
    printcolumn(name = "Database", type_ = "string", json_path = ".status.database"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason", priority = 1),
    printcolumn(name = "Secret", type_ = "string", json_path = ".status.secretName", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 53").message("metadata.name: a PostgreSQL name may be at most 53 characters, so that its Secret's name (<name>-postgresql) fits in 63").reason(Reason::FieldValueInvalid),
)]
#[serde(rename_all = "camelCase")]
pub struct PostgreSQLSpec {
    /// Extensions to create in the database. Each must be on the operator's allowlist (by
    /// default PostgreSQL's trusted extensions, such as `uuid-ossp`, `pgcrypto`, `citext`,
    /// `pg_trgm` and `hstore`); `uuid` is an alias of `uuid-ossp`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 32),
        inner(regex(pattern = r"^[a-z][a-z0-9_-]{0,62}$"), length(max = 63)),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub extensions: Vec<String>,

    /// A database to clone, with its data: it must be one the server marks as a template
    /// (`datistemplate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9_-]{0,62}$"), length(max = 63))]
    pub template: Option<String>,

    /// Set to a new value (`jf db reset` uses the time) to drop the database and create it
    /// again, empty or from its template. `status.reset` has the value once it is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub reset: Option<String>,

    /// What happens to the database and its role when this resource is deleted: `Delete`
    /// (the default) drops them, `Retain` keeps them.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// What happens to the database when its resource is deleted.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum DeletionPolicy {
    #[default]
    Delete,
    Retain,
}

/// What the operator observed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PostgreSQLStatus {
    /// The database's name on the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,

    /// The login role's name on the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,

    /// The Secret with the credentials (servicebinding.io layout and `DATABASE_URL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,

    /// The extensions created in the database.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<String>,

    /// The last reset that was carried out: the value of `spec.reset` it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<String>,

    /// When the database was last created (or re-created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Time>,

    /// The latest observations; `Ready` is always present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The generation of the spec these observations are about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt as _;
    use serde_json::{Value, json};

    use super::*;

    fn schema() -> Value {
        let crd = serde_json::to_value(PostgreSQL::crd()).expect("the CRD serializes");
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
    }

    #[test]
    fn crd_names_and_scope() {
        let crd = PostgreSQL::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("postgresqls.jango-fett.dev")
        );
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec!["pg".to_owned()]));
        let columns: Vec<&str> = crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|column| column.name.as_str())
            .collect();
        assert_eq!(columns, ["Database", "Ready", "Reason", "Secret", "Age"]);
    }

    #[test]
    fn schema_allows_only_plain_identifiers() {
        let schema = schema();
        let spec = &schema["properties"]["spec"]["properties"];
        assert_eq!(
            spec["extensions"]["items"]["pattern"],
            json!("^[a-z][a-z0-9_-]{0,62}$")
        );
        assert_eq!(spec["extensions"]["x-kubernetes-list-type"], json!("set"));
        assert_eq!(
            spec["template"]["pattern"],
            json!("^[a-z][a-z0-9_-]{0,62}$")
        );
        assert_eq!(spec["deletionPolicy"]["enum"], json!(["Delete", "Retain"]));
        assert_eq!(spec["deletionPolicy"]["default"], json!("Delete"));
    }
}
