//! Operations on the databases of an environment: the PostgreSQL resources in its namespace,
//! each one call from a command. An environment's users reach them through their role in the
//! namespace (the operator's ClusterRoles aggregate into admin, edit and view), and read their
//! credentials from the Secret `<name>-postgresql` (admin and edit).
//!
//! A reset is asked for with a new value of `spec.reset`; the operator drops the database,
//! makes it again (from its template, if it has one) and records the value in `status.reset`,
//! which is what the wait looks for.

use std::pin::pin;

use futures::StreamExt as _;
use jf_api::conditions::{self, READY};
use jf_api::naming::{self, DEFAULT_NAMESPACE_PREFIX};
use jf_api::{Environment, PostgreSQL};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, Resource as _, ResourceExt as _};
use serde_json::{Value, json};

use crate::api_error::ApiError;
use crate::duration;
use crate::environments::{self, FIELD_MANAGER};
use crate::wait::{self, Spinner, WaitArgs};

/// The key of the Secret holding the connection URL (servicebinding.io's `uri`).
pub const URL_KEY: &str = "uri";

/// `Ready=False` reasons that waiting cannot lift: only a change to the resource, the server
/// or the operator's settings can. Any other reason (`ServerUnavailable`…) the operator retries.
pub const FAILURE_REASONS: &[&str] = &[
    "ExtensionNotAllowed",
    "ExtensionFailed",
    "RoleConflict",
    "DatabaseConflict",
    "SecretConflict",
    "TemplateNotFound",
    "NotATemplate",
    "InvalidName",
    "NotConfigured",
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Environment(#[from] environments::Error),
    #[error("database \"{name}\" not found in environment \"{environment}\"")]
    NotFound { environment: String, name: String },
    #[error("failed to read database \"{name}\" of environment \"{environment}\"")]
    Get {
        environment: String,
        name: String,
        #[source]
        source: ApiError,
    },
    #[error("failed to list the databases of environment \"{environment}\"")]
    List {
        environment: String,
        #[source]
        source: ApiError,
    },
    #[error("failed to ask for database \"{name}\" to be reset")]
    Update {
        environment: String,
        name: String,
        #[source]
        source: ApiError,
    },
    #[error("database \"{name}\" is not ready: {message} ({reason})")]
    NotReady {
        environment: String,
        name: String,
        reason: String,
        message: String,
    },
    #[error("database \"{name}\" is not ready: the operator has not reported on it yet")]
    NotReported { environment: String, name: String },
    #[error("failed to read the Secret \"{secret}\" with the database's credentials")]
    Secret {
        environment: String,
        secret: String,
        #[source]
        source: ApiError,
    },
    #[error(
        "the Secret \"{secret}\" of database \"{name}\" has no connection URL (key \"{URL_KEY}\")"
    )]
    NoUrl { name: String, secret: String },
    #[error("database \"{name}\" failed: {message} ({reason})")]
    Failed {
        environment: String,
        name: String,
        reason: String,
        message: String,
    },
    #[error("database \"{name}\" was deleted while waiting for it to be reset")]
    Deleted { environment: String, name: String },
    #[error("database \"{name}\" is being deleted")]
    Deleting { environment: String, name: String },
    #[error(
        "timed out after {after} waiting for database \"{name}\" to be reset{last}",
        after = duration::display(*.after),
        last = .last.as_deref().map(|last| format!("; last status: {last}")).unwrap_or_default()
    )]
    Timeout {
        environment: String,
        name: String,
        after: SignedDuration,
        /// The last `Ready` condition seen, as `Reason: message`.
        last: Option<String>,
    },
    #[error("failed to watch database \"{name}\"")]
    Watch {
        environment: String,
        name: String,
        #[source]
        source: ApiError,
    },
    #[error("the watch of database \"{name}\" ended unexpectedly")]
    WatchEnded { name: String },
    #[error("failed to watch database \"{name}\": the API server sent no resource version")]
    NoResourceVersion { name: String },
}

impl Error {
    fn unfollowable(unfollowable: wait::Unfollowable, environment: &str, name: &str) -> Self {
        let name = name.to_owned();
        match unfollowable {
            wait::Unfollowable::Ended => Self::WatchEnded { name },
            wait::Unfollowable::NoResourceVersion => Self::NoResourceVersion { name },
            wait::Unfollowable::Failed(source) => Self::Watch {
                environment: environment.to_owned(),
                name,
                source,
            },
        }
    }

