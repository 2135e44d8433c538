//! # The Environment controller
//!
//! For each Environment, a pipeline: **validate** (the role is on the operator's allowlist,
//! the namespace is free or already ours) → **build** ([`build::children`], pure: the namespace,
//! RBAC, `env-config`, network policy and quota it should have) → **apply** (server-side apply,
//! skipped for every object whose cached copy already matches) → **sleep/wake** the workloads →
//! **status** (written only when it changed).
//!
//! A finalizer keeps a deleted Environment, `Terminating`, until its namespace is gone. Past
//! `spec.expiresAt` the Environment is deleted, with an Event an hour before and one at the
//! time. Children are found by the label `jango-fett.dev/environment`, so any change to one,
//! including by hand, brings the Environment back here and puts it right.

pub mod build;
pub mod sleep;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use jf_api::conditions::{self, READY};
use jf_api::naming::{self, ENVIRONMENT_FINALIZER, ENVIRONMENT_LABEL};
use jf_api::{Environment, EnvironmentPhase, EnvironmentStatus};
use k8s_openapi::api::core::v1::{ConfigMap, LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{self, Action};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt as _};
use serde_json::json;
use tokio::sync::{broadcast, watch};
use tracing::{debug, info, instrument, warn};

use super::written::Written;
use super::{Packed, apply, cache, describe, managed_selector};
use crate::settings::EnvironmentSettings;
use crate::telemetry::Metrics;

/// The field manager of everything this controller writes.
pub const FIELD_MANAGER: &str = "jango-fett-environment";

const KIND: &str = "Environment";

/// How long before expiry the warning Event is recorded.
const EXPIRY_WARNING: SignedDuration = SignedDuration::from_hours(1);

/// Caches of every kind of child, filled by the controller's watches.
#[derive(Clone)]
pub struct Caches {
    pub namespaces: Store<Packed<Namespace>>,
    pub role_bindings: Store<Packed<RoleBinding>>,
    pub config_maps: Store<Packed<ConfigMap>>,
    pub network_policies: Store<Packed<NetworkPolicy>>,
    pub resource_quotas: Store<Packed<ResourceQuota>>,
    pub limit_ranges: Store<Packed<LimitRange>>,
    pub cluster_roles: Store<Packed<ClusterRole>>,
    pub cluster_role_bindings: Store<Packed<ClusterRoleBinding>>,
}

impl Caches {
    /// Waits until every cache has its first full list, so nothing is written from a
    /// partial view.
    async fn ready(&self) {
        let _ = futures::join!(
            self.namespaces.wait_until_ready(),
            self.role_bindings.wait_until_ready(),
            self.config_maps.wait_until_ready(),
            self.network_policies.wait_until_ready(),
            self.resource_quotas.wait_until_ready(),
            self.limit_ranges.wait_until_ready(),
            self.cluster_roles.wait_until_ready(),
            self.cluster_role_bindings.wait_until_ready(),
        );
    }
}

/// What every reconciliation shares.
pub struct Context {
    pub client: Client,
    pub settings: EnvironmentSettings,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub caches: Caches,
    /// Consecutive failures per Environment, for its backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Environments this process put to sleep and has not woken yet. The status says so
    /// too, but the cached copy may not have the status write yet when a wake follows at once.
    asleep: Mutex<HashSet<String>>,
    /// True once every cache has its first full list.
    caches_ready: watch::Receiver<bool>,
    /// Statuses written that the cache may not show yet.
    written: Written,
    /// Told about every reconciliation (tests and benchmarks listen; nobody has to).
    reconciled: broadcast::Sender<Reconciled>,
}

/// One finished reconciliation of an Environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciled {
    pub environment: String,
    /// Writes to the Kubernetes API it made (applies, deletes, patches, status, events excluded).
    pub writes: u64,
    /// Whether it succeeded.
    pub ok: bool,
}

