//! Operations on Environments, each one call from a command. Commands on one environment read
//! it by name only: its users may get, watch and patch their own Environment (the operator's
//! ClusterRole `jf-env-<name>`), nothing more. Writes that depend on what was read (users,
//! expiry) carry the `resourceVersion` read, and are retried when someone else wrote first.

use std::collections::BTreeMap;

use jf_api::naming::ENVIRONMENT_FINALIZER;
use jf_api::{Environment, EnvironmentSpec};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt as _};
use serde_json::{Value, json};

use crate::api_error::ApiError;
use crate::duration;

/// The field manager of every write `jf` makes.
pub const FIELD_MANAGER: &str = "jf";

/// How often a read-modify-write is tried when others keep writing the same Environment.
const ATTEMPTS: u32 = 5;

/// What `jf create env` asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewEnvironment {
    /// Users given access besides the caller, who always is one.
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub config: BTreeMap<String, String>,
    /// How long the environment lives; none means until it is deleted.
    pub ttl: Option<SignedDuration>,
    /// The ClusterRole the users get in the namespace; none means the operator's default.
    pub role: Option<String>,
}

/// Users added to or removed from an environment.
#[derive(Debug, Clone)]
pub struct UsersChange {
    /// The Environment after the change.
    pub environment: Environment,
    /// The users added or removed, in the order given.
    pub changed: Vec<String>,
    /// The users given that were already as asked (added ones that already were users).
    pub unchanged: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to find out who you are")]
    WhoAmI(#[source] ApiError),
    #[error("the API server did not say who you are")]
    NoUsername,
    #[error("a time to live of {ttl} is too long", ttl = duration::display(*.ttl))]
    TooLong { ttl: SignedDuration },
    #[error("environment \"{name}\" already exists")]
    AlreadyExists { name: String },
    #[error("failed to create environment \"{name}\"")]
    Create {
        name: String,
        #[source]
        source: ApiError,
    },
    #[error("environment \"{name}\" not found")]
    NotFound { name: String },
    #[error("failed to read environment \"{name}\"")]
    Get {
        name: String,
        #[source]
        source: ApiError,
    },
    #[error("failed to list environments")]
    List(#[source] ApiError),
    #[error("failed to delete environment \"{name}\"")]
    Delete {
        name: String,
        #[source]
        source: ApiError,
    },
    #[error("failed to update environment \"{name}\"")]
    Update {
        name: String,
        #[source]
        source: ApiError,
    },
    #[error(
        "environment \"{name}\" kept changing while it was being updated; gave up after {ATTEMPTS} attempts"
    )]
    Contention { name: String },
    #[error("environment \"{name}\" has no config key \"{key}\"")]
    UnknownConfigKey { name: String, key: String },
    #[error("\"{user}\" is not a user of environment \"{name}\"")]
    NotAUser { name: String, user: String },
}

impl Error {
    /// What the user can do about it, if anything.
    pub fn hint(&self) -> Option<String> {
        let forbidden = |source: &ApiError| source.is_forbidden();
        match self {
            Self::NotFound { .. } => Some("run `jf list` to see your environments".to_owned()),
            Self::AlreadyExists { name } => Some(format!(
                "choose another name, or run `jf status {name}` to see the existing one"
            )),
            Self::Create { source, .. } if forbidden(source) => Some(
                "creating environments needs the developer role; ask your platform team for it"
                    .to_owned(),
            ),
            Self::List(source) if forbidden(source) => Some(
                "listing every environment needs the developer role; \
                 `jf status NAME` shows an environment you are a user of"
                    .to_owned(),
            ),
            Self::Get { name, source }
            | Self::Update { name, source }
            | Self::Delete { name, source }
                if forbidden(source) =>
            {
                Some(format!(
                    "only the users of environment \"{name}\" may use it; \
                 ask one of them to run `jf users add {name} YOUR-USER-NAME`"
                ))
            }
            Self::Contention { .. } => Some("try again".to_owned()),
            Self::UnknownConfigKey { name, .. } => {
                Some(format!("run `jf config get {name}` to see its keys"))
            }
            Self::NotAUser { name, .. } => Some(format!("run `jf status {name}` to see its users")),
            _ => None,
        }
    }
}

