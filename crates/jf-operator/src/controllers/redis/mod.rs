//! # The Redis controller
//!
//! For each Redis resource, a pipeline: **validate** ([`build::validate`]: what the schema
//! checks, again, since the spec goes into a configuration file and an image reference) →
//! **secret** (the credentials Secret `<name>-redis`, its password made once from the OS's
//! random source and kept for as long as the Secret exists) → **build** ([`build::children`],
//! pure: the configuration Secret `<name>-redis-config`, the StatefulSet and the Service
//! `<name>-redis`) → **apply** (server-side apply, skipped for every object whose cached copy
//! already matches) → **status** (Ready once the StatefulSet has rolled out the spec and its
//! pod is ready; otherwise why not, read from the StatefulSet and the pod).
//!
//! Every child is owned by the Redis, so deleting it deletes them, and the volume with
//! persistence: nothing outside Kubernetes needs a finalizer. An object of one of those names
//! that Jango Fett did not make is never taken over. The StatefulSet, the Service and the pod
//! are watched, so any change to them, by hand or by Kubernetes, brings the Redis back here;
//! the Secrets are read each time instead (see [`super::secrets`]), and put right at the next
//! resync.

pub mod build;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use jf_api::conditions::{self, READY};
use jf_api::naming::{self, REPLICAS_BEFORE_SLEEP_ANNOTATION};
use jf_api::{Redis, RedisStatus};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::Api;
use kube::runtime::controller::{self, Action};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, watch};
use tracing::{debug, instrument, warn};

use self::build::REDIS_LABEL;
use super::{
    APPLIED_HASH_ANNOTATION, Packed, apply, cache, describe, is_subset, managed_selector, secrets,
    stamp,
};
use crate::settings::RedisSettings;
use crate::telemetry::Metrics;

/// The field manager of everything this controller writes.
pub const FIELD_MANAGER: &str = "jango-fett-redis";

const KIND: &str = "Redis";

/// How soon a Redis held up by an object it does not own is looked at again: that object is
/// not watched.
const CONFLICT_REQUEUE: Duration = Duration::from_secs(60);

/// Caches of the children and the pods, filled by the controller's watches.
#[derive(Clone)]
pub struct Caches {
    pub stateful_sets: Store<Packed<StatefulSet>>,
    pub services: Store<Packed<Service>>,
    pub pods: Store<Packed<Pod>>,
}

impl Caches {
    /// Waits until every cache has its first full list, so nothing is written from a
    /// partial view.
    async fn ready(&self) {
        let _ = futures::join!(
            self.stateful_sets.wait_until_ready(),
            self.services.wait_until_ready(),
            self.pods.wait_until_ready(),
        );
    }
}

/// What every reconciliation shares.
pub struct Context {
    pub client: Client,
    /// Grants the operator Secrets in an environment's namespace when they are refused.
    pub access: Arc<secrets::Access>,
    pub settings: RedisSettings,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub caches: Caches,
    /// Consecutive failures per Redis (by UID), for its backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// True once every cache has its first full list.
    caches_ready: watch::Receiver<bool>,
    /// Told about every reconciliation (tests and benchmarks listen; nobody has to).
    reconciled: broadcast::Sender<Reconciled>,
}

/// One finished reconciliation of a Redis resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciled {
    pub namespace: String,
    pub name: String,
    /// Writes to the Kubernetes API (Events excluded).
    pub writes: u64,
    pub ok: bool,
}

/// Why a reconciliation failed. Each maps to a `reason` for the condition and the metrics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read {kind} {name}")]
    Read {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to create the Secret {name}")]
    Secret {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("{}", super::secrets::forbidden_hint(.namespace))]
    SecretForbidden { namespace: String },
    #[error("failed to apply {kind} {name}")]
    Apply {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to write the status")]
    Status(#[source] kube::Error),
}

impl Error {
    /// The condition reason and metric label of this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Read { .. } => "ReadFailed",
            Self::Secret { .. } => "SecretFailed",
            Self::SecretForbidden { .. } => "SecretForbidden",
            Self::Apply { .. } => "ApplyFailed",
            Self::Status(_) => "StatusFailed",
        }
    }
}