/// Why a reconciliation failed. Each maps to a `reason` for the condition and the metrics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to apply {kind} {name}")]
    Apply {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to delete {kind} {name}")]
    Delete {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to read namespace {name}")]
    ReadNamespace {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to update the finalizers")]
    Finalizer(#[source] kube::Error),
    #[error("failed to delete the expired environment")]
    Expire(#[source] kube::Error),
    #[error("failed to scale the workloads in namespace {namespace}")]
    Scale {
        namespace: String,
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
            Self::Apply { .. } => "ApplyFailed",
            Self::Delete { .. } => "DeleteFailed",
            Self::ReadNamespace { .. } => "ReadFailed",
            Self::Finalizer(_) => "FinalizerFailed",
            Self::Expire(_) => "ExpireFailed",
            Self::Scale { .. } => "ScaleFailed",
            Self::Status(_) => "StatusFailed",
        }
    }
}

/// Runs the controller until `shutdown` completes.
pub async fn run(
    client: Client,
    settings: EnvironmentSettings,
    metrics: Arc<Metrics>,
    reconciled: broadcast::Sender<Reconciled>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let environments: Api<Environment> = Api::all(client.clone());
    super::check_listable(&environments, "Environments").await?;

    let selector = managed_selector();
    let (namespaces, namespace_events) = cache(Api::<Namespace>::all(client.clone()), &selector);
    let (role_bindings, role_binding_events) =
        cache(Api::<RoleBinding>::all(client.clone()), &selector);
    let (config_maps, config_map_events) = cache(Api::<ConfigMap>::all(client.clone()), &selector);
    let (network_policies, network_policy_events) =
        cache(Api::<NetworkPolicy>::all(client.clone()), &selector);
    let (resource_quotas, resource_quota_events) =
        cache(Api::<ResourceQuota>::all(client.clone()), &selector);
    let (limit_ranges, limit_range_events) =
        cache(Api::<LimitRange>::all(client.clone()), &selector);
    let (cluster_roles, cluster_role_events) =
        cache(Api::<ClusterRole>::all(client.clone()), &selector);
    let (cluster_role_bindings, cluster_role_binding_events) =
        cache(Api::<ClusterRoleBinding>::all(client.clone()), &selector);

    let caches = Caches {
        namespaces,
        role_bindings,
        config_maps,
        network_policies,
        resource_quotas,
        limit_ranges,
        cluster_roles,
        cluster_role_bindings,
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
        recorder: super::recorder(client.clone()),
        client,
        settings,
        metrics,
        caches,
        caches_ready,
        failures: Mutex::default(),
        asleep: Mutex::default(),
        written: Written::default(),
        reconciled,
    });

    // Children are mapped to their Environment by label: owner references cannot name a
    // cluster-scoped owner from inside a namespace in kube-runtime's mapping.
    super::controller(environments)
        .with_config(controller::Config::default().concurrency(64))
        .watches_stream(namespace_events, owner)
        .watches_stream(role_binding_events, owner)
        .watches_stream(config_map_events, owner)
        .watches_stream(network_policy_events, owner)
        .watches_stream(resource_quota_events, owner)
        .watches_stream(limit_range_events, owner)
        .watches_stream(cluster_role_events, owner)
        .watches_stream(cluster_role_binding_events, owner)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(|result| super::log_outcome("environment", result))
        .await;
    Ok(())
}

fn owner<K: Resource>(child: K) -> Option<ObjectRef<Environment>> {
    child
        .labels()
        .get(ENVIRONMENT_LABEL)
        .map(|name| ObjectRef::new(name))
}

#[instrument(skip_all, fields(environment = %environment.name_any()))]
async fn reconcile(environment: Arc<Environment>, context: Arc<Context>) -> Result<Action, Error> {
    debug!("reconciling");
    let _ = context.caches_ready.clone().wait_for(|ready| *ready).await;
    let _in_flight = context.metrics.in_flight(KIND);
    let started = Instant::now();
    let mut writes = 0;
    let result = if environment.meta().deletion_timestamp.is_some() {
        cleanup(&environment, &context, &mut writes).await
    } else {
        apply_environment(&environment, &context, &mut writes).await
    };
    context.metrics.reconciled(KIND, started.elapsed());
    let name = environment.name_any();
    match &result {
        Ok(_) => {
            if let Ok(mut failures) = context.failures.lock() {
                failures.remove(&name);
            }
        }
        Err(error) => {
            context.metrics.failed(KIND, error.reason());
            // Tell the user why, unless the status itself cannot be written.
            if !matches!(error, Error::Status(_)) {
                let mut status = environment.status.clone().unwrap_or_default();
                conditions::set(
                    &mut status.conditions,
                    conditions::condition(
                        READY,
                        false,
                        error.reason(),
                        describe(error),
                        environment.meta().generation,
                    ),
                );
                let _ = write_status(&environment, &context, status, &mut writes).await;
            }
        }
    }
    context.metrics.wrote(KIND, writes);
    debug!(writes, ok = result.is_ok(), elapsed = ?started.elapsed(), "reconciled");
    let _ = context.reconciled.send(Reconciled {
        environment: name,
        writes,
        ok: result.is_ok(),
    });
    result
}

fn error_policy(environment: Arc<Environment>, error: &Error, context: Arc<Context>) -> Action {
    let failures = context
        .failures
        .lock()
        .map(|mut failures| {
            let count = failures.entry(environment.name_any()).or_insert(0);
            *count = count.saturating_add(1);
            *count
        })
        .unwrap_or(1);
    let backoff = Duration::from_millis(250)
        .saturating_mul(1 << failures.min(10))
        .min(Duration::from_secs(300));
    warn!(environment = %environment.name_any(), error = %describe(error), ?backoff, "reconcile failed");
    Action::requeue(backoff)
}

/// The status as it should be now, starting from the current one.
fn base_status(environment: &Environment, settings: &EnvironmentSettings) -> EnvironmentStatus {
    let current = environment.status.clone().unwrap_or_default();
    EnvironmentStatus {
        namespace: Some(naming::namespace(
            &settings.namespace_prefix,
            &environment.name_any(),
        )),
        url: Some(build::url(environment, settings)),
        expires_at: environment.spec.expires_at.clone(),
        observed_generation: environment.meta().generation,
        ..current
    }
}

/// Sets the phase and the Ready condition.
fn conclude(
    status: &mut EnvironmentStatus,
    environment: &Environment,
    phase: EnvironmentPhase,
    reason: &str,
    message: String,
) {
    let ready = matches!(phase, EnvironmentPhase::Ready | EnvironmentPhase::Sleeping);
    status.phase = Some(phase);
    conditions::set(
        &mut status.conditions,
        conditions::condition(READY, ready, reason, message, environment.meta().generation),
    );
}

async fn apply_environment(
    environment: &Environment,
    context: &Context,
    writes: &mut u64,
) -> Result<Action, Error> {
    let name = environment.name_any();
    let settings = &context.settings;

    let now = Timestamp::now();
    let expires_at = environment.spec.expires_at.as_ref().map(|time| time.0);
    if let Some(expires_at) = expires_at
        && expires_at <= now
    {
        info!(%expires_at, "the environment expired; deleting it");
        publish(
            context,
            environment,
            EventType::Normal,
            "Expired",
            format!("The environment expired at {expires_at} and is being deleted"),
        )
        .await;
        Api::<Environment>::all(context.client.clone())
            .delete(&name, &DeleteParams::default())
            .await
            .map_err(Error::Expire)?;
        *writes += 1;
        return Ok(Action::await_change());
    }

    let mut status = base_status(environment, settings);

    // Validate and build.
    let children = match build::children(environment, settings) {
        Ok(children) => children,
        Err(invalid) => {
            let message = match invalid {
                build::Invalid::RoleNotAllowed { .. } => {
                    format!("{invalid}; set spec.role to one of the allowed roles")
                }
                _ => invalid.to_string(),
            };
            fail(
                environment,
                context,
                status,
                invalid.reason(),
                message,
                writes,
            )
            .await?;
            return Ok(Action::await_change());
        }
    };
    let namespace = children.namespace.name_any();
    let existing = match context.caches.namespaces.get(&ObjectRef::new(&namespace)) {
        Some(existing) => existing.object(),
        // Only our namespaces are cached; a foreign one must be looked up.
        None => Api::<Namespace>::all(context.client.clone())
            .get_opt(&namespace)
            .await
            .map_err(|source| Error::ReadNamespace {
                name: namespace.clone(),
                source,
            })?,
    };
    if let Some(existing) = &existing {
        let uid = environment.uid().unwrap_or_default();
        if !existing
            .owner_references()
            .iter()
            .any(|owner| owner.uid == uid)
        {
            let message = format!(
                "namespace {namespace} already exists and does not belong to this environment; \
                 it is left untouched: delete the environment and choose another name"
            );
            fail(
                environment,
                context,
                status,
                "NamespaceConflict",
                message,
                writes,
            )
            .await?;
            return Ok(Action::await_change());
        }
        if existing.meta().deletion_timestamp.is_some() {
            // Deleted by hand: it is made again once it is gone (its deletion is watched).
            let message =
                format!("namespace {namespace} is being deleted; it will be created again");
            conclude(
                &mut status,
                environment,
                EnvironmentPhase::Pending,
                "NamespaceTerminating",
                message,
            );
            write_status(environment, context, status, writes).await?;
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
    }

    // Apply: the namespace first, with the finalizer that keeps the Environment until the
    // namespace is gone (nothing needs it before the namespace exists), then everything in
    // it and the cluster-scoped RBAC at once (the ClusterRole before its binding, which RBAC
    // checks against it).
    let finalizer = async {
        if environment
            .finalizers()
            .iter()
            .any(|finalizer| finalizer == ENVIRONMENT_FINALIZER)
        {
            return Ok(None);
        }
        let mut finalizers = environment.finalizers().to_vec();
        finalizers.push(ENVIRONMENT_FINALIZER.to_owned());
        let patched = set_finalizers(environment, context, finalizers).await?;
        Ok(Some(patched))
    };
    let (patched, namespace_written) = futures::try_join!(
        finalizer,
        apply_child(context, &context.caches.namespaces, children.namespace)
    )?;
    *writes += u64::from(patched.is_some()) + u64::from(namespace_written);
    // The status is written over the Environment with its finalizer.
    let finalized;
    let (environment, earlier) = match patched {
        Some(patched) => {
            finalized = patched;
            (&finalized, environment.resource_version())
        }
        None => (environment, None),
    };
    let caches = &context.caches;
    let own_rbac = async {
        let role = apply_child(context, &caches.cluster_roles, children.cluster_role).await?;
        let binding = apply_child(
            context,
            &caches.cluster_role_bindings,
            children.cluster_role_binding,
        )
        .await?;
        Ok::<bool, Error>(role || binding)
    };
    let results = futures::join!(
        own_rbac,
        apply_role_binding(context, children.role_binding),
        apply_child(context, &caches.config_maps, children.config_map),
        apply_child(context, &caches.network_policies, children.network_policy),
        apply_or_remove(
            context,
            &caches.resource_quotas,
            &namespace,
            naming::RESOURCE_QUOTA,
            children.resource_quota
        ),
        apply_or_remove(
            context,
            &caches.limit_ranges,
            &namespace,
            naming::LIMIT_RANGE,
            children.limit_range
        ),
    );
    for result in [
        results.0, results.1, results.2, results.3, results.4, results.5,
    ] {
        *writes += u64::from(result?);
    }

    // Sleep or wake; a namespace that never slept has nothing to wake.
    let sleeping = environment.spec.sleeping;
    let was_sleeping = environment
        .status
        .as_ref()
        .is_some_and(|status| status.phase == Some(EnvironmentPhase::Sleeping))
        || context
            .asleep
            .lock()
            .is_ok_and(|asleep| asleep.contains(&name));
    if sleeping || was_sleeping {
        let scaled = sleep::sync(&context.client, &namespace, sleeping)
            .await
            .map_err(|source| Error::Scale {
                namespace: namespace.clone(),
                source,
            })?;
        *writes += scaled.changed;
        if let Ok(mut asleep) = context.asleep.lock() {
            if sleeping {
                asleep.insert(name.clone());
            } else {
                asleep.remove(&name);
            }
        }
    }
    let url = build::url(environment, settings);
    if sleeping {
        conclude(
            &mut status,
            environment,
            EnvironmentPhase::Sleeping,
            "Sleeping",
            format!(
                "the workloads in namespace {namespace} are scaled to zero; run `jf wake {name}` to restore them"
            ),
        );
    } else {
        conclude(
            &mut status,
            environment,
            EnvironmentPhase::Ready,
            "Ready",
            format!("namespace {namespace} is ready; the environment's URL is {url}"),
        );
    }

    // Expiry: a warning an hour before, once per expiry time, then deletion on time.
    let mut next = None;
    if let Some(expires_at) = expires_at {
        let warn_at = expires_at - EXPIRY_WARNING;
        let warned = status.expiry_warning_for.as_ref().map(|time| time.0) == Some(expires_at);
        if now >= warn_at && !warned {
            let minutes = expires_at.duration_since(now).as_secs() / 60;
            publish(
                context,
                environment,
                EventType::Warning,
                "ExpiringSoon",
                format!("The environment expires at {expires_at}, in {minutes} minutes; run `jf extend {name} 24h` to keep it"),
            )
            .await;
            status.expiry_warning_for = Some(Time(expires_at));
        }
        let at = if now >= warn_at { expires_at } else { warn_at };
        next = Some(
            Duration::try_from(at.duration_since(now))
                .unwrap_or_default()
                .max(Duration::from_secs(1)),
        );
    }
    write_status_over(environment, context, status, writes, earlier).await?;
    Ok(next.map_or_else(Action::await_change, Action::requeue))
}

/// Marks the Environment Failed with `reason`, recording a Warning Event when it newly fails
/// for this reason.
async fn fail(
    environment: &Environment,
    context: &Context,
    mut status: EnvironmentStatus,
    reason: &str,
    message: String,
    writes: &mut u64,
) -> Result<(), Error> {
    let already = environment
        .status
        .as_ref()
        .and_then(|status| conditions::find(&status.conditions, READY))
        .is_some_and(|condition| condition.reason == reason);
    if !already {
        publish(
            context,
            environment,
            EventType::Warning,
            reason,
            message.clone(),
        )
        .await;
    }
    conclude(
        &mut status,
        environment,
        EnvironmentPhase::Failed,
        reason,
        message,
    );
    write_status(environment, context, status, writes).await
}

/// Deletes the namespace and keeps the Environment until it is gone.
async fn cleanup(
    environment: &Environment,
    context: &Context,
    writes: &mut u64,
) -> Result<Action, Error> {
    if !environment
        .finalizers()
        .iter()
        .any(|finalizer| finalizer == ENVIRONMENT_FINALIZER)
    {
        return Ok(Action::await_change());
    }
    let namespaces: Api<Namespace> = Api::all(context.client.clone());
    let name = naming::namespace(&context.settings.namespace_prefix, &environment.name_any());
    let namespace = namespaces
        .get_opt(&name)
        .await
        .map_err(|source| Error::ReadNamespace {
            name: name.clone(),
            source,
        })?;
    let uid = environment.uid().unwrap_or_default();
    match namespace {
        Some(namespace)
            if namespace
                .owner_references()
                .iter()
                .any(|owner| owner.uid == uid) =>
        {
            if namespace.meta().deletion_timestamp.is_none() {
                namespaces
                    .delete(&name, &DeleteParams::default())
                    .await
                    .map_err(|source| Error::Delete {
                        kind: "Namespace".to_owned(),
                        name: name.clone(),
                        source,
                    })?;
                *writes += 1;
            }
            let mut status = base_status(environment, &context.settings);
            conclude(
                &mut status,
                environment,
                EnvironmentPhase::Terminating,
                "Terminating",
                format!("deleting namespace {name} and everything in it"),
            );
            write_status(environment, context, status, writes).await?;
            // The namespace's deletion is watched; this is a safety net.
            Ok(Action::requeue(Duration::from_secs(10)))
        }
        // Gone, or never ours: nothing of this environment is left.
        _ => {
            // The RBAC naming this Environment goes before the name is free again, rather
            // than when the garbage collector gets to it, so that nobody keeps rights on a
            // name that may be taken again. Until then its users may follow the deletion.
            let role = naming::environment_cluster_role(&environment.name_any());
            *writes += u64::from(
                remove_cluster_scoped(context, &context.caches.cluster_role_bindings, &role)
                    .await?,
            );
            *writes += u64::from(
                remove_cluster_scoped(context, &context.caches.cluster_roles, &role).await?,
            );
            let finalizers = environment
                .finalizers()
                .iter()
                .filter(|finalizer| *finalizer != ENVIRONMENT_FINALIZER)
                .cloned()
                .collect();
            match set_finalizers(environment, context, finalizers).await {
                // Let go already, by an earlier reconciliation the cache had not caught up with.
                Err(Error::Finalizer(kube::Error::Api(status))) if status.code == 404 => {}
                result => {
                    result?;
                }
            }
            context.written.forget(&environment.name_any());
            *writes += 1;
            Ok(Action::await_change())
        }
    }
}

/// Replaces the finalizers, failing with a conflict if the Environment changed meanwhile.
async fn set_finalizers(
    environment: &Environment,
    context: &Context,
    finalizers: Vec<String>,
) -> Result<Environment, Error> {
    let patch = json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": environment.resource_version(),
        }
    });
    Api::<Environment>::all(context.client.clone())
        .patch(
            &environment.name_any(),
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PatchParams::default()
            },
            &Patch::Merge(&patch),
        )
        .await
        .map_err(Error::Finalizer)
}

