//! Secrets, read when they are needed rather than cached.
//!
//! The operator may read and write Secrets only in the namespaces of environments, and there
//! only once something in the namespace needs them: the first refusal there makes it bind the
//! ClusterRole of its namespaced permissions to itself in that namespace (the RoleBinding
//! `jf-operator`, owned by the Environment; see [`Access`]). The install grants no Secret
//! anywhere else. RBAC cannot grant a cluster-wide watch limited to those namespaces, so
//! Secrets are not watched: each reconciliation reads the few it needs, and a Secret changed
//! or deleted by hand is put right at the next resync ([`RESYNC`]).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jf_api::Environment;
use jf_api::naming::{ENVIRONMENT_LABEL, OPERATOR_ROLE_BINDING};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{Store, store::Writer};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt as _};
use serde::Serialize;

use super::{Packed, Packer};

/// How often a resource whose Secrets are not watched is reconciled anyway.
pub const RESYNC: Duration = Duration::from_secs(300);

/// How soon a reconciliation refused a Secret looks again: the operator's RoleBinding, made on
/// the first refusal in an environment's namespace, takes a moment to reach the API server's
/// authorizer.
pub const FORBIDDEN_RETRY: Duration = Duration::from_millis(50);

/// How many times in a row such a refusal is retried quietly before it is reported.
pub const FORBIDDEN_ATTEMPTS: u32 = 40;

/// How long a RoleBinding just made is given to reach the authorizer before a refusal in its
/// namespace makes it again.
const GRANT_SETTLES: Duration = Duration::from_secs(2);

/// The field manager of the operator's RoleBindings.
const FIELD_MANAGER: &str = "jango-fett-secrets";

/// The operator's access to Secrets in environments' namespaces, granted on first need.
pub struct Access {
    client: Client,
    /// The operator itself, as the subject of its RoleBindings.
    operator: Subject,
    /// The ClusterRole it binds (`--operator-namespace-role`).
    role: String,
    /// Namespaces where this process made the binding lately, and when.
    granted: Mutex<HashMap<String, Instant>>,
}

impl Access {
    /// Learns who the operator is, to name it in the RoleBindings of `role` it makes.
    pub async fn new(client: Client, role: &str) -> anyhow::Result<Self> {
        let operator = whoami(&client).await?;
        tracing::info!(kind = %operator.kind, name = %operator.name, role, "the operator binds itself this role in an environment's namespace when something there needs Secrets");
        Ok(Self {
            client,
            operator,
            role: role.to_owned(),
            granted: Mutex::default(),
        })
    }

    /// Called when Secrets in `namespace` were refused: if the namespace is an environment's,
    /// binds the operator's namespaced ClusterRole to it there, owned by the Environment. A
    /// namespace that is not an environment's is left alone: the refusal stands. Returns
    /// whether it wrote; a failure to look or bind is logged, and the refusal stands.
    pub async fn refused(&self, namespace: &str) -> bool {
        let recently = self.granted.lock().is_ok_and(|granted| {
            granted
                .get(namespace)
                .is_some_and(|at| at.elapsed() < GRANT_SETTLES)
        });
        if recently {
            return false;
        }
        match self.grant(namespace).await {
            Ok(wrote) => {
                if wrote && let Ok(mut granted) = self.granted.lock() {
                    granted.retain(|_, at| at.elapsed() < GRANT_SETTLES);
                    granted.insert(namespace.to_owned(), Instant::now());
                }
                wrote
            }
            Err(error) => {
                tracing::warn!(namespace, error = %super::describe(&error), "cannot grant the operator Secrets in the namespace");
                false
            }
        }
    }

    async fn grant(&self, namespace: &str) -> Result<bool, kube::Error> {
        let Some(environment) = environment_of(&self.client, namespace).await? else {
            return Ok(false);
        };
        let Some(binding) = role_binding(&environment, namespace, &self.role, &self.operator)
        else {
            return Ok(false);
        };
        Api::<RoleBinding>::namespaced(self.client.clone(), namespace)
            .patch(
                OPERATOR_ROLE_BINDING,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&binding),
            )
            .await?;
        tracing::info!(namespace, environment = %environment.name_any(), "granted the operator Secrets in the environment's namespace");
        Ok(true)
    }
}

