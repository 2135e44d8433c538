//! # The App controller
//!
//! For each App, a pipeline: **find** its environment (from its namespace) and Blueprint →
//! **render** ([`render::render`], pure: variables, namespace, labels, owner, images,
//! replicas, the configuration hash) → **apply** every object, the PostgreSQL and Redis
//! resources and the Ingress (server-side apply, skipped when nothing changed) → **prune**
//! what the Blueprint no longer has → **status**: each object's readiness and, when not
//! ready, the root cause ([`diagnose`]).
//!
//! Children are owned by the App, so deleting it deletes them. An App is rendered again when
//! its Blueprint, its environment (sleep, default App), `env-config` or its dependencies
//! change. Secrets are not watched (see [`super::secrets`]): one changed by hand is seen at
//! the next resync.

pub mod diagnose;
pub mod render;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use jf_api::conditions::{self, READY};
use jf_api::naming::ENVIRONMENT_LABEL;
use jf_api::{App, AppObject, AppStatus, Blueprint, Environment, EnvironmentStatus, PostgreSQL};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams};
use kube::runtime::controller::{self, Action};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt as _};
use serde_json::Value;
use tokio::sync::{broadcast, watch};
use tracing::{debug, instrument, warn};

use self::render::{APP_LABEL, RenderError};
use super::{
    Packed, apply, apply_with, cache, cache_slim, cache_with, describe, managed_selector, secrets,
};
use crate::settings::EnvironmentSettings;
use crate::telemetry::Metrics;

/// The field manager of everything this controller writes.
pub const FIELD_MANAGER: &str = "jango-fett-app";

const KIND: &str = "App";

/// The label naming the Redis resource a Secret belongs to.
const REDIS_LABEL: &str = "jango-fett.dev/redis";

/// How soon an App that is not ready yet is looked at again: its pods' troubles do not
/// always change the objects it watches.
const NOT_READY_REQUEUE: Duration = Duration::from_secs(3);

/// One kind of child known at run time, and its cache.
#[derive(Clone)]
struct Kind {
    resource: ApiResource,
    store: Store<Packed<DynamicObject>>,
}

/// What every reconciliation shares.
pub struct Context {
    pub client: Client,
    /// Grants the operator Secrets in an environment's namespace when they are refused.
    pub access: Arc<secrets::Access>,
    pub settings: EnvironmentSettings,
    pub metrics: Arc<Metrics>,
    recorder: Recorder,
    /// The cached kinds a Blueprint may hold: all but Secrets.
    kinds: Vec<Kind>,
    /// Secrets, which a Blueprint may hold too, and which are read per reconciliation.
    secrets: ApiResource,
    redis: Kind,
    ingresses: Store<Packed<Ingress>>,
    databases: Store<Packed<PostgreSQL>>,
    blueprints: Store<Packed<Blueprint>>,
    environments: Store<Packed<Environment>>,
    namespaces: Store<Packed<Namespace>>,
    caches_ready: watch::Receiver<bool>,
    failures: Mutex<HashMap<String, u32>>,
    reconciled: broadcast::Sender<Reconciled>,
}

/// One finished reconciliation of an App.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciled {
    pub namespace: String,
    pub name: String,
    pub writes: u64,
    pub ok: bool,
}