async fn apply_child<K>(
    context: &Context,
    store: &Store<Packed<K>>,
    desired: K,
) -> Result<bool, Error>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
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

/// Applies the users' RoleBinding. Its role cannot change in place (`roleRef` is immutable):
/// when `spec.role` changed, the binding is deleted first and made again.
async fn apply_role_binding(context: &Context, desired: RoleBinding) -> Result<bool, Error> {
    let store = &context.caches.role_bindings;
    let namespace = desired.namespace().unwrap_or_default();
    let name = desired.name_any();
    let current = store
        .get(&ObjectRef::new(&name).within(&namespace))
        .and_then(|current| current.object());
    if let Some(current) = current
        && current.role_ref.name != desired.role_ref.name
    {
        ignore_not_found(
            Api::<RoleBinding>::namespaced(context.client.clone(), &namespace)
                .delete(&name, &DeleteParams::default())
                .await,
        )
        .map_err(|source| Error::Delete {
            kind: "RoleBinding".to_owned(),
            name: name.clone(),
            source,
        })?;
        // The cached copy is the old one: applied without comparing.
        Api::<RoleBinding>::namespaced(context.client.clone(), &namespace)
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&super::stamp(desired)),
            )
            .await
            .map_err(|source| Error::Apply {
                kind: "RoleBinding".to_owned(),
                name,
                source,
            })?;
        return Ok(true);
    }
    apply_child(context, store, desired).await
}