/// The operator's RoleBinding of `role` in `namespace`, the namespace of `environment`, which
/// owns it (None while the Environment has no uid).
fn role_binding(
    environment: &Environment,
    namespace: &str,
    role: &str,
    operator: &Subject,
) -> Option<RoleBinding> {
    let mut owner = environment.controller_owner_ref(&())?;
    owner.block_owner_deletion = Some(true);
    Some(RoleBinding {
        metadata: ObjectMeta {
            name: Some(OPERATOR_ROLE_BINDING.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(
                [
                    (
                        jf_api::MANAGED_BY_LABEL.to_owned(),
                        jf_api::MANAGED_BY.to_owned(),
                    ),
                    (ENVIRONMENT_LABEL.to_owned(), environment.name_any()),
                ]
                .into(),
            ),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            kind: "ClusterRole".to_owned(),
            name: role.to_owned(),
        },
        subjects: Some(vec![operator.clone()]),
    })
}

/// The Environment whose namespace `namespace` is: the namespace is labelled with it and owned
/// by it, and the Environment's status names the namespace. Anything else is no environment's.
async fn environment_of(
    client: &Client,
    namespace: &str,
) -> Result<Option<Environment>, kube::Error> {
    let Some(found) = Api::<Namespace>::all(client.clone())
        .get_opt(namespace)
        .await?
    else {
        return Ok(None);
    };
    let Some(name) = found.labels().get(ENVIRONMENT_LABEL) else {
        return Ok(None);
    };
    let Some(environment) = Api::<Environment>::all(client.clone())
        .get_opt(name)
        .await?
    else {
        return Ok(None);
    };
    let uid = environment.uid().unwrap_or_default();
    let owned = found
        .owner_references()
        .iter()
        .any(|owner| owner.kind == "Environment" && owner.uid == uid);
    let named = environment
        .status
        .as_ref()
        .and_then(|status| status.namespace.as_deref())
        == Some(namespace);
    let alive = found.metadata.deletion_timestamp.is_none()
        && environment.metadata.deletion_timestamp.is_none();
    Ok((owned && named && alive).then_some(environment))
}

/// The operator's own identity, as the API server authenticates it (a SelfSubjectReview, which
/// every authenticated user may make), as an RBAC subject.
async fn whoami(client: &Client) -> anyhow::Result<Subject> {
    let review = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .map_err(|error| anyhow::anyhow!("cannot learn the operator's own identity: {error}"))?;
    let username = review
        .status
        .and_then(|status| status.user_info)
        .and_then(|user| user.username)
        .unwrap_or_default();
    Ok(subject(&username))
}

/// The RBAC subject of the user `username`: a ServiceAccount's is named
/// `system:serviceaccount:<namespace>:<name>`.
fn subject(username: &str) -> Subject {
    match username
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
    {
        Some((namespace, name)) => Subject {
            kind: "ServiceAccount".to_owned(),
            name: name.to_owned(),
            namespace: Some(namespace.to_owned()),
            api_group: None,
        },
        None => Subject {
            kind: "User".to_owned(),
            name: username.to_owned(),
            namespace: None,
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
        },
    }
}

/// Whether `error` is the API server refusing the operator (HTTP 403).
pub fn is_forbidden(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 403)
}

/// Whether a refused Secret is still worth retrying quietly for the object `key`, after the
/// consecutive `failures` recorded per object.
pub fn still_settling(failures: &Mutex<HashMap<String, u32>>, key: &str) -> bool {
    failures
        .lock()
        .map(|failures| failures.get(key).copied().unwrap_or(0))
        .is_ok_and(|count| count < FORBIDDEN_ATTEMPTS)
}

/// What to tell the user when Secrets in `namespace` are refused.
pub fn forbidden_hint(namespace: &str) -> String {
    format!(
        "the operator may not use Secrets in namespace {namespace}: it is granted them in \
         environments' namespaces (create one with `jf create env`), or where a platform \
         admin binds it the ClusterRole jango-fett-operator-namespaced"
    )
}

/// A store holding `objects`, for code that looks objects up in a cache (as [`super::cache`]
/// keeps them).
pub fn snapshot<K>(
    objects: impl IntoIterator<Item = K>,
    dynamic_type: K::DynamicType,
) -> Store<Packed<K>>
where
    K: Resource + Serialize,
    K::DynamicType: Eq + Hash + Clone,
{
    let mut writer = Writer::new(dynamic_type);
    let mut packer = Packer::default();
    for object in objects {
        writer.apply_watcher_event(&watcher::Event::Apply(packer.pack(&object)));
    }
    writer.as_reader()
}