    /// What the user can do about it, if anything.
    pub fn hint(&self) -> Option<String> {
        let not_a_user = |environment: &str| {
            Some(format!(
                "only the users of environment \"{environment}\" may use its databases; \
                 ask one of them to run `jf users add {environment} YOUR-USER-NAME`"
            ))
        };
        match self {
            Self::Environment(error) => error.hint(),
            Self::NotFound { environment, .. } | Self::Deleted { environment, .. } => Some(
                format!("run `jf db list {environment}` to see the environment's databases"),
            ),
            Self::Get {
                environment,
                source,
                ..
            }
            | Self::List {
                environment,
                source,
            }
            | Self::Update {
                environment,
                source,
                ..
            }
            | Self::Watch {
                environment,
                source,
                ..
            } if source.is_forbidden() => not_a_user(environment),
            Self::Secret {
                environment,
                source,
                ..
            } if source.is_forbidden() => Some(format!(
                "reading a database's credentials needs the admin or edit role in environment \
                 \"{environment}\"; ask one of its users for it"
            )),
            Self::NotReady {
                environment,
                reason,
                ..
            }
            | Self::Failed {
                environment,
                reason,
                ..
            } => Some(reason_hint(environment, reason)),
            Self::NotReported { .. } | Self::Timeout { last: None, .. } => Some(
                "the operator has not reported on it yet: is it running? \
                 try again in a moment (a reset waits longer with --timeout)"
                    .to_owned(),
            ),
            Self::Timeout { environment, .. } => Some(format!(
                "run `jf status {environment}` to see its databases, or wait longer with --timeout"
            )),
            _ => None,
        }
    }
}

/// What to do about a database that is not ready for `reason`.
fn reason_hint(environment: &str, reason: &str) -> String {
    match reason {
        "ExtensionNotAllowed" => "ask your platform team to allow the extension, or remove it \
             from the resource's spec.extensions"
            .to_owned(),
        "TemplateNotFound" | "NotATemplate" => "ask your platform team for the template \
             database, or change the resource's spec.template"
            .to_owned(),
        "ServerUnavailable" => "the operator keeps trying to reach the PostgreSQL server; \
             try again in a moment"
            .to_owned(),
        _ => format!(
            "run `jf status {environment}` to see its databases; your platform team can see \
             the operator's events"
        ),
    }
}

/// The PostgreSQL resources of `namespace`.
pub fn api(client: &Client, namespace: &str) -> Api<PostgreSQL> {
    Api::namespaced(client.clone(), namespace)
}

/// The namespace of `environment`: the one the operator reports, or `jf-<name>` until it has.
pub fn namespace_of(environment: &Environment) -> String {
    environment
        .status
        .as_ref()
        .and_then(|status| status.namespace.clone())
        .filter(|namespace| !namespace.is_empty())
        .unwrap_or_else(|| naming::namespace(DEFAULT_NAMESPACE_PREFIX, &environment.name_any()))
}

/// The namespace of the environment `environment`, read from the cluster.
pub async fn namespace(client: &Client, environment: &str) -> Result<String, Error> {
    Ok(namespace_of(&environments::get(client, environment).await?))
}

/// Reads the database `name` of `environment`, in `namespace`.
pub async fn get_in(
    client: &Client,
    environment: &str,
    namespace: &str,
    name: &str,
) -> Result<PostgreSQL, Error> {
    api(client, namespace)
        .get(name)
        .await
        .map_err(|error| match ApiError(error) {
            error if error.is_not_found() => Error::NotFound {
                environment: environment.to_owned(),
                name: name.to_owned(),
            },
            source => Error::Get {
                environment: environment.to_owned(),
                name: name.to_owned(),
                source,
            },
        })
}

/// Reads the database `name` of the environment `environment`.
pub async fn get(client: &Client, environment: &str, name: &str) -> Result<PostgreSQL, Error> {
    let namespace = namespace(client, environment).await?;
    get_in(client, environment, &namespace, name).await
}