/// Applies `desired`, or deletes our object of that name when nothing is desired.
async fn apply_or_remove<K>(
    context: &Context,
    store: &Store<Packed<K>>,
    namespace: &str,
    name: &str,
    desired: Option<K>,
) -> Result<bool, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    if let Some(desired) = desired {
        return apply_child(context, store, desired).await;
    }
    if store.get(&ObjectRef::new(name).within(namespace)).is_none() {
        return Ok(false);
    }
    ignore_not_found(
        Api::<K>::namespaced(context.client.clone(), namespace)
            .delete(name, &DeleteParams::default())
            .await,
    )
    .map_err(|source| Error::Delete {
        kind: K::kind(&()).into_owned(),
        name: name.to_owned(),
        source,
    })
}

/// Deletes our cluster-scoped object `name` if the cache has it.
async fn remove_cluster_scoped<K>(
    context: &Context,
    store: &Store<Packed<K>>,
    name: &str,
) -> Result<bool, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    if store.get(&ObjectRef::new(name)).is_none() {
        return Ok(false);
    }
    ignore_not_found(
        Api::<K>::all(context.client.clone())
            .delete(name, &DeleteParams::default())
            .await,
    )
    .map_err(|source| Error::Delete {
        kind: K::kind(&()).into_owned(),
        name: name.to_owned(),
        source,
    })
}

