//! # The PostgreSQL controller
//!
//! For each PostgreSQL resource, a pipeline: **validate** (its extensions are on the
//! allowlist; nothing reaches the server otherwise) → **secret** (the credentials Secret,
//! written *before* the role exists, so a crash in between recovers with the same password)
//! → **observe** the server (one query) → **plan** ([`plan::plan`], pure) → **execute** the
//! steps → **extensions** → **status**.
//!
//! A finalizer guards the server-side state: on deletion, logins are blocked, the database
//! is dropped with its connections (`DROP DATABASE … WITH (FORCE)`), then the role, unless
//! the deletion policy is `Retain`. A slow timer re-checks every database, so one dropped or
//! changed outside Jango Fett is put back, with an Event.

pub mod plan;
pub mod secret;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use jf_api::conditions::{self, READY};
use jf_api::{DeletionPolicy, PostgreSQL, PostgreSQLStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{self, Action};
use kube::runtime::events::{EventType, Recorder};
use kube::{Client, Resource, ResourceExt as _};
use serde_json::json;
use tokio::sync::broadcast;
use tracing::{debug, instrument, warn};

use self::plan::{Names, Refusal, Step};
use self::secret::Endpoint;
use super::{describe, secrets};
use crate::postgres::{self, Server, scram, sql};
use crate::settings::PostgresSettings;
use crate::telemetry::Metrics;

/// The field manager of everything this controller writes.
pub const FIELD_MANAGER: &str = "jango-fett-postgresql";

/// Keeps a PostgreSQL resource until its database and role are dropped.
pub const FINALIZER: &str = "jango-fett.dev/postgresql";

const KIND: &str = "PostgreSQL";

/// What every reconciliation shares.
pub struct Context<S> {
    pub client: Client,
    /// Grants the operator Secrets in an environment's namespace when they are refused.
    pub access: Arc<secrets::Access>,
    pub settings: PostgresSettings,
    /// `None` when the operator has no server configured.
    pub server: Option<Arc<S>>,
    pub endpoint: Endpoint,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// When each resource (by UID) was last checked in full against the server.
    checked: Mutex<HashMap<String, Instant>>,
    failures: Mutex<HashMap<String, u32>>,
    reconciled: broadcast::Sender<Reconciled>,
}

/// One finished reconciliation of a PostgreSQL resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciled {
    pub namespace: String,
    pub name: String,
    /// Writes to the Kubernetes API (Events excluded).
    pub writes: u64,
    pub ok: bool,
}