/// Environments are cluster-scoped.
pub fn api(client: &Client) -> Api<Environment> {
    Api::all(client.clone())
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    }
}

/// The user name the cluster knows the caller by.
pub async fn whoami(client: &Client) -> Result<String, Error> {
    let review = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .map_err(|error| Error::WhoAmI(error.into()))?;
    review
        .status
        .and_then(|status| status.user_info)
        .and_then(|user| user.username)
        .filter(|username| !username.is_empty())
        .ok_or(Error::NoUsername)
}

/// The Environment `jf create env` makes: the caller first among the users, no name twice,
/// and the operator's finalizer already set (which saves the operator a write).
pub fn build(
    name: &str,
    caller: &str,
    request: &NewEnvironment,
    now: Timestamp,
) -> Result<Environment, Error> {
    let expires_at = request
        .ttl
        .map(|ttl| {
            now.checked_add(ttl)
                .map(whole_seconds)
                .map_err(|_| Error::TooLong { ttl })
        })
        .transpose()?;
    let mut environment = Environment::new(
        name,
        EnvironmentSpec {
            users: distinct(
                std::iter::once(caller).chain(request.users.iter().map(String::as_str)),
            ),
            groups: distinct(request.groups.iter().map(String::as_str)),
            role: request.role.clone(),
            config: request.config.clone(),
            expires_at: expires_at.map(Time),
            ..EnvironmentSpec::default()
        },
    );
    environment.metadata.finalizers = Some(vec![ENVIRONMENT_FINALIZER.to_owned()]);
    Ok(environment)
}

fn distinct<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut distinct: Vec<String> = Vec::new();
    for name in names {
        if !distinct.iter().any(|seen| seen == name) {
            distinct.push(name.to_owned());
        }
    }
    distinct
}

/// Kubernetes keeps times to the second; so do we, so that what we print is what is stored.
fn whole_seconds(timestamp: Timestamp) -> Timestamp {
    Timestamp::from_second(timestamp.as_second()).unwrap_or(timestamp)
}

/// Creates the Environment `name` for the caller, without waiting for it.
pub async fn create(
    client: &Client,
    name: &str,
    request: &NewEnvironment,
) -> Result<Environment, Error> {
    let caller = whoami(client).await?;
    let environment = build(name, &caller, request, Timestamp::now())?;
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    api(client)
        .create(&params, &environment)
        .await
        .map_err(|error| match ApiError(error) {
            error if error.is_already_exists() => Error::AlreadyExists {
                name: name.to_owned(),
            },
            source => Error::Create {
                name: name.to_owned(),
                source,
            },
        })
}

/// Reads the Environment `name`.
pub async fn get(client: &Client, name: &str) -> Result<Environment, Error> {
    api(client)
        .get(name)
        .await
        .map_err(|error| match ApiError(error) {
            error if error.is_not_found() => Error::NotFound {
                name: name.to_owned(),
            },
            source => Error::Get {
                name: name.to_owned(),
                source,
            },
        })
}

/// Every Environment, by name. Needs the right to list them all.
pub async fn list(client: &Client) -> Result<Vec<Environment>, Error> {
    let mut environments = api(client)
        .list(&ListParams::default())
        .await
        .map_err(|error| Error::List(error.into()))?
        .items;
    environments.sort_by_key(|environment| environment.name_any());
    Ok(environments)
}

/// Asks for the Environment `name` to be deleted; the operator keeps it (Terminating) until its
/// namespace is gone.
pub async fn delete(client: &Client, name: &str) -> Result<(), Error> {
    api(client)
        .delete(name, &DeleteParams::default())
        .await
        .map_err(|error| match ApiError(error) {
            error if error.is_not_found() => Error::NotFound {
                name: name.to_owned(),
            },
            source => Error::Delete {
                name: name.to_owned(),
                source,
            },
        })?;
    Ok(())
}

/// The merge patch of `spec.config` that sets the keys with a value and removes those without.
pub fn config_patch(changes: &BTreeMap<String, Option<String>>) -> Value {
    json!({ "spec": { "config": changes } })
}

/// Sets configuration keys, leaving the others as they are.
pub async fn update_config(
    client: &Client,
    name: &str,
    config: &BTreeMap<String, String>,
) -> Result<Environment, Error> {
    let changes = config
        .iter()
        .map(|(key, value)| (key.clone(), Some(value.clone())))
        .collect();
    patch(client, name, &config_patch(&changes)).await
}