/// The databases of `environment`, in `namespace`, by name.
pub async fn list_in(
    client: &Client,
    environment: &str,
    namespace: &str,
) -> Result<Vec<PostgreSQL>, Error> {
    let mut databases = api(client, namespace)
        .list(&ListParams::default())
        .await
        .map_err(|error| Error::List {
            environment: environment.to_owned(),
            source: error.into(),
        })?
        .items;
    databases.sort_by_key(|database| database.name_any());
    Ok(databases)
}

/// The databases of the environment `environment`, by name.
pub async fn list(client: &Client, environment: &str) -> Result<Vec<PostgreSQL>, Error> {
    let namespace = namespace(client, environment).await?;
    list_in(client, environment, &namespace).await
}

/// The databases of an environment as `jf status` shows them.
#[derive(Debug, Clone, PartialEq)]
pub enum Listing {
    Listed(Vec<PostgreSQL>),
    /// The caller may read the Environment but not list in its namespace.
    NotAllowed,
}

/// The databases of `environment` for `jf status`: a refusal to list is part of the answer,
/// not an error.
pub async fn listing(client: &Client, environment: &Environment) -> Result<Listing, Error> {
    match list_in(client, &environment.name_any(), &namespace_of(environment)).await {
        Ok(databases) => Ok(Listing::Listed(databases)),
        Err(Error::List { source, .. }) if source.is_forbidden() => Ok(Listing::NotAllowed),
        Err(error) => Err(error),
    }
}

/// Whether the database's `Ready` condition is true; if not, the error saying why.
pub fn check_ready(environment: &str, database: &PostgreSQL) -> Result<(), Error> {
    let name = database.name_any();
    let condition = database
        .status
        .as_ref()
        .and_then(|status| conditions::find(&status.conditions, READY));
    match condition {
        Some(condition) if condition.status == "True" => Ok(()),
        Some(condition) => Err(Error::NotReady {
            environment: environment.to_owned(),
            name,
            reason: condition.reason.clone(),
            message: condition.message.clone(),
        }),
        None => Err(Error::NotReported {
            environment: environment.to_owned(),
            name,
        }),
    }
}

/// The Secret with the database's credentials: the one its status names, or `<name>-postgresql`.
pub fn secret_name(database: &PostgreSQL) -> String {
    database
        .status
        .as_ref()
        .and_then(|status| status.secret_name.clone())
        .filter(|secret| !secret.is_empty())
        .unwrap_or_else(|| naming::postgresql_secret(&database.name_any()))
}

/// The connection URL in the Secret of the database `name`.
pub fn url_from_secret(name: &str, secret: &Secret) -> Result<String, Error> {
    secret
        .data
        .as_ref()
        .and_then(|data| data.get(URL_KEY))
        .and_then(|url| String::from_utf8(url.0.clone()).ok())
        .filter(|url| !url.is_empty())
        .ok_or_else(|| Error::NoUrl {
            name: name.to_owned(),
            secret: secret.name_any(),
        })
}

/// The connection URL of the database `name` of `environment`, which must be ready: a URL
/// that does not work yet is no answer.
pub async fn url(client: &Client, environment: &str, name: &str) -> Result<String, Error> {
    let namespace = namespace(client, environment).await?;
    let database = get_in(client, environment, &namespace, name).await?;
    check_ready(environment, &database)?;
    let secret = secret_name(&database);
    let found = Api::<Secret>::namespaced(client.clone(), &namespace)
        .get(&secret)
        .await
        .map_err(|error| Error::Secret {
            environment: environment.to_owned(),
            secret: secret.clone(),
            source: error.into(),
        })?;
    url_from_secret(name, &found)
}

/// A reset's value: the time, to the nanosecond, so that each one is new.
pub fn reset_value(now: Timestamp) -> String {
    format!("{now:.9}")
}

/// The merge patch that asks for a reset.
pub fn reset_patch(value: &str) -> Value {
    json!({ "spec": { "reset": value } })
}

/// A reset asked for, to wait for.
#[derive(Debug, Clone)]
pub struct ResetRequest {
    pub environment: String,
    pub namespace: String,
    /// The new `spec.reset`, which `status.reset` will have once it is done.
    pub value: String,
    /// The database as the patch returned it.
    pub database: PostgreSQL,
}

