//! Secrets, read when they are needed rather than cached.
//!
//! The operator may read and write Secrets only in the namespaces of environments: the
//! Environment controller binds the ClusterRole of the operator's namespaced permissions to it
//! there (the RoleBinding `jf-operator`), and the install grants no Secret anywhere else.
//! RBAC cannot grant a cluster-wide watch limited to those namespaces, so Secrets are not
//! watched: each reconciliation reads the few it needs, and a Secret changed or deleted by
//! hand is put right at the next resync ([`RESYNC`]).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{Store, store::Writer};
use kube::runtime::watcher;
use kube::{Client, Resource};

/// How often a resource whose Secrets are not watched is reconciled anyway.
pub const RESYNC: Duration = Duration::from_secs(300);

/// How soon a reconciliation refused a Secret looks again: the operator's RoleBinding in a
/// new environment's namespace takes a moment to reach the API server's authorizer.
pub const FORBIDDEN_RETRY: Duration = Duration::from_millis(200);

/// How many times in a row such a refusal is retried quietly before it is reported.
pub const FORBIDDEN_ATTEMPTS: u32 = 10;

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

/// A store holding `objects`, for code that looks objects up in a cache.
pub fn snapshot<K>(objects: impl IntoIterator<Item = K>, dynamic_type: K::DynamicType) -> Store<K>
where
    K: Resource + Clone,
    K::DynamicType: Eq + Hash + Clone,
{
    let mut writer = Writer::new(dynamic_type);
    for object in objects {
        writer.apply_watcher_event(&watcher::Event::Apply(object));
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
