//! The pure part of the Environment controller: the objects an Environment should have, from
//! the Environment and the operator's settings alone.

use std::collections::BTreeMap;

use jf_api::Environment;
use jf_api::naming::{self, ENVIRONMENT_LABEL};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use kube::{Resource as _, ResourceExt as _};
use serde_json::json;

use crate::settings::EnvironmentSettings;

/// The objects of one Environment.
#[derive(Debug, Clone, PartialEq)]
pub struct Children {
    pub namespace: Namespace,
    pub cluster_role: ClusterRole,
    pub cluster_role_binding: ClusterRoleBinding,
    pub role_binding: RoleBinding,
    pub config_map: ConfigMap,
    pub network_policy: NetworkPolicy,
    /// Absent when neither the Environment nor the operator sets a quota.
    pub resource_quota: Option<ResourceQuota>,
    /// Default requests for containers, so that pods can be admitted under the quota.
    pub limit_range: Option<LimitRange>,
}

/// Why an Environment cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("the role {role:?} is not one the operator grants (allowed: {allowed})")]
    RoleNotAllowed { role: String, allowed: String },
    #[error("the Environment has no uid yet")]
    NoUid,
    #[error("failed to build the Environment's objects")]
    Build(String),
}

impl Invalid {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::RoleNotAllowed { .. } => "RoleNotAllowed",
            Self::NoUid => "NotPersisted",
            Self::Build(_) => "InternalError",
        }
    }
}

/// The ClusterRole the users get, after checking it against the allowlist.
pub fn role<'a>(
    environment: &'a Environment,
    settings: &'a EnvironmentSettings,
) -> Result<&'a str, Invalid> {
    let default = settings
        .user_roles
        .first()
        .map(String::as_str)
        .unwrap_or("admin");
    let role = environment.spec.role.as_deref().unwrap_or(default);
    if role != "cluster-admin" && settings.user_roles.iter().any(|allowed| allowed == role) {
        Ok(role)
    } else {
        Err(Invalid::RoleNotAllowed {
            role: role.to_owned(),
            allowed: settings.user_roles.join(", "),
        })
    }
}

/// The host and URL of the environment.
pub fn url(environment: &Environment, settings: &EnvironmentSettings) -> String {
    format!(
        "https://{}",
        naming::environment_host(&environment.name_any(), &settings.base_domain)
    )
}