/// Asks the operator to drop the database `name` of `environment` and make it again, without
/// waiting for it.
pub async fn request_reset(
    client: &Client,
    environment: &str,
    name: &str,
) -> Result<ResetRequest, Error> {
    let namespace = namespace(client, environment).await?;
    let value = reset_value(Timestamp::now());
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    let database = api(client, &namespace)
        .patch(name, &params, &Patch::Merge(&reset_patch(&value)))
        .await
        .map_err(|error| match ApiError(error) {
            error if error.is_not_found() => Error::NotFound {
                environment: environment.to_owned(),
                name: name.to_owned(),
            },
            source => Error::Update {
                environment: environment.to_owned(),
                name: name.to_owned(),
                source,
            },
        })?;
    Ok(ResetRequest {
        environment: environment.to_owned(),
        namespace,
        value,
        database,
    })
}

/// Where a database stands in a reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetProgress {
    /// Made again for this reset, and ready at its current generation.
    Reached,
    Waiting,
    /// It will not get there: the reason is the error to report.
    Failed(Failure),
}

/// Why a reset will not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Failed { reason: String, message: String },
    Deleted,
    Deleting,
}

/// Where `database` (none: it does not exist) stands in the reset whose value is `value`.
pub fn reset_progress(value: &str, database: Option<&PostgreSQL>) -> ResetProgress {
    let Some(database) = database else {
        return ResetProgress::Failed(Failure::Deleted);
    };
    if database.meta().deletion_timestamp.is_some() {
        return ResetProgress::Failed(Failure::Deleting);
    }
    let generation = database.meta().generation;
    let Some(status) = &database.status else {
        return ResetProgress::Waiting;
    };
    // What the operator says about an older spec says nothing about this one.
    if generation.is_some() && status.observed_generation < generation {
        return ResetProgress::Waiting;
    }
    if status.reset.as_deref() == Some(value)
        && conditions::is_ready(&status.conditions, generation)
    {
        return ResetProgress::Reached;
    }
    match conditions::find(&status.conditions, READY) {
        Some(condition)
            if condition.status == "False"
                && (generation.is_none() || condition.observed_generation >= generation)
                && FAILURE_REASONS.contains(&condition.reason.as_str()) =>
        {
            ResetProgress::Failed(Failure::Failed {
                reason: condition.reason.clone(),
                message: condition.message.clone(),
            })
        }
        _ => ResetProgress::Waiting,
    }
}

/// Where `database` stood in the reset whose value is `value`, in a few words: its `Ready`
/// condition (`ServerUnavailable: …`), after `not reset yet; ` while the reset is not done.
pub fn summary(value: &str, database: &PostgreSQL) -> Option<String> {
    let status = database.status.as_ref()?;
    let condition = conditions::find(&status.conditions, READY)?;
    let pending = if status.reset.as_deref() == Some(value) {
        ""
    } else {
        "not reset yet; "
    };
    Some(format!(
        "{pending}{}: {}",
        condition.reason, condition.message
    ))
}

/// Waits until the operator has carried out `request`, for at most `timeout`. Returns the
/// database as it was then.
pub async fn until_reset(
    client: &Client,
    request: &ResetRequest,
    timeout: SignedDuration,
) -> Result<PostgreSQL, Error> {
    // The database as the patch returned it is the first state seen.
    let mut last = Some(request.database.clone());
    let watching = watch_reset(client, request, &mut last);
    match tokio::time::timeout(timeout.unsigned_abs(), watching).await {
        Ok(result) => result,
        Err(_elapsed) => Err(Error::Timeout {
            environment: request.environment.clone(),
            name: request.database.name_any(),
            after: timeout,
            last: last
                .as_ref()
                .and_then(|database| summary(&request.value, database)),
        }),
    }
}