/// Why a reconciliation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the operator has no PostgreSQL server configured (--postgres-admin-url)")]
    NotConfigured,
    #[error("the PostgreSQL server failed")]
    Server(#[from] postgres::Error),
    #[error(transparent)]
    InvalidText(#[from] sql::InvalidText),
    #[error("failed to write the Secret {name}")]
    Secret {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("{}", super::secrets::forbidden_hint(.namespace))]
    SecretForbidden { namespace: String },
    #[error("failed to update the finalizers")]
    Finalizer(#[source] kube::Error),
    #[error("failed to write the status")]
    Status(#[source] kube::Error),
}

impl Error {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotConfigured => "NotConfigured",
            Self::Server(error) if error.is_unavailable() => "ServerUnavailable",
            Self::Server(_) => "ServerError",
            Self::InvalidText(_) => "InvalidName",
            Self::Secret { .. } => "SecretFailed",
            Self::SecretForbidden { .. } => "SecretForbidden",
            Self::Finalizer(_) => "FinalizerFailed",
            Self::Status(_) => "StatusFailed",
        }
    }
}

/// Runs the controller until `shutdown` completes, with the server and the endpoint that
/// [`crate::postgres_server`] gives.
pub async fn run<S: Server>(
    client: Client,
    settings: PostgresSettings,
    (server, endpoint): (Option<Arc<S>>, Endpoint),
    metrics: Arc<Metrics>,
    access: Arc<secrets::Access>,
    reconciled: broadcast::Sender<Reconciled>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let resources: Api<PostgreSQL> = Api::all(client.clone());
    super::check_listable(&resources, "PostgreSQL resources").await?;
    let context = Arc::new(Context {
        access,
        recorder: super::recorder(client.clone()),
        client,
        settings,
        server,
        endpoint,
        metrics,
        checked: Mutex::default(),
        failures: Mutex::default(),
        reconciled,
    });
    super::controller(resources)
        .with_config(controller::Config::default().concurrency(16))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(|result| super::log_outcome("postgresql", result))
        .await;
    Ok(())
}

#[instrument(skip_all, fields(namespace = %resource.namespace().unwrap_or_default(), postgresql = %resource.name_any()))]
async fn reconcile<S: Server>(
    resource: Arc<PostgreSQL>,
    context: Arc<Context<S>>,
) -> Result<Action, Error> {
    let _in_flight = context.metrics.in_flight(KIND);
    let started = Instant::now();
    let mut writes = 0;
    let result = if resource.meta().deletion_timestamp.is_some() {
        cleanup(&resource, &context, &mut writes).await
    } else {
        reconcile_resource(&resource, &context, &mut writes).await
    };
    context.metrics.reconciled(KIND, started.elapsed());
    let uid = resource.uid().unwrap_or_default();
    match &result {
        Ok(_) => {
            if let Ok(mut failures) = context.failures.lock() {
                failures.remove(&uid);
            }
        }
        Err(error) => {
            context.metrics.failed(KIND, error.reason());
            if let Error::SecretForbidden { namespace } = error {
                writes += u64::from(context.access.refused(namespace).await);
            }
            // What passes on its own (contention, a RoleBinding not yet in force) is settled
            // by looking again at once: not worth telling the user, unless it lasts.
            if !matches!(error, Error::Status(_))
                && quick_retry(&context, &uid, error).is_none()
                && resource.meta().deletion_timestamp.is_none()
            {
                let mut status = base_status(&resource);
                let message = match error {
                    Error::Server(server) if server.is_unavailable() => {
                        format!("{}; retrying", describe(error))
                    }
                    _ => describe(error),
                };
                conditions::set(
                    &mut status.conditions,
                    conditions::condition(
                        READY,
                        false,
                        error.reason(),
                        message,
                        resource.meta().generation,
                    ),
                );
                let _ = write_status(&resource, &context, status, &mut writes).await;
            }
        }
    }
    context.metrics.wrote(KIND, writes);
    debug!(writes, ok = result.is_ok(), elapsed = ?started.elapsed(), "reconciled");
    let _ = context.reconciled.send(Reconciled {
        namespace: resource.namespace().unwrap_or_default(),
        name: resource.name_any(),
        writes,
        ok: result.is_ok(),
    });
    result
}

/// How soon a reconciliation that another session got in the way of looks again.
const CONTENTION_RETRY: Duration = Duration::from_millis(200);

/// How many times in a row contention is retried quietly before it is reported.
const CONTENTION_ATTEMPTS: u32 = 5;

fn error_policy<S: Server>(
    resource: Arc<PostgreSQL>,
    error: &Error,
    context: Arc<Context<S>>,
) -> Action {
    let quick = quick_retry(&context, &resource.uid().unwrap_or_default(), error);
    let failures = context
        .failures
        .lock()
        .map(|mut failures| {
            let count = failures
                .entry(resource.uid().unwrap_or_default())
                .or_insert(0);
            *count = count.saturating_add(1);
            *count
        })
        .unwrap_or(1);
    if let Some(retry) = quick {
        debug!(postgresql = %resource.name_any(), error = %describe(error), "this passes on its own; looking again");
        return Action::requeue(retry);
    }
    let backoff = Duration::from_millis(250)
        .saturating_mul(1 << failures.min(8))
        .min(Duration::from_secs(60));
    warn!(postgresql = %resource.name_any(), error = %describe(error), ?backoff, "reconcile failed");
    Action::requeue(backoff)
}

/// How soon to look again, quietly, after an error that passes on its own and has not lasted:
/// contention with another session, or the operator's RoleBinding in a new namespace not yet
/// known to the authorizer.
fn quick_retry<S: Server>(context: &Context<S>, uid: &str, error: &Error) -> Option<Duration> {
    let failures = context
        .failures
        .lock()
        .map(|failures| failures.get(uid).copied().unwrap_or(0))
        .unwrap_or(u32::MAX);
    match error {
        Error::Server(server) if server.is_contention() && failures < CONTENTION_ATTEMPTS => {
            Some(CONTENTION_RETRY)
        }
        Error::SecretForbidden { .. } if secrets::still_settling(&context.failures, uid) => {
            Some(secrets::FORBIDDEN_RETRY)
        }
        _ => None,
    }
}

fn names(resource: &PostgreSQL) -> Names {
    Names::new(
        &resource.namespace().unwrap_or_default(),
        &resource.name_any(),
    )
}

/// The status's fixed parts.
fn base_status(resource: &PostgreSQL) -> PostgreSQLStatus {
    let names = names(resource);
    PostgreSQLStatus {
        username: Some(names.role().to_owned()),
        database: Some(names.database),
        secret_name: Some(names.secret),
        observed_generation: resource.meta().generation,
        ..resource.status.clone().unwrap_or_default()
    }
}

async fn reconcile_resource<S: Server>(
    resource: &PostgreSQL,
    context: &Context<S>,
    writes: &mut u64,
) -> Result<Action, Error> {
    let names = names(resource);
    let uid = resource.uid().unwrap_or_default();
    let mut status = base_status(resource);

    // Validate: nothing reaches the server for a refused resource.
    let extensions = match plan::extensions(&resource.spec.extensions, &context.settings.extensions)
    {
        Ok(extensions) => extensions,
        Err(refusal) => return refuse(resource, context, status, &refusal, writes).await,
    };
    let Some(server) = context.server.clone() else {
        return Err(Error::NotConfigured);
    };
    if !resource
        .finalizers()
        .iter()
        .any(|finalizer| finalizer == FINALIZER)
    {
        let mut finalizers = resource.finalizers().to_vec();
        finalizers.push(FINALIZER.to_owned());
        set_finalizers(resource, context, finalizers).await?;
        *writes += 1;
    }

    // The Secret first: its password is the one the role will have.
    let password = match ensure_secret(resource, context, &names, writes).await? {
        Ok(password) => password,
        Err(message) => {
            let refusal_status = status;
            return conclude_refused(
                resource,
                context,
                refusal_status,
                "SecretConflict",
                message,
                writes,
            )
            .await;
        }
    };

    let template = resource.spec.template.as_deref();
    let mut observed = server
        .observe(names.role(), &names.database, template)
        .await?;
    // Made by this operator before: the status may be read from a cache that lags.
    let seen_before = context
        .checked
        .lock()
        .is_ok_and(|checked| checked.contains_key(&uid));
    let full_check = context
        .checked
        .lock()
        .map(|checked| {
            checked
                .get(&uid)
                .is_none_or(|at| at.elapsed() >= context.settings.drift_interval)
        })
        .unwrap_or(true);

    // A reset drops the database first; the plan then makes it again.
    let reset = resource.spec.reset.clone();
    let resetting = reset.is_some() && reset != status.reset;
    if resetting
        && observed
            .database
            .as_ref()
            .is_some_and(|database| database.owner == names.role())
    {
        server
            .execute(None, &sql::drop_database(&names.database)?)
            .await?;
        observed.database = None;
    }

    let steps = match plan::plan(&observed, &names, &uid, template) {
        Ok(steps) => steps,
        Err(refusal) => return refuse(resource, context, status, &refusal, writes).await,
    };
    let mut created = false;
    for step in &steps {
        let batch = match step {
            Step::CreateRole => sql::create_role(names.role(), &scram::verifier(&password), &uid)?,
            Step::SetPassword => sql::set_password(names.role(), &scram::verifier(&password))?,
            Step::CreateDatabase => {
                created = true;
                sql::create_database(&names.database, names.role(), template)?
            }
            Step::SecureDatabase => {
                let description = format!(
                    "{}/{}",
                    resource.namespace().unwrap_or_default(),
                    resource.name_any()
                );
                sql::secure_database(&names.database, &uid, &description)?
            }
        };
        server.execute(None, &batch).await?;
    }
    // What a template brought belongs to the template's owner: hand it to the role, after a
    // clone and, in case a crash came between, on the slow timer.
    if let Some(template) = template
        && (created || full_check)
    {
        server
            .execute(
                Some(&names.database),
                &sql::adopt_template_objects(names.role())?,
            )
            .await?;
        debug!(template, "template objects adopted");
    }
    if full_check && !steps.contains(&Step::CreateRole) && !steps.contains(&Step::SetPassword) {
        // The role's password may have been changed outside Jango Fett.
        if let Some(stored) = server.password(names.role()).await?
            && !scram::verifies(&stored, &password)
        {
            server
                .execute(
                    None,
                    &sql::set_password(names.role(), &scram::verifier(&password))?,
                )
                .await?;
            publish(
                context,
                resource,
                EventType::Warning,
                "PasswordRestored",
                "The role's password had been changed outside Jango Fett; it is the Secret's again"
                    .to_owned(),
            )
            .await;
        }
    }

    // Extensions: checked in the database when it is new, when more are asked for, and on
    // the slow timer.
    let recorded: BTreeSet<String> = status.extensions.iter().cloned().collect();
    if created || full_check || !extensions.is_subset(&recorded) {
        let present: BTreeSet<String> = server
            .extensions(&names.database)
            .await?
            .into_iter()
            .collect();
        for extension in extensions.difference(&present) {
            if let Err(error) = server
                .execute(Some(&names.database), &sql::create_extension(extension)?)
                .await
            {
                if error.is_unavailable() {
                    return Err(error.into());
                }
                let message = format!(
                    "the extension {extension:?} could not be created: {}",
                    describe(&error)
                );
                return conclude_refused(
                    resource,
                    context,
                    status,
                    "ExtensionFailed",
                    message,
                    writes,
                )
                .await;
            }
        }
    }
    status.extensions = extensions.into_iter().collect();

    if created {
        let template_note = template
            .map(|template| format!(" from template {template}"))
            .unwrap_or_default();
        let (reason, note) = if resetting {
            (
                "Reset",
                format!("Reset database {}{template_note}", names.database),
            )
        } else if status.created_at.is_some() || seen_before {
            (
                "Recreated",
                format!(
                    "Database {} had been dropped outside Jango Fett; created it again{template_note}",
                    names.database
                ),
            )
        } else {
            (
                "Created",
                format!("Created database {}{template_note}", names.database),
            )
        };
        let type_ = if reason == "Recreated" {
            EventType::Warning
        } else {
            EventType::Normal
        };
        publish(context, resource, type_, reason, note).await;
        status.created_at = Some(Time(Timestamp::now()));
    }
    if resetting {
        status.reset = reset;
    }
    if full_check && let Ok(mut checked) = context.checked.lock() {
        checked.insert(uid, Instant::now());
    }
    conditions::set(
        &mut status.conditions,
        conditions::condition(
            READY,
            true,
            "Ready",
            format!(
                "database {} is ready; its credentials are in the Secret {}",
                names.database, names.secret
            ),
            resource.meta().generation,
        ),
    );
    write_status(resource, context, status, writes).await?;
    Ok(Action::requeue(context.settings.drift_interval))
}

/// The Secret's password, creating the Secret (with a new password) if there is none, or
/// `Err(message)` if a Secret of that name is someone else's.
async fn ensure_secret<S: Server>(
    resource: &PostgreSQL,
    context: &Context<S>,
    names: &Names,
    writes: &mut u64,
) -> Result<Result<String, String>, Error> {
    let namespace = resource.namespace().unwrap_or_default();
    let (ensured, wrote) = secrets::ensure(
        &context.client,
        &namespace,
        &names.secret,
        FIELD_MANAGER,
        |existing| secret::our_password(existing, resource),
        |password| {
            secret::build(resource, names, password, &context.endpoint)
                .ok_or_else(|| "the resource has no UID yet".to_owned())
        },
    )
    .await
    .map_err(|source| {
        if secrets::is_forbidden(&source) {
            Error::SecretForbidden {
                namespace: namespace.clone(),
            }
        } else {
            Error::Secret {
                name: names.secret.clone(),
                source,
            }
        }
    })?;
    *writes += u64::from(wrote);
    Ok(match ensured {
        secrets::Ensured::Password { password, .. } => Ok(password),
        secrets::Ensured::Refused(message) => Err(message),
    })
}

async fn refuse<S: Server>(
    resource: &PostgreSQL,
    context: &Context<S>,
    status: PostgreSQLStatus,
    refusal: &Refusal,
    writes: &mut u64,
) -> Result<Action, Error> {
    conclude_refused(
        resource,
        context,
        status,
        refusal.reason(),
        refusal.to_string(),
        writes,
    )
    .await
}

/// Ready=False for a reason only a change to the resource (or the server) can lift; an Event
/// when it is new.
async fn conclude_refused<S: Server>(
    resource: &PostgreSQL,
    context: &Context<S>,
    mut status: PostgreSQLStatus,
    reason: &str,
    message: String,
    writes: &mut u64,
) -> Result<Action, Error> {
    let already = conditions::find(&status.conditions, READY)
        .is_some_and(|condition| condition.reason == reason);
    if !already {
        publish(
            context,
            resource,
            EventType::Warning,
            reason,
            message.clone(),
        )
        .await;
    }
    conditions::set(
        &mut status.conditions,
        conditions::condition(READY, false, reason, message, resource.meta().generation),
    );
    write_status(resource, context, status, writes).await?;
    // The server may change (a template made, a role dropped): look again on the slow timer.
    Ok(Action::requeue(context.settings.drift_interval))
}

/// Drops the database and the role (unless retained), then lets the resource go.
async fn cleanup<S: Server>(
    resource: &PostgreSQL,
    context: &Context<S>,
    writes: &mut u64,
) -> Result<Action, Error> {
    if !resource
        .finalizers()
        .iter()
        .any(|finalizer| finalizer == FINALIZER)
    {
        return Ok(Action::await_change());
    }
    let names = names(resource);
    if resource.spec.deletion_policy == DeletionPolicy::Retain {
        publish(
            context,
            resource,
            EventType::Normal,
            "Retained",
            format!(
                "Kept database {} and its role (deletionPolicy: Retain)",
                names.database
            ),
        )
        .await;
    } else {
        let server = context.server.clone().ok_or(Error::NotConfigured)?;
        let observed = server.observe(names.role(), &names.database, None).await?;
        let marker = sql::marker(&resource.uid().unwrap_or_default());
        let role_is_ours = observed
            .role
            .as_ref()
            .is_some_and(|role| role.marker.as_deref() == Some(marker.as_str()));
        if role_is_ours {
            if observed.role.as_ref().is_some_and(|role| role.can_login) {
                server
                    .execute(None, &sql::block_logins(names.role())?)
                    .await?;
            }
            if observed
                .database
                .as_ref()
                .is_some_and(|database| database.owner == names.role())
            {
                server
                    .execute(None, &sql::drop_database(&names.database)?)
                    .await?;
            }
            server.execute(None, &sql::drop_role(names.role())?).await?;
            publish(
                context,
                resource,
                EventType::Normal,
                "Dropped",
                format!("Dropped database {} and its role", names.database),
            )
            .await;
        }
    }
    let finalizers = resource
        .finalizers()
        .iter()
        .filter(|finalizer| *finalizer != FINALIZER)
        .cloned()
        .collect();
    set_finalizers(resource, context, finalizers).await?;
    *writes += 1;
    if let Ok(mut checked) = context.checked.lock() {
        checked.remove(&resource.uid().unwrap_or_default());
    }
    Ok(Action::await_change())
}

async fn set_finalizers<S: Server>(
    resource: &PostgreSQL,
    context: &Context<S>,
    finalizers: Vec<String>,
) -> Result<(), Error> {
    let patch = json!({
        "metadata": {"finalizers": finalizers, "resourceVersion": resource.resource_version()}
    });
    Api::<PostgreSQL>::namespaced(
        context.client.clone(),
        &resource.namespace().unwrap_or_default(),
    )
    .patch(
        &resource.name_any(),
        &PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        },
        &Patch::Merge(&patch),
    )
    .await
    .map_err(Error::Finalizer)?;
    Ok(())
}

async fn write_status<S: Server>(
    resource: &PostgreSQL,
    context: &Context<S>,
    status: PostgreSQLStatus,
    writes: &mut u64,
) -> Result<(), Error> {
    *writes += u64::from(
        super::apply_status(
            &context.client,
            resource,
            resource.status.as_ref(),
            &status,
            FIELD_MANAGER,
        )
        .await
        .map_err(Error::Status)?,
    );
    Ok(())
}

async fn publish<S: Server>(
    context: &Context<S>,
    resource: &PostgreSQL,
    type_: EventType,
    reason: &str,
    note: String,
) {
    super::publish(&context.recorder, resource, type_, reason, note).await;
}