/// A deletion's result: whether it deleted, and "already gone" is not an error.
fn ignore_not_found<T>(result: Result<T, kube::Error>) -> Result<bool, kube::Error> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(error) => Err(error),
    }
}

/// Writes the status if it differs from the current one.
async fn write_status(
    environment: &Environment,
    context: &Context,
    status: EnvironmentStatus,
    writes: &mut u64,
) -> Result<(), Error> {
    write_status_over(environment, context, status, writes, None).await
}

/// Writes the status if it differs from the current one and was not written over this very
/// version already; `earlier` is the version this reconciliation read before its own write
/// to the Environment, if it made one.
async fn write_status_over(
    environment: &Environment,
    context: &Context,
    status: EnvironmentStatus,
    writes: &mut u64,
    earlier: Option<String>,
) -> Result<(), Error> {
    let name = environment.name_any();
    let version = environment.resource_version();
    if environment.status.as_ref() != Some(&status)
        && context.written.already(&name, version.as_deref(), &status)
    {
        return Ok(());
    }
    let wrote = super::apply_status(
        &context.client,
        environment,
        environment.status.as_ref(),
        &status,
        FIELD_MANAGER,
    )
    .await
    .map_err(Error::Status)?;
    if wrote {
        context
            .written
            .record(&name, version.into_iter().chain(earlier).collect(), &status);
        *writes += 1;
    }
    Ok(())
}

/// Records an Event on the Environment; a failure to do so is logged, not fatal.
async fn publish(
    context: &Context,
    environment: &Environment,
    type_: EventType,
    reason: &str,
    note: String,
) {
    super::publish(&context.recorder, environment, type_, reason, note).await;
}