async fn watch_reset(
    client: &Client,
    request: &ResetRequest,
    last: &mut Option<PostgreSQL>,
) -> Result<PostgreSQL, Error> {
    let name = request.database.name_any();
    let environment = request.environment.clone();
    let fail = |failure: Failure| match failure {
        Failure::Failed { reason, message } => Error::Failed {
            environment: environment.clone(),
            name: name.clone(),
            reason,
            message,
        },
        Failure::Deleted => Error::Deleted {
            environment: environment.clone(),
            name: name.clone(),
        },
        Failure::Deleting => Error::Deleting {
            environment: environment.clone(),
            name: name.clone(),
        },
    };
    let mut states = pin!(wait::follow(api(client, &request.namespace), &name));
    loop {
        let database = match states.next().await {
            Some(Ok(database)) => database,
            Some(Err(unfollowable)) => {
                return Err(Error::unfollowable(unfollowable, &environment, &name));
            }
            None => return Err(Error::WatchEnded { name: name.clone() }),
        };
        // The reset is a change of spec: what the operator says is about it once it has
        // observed the new generation, so an older refusal never stops the wait.
        match (reset_progress(&request.value, database.as_ref()), database) {
            (ResetProgress::Reached, Some(database)) => return Ok(database),
            (ResetProgress::Failed(failure), _) => return Err(fail(failure)),
            (_, database) => *last = database,
        }
    }
}