/// Why a reconciliation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to apply {kind} {name}")]
    Apply {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to delete {kind} {name}, which the Blueprint no longer has")]
    Prune {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to list the Secrets of namespace {namespace}")]
    Secrets {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("{}", super::secrets::forbidden_hint(.namespace))]
    SecretForbidden { namespace: String },
    #[error("failed to read the pods of {workload}")]
    Diagnose {
        workload: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to write the status")]
    Status(#[source] kube::Error),
}

impl Error {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Apply { .. } => "ApplyFailed",
            Self::Prune { .. } => "PruneFailed",
            Self::Secrets { .. } | Self::Diagnose { .. } => "ReadFailed",
            Self::SecretForbidden { .. } => "SecretForbidden",
            Self::Status(_) => "StatusFailed",
        }
    }
}

/// Runs the controller until `shutdown` completes.
pub async fn run(
    client: Client,
    settings: EnvironmentSettings,
    metrics: Arc<Metrics>,
    access: Arc<secrets::Access>,
    reconciled: broadcast::Sender<Reconciled>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let apps: Api<App> = Api::all(client.clone());
    super::check_listable(&apps, "Apps").await?;
    let selector = managed_selector();
    let controller =
        super::controller(apps).with_config(controller::Config::default().concurrency(16));
    let app_store = controller.store();
    let mut controller = controller;

    // Children of every kind a Blueprint may hold, found by their owner, and the ConfigMaps
    // the pods read, found by their labels. Secrets are read per reconciliation instead
    // ([`secrets_of`]): the operator may not watch them across the cluster.
    let mut kinds = Vec::new();
    let mut secrets = None;
    let mut waiting: Vec<Store<Packed<DynamicObject>>> = Vec::new();
    for kind in jf_api::blueprint::ALLOWED_KINDS {
        let Some((api_version, name)) = kind.rsplit_once('/') else {
            continue;
        };
        let Some(resource) = render::api_resource(api_version, name) else {
            continue;
        };
        if resource.kind == "Secret" {
            secrets = Some(resource);
            continue;
        }
        let (store, events) = cache_with(
            Api::<DynamicObject>::all_with(client.clone(), &resource),
            &selector,
            resource.clone(),
        );
        let apps = app_store.clone();
        controller = controller.watches_stream_with(
            events,
            move |object| related_apps(&apps, &object),
            resource.clone(),
        );
        waiting.push(store.clone());
        kinds.push(Kind { resource, store });
    }
    let redis_api_resource = ApiResource::erase::<jf_api::Redis>(&());
    let (redis_store, redis_events) = cache_with(
        Api::<DynamicObject>::all_with(client.clone(), &redis_api_resource),
        &selector,
        redis_api_resource.clone(),
    );
    waiting.push(redis_store.clone());
    let apps = app_store.clone();
    controller = controller.watches_stream_with(
        redis_events,
        move |object| related_apps(&apps, &object),
        redis_api_resource.clone(),
    );

    let (ingresses, ingress_events) = cache(Api::<Ingress>::all(client.clone()), &selector);
    let (databases, database_events) = cache(Api::<PostgreSQL>::all(client.clone()), &selector);
    let (blueprints, blueprint_events) = cache(Api::<Blueprint>::all(client.clone()), "");
    let (environments, environment_events) = cache_slim(
        Api::<Environment>::all(client.clone()),
        "",
        slim_environment,
    );
    let (namespaces, namespace_events) = cache_slim(
        Api::<Namespace>::all(client.clone()),
        &selector,
        slim_namespace,
    );
    let apps = app_store.clone();
    let by_blueprint = move |blueprint: Blueprint| {
        let name = blueprint.name_any();
        apps.state()
            .iter()
            .filter(|app| app.spec.blueprint == name)
            .map(|app| ObjectRef::from_obj(app.as_ref()))
            .collect::<Vec<_>>()
    };
    let apps = app_store.clone();
    let by_environment = move |environment: Environment| {
        let namespace = environment
            .status
            .as_ref()
            .and_then(|status| status.namespace.clone());
        apps.state()
            .iter()
            .filter(|app| app.namespace() == namespace)
            .map(|app| ObjectRef::from_obj(app.as_ref()))
            .collect::<Vec<_>>()
    };
    let (ready, caches_ready) = watch::channel(false);
    {
        let (ingresses, databases, blueprints, environments, namespaces) = (
            ingresses.clone(),
            databases.clone(),
            blueprints.clone(),
            environments.clone(),
            namespaces.clone(),
        );
        tokio::spawn(async move {
            for store in waiting {
                let _ = store.wait_until_ready().await;
            }
            let _ = futures::join!(
                ingresses.wait_until_ready(),
                databases.wait_until_ready(),
                blueprints.wait_until_ready(),
                environments.wait_until_ready(),
                namespaces.wait_until_ready(),
            );
            let _ = ready.send(true);
        });
    }
    let secrets = secrets.ok_or_else(|| anyhow::anyhow!("a Blueprint may hold Secrets"))?;
    let context = Arc::new(Context {
        access,
        recorder: super::recorder(client.clone()),
        client,
        settings,
        metrics,
        kinds,
        secrets,
        redis: Kind {
            resource: redis_api_resource,
            store: redis_store,
        },
        ingresses,
        databases,
        blueprints,
        environments,
        namespaces,
        caches_ready,
        failures: Mutex::default(),
        reconciled,
    });
    let apps = app_store.clone();
    controller
        .owns_stream(ingress_events)
        .owns_stream(database_events)
        .watches_stream(blueprint_events, by_blueprint)
        .watches_stream(environment_events, by_environment)
        .watches_stream(namespace_events, move |namespace: Namespace| {
            apps.state()
                .iter()
                .filter(|app| app.namespace().as_deref() == namespace.metadata.name.as_deref())
                .map(|app| ObjectRef::from_obj(app.as_ref()))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(|result| super::log_outcome("app", result))
        .await;
    Ok(())
}

/// Of an Environment, this controller reads its name, whether it sleeps, its default App and
/// its namespace: its cache keeps nothing else.
fn slim_environment(environment: &mut Environment) {
    let metadata = std::mem::take(&mut environment.metadata);
    environment.metadata.name = metadata.name;
    let spec = std::mem::take(&mut environment.spec);
    environment.spec.default_app = spec.default_app;
    environment.spec.sleeping = spec.sleeping;
    environment.status = environment.status.take().map(|status| EnvironmentStatus {
        namespace: status.namespace,
        ..EnvironmentStatus::default()
    });
}

/// Of a namespace, this controller reads its name and its environment: its cache keeps
/// nothing else.
fn slim_namespace(namespace: &mut Namespace) {
    let metadata = std::mem::take(&mut namespace.metadata);
    namespace.metadata.name = metadata.name;
    namespace.metadata.labels = metadata.labels.map(|labels| {
        labels
            .into_iter()
            .filter(|(key, _)| key == ENVIRONMENT_LABEL)
            .collect()
    });
    namespace.spec = None;
    namespace.status = None;
}

/// The Apps an object concerns: its owner, the App whose dependency Secret it is, or every
/// App of the namespace for the environment's configuration.
fn related_apps(apps: &Store<App>, object: &DynamicObject) -> Vec<ObjectRef<App>> {
    let namespace = object.namespace().unwrap_or_default();
    let mut related: Vec<ObjectRef<App>> = object
        .owner_references()
        .iter()
        .filter(|owner| owner.kind == KIND && owner.api_version == App::api_version(&()))
        .map(|owner| ObjectRef::new(&owner.name).within(&namespace))
        .collect();
    for label in [super::postgresql::secret::POSTGRESQL_LABEL, REDIS_LABEL] {
        if let Some(app) = object.labels().get(label) {
            related.push(ObjectRef::new(app).within(&namespace));
        }
    }
    if object.labels().contains_key(ENVIRONMENT_LABEL) {
        related.extend(
            apps.state()
                .iter()
                .filter(|app| app.namespace().as_deref() == Some(namespace.as_str()))
                .map(|app| ObjectRef::from_obj(app.as_ref())),
        );
    }
    related
}

#[instrument(skip_all, fields(namespace = %app.namespace().unwrap_or_default(), app = %app.name_any()))]
async fn reconcile(app: Arc<App>, context: Arc<Context>) -> Result<Action, Error> {
    let _ = context.caches_ready.clone().wait_for(|ready| *ready).await;
    let _in_flight = context.metrics.in_flight(KIND);
    let started = Instant::now();
    let mut writes = 0;
    let result = reconcile_app(&app, &context, &mut writes).await;
    context.metrics.reconciled(KIND, started.elapsed());
    let key = format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any());
    match &result {
        Ok(_) => {
            if let Ok(mut failures) = context.failures.lock() {
                failures.remove(&key);
            }
        }
        Err(error) => {
            context.metrics.failed(KIND, error.reason());
            if let Error::SecretForbidden { namespace } = error {
                writes += u64::from(context.access.refused(namespace).await);
            }
            // Tell the user why, unless the status itself cannot be written or the error
            // passes on its own.
            if !matches!(error, Error::Status(_)) && quick_retry(&context, &key, error).is_none() {
                let mut status = app.status.clone().unwrap_or_default();
                status.observed_generation = app.meta().generation;
                conditions::set(
                    &mut status.conditions,
                    conditions::condition(
                        READY,
                        false,
                        error.reason(),
                        describe(error),
                        app.meta().generation,
                    ),
                );
                let _ = write_status(&app, &context, status, &mut writes).await;
            }
        }
    }
    context.metrics.wrote(KIND, writes);
    debug!(writes, ok = result.is_ok(), elapsed = ?started.elapsed(), "reconciled");
    let _ = context.reconciled.send(Reconciled {
        namespace: app.namespace().unwrap_or_default(),
        name: app.name_any(),
        writes,
        ok: result.is_ok(),
    });
    result
}

fn error_policy(app: Arc<App>, error: &Error, context: Arc<Context>) -> Action {
    let key = format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any());
    let quick = quick_retry(&context, &key, error);
    let failures = context
        .failures
        .lock()
        .map(|mut failures| {
            let count = failures.entry(key).or_insert(0);
            *count = count.saturating_add(1);
            *count
        })
        .unwrap_or(1);
    if let Some(retry) = quick {
        debug!(app = %app.name_any(), error = %describe(error), "this passes on its own; looking again");
        return Action::requeue(retry);
    }
    let backoff = Duration::from_millis(250)
        .saturating_mul(1 << failures.min(8))
        .min(Duration::from_secs(60));
    warn!(app = %app.name_any(), error = %describe(error), ?backoff, "reconcile failed");
    Action::requeue(backoff)
}

/// How soon to look again, quietly, after an error that passes on its own and has not lasted:
/// the operator's RoleBinding in a new namespace not yet known to the authorizer.
fn quick_retry(context: &Context, key: &str, error: &Error) -> Option<Duration> {
    (matches!(error, Error::SecretForbidden { .. })
        && secrets::still_settling(&context.failures, key))
    .then_some(secrets::FORBIDDEN_RETRY)
}

/// Sets Ready=False with `reason` (an Event when it is new) and writes the status.
async fn refuse(
    app: &App,
    context: &Context,
    mut status: AppStatus,
    reason: &str,
    message: String,
    writes: &mut u64,
) -> Result<Action, Error> {
    let already = conditions::find(&status.conditions, READY)
        .is_some_and(|condition| condition.reason == reason);
    if !already {
        publish(context, app, EventType::Warning, reason, message.clone()).await;
    }
    conditions::set(
        &mut status.conditions,
        conditions::condition(READY, false, reason, message, app.meta().generation),
    );
    write_status(app, context, status, writes).await?;
    Ok(Action::await_change())
}

/// The cached kinds and the Secrets of `namespace` that Jango Fett made, listed now.
async fn kinds_with_secrets(context: &Context, namespace: &str) -> Result<Vec<Kind>, Error> {
    let listed =
        Api::<DynamicObject>::namespaced_with(context.client.clone(), namespace, &context.secrets)
            .list(&ListParams::default().labels(&managed_selector()))
            .await
            .map_err(|source| {
                if secrets::is_forbidden(&source) {
                    Error::SecretForbidden {
                        namespace: namespace.to_owned(),
                    }
                } else {
                    Error::Secrets {
                        namespace: namespace.to_owned(),
                        source,
                    }
                }
            })?;
    let mut kinds = context.kinds.clone();
    kinds.push(Kind {
        resource: context.secrets.clone(),
        store: secrets::snapshot(listed.items, context.secrets.clone()),
    });
    Ok(kinds)
}

/// The hash of everything the pods read that is not in their own spec: `env-config` and the
/// dependencies' Secrets.
fn config_hash(kinds: &[Kind], namespace: &str, app: &str) -> String {
    let mut parts: BTreeMap<String, Value> = BTreeMap::new();
    for kind in kinds {
        if !matches!(kind.resource.kind.as_str(), "ConfigMap" | "Secret") {
            continue;
        }
        for name in [
            jf_api::naming::CONFIG_MAP.to_owned(),
            jf_api::naming::postgresql_secret(app),
            format!("{app}-redis"),
        ] {
            let key = ObjectRef::new_with(&name, kind.resource.clone()).within(namespace);
            if let Some(object) = kind.store.get(&key).and_then(|object| object.object()) {
                parts.insert(
                    format!("{}/{name}", kind.resource.kind),
                    object.data.get("data").cloned().unwrap_or(Value::Null),
                );
            }
        }
    }
    let bytes = serde_json::to_vec(&parts).unwrap_or_default();
    format!("{:016x}", jf_api::naming::stable_hash(&bytes))
}

async fn reconcile_app(app: &App, context: &Context, writes: &mut u64) -> Result<Action, Error> {
    // Being deleted: the garbage collector removes what it owns; applying now would only
    // make it again.
    if app.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = app.name_any();
    let namespace = app.namespace().unwrap_or_default();
    let mut status = AppStatus {
        observed_generation: app.meta().generation,
        ..app.status.clone().unwrap_or_default()
    };

    // Find: the environment of the namespace, and the Blueprint.
    let environment = context
        .namespaces
        .get(&ObjectRef::new(&namespace))
        .and_then(|namespace| namespace.object())
        .and_then(|namespace| namespace.labels().get(ENVIRONMENT_LABEL).cloned())
        .and_then(|environment| context.environments.get(&ObjectRef::new(&environment)))
        .and_then(|environment| environment.object());
    let Some(environment) = environment else {
        let message = format!(
            "namespace {namespace} is not an environment's; deploy with `jf deploy ENV {}`",
            app.spec.blueprint
        );
        return refuse(app, context, status, "NotInEnvironment", message, writes).await;
    };
    let blueprint = context
        .blueprints
        .get(&ObjectRef::new(&app.spec.blueprint))
        .and_then(|blueprint| blueprint.object());
    let Some(blueprint) = blueprint else {
        let message = format!(
            "there is no Blueprint {:?}; run `jf blueprints` to see what can be deployed",
            app.spec.blueprint
        );
        return refuse(app, context, status, "BlueprintNotFound", message, writes).await;
    };

    // Render, with the Secrets of the namespace as they are now.
    let kinds = kinds_with_secrets(context, &namespace).await?;
    let render_environment = render::Environment {
        name: environment.name_any(),
        namespace: namespace.clone(),
        domain: context.settings.base_domain.clone(),
        default_app: environment.spec.default_app.as_deref() == Some(name.as_str()),
        sleeping: environment.spec.sleeping,
        config_hash: config_hash(&kinds, &namespace, &name),
        ingress_class: context.settings.ingress_class.clone(),
    };
    let rendered = match render::render(app, &blueprint, &render_environment) {
        Ok(rendered) => rendered,
        Err(
            error @ (RenderError::KindNotAllowed { .. }
            | RenderError::Unnamed { .. }
            | RenderError::Duplicate { .. }
            | RenderError::UnknownContainer { .. }),
        ) => {
            return refuse(
                app,
                context,
                status,
                error.reason(),
                error.to_string(),
                writes,
            )
            .await;
        }
    };

    // Apply.
    let mut applied: BTreeSet<(String, String)> = BTreeSet::new();
    // Written just now: the cached copies, and their pods, are of the spec before.
    let mut updated: BTreeSet<(String, String)> = BTreeSet::new();
    for (resource, object) in &rendered.objects {
        let kind = kinds
            .iter()
            .find(|kind| kind.resource.kind == resource.kind);
        let Some(kind) = kind else { continue };
        let object_name = object.name_any();
        applied.insert((resource.kind.clone(), object_name.clone()));
        let wrote = apply_with(
            &context.client,
            &kind.store,
            FIELD_MANAGER,
            object.clone(),
            &kind.resource,
        )
        .await
        .map_err(|source| Error::Apply {
            kind: resource.kind.clone(),
            name: object_name.clone(),
            source,
        })?;
        if wrote {
            updated.insert((resource.kind.clone(), object_name));
        }
        *writes += u64::from(wrote);
    }
    if let Some(database) = &rendered.postgresql {
        *writes += u64::from(
            apply(
                &context.client,
                &context.databases,
                FIELD_MANAGER,
                database.clone(),
            )
            .await
            .map_err(|source| Error::Apply {
                kind: "PostgreSQL".to_owned(),
                name: name.clone(),
                source,
            })?,
        );
    }
    if let Some((resource, redis)) = &rendered.redis {
        *writes += u64::from(
            apply_with(
                &context.client,
                &context.redis.store,
                FIELD_MANAGER,
                redis.clone(),
                resource,
            )
            .await
            .map_err(|source| Error::Apply {
                kind: "Redis".to_owned(),
                name: name.clone(),
                source,
            })?,
        );
    }
    if let Some(ingress) = &rendered.ingress {
        *writes += u64::from(
            apply(
                &context.client,
                &context.ingresses,
                FIELD_MANAGER,
                ingress.clone(),
            )
            .await
            .map_err(|source| Error::Apply {
                kind: "Ingress".to_owned(),
                name: name.clone(),
                source,
            })?,
        );
    }

    // Prune what the Blueprint no longer has (and dependencies it no longer asks for).
    *writes += prune(context, &kinds, app, &applied, &rendered).await?;

    // Status: every object's readiness, and the first root cause.
    let mut objects = Vec::new();
    let mut cause: Option<(String, String)> = None;
    for (resource, object) in &rendered.objects {
        let kind = kinds
            .iter()
            .find(|kind| kind.resource.kind == resource.kind);
        let current = kind.and_then(|kind| {
            kind.store
                .get(
                    &ObjectRef::new_with(&object.name_any(), kind.resource.clone())
                        .within(&namespace),
                )
                .and_then(|current| current.object())
        });
        let just_updated = updated.contains(&(resource.kind.clone(), object.name_any()));
        let current = current.filter(|_| !just_updated);
        let (ready, waiting) = match &current {
            Some(current) => readiness(&resource.kind, current),
            None if just_updated => (false, "being updated".to_owned()),
            None => (false, "being created".to_owned()),
        };
        let mut entry = AppObject {
            api_version: resource.api_version.clone(),
            kind: resource.kind.clone(),
            name: object.name_any(),
            ready,
            reason: None,
            message: None,
        };
        if !ready {
            // Until its controller has seen the latest spec, a workload's pods tell of an
            // older one.
            let observed = |current: &DynamicObject| {
                current
                    .data
                    .pointer("/status/observedGeneration")
                    .and_then(Value::as_i64)
                    >= current.metadata.generation
            };
            let diagnosed = match &current {
                Some(current)
                    if matches!(resource.kind.as_str(), "Deployment" | "StatefulSet")
                        && observed(current) =>
                {
                    diagnose_workload(context, &namespace, current).await?
                }
                _ => None,
            };
            let (reason, message) = match diagnosed {
                Some(diagnosed) => (diagnosed.reason.to_owned(), diagnosed.message),
                None => (
                    "Progressing".to_owned(),
                    format!("{} {}: {waiting}", resource.kind, object.name_any()),
                ),
            };
            entry.reason = Some(reason.clone());
            entry.message = Some(message.clone());
            if cause
                .as_ref()
                .is_none_or(|(existing, _)| existing == "Progressing" && reason != "Progressing")
            {
                cause = Some((reason, message));
            }
        }
        objects.push(entry);
    }
    let mut dependency = |kind: &str, ready: Option<(bool, String, String)>| {
        let (is_ready, reason, message) =
            ready.unwrap_or((false, "Pending".to_owned(), "being created".to_owned()));
        objects.push(AppObject {
            api_version: format!("{}/{}", jf_api::GROUP, jf_api::VERSION),
            kind: kind.to_owned(),
            name: name.clone(),
            ready: is_ready,
            reason: (!is_ready).then(|| reason.clone()),
            message: (!is_ready).then(|| message.clone()),
        });
        if !is_ready
            && cause
                .as_ref()
                .is_none_or(|(existing, _)| existing == "Progressing")
        {
            cause = Some((
                "DependencyNotReady".to_owned(),
                format!("{kind} {name} is not ready ({reason}): {message}"),
            ));
        }
    };
    if rendered.postgresql.is_some() {
        let current = context
            .databases
            .get(&ObjectRef::new(&name).within(&namespace))
            .and_then(|database| database.object());
        dependency(
            "PostgreSQL",
            current.map(|database| {
                ready_condition(
                    database
                        .status
                        .as_ref()
                        .map(|status| status.conditions.as_slice()),
                )
            }),
        );
    }
    if rendered.redis.is_some() {
        let current = context
            .redis
            .store
            .get(&ObjectRef::new_with(&name, context.redis.resource.clone()).within(&namespace));
        dependency(
            "Redis",
            current.map(|redis| {
                let conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> =
                    serde_json::from_value(
                        redis
                            .value()
                            .pointer("/status/conditions")
                            .cloned()
                            .unwrap_or(Value::Null),
                    )
                    .unwrap_or_default();
                ready_condition(Some(&conditions))
            }),
        );
    }
    if rendered.ingress.is_some() {
        objects.push(AppObject {
            api_version: "networking.k8s.io/v1".to_owned(),
            kind: "Ingress".to_owned(),
            name: name.clone(),
            ready: true,
            reason: None,
            message: None,
        });
    }
    status.objects = objects;
    status.url = rendered.url.clone();
    status.blueprint_generation = blueprint.meta().generation;
    let action = match cause {
        Some((reason, message)) => {
            conditions::set(
                &mut status.conditions,
                conditions::condition(READY, false, &reason, message, app.meta().generation),
            );
            Action::requeue(NOT_READY_REQUEUE)
        }
        None => {
            let message = match &rendered.url {
                Some(url) => format!("every object is ready; the App answers at {url}"),
                None => "every object is ready".to_owned(),
            };
            conditions::set(
                &mut status.conditions,
                conditions::condition(READY, true, "Ready", message, app.meta().generation),
            );
            // A Secret changed by hand is not watched: it is seen at the next resync.
            Action::requeue(secrets::RESYNC)
        }
    };
    write_status(app, context, status, writes).await?;
    Ok(action)
}

/// The readiness of a dependency from its `Ready` condition: (ready, reason, message).
fn ready_condition(
    conditions: Option<&[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]>,
) -> (bool, String, String) {
    match conditions.and_then(|conditions| conditions::find(conditions, READY)) {
        Some(condition) => (
            condition.status == "True",
            condition.reason.clone(),
            condition.message.clone(),
        ),
        None => (false, "Pending".to_owned(), "not reconciled yet".to_owned()),
    }
}

/// Whether an object of `kind` is ready, and if not, what it is waiting for.
pub fn readiness(kind: &str, object: &DynamicObject) -> (bool, String) {
    let value = |pointer: &str| object.data.pointer(pointer).and_then(Value::as_i64);
    let generation = object.metadata.generation.unwrap_or(0);
    let observed = value("/status/observedGeneration").unwrap_or(0);
    let replicas = value("/spec/replicas").unwrap_or(1);
    match kind {
        "Deployment" => {
            let available = value("/status/availableReplicas").unwrap_or(0);
            let updated = value("/status/updatedReplicas").unwrap_or(0);
            let total = value("/status/replicas").unwrap_or(0);
            let ready = observed >= generation
                && updated == replicas
                && available == replicas
                && total == replicas;
            (ready, format!("{available}/{replicas} available"))
        }
        "StatefulSet" => {
            let ready_replicas = value("/status/readyReplicas").unwrap_or(0);
            let current = object.data.pointer("/status/currentRevision");
            let update = object.data.pointer("/status/updateRevision");
            let ready = observed >= generation
                && ready_replicas == replicas
                && (replicas == 0 || current == update);
            (ready, format!("{ready_replicas}/{replicas} ready"))
        }
        "Job" => {
            let succeeded = value("/status/succeeded").unwrap_or(0);
            (succeeded > 0, "running".to_owned())
        }
        _ => (true, String::new()),
    }
}

/// The root cause for a workload that is not ready, from its pods and ReplicaSets.
async fn diagnose_workload(
    context: &Context,
    namespace: &str,
    workload: &DynamicObject,
) -> Result<Option<diagnose::Cause>, Error> {
    let labels: BTreeMap<String, String> = serde_json::from_value(
        workload
            .data
            .pointer("/spec/selector/matchLabels")
            .cloned()
            .unwrap_or(Value::Null),
    )
    .unwrap_or_default();
    if labels.is_empty() {
        return Ok(None);
    }
    let selector = labels
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",");
    let kind = workload
        .types
        .as_ref()
        .map(|types| types.kind.clone())
        .unwrap_or_default();
    let description = format!("{kind} {}", workload.name_any());
    let params = ListParams::default().labels(&selector);
    let read = |source| Error::Diagnose {
        workload: description.clone(),
        source,
    };
    let pods = Api::<Pod>::namespaced(context.client.clone(), namespace)
        .list(&params)
        .await
        .map_err(read)?;
    let (pods, replica_sets) = if kind == "Deployment" {
        let replica_sets = Api::<ReplicaSet>::namespaced(context.client.clone(), namespace)
            .list(&params)
            .await
            .map_err(read)?
            .items;
        diagnose::latest_revision(pods.items, replica_sets)
    } else {
        (pods.items, Vec::new())
    };
    Ok(diagnose::diagnose(&description, &pods, &replica_sets))
}