/// Runs the controller until `shutdown` completes.
pub async fn run(
    client: Client,
    settings: RedisSettings,
    metrics: Arc<Metrics>,
    access: Arc<secrets::Access>,
    reconciled: broadcast::Sender<Reconciled>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let resources: Api<Redis> = Api::all(client.clone());
    super::check_listable(&resources, "Redis resources").await?;
    // Only what this controller makes: other controllers' StatefulSets and Services
    // are none of its business.
    let selector = format!("{},{REDIS_LABEL}", managed_selector());
    let (stateful_sets, stateful_set_events) =
        cache(Api::<StatefulSet>::all(client.clone()), &selector);
    let (services, service_events) = cache(Api::<Service>::all(client.clone()), &selector);
    let (pods, pod_events) = cache(Api::<Pod>::all(client.clone()), &selector);
    let caches = Caches {
        stateful_sets,
        services,
        pods,
    };
    // One task waits for the caches and tells every reconciliation: a store's readiness wakes
    // only one of several concurrent waiters.
    let (ready, caches_ready) = watch::channel(false);
    let waiting = caches.clone();
    tokio::spawn(async move {
        waiting.ready().await;
        let _ = ready.send(true);
    });
    let context = Arc::new(Context {
        access,
        recorder: super::recorder(client.clone()),
        client,
        settings,
        metrics,
        caches,
        failures: Mutex::default(),
        caches_ready,
        reconciled,
    });
    // The pod belongs to the StatefulSet, not to the Redis: it is mapped by its label.
    super::controller(resources)
        .with_config(controller::Config::default().concurrency(16))
        .owns_stream(stateful_set_events)
        .owns_stream(service_events)
        .watches_stream(pod_events, |pod: Pod| {
            let name = pod.labels().get(REDIS_LABEL)?;
            Some(ObjectRef::<Redis>::new(name).within(&pod.namespace()?))
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(|result| super::log_outcome("redis", result))
        .await;
    Ok(())
}

#[instrument(skip_all, fields(namespace = %resource.namespace().unwrap_or_default(), redis = %resource.name_any()))]
async fn reconcile(resource: Arc<Redis>, context: Arc<Context>) -> Result<Action, Error> {
    let _ = context.caches_ready.clone().wait_for(|ready| *ready).await;
    let _in_flight = context.metrics.in_flight(KIND);
    let started = Instant::now();
    let mut writes = 0;
    // Being deleted: the garbage collector deletes the children.
    let result = if resource.meta().deletion_timestamp.is_some() {
        Ok(Action::await_change())
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
            // Tell the user why, unless the status itself cannot be written or the error
            // passes on its own.
            if !matches!(error, Error::Status(_)) && quick_retry(&context, &uid, error).is_none() {
                let mut status = base_status(&resource);
                conditions::set(
                    &mut status.conditions,
                    conditions::condition(
                        READY,
                        false,
                        error.reason(),
                        format!("{}; retrying", describe(error)),
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

fn error_policy(resource: Arc<Redis>, error: &Error, context: Arc<Context>) -> Action {
    let uid = resource.uid().unwrap_or_default();
    let quick = quick_retry(&context, &uid, error);
    let failures = context
        .failures
        .lock()
        .map(|mut failures| {
            let count = failures.entry(uid).or_insert(0);
            *count = count.saturating_add(1);
            *count
        })
        .unwrap_or(1);
    if let Some(retry) = quick {
        debug!(redis = %resource.name_any(), error = %describe(error), "this passes on its own; looking again");
        return Action::requeue(retry);
    }
    let backoff = Duration::from_millis(250)
        .saturating_mul(1 << failures.min(8))
        .min(Duration::from_secs(60));
    warn!(redis = %resource.name_any(), error = %describe(error), ?backoff, "reconcile failed");
    Action::requeue(backoff)
}

/// How soon to look again, quietly, after an error that passes on its own and has not lasted:
/// the operator's RoleBinding in a new namespace not yet known to the authorizer.
fn quick_retry(context: &Context, uid: &str, error: &Error) -> Option<Duration> {
    (matches!(error, Error::SecretForbidden { .. })
        && secrets::still_settling(&context.failures, uid))
    .then_some(secrets::FORBIDDEN_RETRY)
}

/// The status's fixed parts, starting from the current status.
fn base_status(resource: &Redis) -> RedisStatus {
    let name = resource.name_any();
    RedisStatus {
        secret_name: Some(naming::redis(&name)),
        service: Some(naming::redis(&name)),
        host: Some(naming::redis_host(
            &resource.namespace().unwrap_or_default(),
            &name,
        )),
        observed_generation: resource.meta().generation,
        ..resource.status.clone().unwrap_or_default()
    }
}

async fn reconcile_resource(
    resource: &Redis,
    context: &Context,
    writes: &mut u64,
) -> Result<Action, Error> {
    let namespace = resource.namespace().unwrap_or_default();
    let name = naming::redis(&resource.name_any());
    let mut status = base_status(resource);

    // Validate: nothing from a refused spec reaches the cluster.
    if let Err(invalid) = build::validate(resource) {
        let message = format!("{invalid}; correct the Redis's spec");
        refuse(resource, context, status, invalid.reason(), message, writes).await?;
        return Ok(Action::await_change());
    }

    // The credentials Secret first: the configuration is made with its password.
    let password = match ensure_secret(resource, context, writes).await? {
        Ok(password) => password,
        Err(message) => {
            refuse(resource, context, status, "SecretConflict", message, writes).await?;
            return Ok(Action::requeue(CONFLICT_REQUEUE));
        }
    };

    // Build. A sleeping environment scaled the StatefulSet to zero: it stays so until it wakes.
    let stateful_set_key = ObjectRef::new(&name).within(&namespace);
    let current = context
        .caches
        .stateful_sets
        .get(&stateful_set_key)
        .and_then(|current| current.object());
    let asleep = current.as_ref().is_some_and(|stateful_set| {
        stateful_set
            .annotations()
            .contains_key(REPLICAS_BEFORE_SLEEP_ANNOTATION)
    });
    let children = match build::children(resource, &password, &context.settings, asleep) {
        Ok(children) => children,
        Err(invalid) => {
            let reason = invalid.reason();
            refuse(
                resource,
                context,
                status,
                reason,
                invalid.to_string(),
                writes,
            )
            .await?;
            return Ok(Action::await_change());
        }
    };

    // Names taken by objects Jango Fett did not make are left alone. Secrets are not cached:
    // the configuration's is read now.
    let caches = &context.caches;
    let config_name = children.config.name_any();
    let config_secret = Api::<Secret>::namespaced(context.client.clone(), &namespace)
        .get_opt(&config_name)
        .await
        .map_err(|source| {
            secret_error(&namespace, source, |source| Error::Read {
                kind: "Secret".to_owned(),
                name: config_name.clone(),
                source,
            })
        })?;
    let config_secrets = secrets::snapshot(config_secret, ());
    let conflicts = futures::join!(
        taken(context, &config_secrets, &children.config, resource),
        taken(context, &caches.services, &children.service, resource),
        taken(
            context,
            &caches.stateful_sets,
            &children.stateful_set,
            resource
        ),
    );
    let conflicts = [conflicts.0?, conflicts.1?, conflicts.2?];
    if let Some((reason, message)) = conflicts.into_iter().flatten().next() {
        refuse(resource, context, status, reason, message, writes).await?;
        return Ok(Action::requeue(CONFLICT_REQUEUE));
    }

    // Apply.
    let desired_hash = applied_hash(&children.stateful_set);
    // A new pod template rolls the pod; replicas alone (sleep and wake) do not.
    let template_changed = current.as_ref().is_some_and(|current| {
        let template = |stateful_set: &StatefulSet| {
            serde_json::to_value(stateful_set.spec.as_ref().map(|spec| &spec.template))
                .unwrap_or_default()
        };
        !is_subset(&template(&children.stateful_set), &template(current))
    });
    let (config, service, stateful_set) = futures::join!(
        apply_child(context, &config_secrets, children.config),
        apply_child(context, &caches.services, children.service),
        apply_child(context, &caches.stateful_sets, children.stateful_set),
    );
    let (config, service, stateful_set) = (config?, service?, stateful_set?);
    *writes += u64::from(config) + u64::from(service) + u64::from(stateful_set);
    let up_to_date = current.as_ref().is_some_and(|current| {
        current.annotations().get(APPLIED_HASH_ANNOTATION) == Some(&desired_hash)
    });
    if stateful_set && current.is_none() {
        let note = format!("Created StatefulSet {name} and Service {name}");
        publish(context, resource, EventType::Normal, "Created", note).await;
    } else if stateful_set && !up_to_date && template_changed {
        let note = format!("Rolling out the new spec to StatefulSet {name}: its pod restarts");
        publish(context, resource, EventType::Normal, "Updated", note).await;
    }

    // Status.
    let pod = caches
        .pods
        .get(&ObjectRef::new(&format!("{name}-0")).within(&namespace))
        .and_then(|pod| pod.object());
    let readiness = build::readiness(resource, current.as_ref(), pod.as_ref(), up_to_date);
    let was_ready = resource
        .status
        .as_ref()
        .is_some_and(|status| conditions::is_ready(&status.conditions, resource.meta().generation));
    if readiness.ready && !was_ready {
        let host = status.host.clone().unwrap_or_default();
        publish(
            context,
            resource,
            EventType::Normal,
            "Ready",
            format!("Ready at {host}:{}", naming::REDIS_PORT),
        )
        .await;
    }
    conditions::set(
        &mut status.conditions,
        conditions::condition(
            READY,
            readiness.ready,
            readiness.reason,
            readiness.message,
            resource.meta().generation,
        ),
    );
    write_status(resource, context, status, writes).await?;
    Ok(Action::requeue(secrets::RESYNC))
}

/// `error` on a Secret in `namespace`: refused to the operator, or `otherwise`.
fn secret_error(
    namespace: &str,
    error: kube::Error,
    otherwise: impl FnOnce(kube::Error) -> Error,
) -> Error {
    if secrets::is_forbidden(&error) {
        Error::SecretForbidden {
            namespace: namespace.to_owned(),
        }
    } else {
        otherwise(error)
    }
}

/// The hash [`apply`] stamps on `object`.
fn applied_hash<K: Resource + Serialize + Clone>(object: &K) -> String {
    stamp(object.clone())
        .annotations()
        .get(APPLIED_HASH_ANNOTATION)
        .cloned()
        .unwrap_or_default()
}

/// The credentials Secret's password, creating the Secret (with a new password) if there is
/// none, or `Err(message)` if a Secret of that name is someone else's.
async fn ensure_secret(
    resource: &Redis,
    context: &Context,
    writes: &mut u64,
) -> Result<Result<String, String>, Error> {
    let namespace = resource.namespace().unwrap_or_default();
    let name = naming::redis(&resource.name_any());
    let (ensured, wrote) = secrets::ensure(
        &context.client,
        &namespace,
        &name,
        FIELD_MANAGER,
        |existing| build::our_password(existing, resource),
        |password| build::credentials(resource, password).map_err(|invalid| invalid.to_string()),
    )
    .await
    .map_err(|source| {
        secret_error(&namespace, source, |source| Error::Secret {
            name: name.clone(),
            source,
        })
    })?;
    *writes += u64::from(wrote);
    match ensured {
        secrets::Ensured::Password { password, created } => {
            if created {
                publish(
                    context,
                    resource,
                    EventType::Normal,
                    "CreatedSecret",
                    format!("Created Secret {name} with a new password"),
                )
                .await;
            }
            Ok(Ok(password))
        }
        secrets::Ensured::Refused(message) => Ok(Err(message)),
    }
}

/// The reason and message of a refusal if `desired`'s name is taken by an object that Jango
/// Fett did not make for `resource`.
async fn taken<K>(
    context: &Context,
    store: &Store<Packed<K>>,
    desired: &K,
    resource: &Redis,
) -> Result<Option<(&'static str, String)>, Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let name = desired.name_any();
    let namespace = desired.namespace().unwrap_or_default();
    let existing = match store.get(&ObjectRef::new(&name).within(&namespace)) {
        Some(existing) => existing.object(),
        // Only labelled objects are cached; an unlabelled one of that name must be looked up.
        None => Api::<K>::namespaced(context.client.clone(), &namespace)
            .get_opt(&name)
            .await
            .map_err(|source| Error::Read {
                kind: K::kind(&()).into_owned(),
                name: name.clone(),
                source,
            })?,
    };
    let kind = K::kind(&());
    Ok(existing
        .filter(|existing| !build::is_ours(existing.meta(), resource))
        .map(|_| {
            let reason = match kind.as_ref() {
                "Secret" => "SecretConflict",
                "Service" => "ServiceConflict",
                _ => "StatefulSetConflict",
            };
            (
                reason,
                format!(
                    "a {kind} {name} already exists and was not made for this Redis; it is left \
                     untouched: delete it, or give the Redis another name"
                ),
            )
        }))
}

async fn apply_child<K>(
    context: &Context,
    store: &Store<Packed<K>>,
    desired: K,
) -> Result<bool, Error>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let name = desired.name_any();
    apply(&context.client, store, FIELD_MANAGER, desired)
        .await
        .map_err(|source| Error::Apply {
            kind: K::kind(&()).into_owned(),
            name,
            source,
        })
}

/// Ready=False for a reason only a change to the resource (or to the object in the way) can
/// lift, with a Warning Event when the reason is new.
async fn refuse(
    resource: &Redis,
    context: &Context,
    mut status: RedisStatus,
    reason: &str,
    message: String,
    writes: &mut u64,
) -> Result<(), Error> {
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
    write_status(resource, context, status, writes).await
}

/// Writes the status if it differs from the current one.
async fn write_status(
    resource: &Redis,
    context: &Context,
    status: RedisStatus,
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

/// Records an Event on the Redis; a failure to do so is logged, not fatal.
async fn publish(
    context: &Context,
    resource: &Redis,
    type_: EventType,
    reason: &str,
    note: String,
) {
    super::publish(&context.recorder, resource, type_, reason, note).await;
}