/// Every object the Environment should have, owned by it.
pub fn children(
    environment: &Environment,
    settings: &EnvironmentSettings,
) -> Result<Children, Invalid> {
    let role = role(environment, settings)?;
    let mut owner = environment
        .controller_owner_ref(&())
        .ok_or(Invalid::NoUid)?;
    // A foreground deletion of the Environment waits for its children.
    owner.block_owner_deletion = Some(true);
    if owner.uid.is_empty() {
        return Err(Invalid::NoUid);
    }
    let name = environment.name_any();
    let namespace = naming::namespace(&settings.namespace_prefix, &name);
    let labels = json!({
        jf_api::MANAGED_BY_LABEL: jf_api::MANAGED_BY,
        ENVIRONMENT_LABEL: name,
    });
    let metadata = |object_name: &str, namespaced: bool| {
        let mut metadata = json!({
            "name": object_name,
            "labels": labels,
            "ownerReferences": [owner],
        });
        if namespaced {
            metadata["namespace"] = json!(namespace);
        }
        metadata
    };
    let spec = &environment.spec;
    let subjects: Vec<_> = spec
        .users
        .iter()
        .map(|user| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}))
        .chain(spec.groups.iter().map(
            |group| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}),
        ))
        .collect();
    // None rather than empty: the API server stores no list, and the cached copy must match.
    let subjects = (!subjects.is_empty()).then_some(subjects);
    let own_role = naming::environment_cluster_role(&name);

    let mut namespace_metadata = metadata(&namespace, false);
    let level = settings.pod_security.as_str();
    namespace_metadata["labels"]["pod-security.kubernetes.io/enforce"] = json!(level);
    namespace_metadata["labels"]["pod-security.kubernetes.io/enforce-version"] = json!("latest");

    let mut config: BTreeMap<String, String> = spec.config.clone();
    config.insert("JF_ENVIRONMENT".to_owned(), name.clone());
    config.insert("JF_NAMESPACE".to_owned(), namespace.clone());
    config.insert("JF_DOMAIN".to_owned(), settings.base_domain.clone());
    config.insert("JF_URL".to_owned(), url(environment, settings));

    let mut peers = vec![json!({"podSelector": {}})];
    if !settings.ingress_namespace_labels.0.is_empty() {
        peers.push(
            json!({"namespaceSelector": {"matchLabels": settings.ingress_namespace_labels.0}}),
        );
    }

    let quota = spec.quota.clone().unwrap_or_default();
    let cpu = quota
        .cpu
        .map(|cpu| cpu.0)
        .or_else(|| Some(settings.default_quota_cpu.clone()))
        .filter(|cpu| !cpu.is_empty());
    let memory = quota
        .memory
        .map(|memory| memory.0)
        .or_else(|| Some(settings.default_quota_memory.clone()))
        .filter(|memory| !memory.is_empty());
    let pods = quota
        .pods
        .or(Some(settings.default_quota_pods))
        .filter(|pods| *pods > 0);
    let mut hard = serde_json::Map::new();
    if let Some(cpu) = &cpu {
        hard.insert("requests.cpu".to_owned(), json!(cpu));
    }
    if let Some(memory) = &memory {
        hard.insert("requests.memory".to_owned(), json!(memory));
    }
    if let Some(pods) = pods {
        hard.insert("pods".to_owned(), json!(pods.to_string()));
    }
    let mut default_request = serde_json::Map::new();
    if cpu.is_some() {
        default_request.insert("cpu".to_owned(), json!("100m"));
    }
    if memory.is_some() {
        default_request.insert("memory".to_owned(), json!("128Mi"));
    }

    // Built as JSON and converted: the shapes are plain, and the JSON reads like the YAML a
    // platform engineer would write.
    fn object<T: serde::de::DeserializeOwned>(
        value: serde_json::Value,
    ) -> Result<T, serde_json::Error> {
        serde_json::from_value(value)
    }
    let built = (|| -> Result<Children, serde_json::Error> {
        Ok(Children {
            namespace: object(json!({ "metadata": namespace_metadata }))?,
            cluster_role: object(json!({
                "metadata": metadata(&own_role, false),
                "rules": [{
                    "apiGroups": [jf_api::GROUP],
                    "resources": ["environments"],
                    "resourceNames": [name],
                    "verbs": ["get", "list", "watch", "patch", "update", "delete"],
                }],
            }))?,
            cluster_role_binding: object(json!({
                "metadata": metadata(&own_role, false),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": own_role},
                "subjects": subjects,
            }))?,
            role_binding: object(json!({
                "metadata": metadata(naming::USERS_ROLE_BINDING, true),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": subjects,
            }))?,
            config_map: object(json!({
                "metadata": metadata(naming::CONFIG_MAP, true),
                "data": config,
            }))?,
            network_policy: object(json!({
                "metadata": metadata(naming::NETWORK_POLICY, true),
                "spec": {
                    "podSelector": {},
                    "policyTypes": ["Ingress"],
                    "ingress": [{"from": peers}],
                },
            }))?,
            resource_quota: if hard.is_empty() {
                None
            } else {
                Some(object(json!({
                    "metadata": metadata(naming::RESOURCE_QUOTA, true),
                    "spec": {"hard": hard},
                }))?)
            },
            limit_range: if default_request.is_empty() {
                None
            } else {
                Some(object(json!({
                    "metadata": metadata(naming::LIMIT_RANGE, true),
                    "spec": {"limits": [{"type": "Container", "defaultRequest": default_request}]},
                }))?)
            },
        })
    })();
    built.map_err(|error| Invalid::Build(error.to_string()))
}

#[cfg(test)]
mod tests {
    use jf_api::{EnvironmentQuota, EnvironmentSpec};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use serde_json::json;

    use super::*;

    fn environment(spec: EnvironmentSpec) -> Environment {
        let mut environment = Environment::new("fix-bug", spec);
        environment.metadata.uid = Some("0b5a-uid".to_owned());
        environment
    }

    fn value<T: serde::Serialize>(object: &T) -> serde_json::Value {
        serde_json::to_value(object).expect("serializes")
    }