/// Removes configuration keys; each must be set.
pub async fn unset_config(
    client: &Client,
    name: &str,
    keys: &[String],
) -> Result<Environment, Error> {
    let current = get(client, name).await?;
    if let Some(key) = keys
        .iter()
        .find(|key| !current.spec.config.contains_key(*key))
    {
        return Err(Error::UnknownConfigKey {
            name: name.to_owned(),
            key: key.clone(),
        });
    }
    let changes = keys.iter().map(|key| (key.clone(), None)).collect();
    patch(client, name, &config_patch(&changes)).await
}

/// Puts the environment to sleep (`true`) or wakes it.
pub async fn set_sleeping(
    client: &Client,
    name: &str,
    sleeping: bool,
) -> Result<Environment, Error> {
    patch(client, name, &json!({ "spec": { "sleeping": sleeping } })).await
}

async fn patch(client: &Client, name: &str, body: &Value) -> Result<Environment, Error> {
    api(client)
        .patch(name, &patch_params(), &Patch::Merge(body))
        .await
        .map_err(|error| update_error(name, ApiError(error)))
}

fn update_error(name: &str, error: ApiError) -> Error {
    if error.is_not_found() {
        Error::NotFound {
            name: name.to_owned(),
        }
    } else {
        Error::Update {
            name: name.to_owned(),
            source: error,
        }
    }
}

/// Gives `users` access to the environment.
pub async fn add_users(
    client: &Client,
    name: &str,
    users: &[String],
) -> Result<UsersChange, Error> {
    modify(client, name, |environment| {
        let mut all = environment.spec.users.clone();
        let (mut changed, mut unchanged) = (Vec::new(), Vec::new());
        for user in users {
            if all.contains(user) {
                if !changed.contains(user) && !unchanged.contains(user) {
                    unchanged.push(user.clone());
                }
            } else {
                all.push(user.clone());
                changed.push(user.clone());
            }
        }
        let patch = (!changed.is_empty()).then(|| json!({ "users": all }));
        Ok((patch, (changed, unchanged)))
    })
    .await
    .map(|(environment, (changed, unchanged))| UsersChange {
        environment,
        changed,
        unchanged,
    })
}

/// Takes access to the environment away from `users`; each must be a user.
pub async fn remove_users(
    client: &Client,
    name: &str,
    users: &[String],
) -> Result<UsersChange, Error> {
    modify(client, name, |environment| {
        if let Some(user) = users
            .iter()
            .find(|user| !environment.spec.users.contains(*user))
        {
            return Err(Error::NotAUser {
                name: name.to_owned(),
                user: user.clone(),
            });
        }
        let remaining: Vec<&String> = environment
            .spec
            .users
            .iter()
            .filter(|user| !users.contains(*user))
            .collect();
        Ok((
            Some(json!({ "users": remaining })),
            distinct(users.iter().map(String::as_str)),
        ))
    })
    .await
    .map(|(environment, changed)| UsersChange {
        environment,
        changed,
        unchanged: Vec::new(),
    })
}

/// The new expiry of `jf extend`: `by` after the current expiry, or after now if that is later.
pub fn extended_expiry(
    current: Option<Timestamp>,
    now: Timestamp,
    by: SignedDuration,
) -> Result<Timestamp, Error> {
    let from = current.map_or(now, |current| current.max(now));
    from.checked_add(by)
        .map(whole_seconds)
        .map_err(|_| Error::TooLong { ttl: by })
}

/// Moves the expiry `by` later (counted from now if it is already past); returns the new one.
pub async fn extend(client: &Client, name: &str, by: SignedDuration) -> Result<Timestamp, Error> {
    let (_, until) = modify(client, name, |environment| {
        let current = environment.spec.expires_at.as_ref().map(|time| time.0);
        let until = extended_expiry(current, Timestamp::now(), by)?;
        Ok((Some(json!({ "expiresAt": Time(until) })), until))
    })
    .await?;
    Ok(until)
}