/// Deletes our objects of the App that the render no longer has. Returns the deletions.
async fn prune(
    context: &Context,
    kinds: &[Kind],
    app: &App,
    applied: &BTreeSet<(String, String)>,
    rendered: &render::Rendered,
) -> Result<u64, Error> {
    let namespace = app.namespace().unwrap_or_default();
    let name = app.name_any();
    let mut deleted = 0;
    let mine = |object: &DynamicObject| {
        object.namespace().as_deref() == Some(namespace.as_str())
            && object.labels().get(APP_LABEL) == Some(&name)
            && object
                .owner_references()
                .iter()
                .any(|owner| Some(&owner.uid) == app.metadata.uid.as_ref())
    };
    for kind in kinds {
        // Only this namespace's objects are unpacked.
        for object in kind
            .store
            .state()
            .iter()
            .filter(|object| object.namespace() == Some(namespace.as_str()))
            .filter_map(|object| object.object())
        {
            if mine(&object) && !applied.contains(&(kind.resource.kind.clone(), object.name_any()))
            {
                deleted += delete(context, &kind.resource, &namespace, &object.name_any()).await?;
            }
        }
    }
    if rendered.redis.is_none() {
        let key = ObjectRef::new_with(&name, context.redis.resource.clone()).within(&namespace);
        if context
            .redis
            .store
            .get(&key)
            .and_then(|object| object.object())
            .is_some_and(|object| mine(&object))
        {
            deleted += delete(context, &context.redis.resource, &namespace, &name).await?;
        }
    }
    let owned_by_app =
        |owners: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference]| {
            owners
                .iter()
                .any(|owner| Some(&owner.uid) == app.metadata.uid.as_ref())
        };
    if rendered.postgresql.is_none()
        && context
            .databases
            .get(&ObjectRef::new(&name).within(&namespace))
            .and_then(|database| database.object())
            .is_some_and(|database| owned_by_app(database.owner_references()))
    {
        deleted += delete(
            context,
            &ApiResource::erase::<PostgreSQL>(&()),
            &namespace,
            &name,
        )
        .await?;
    }
    if rendered.ingress.is_none()
        && context
            .ingresses
            .get(&ObjectRef::new(&name).within(&namespace))
            .and_then(|ingress| ingress.object())
            .is_some_and(|ingress| owned_by_app(ingress.owner_references()))
    {
        deleted += delete(
            context,
            &ApiResource::erase::<Ingress>(&()),
            &namespace,
            &name,
        )
        .await?;
    }
    Ok(deleted)
}

async fn delete(
    context: &Context,
    resource: &ApiResource,
    namespace: &str,
    name: &str,
) -> Result<u64, Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(context.client.clone(), namespace, resource);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(1),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(0),
        Err(source) => Err(Error::Prune {
            kind: resource.kind.clone(),
            name: name.to_owned(),
            source,
        }),
    }
}

async fn write_status(
    app: &App,
    context: &Context,
    status: AppStatus,
    writes: &mut u64,
) -> Result<(), Error> {
    *writes += u64::from(
        super::apply_status(
            &context.client,
            app,
            app.status.as_ref(),
            &status,
            FIELD_MANAGER,
        )
        .await
        .map_err(Error::Status)?,
    );
    Ok(())
}

async fn publish(context: &Context, app: &App, type_: EventType, reason: &str, note: String) {
    super::publish(&context.recorder, app, type_, reason, note).await;
}