    #[test]
    fn builds_every_child_owned_by_the_environment() {
        let spec = EnvironmentSpec {
            users: vec!["alice".to_owned()],
            groups: vec!["team-logistics".to_owned()],
            config: BTreeMap::from([("FEATURE_X".to_owned(), "on".to_owned())]),
            ..EnvironmentSpec::default()
        };
        let children =
            children(&environment(spec), &EnvironmentSettings::default()).expect("builds");
        let owner = json!([{
            "apiVersion": "jango-fett.dev/v1alpha1", "kind": "Environment", "name": "fix-bug",
            "uid": "0b5a-uid", "controller": true, "blockOwnerDeletion": true
        }]);
        let labels = json!({"app.kubernetes.io/managed-by": "jango-fett", "jango-fett.dev/environment": "fix-bug"});
        let subjects = json!([
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"},
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "team-logistics"}
        ]);

        assert_eq!(
            value(&children.namespace),
            json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {
                    "name": "jf-fix-bug",
                    "labels": {
                        "app.kubernetes.io/managed-by": "jango-fett",
                        "jango-fett.dev/environment": "fix-bug",
                        "pod-security.kubernetes.io/enforce": "baseline",
                        "pod-security.kubernetes.io/enforce-version": "latest"
                    },
                    "ownerReferences": owner
                }
            })
        );
        assert_eq!(
            value(&children.role_binding),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "jf-users", "namespace": "jf-fix-bug", "labels": labels, "ownerReferences": owner},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
                "subjects": subjects
            })
        );
        assert_eq!(
            value(&children.cluster_role),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "jf-env-fix-bug", "labels": labels, "ownerReferences": owner},
                "rules": [{
                    "apiGroups": ["jango-fett.dev"], "resources": ["environments"],
                    "resourceNames": ["fix-bug"], "verbs": ["get", "list", "watch", "patch", "update", "delete"]
                }]
            })
        );
        assert_eq!(
            value(&children.cluster_role_binding)["roleRef"]["name"],
            json!("jf-env-fix-bug")
        );
        assert_eq!(value(&children.cluster_role_binding)["subjects"], subjects);
        assert_eq!(
            value(&children.config_map)["data"],
            json!({
                "FEATURE_X": "on",
                "JF_DOMAIN": "dev.localhost",
                "JF_ENVIRONMENT": "fix-bug",
                "JF_NAMESPACE": "jf-fix-bug",
                "JF_URL": "https://fix-bug.dev.localhost"
            })
        );
        assert_eq!(
            value(&children.network_policy)["spec"],
            json!({
                "podSelector": {},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [
                    {"podSelector": {}},
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
                ]}]
            })
        );
        assert_eq!(children.resource_quota, None);
        assert_eq!(children.limit_range, None);
    }

    #[test]
    fn quota_from_the_spec_or_the_defaults() {
        let settings = EnvironmentSettings {
            default_quota_memory: "16Gi".to_owned(),
            default_quota_pods: 50,
            ..EnvironmentSettings::default()
        };
        let spec = EnvironmentSpec {
            quota: Some(EnvironmentQuota {
                cpu: Some(Quantity("4".to_owned())),
                pods: Some(20),
                ..EnvironmentQuota::default()
            }),
            ..EnvironmentSpec::default()
        };
        let children = children(&environment(spec), &settings).expect("builds");
        let quota = value(&children.resource_quota.expect("a quota"));
        assert_eq!(
            quota["spec"],
            json!({"hard": {"requests.cpu": "4", "requests.memory": "16Gi", "pods": "20"}})
        );
        let limits = value(&children.limit_range.expect("a limit range"));
        assert_eq!(
            limits["spec"],
            json!({"limits": [{"type": "Container", "defaultRequest": {"cpu": "100m", "memory": "128Mi"}}]})
        );
    }

    #[test]
    fn refuses_roles_off_the_allowlist() {
        let settings = EnvironmentSettings::default();
        for role in ["cluster-admin", "system:aggregate-to-admin", "root"] {
            let spec = EnvironmentSpec {
                role: Some(role.to_owned()),
                ..EnvironmentSpec::default()
            };
            let error = children(&environment(spec), &settings).expect_err("refused");
            assert_eq!(error.reason(), "RoleNotAllowed");
            assert!(error.to_string().contains("admin, edit, view"), "{error}");
        }
        let spec = EnvironmentSpec {
            role: Some("view".to_owned()),
            ..EnvironmentSpec::default()
        };
        let children = children(&environment(spec), &settings).expect("view is allowed");
        assert_eq!(children.role_binding.role_ref.name, "view");
    }

    #[test]
    fn needs_a_persisted_environment() {
        let environment = Environment::new("fix-bug", EnvironmentSpec::default());
        let error = children(&environment, &EnvironmentSettings::default()).expect_err("no uid");
        assert_eq!(error, Invalid::NoUid);
    }
}