/// The outcome of [`ensure`].
pub enum Ensured {
    /// The Secret's password, and whether the Secret was created just now (with it).
    Password { password: String, created: bool },
    /// A Secret of that name that is not ours, or cannot be made: why.
    Refused(String),
}

/// Makes sure the credentials Secret `name` in `namespace` exists with a password that is
/// never regenerated while it exists: reads it, and creates it with a new password when there
/// is none. `ours` gives an existing Secret's password, or why it is not ours; `build` the
/// Secret for a password, or why it cannot be built. An existing Secret is kept current
/// (server-side apply, skipped when it already is). Also returns whether it wrote.
pub async fn ensure(
    client: &Client,
    namespace: &str,
    name: &str,
    manager: &str,
    ours: impl Fn(&Secret) -> Result<String, String>,
    build: impl Fn(&str) -> Result<Secret, String>,
) -> Result<(Ensured, bool), kube::Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    if let Some(existing) = secrets.get_opt(name).await? {
        let password = match ours(&existing) {
            Ok(password) => password,
            Err(message) => return Ok((Ensured::Refused(message), false)),
        };
        // The rest of the Secret (owner, labels, host) follows the resource; the password
        // stays as it is.
        let desired = match build(&password) {
            Ok(desired) => desired,
            Err(message) => return Ok((Ensured::Refused(message), false)),
        };
        let wrote = super::apply(client, &snapshot([existing], ()), manager, desired).await?;
        let created = false;
        return Ok((Ensured::Password { password, created }, wrote));
    }
    let password = super::postgresql::secret::new_password();
    let desired = match build(&password) {
        Ok(desired) => super::stamp(desired),
        Err(message) => return Ok((Ensured::Refused(message), false)),
    };
    let params = PostParams {
        field_manager: Some(manager.to_owned()),
        ..PostParams::default()
    };
    match secrets.create(&params, &desired).await {
        Ok(_) => Ok((
            Ensured::Password {
                password,
                created: true,
            },
            true,
        )),
        // Made meanwhile (by an earlier, interrupted reconciliation): use that one.
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let existing = secrets.get(name).await?;
            let ensured = match ours(&existing) {
                Ok(password) => Ensured::Password {
                    password,
                    created: false,
                },
                Err(message) => Ensured::Refused(message),
            };
            Ok((ensured, false))
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binding_is_owned_by_the_environment_and_names_the_operator() {
        let mut environment = Environment::new("fix-bug", Default::default());
        environment.metadata.uid = Some("0b5a-uid".to_owned());
        let operator = subject("system:serviceaccount:jango-fett-system:jango-fett-operator");
        let binding = role_binding(
            &environment,
            "jf-fix-bug",
            "jango-fett-operator-namespaced",
            &operator,
        )
        .expect("built");
        assert_eq!(
            serde_json::to_value(&binding).expect("serializes"),
            serde_json::json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {
                    "name": "jf-operator", "namespace": "jf-fix-bug",
                    "labels": {"app.kubernetes.io/managed-by": "jango-fett", "jango-fett.dev/environment": "fix-bug"},
                    "ownerReferences": [{
                        "apiVersion": "jango-fett.dev/v1alpha1", "kind": "Environment", "name": "fix-bug",
                        "uid": "0b5a-uid", "controller": true, "blockOwnerDeletion": true
                    }]
                },
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "jango-fett-operator-namespaced"},
                "subjects": [{"kind": "ServiceAccount", "name": "jango-fett-operator", "namespace": "jango-fett-system"}]
            })
        );
        assert!(
            role_binding(
                &Environment::new("new", Default::default()),
                "jf-new",
                "r",
                &operator
            )
            .is_none()
        );
    }

    #[test]
    fn a_service_account_is_bound_as_one_and_anyone_else_as_a_user() {
        let account = subject("system:serviceaccount:jango-fett-system:jango-fett-operator");
        assert_eq!(
            (
                account.kind.as_str(),
                account.name.as_str(),
                account.namespace.as_deref()
            ),
            (
                "ServiceAccount",
                "jango-fett-operator",
                Some("jango-fett-system")
            )
        );
        assert_eq!(account.api_group, None);
        let user = subject("kubernetes-admin");
        assert_eq!(
            (
                user.kind.as_str(),
                user.name.as_str(),
                user.api_group.as_deref()
            ),
            (
                "User",
                "kubernetes-admin",
                Some("rbac.authorization.k8s.io")
            )
        );
    }
}