/// Waits for `request`, with a spinner saying what for, unless `--no-wait` was given.
pub async fn wait_for_reset(
    client: &Client,
    request: &ResetRequest,
    arguments: &WaitArgs,
) -> Result<Option<PostgreSQL>, Error> {
    if arguments.no_wait {
        return Ok(None);
    }
    let _spinner = Spinner::start(format!(
        "Resetting database \"{}\"…",
        request.database.name_any()
    ));
    until_reset(client, request, arguments.timeout)
        .await
        .map(Some)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use jf_api::conditions::condition;
    use jf_api::{PostgreSQLSpec, PostgreSQLStatus};
    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn database(generation: i64, status: Option<PostgreSQLStatus>) -> PostgreSQL {
        let mut database = PostgreSQL::new("api", PostgreSQLSpec::default());
        database.metadata.generation = Some(generation);
        database.status = status;
        database
    }

    fn status(ready: bool, reason: &str, observed: i64, reset: Option<&str>) -> PostgreSQLStatus {
        PostgreSQLStatus {
            reset: reset.map(str::to_owned),
            conditions: vec![condition(READY, ready, reason, "a message", Some(observed))],
            observed_generation: Some(observed),
            ..PostgreSQLStatus::default()
        }
    }

    #[test]
    fn the_reset_patch_sets_only_spec_reset() {
        let value = reset_value(Timestamp::from_second(1_800_000_000).expect("a valid time"));
        assert_eq!(value, "2027-01-15T08:00:00.000000000Z");
        assert_eq!(
            reset_patch(&value),
            json!({"spec": {"reset": "2027-01-15T08:00:00.000000000Z"}})
        );
        assert_ne!(reset_value(Timestamp::now()), reset_value(Timestamp::now()));
    }

    #[test]
    fn a_reset_is_done_when_the_operator_answered_it_and_is_ready() {
        let value = "2027-01-15T08:00:00.000000001Z";
        let before = database(2, Some(status(true, "Ready", 2, Some("earlier"))));
        assert_eq!(reset_progress(value, Some(&before)), ResetProgress::Waiting);
        assert_eq!(
            reset_progress(value, Some(&database(2, None))),
            ResetProgress::Waiting
        );
        let done = database(2, Some(status(true, "Ready", 2, Some(value))));
        assert_eq!(reset_progress(value, Some(&done)), ResetProgress::Reached);
        // Answered, but about an older spec.
        let stale = database(3, Some(status(true, "Ready", 2, Some(value))));
        assert_eq!(reset_progress(value, Some(&stale)), ResetProgress::Waiting);
        // Retried by the operator: keep waiting.
        let retrying = database(2, Some(status(false, "ServerUnavailable", 2, None)));
        assert_eq!(
            reset_progress(value, Some(&retrying)),
            ResetProgress::Waiting
        );
    }

    #[test]
    fn a_refusal_ends_the_wait_with_its_reason() {
        let value = "v";
        let refused = database(2, Some(status(false, "NotATemplate", 2, None)));
        assert_eq!(
            reset_progress(value, Some(&refused)),
            ResetProgress::Failed(Failure::Failed {
                reason: "NotATemplate".to_owned(),
                message: "a message".to_owned(),
            })
        );
        let old_refusal = database(3, Some(status(false, "NotATemplate", 2, None)));
        assert_eq!(
            reset_progress(value, Some(&old_refusal)),
            ResetProgress::Waiting
        );
        assert_eq!(
            reset_progress(value, None),
            ResetProgress::Failed(Failure::Deleted)
        );
        let mut deleting = database(2, Some(status(true, "Ready", 2, None)));
        deleting.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        assert_eq!(
            reset_progress(value, Some(&deleting)),
            ResetProgress::Failed(Failure::Deleting)
        );
    }

    #[test]
    fn only_a_ready_database_has_a_url() {
        let ready = database(1, Some(status(true, "Ready", 1, None)));
        assert!(check_ready("fix-bug", &ready).is_ok());
        let refused = database(1, Some(status(false, "ExtensionNotAllowed", 1, None)));
        let error = check_ready("fix-bug", &refused).expect_err("not ready");
        assert_eq!(
            error.to_string(),
            "database \"api\" is not ready: a message (ExtensionNotAllowed)"
        );
        assert!(
            error
                .hint()
                .unwrap_or_default()
                .contains("allow the extension")
        );
        let error = check_ready("fix-bug", &database(1, None)).expect_err("not reported");
        assert!(matches!(error, Error::NotReported { .. }), "{error}");
    }

    fn secret(data: &[(&str, &[u8])]) -> Secret {
        let mut secret = Secret::default();
        secret.metadata.name = Some("api-postgresql".to_owned());
        secret.data = Some(
            data.iter()
                .map(|(key, value)| ((*key).to_owned(), ByteString(value.to_vec())))
                .collect::<BTreeMap<_, _>>(),
        );
        secret
    }

    #[test]
    fn the_url_is_the_secrets_uri() {
        let url = "postgresql://jf_a:p%40ss@db.example:5432/jf_a";
        let found = secret(&[
            ("uri", url.as_bytes()),
            ("DATABASE_URL", b"postgresql://other"),
            ("password", b"p@ss"),
        ]);
        assert_eq!(url_from_secret("api", &found).expect("a URL"), url);
        for data in [
            &[("password", b"p@ss".as_slice())][..],
            &[("uri", b"")],
            &[("uri", b"\xff\xfe".as_slice())],
        ] {
            let error = url_from_secret("api", &secret(data)).expect_err("no URL");
            assert_eq!(
                error.to_string(),
                "the Secret \"api-postgresql\" of database \"api\" has no connection URL (key \"uri\")"
            );
        }
    }

    #[test]
    fn the_namespace_is_the_operators_or_the_default() {
        let mut environment = Environment::new("fix-bug", jf_api::EnvironmentSpec::default());
        assert_eq!(namespace_of(&environment), "jf-fix-bug");
        environment.status = Some(jf_api::EnvironmentStatus {
            namespace: Some("dev-fix-bug".to_owned()),
            ..jf_api::EnvironmentStatus::default()
        });
        assert_eq!(namespace_of(&environment), "dev-fix-bug");
    }

    #[test]
    fn the_secret_is_the_one_the_status_names() {
        let mut database = database(1, None);
        assert_eq!(secret_name(&database), "api-postgresql");
        database.status = Some(PostgreSQLStatus {
            secret_name: Some("other".to_owned()),
            ..PostgreSQLStatus::default()
        });
        assert_eq!(secret_name(&database), "other");
    }

    #[test]
    fn timeouts_say_what_was_seen() {
        let error = Error::Timeout {
            environment: "fix-bug".to_owned(),
            name: "api".to_owned(),
            after: SignedDuration::from_mins(2),
            last: summary(
                "v",
                &database(1, Some(status(false, "ServerUnavailable", 1, None))),
            ),
        };
        assert_eq!(
            error.to_string(),
            "timed out after 2m waiting for database \"api\" to be reset; \
             last status: not reset yet; ServerUnavailable: a message"
        );
        let done = database(1, Some(status(true, "Ready", 1, Some("v"))));
        assert_eq!(summary("v", &done).as_deref(), Some("Ready: a message"));
        assert_eq!(summary("v", &database(1, None)), None);
        assert!(
            error
                .hint()
                .unwrap_or_default()
                .contains("jf status fix-bug")
        );
    }
}
