//! The Jango Fett API: custom resource types, condition helpers and naming rules, shared by
//! the operator and the CLI. Nothing here performs I/O.

pub mod app;
pub mod blueprint;
pub mod conditions;
pub mod environment;
pub mod naming;
pub mod postgresql;
pub mod redis;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt as _;

pub use app::{App, AppObject, AppSpec, AppStatus};
pub use blueprint::{Blueprint, BlueprintPostgreSQL, BlueprintRedis, BlueprintSpec, Expose};
pub use environment::{
    Environment, EnvironmentPhase, EnvironmentQuota, EnvironmentSpec, EnvironmentStatus,
};
pub use postgresql::{DeletionPolicy, PostgreSQL, PostgreSQLSpec, PostgreSQLStatus};
pub use redis::{Redis, RedisPersistence, RedisSpec, RedisStatus};

/// The API group of every Jango Fett kind.
pub const GROUP: &str = "jango-fett.dev";

/// The served and stored version of every Jango Fett kind.
pub const VERSION: &str = "v1alpha1";

/// The label every object made by Jango Fett carries, with the value [`MANAGED_BY`].
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "jango-fett";

/// Every custom resource definition of the API, in the order they are installed.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        Environment::crd(),
        PostgreSQL::crd(),
        Redis::crd(),
        Blueprint::crd(),
        App::crd(),
    ]
}
