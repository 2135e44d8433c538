//! The Jango Fett API: custom resource types, condition helpers and naming rules, shared by
//! the operator and the CLI. Nothing here performs I/O.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// The API group of every Jango Fett kind.
pub const GROUP: &str = "jango-fett.dev";

/// The served and stored version of every Jango Fett kind.
pub const VERSION: &str = "v1alpha1";

/// Every custom resource definition of the API, in the order they are installed.
pub fn crds() -> Vec<CustomResourceDefinition> {
    Vec::new()
}