/// Reads the Environment, lets `change` compute a merge patch of its spec (none: nothing to
/// do) and writes it on the condition that nobody wrote in between; repeats if someone did.
async fn modify<T>(
    client: &Client,
    name: &str,
    mut change: impl FnMut(&Environment) -> Result<(Option<Value>, T), Error>,
) -> Result<(Environment, T), Error> {
    for _ in 0..ATTEMPTS {
        let current = get(client, name).await?;
        let (spec, result) = change(&current)?;
        let Some(spec) = spec else {
            return Ok((current, result));
        };
        let body = json!({
            "metadata": { "resourceVersion": current.resource_version() },
            "spec": spec,
        });
        match api(client)
            .patch(name, &patch_params(), &Patch::Merge(&body))
            .await
        {
            Ok(updated) => return Ok((updated, result)),
            Err(error) => {
                let error = ApiError(error);
                if !error.is_conflict() {
                    return Err(update_error(name, error));
                }
            }
        }
    }
    Err(Error::Contention {
        name: name.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).expect("a valid time")
    }

    #[test]
    fn builds_the_environment_to_create() {
        let request = NewEnvironment {
            users: vec!["bob".to_owned(), "alice".to_owned(), "bob".to_owned()],
            groups: vec!["qa".to_owned(), "qa".to_owned()],
            config: BTreeMap::from([("FEATURE_X".to_owned(), "on".to_owned())]),
            ttl: Some(SignedDuration::from_hours(72)),
            role: Some("edit".to_owned()),
        };
        let now = at(1_800_000_000) + SignedDuration::from_millis(700);
        let environment = build("fix-bug", "alice", &request, now).expect("builds");
        assert_eq!(
            serde_json::to_value(&environment).expect("serializes"),
            json!({
                "apiVersion": "jango-fett.dev/v1alpha1",
                "kind": "Environment",
                "metadata": {
                    "name": "fix-bug",
                    "finalizers": ["jango-fett.dev/namespace"],
                },
                "spec": {
                    "users": ["alice", "bob"],
                    "groups": ["qa"],
                    "role": "edit",
                    "config": {"FEATURE_X": "on"},
                    "expiresAt": "2027-01-18T08:00:00Z",
                },
            })
        );
    }

    #[test]
    fn a_minimal_environment_has_only_its_caller() {
        let environment = build("a", "alice", &NewEnvironment::default(), at(0)).expect("builds");
        assert_eq!(
            serde_json::to_value(&environment.spec).expect("serializes"),
            json!({"users": ["alice"]})
        );
    }

    #[test]
    fn refuses_a_time_to_live_past_the_end_of_time() {
        let request = NewEnvironment {
            ttl: Some(SignedDuration::MAX),
            ..NewEnvironment::default()
        };
        let error = build("a", "alice", &request, at(0)).expect_err("too long");
        assert!(matches!(error, Error::TooLong { .. }), "{error}");
    }

    #[test]
    fn config_patches_set_and_remove_keys() {
        let changes = BTreeMap::from([
            ("FEATURE_X".to_owned(), Some("on".to_owned())),
            ("OLD".to_owned(), None),
        ]);
        assert_eq!(
            config_patch(&changes),
            json!({"spec": {"config": {"FEATURE_X": "on", "OLD": null}}})
        );
    }

    #[test]
    fn extends_from_the_later_of_now_and_the_expiry() {
        let day = SignedDuration::from_hours(24);
        let now = at(1_000_000);
        assert_eq!(extended_expiry(None, now, day).expect("fits"), now + day);
        assert_eq!(
            extended_expiry(Some(now + day), now, day).expect("fits"),
            now + day + day
        );
        assert_eq!(
            extended_expiry(Some(now - day), now + SignedDuration::from_millis(300), day)
                .expect("fits"),
            now + day
        );
    }

    #[test]
    fn hints_say_what_to_do() {
        let not_found = Error::NotFound {
            name: "x".to_owned(),
        };
        assert_eq!(
            not_found.hint().as_deref(),
            Some("run `jf list` to see your environments")
        );
        let forbidden = ApiError(kube::Error::Api(Box::new(kube::core::Status {
            code: 403,
            reason: "Forbidden".to_owned(),
            ..kube::core::Status::default()
        })));
        let hint = Error::List(forbidden).hint().expect("a hint");
        assert!(hint.contains("developer role"), "{hint}");
    }
}
