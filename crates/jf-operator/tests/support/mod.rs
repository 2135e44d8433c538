//! The operator's controllers running inside the test process, against the test binary's
//! shared cluster, and helpers to create Environments and wait for them.

#![allow(dead_code)]

use std::collections::BTreeMap;

use anyhow::{Context as _, ensure};
use jf_api::conditions::{self, READY};
use jf_api::{Environment, EnvironmentSpec};
use jf_operator::controllers::environment::{self, Reconciled};
use jf_operator::controllers::redis;
use jf_operator::controllers::{app, postgresql};
use jf_operator::settings::{AdminUrl, EnvironmentSettings, PostgresSettings, RedisSettings};
use jf_operator::telemetry::Metrics;
use jf_testkit::{cluster, eventually};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt as _};
use tokio::sync::{OnceCell, broadcast};

/// The controllers of this test process.
pub struct Operator {
    reconciled: broadcast::Sender<Reconciled>,
    databases: broadcast::Sender<postgresql::Reconciled>,
    redis: broadcast::Sender<redis::Reconciled>,
    apps: broadcast::Sender<app::Reconciled>,
    /// The controllers' log.
    pub log: std::path::PathBuf,
}

impl Operator {
    /// Reconciliations of Environments from now on.
    pub fn reconciled(&self) -> broadcast::Receiver<Reconciled> {
        self.reconciled.subscribe()
    }

    /// Reconciliations of PostgreSQL resources from now on.
    pub fn databases(&self) -> broadcast::Receiver<postgresql::Reconciled> {
        self.databases.subscribe()
    }

    /// Reconciliations of Apps from now on.
    pub fn apps(&self) -> broadcast::Receiver<app::Reconciled> {
        self.apps.subscribe()
    }

    /// Reconciliations of Redis resources from now on.
    pub fn redis(&self) -> broadcast::Receiver<redis::Reconciled> {
        self.redis.subscribe()
    }
}

/// How often the in-process operator checks databases for drift.
pub const DRIFT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

static OPERATOR: OnceCell<Operator> = OnceCell::const_new();

/// Installs the CRDs and starts the controllers once, on a runtime of their own that lives as
/// long as the process (each test has its own runtime).
pub async fn operator() -> &'static Operator {
    OPERATOR
        .get_or_init(|| async {
            let cluster = cluster().await;
            let client = cluster.client().await.expect("an admin client");
            jf_testkit::install_crds(&client)
                .await
                .expect("the CRDs install");
            let config = cluster.config().await.expect("a client configuration");
            let (sender, _) = broadcast::channel(4096);
            let reconciled = sender.clone();
            let (databases, _) = broadcast::channel(4096);
            let databases_sender = databases.clone();
            let (redis_reconciled, _) = broadcast::channel(4096);
            let redis_sender = redis_reconciled.clone();
            let (apps, _) = broadcast::channel(4096);
            let apps_sender = apps.clone();
            let postgres_settings = PostgresSettings {
                admin_url: Some(AdminUrl::new(cluster.postgres_admin_url())),
                drift_interval: DRIFT_INTERVAL,
                ..PostgresSettings::default()
            };
            // The controllers' log, for when a test fails.
            let log =
                std::env::temp_dir().join(format!("jf-operator-test-{}.log", std::process::id()));
            if let Ok(file) = std::fs::File::create(&log) {
                let _ = tracing_subscriber::fmt()
                    .with_env_filter("info,jf_operator=debug,kube_runtime=debug")
                    .with_writer(std::sync::Mutex::new(file))
                    .with_ansi(false)
                    .try_init();
            }
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("a runtime");
                runtime.block_on(async move {
                    let client = Client::try_from(config).expect("a client");
                    let metrics = Metrics::new();
                    let (server, endpoint) =
                        jf_operator::postgres_server(&postgres_settings, &metrics)
                            .expect("a PostgreSQL server");
                    let access = std::sync::Arc::new(
                        jf_operator::controllers::secrets::Access::new(
                            client.clone(),
                            &EnvironmentSettings::default().operator_namespace_role,
                        )
                        .await
                        .expect("the operator's identity"),
                    );
                    let (environments, databases, redis, blueprints, apps) = futures::join!(
                        environment::run(
                            client.clone(),
                            EnvironmentSettings::default(),
                            metrics.clone(),
                            reconciled,
                            std::future::pending(),
                        ),
                        postgresql::run(
                            client.clone(),
                            postgres_settings,
                            (server, endpoint),
                            metrics.clone(),
                            access.clone(),
                            databases_sender,
                            std::future::pending(),
                        ),
                        redis::run(
                            client.clone(),
                            RedisSettings::default(),
                            metrics.clone(),
                            access.clone(),
                            redis_sender,
                            std::future::pending(),
                        ),
                        jf_operator::controllers::blueprint::run(
                            client.clone(),
                            metrics.clone(),
                            std::future::pending(),
                        ),
                        app::run(
                            client,
                            EnvironmentSettings::default(),
                            metrics,
                            access.clone(),
                            apps_sender,
                            std::future::pending(),
                        ),
                    );
                    environments.expect("the environment controller runs");
                    databases.expect("the PostgreSQL controller runs");
                    redis.expect("the Redis controller runs");
                    blueprints.expect("the Blueprint controller runs");
                    apps.expect("the App controller runs");
                });
            });
            Operator {
                reconciled: sender,
                databases,
                redis: redis_reconciled,
                apps,
                log,
            }
        })
        .await
}

/// An admin client, with the operator running.
pub async fn admin() -> Client {
    operator().await;
    cluster().await.client().await.expect("an admin client")
}

pub fn spec(users: &[&str], config: &[(&str, &str)]) -> EnvironmentSpec {
    EnvironmentSpec {
        users: users.iter().map(|user| (*user).to_owned()).collect(),
        config: config
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        ..EnvironmentSpec::default()
    }
}

pub async fn create(
    client: &Client,
    name: &str,
    spec: EnvironmentSpec,
) -> anyhow::Result<Environment> {
    let api: Api<Environment> = Api::all(client.clone());
    api.create(&PostParams::default(), &Environment::new(name, spec))
        .await
        .with_context(|| format!("failed to create environment {name}"))
}

/// Waits until the Environment is Ready at its current generation.
pub async fn ready(client: &Client, name: &str) -> Environment {
    let api: Api<Environment> = Api::all(client.clone());
    eventually(&format!("environment {name} to be ready"), || async {
        let environment = api.get(name).await?;
        let status = environment.status.clone().unwrap_or_default();
        ensure!(
            conditions::is_ready(&status.conditions, environment.metadata.generation),
            "not ready: {:?}",
            conditions::find(&status.conditions, READY)
        );
        Ok(environment)
    })
    .await
}

/// Waits until the Ready condition has `reason`.
pub async fn with_reason(client: &Client, name: &str, reason: &str) -> Environment {
    let api: Api<Environment> = Api::all(client.clone());
    eventually(
        &format!("environment {name} to have reason {reason}"),
        || async {
            let environment = api.get(name).await?;
            let condition = environment
                .status
                .as_ref()
                .and_then(|status| conditions::find(&status.conditions, READY).cloned());
            ensure!(
                condition
                    .as_ref()
                    .is_some_and(|condition| condition.reason == reason),
                "condition: {condition:?}"
            );
            Ok(environment)
        },
    )
    .await
}

pub fn is_not_found<T>(result: &Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(status)) if status.code == 404)
}

pub fn is_forbidden<T>(result: &Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(status)) if status.code == 403)
}

/// How long the garbage collector may take, counting its discovery resync.
const GARBAGE_COLLECTION: std::time::Duration = std::time::Duration::from_secs(75);

/// Waits until the object `get` reads is gone.
pub async fn gone<T, F, Fut>(what: &str, get: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    // The garbage collector learns of a new custom resource kind on its discovery resync,
    // every 30 s: on a cluster whose CRDs were just installed, what such an owner owned may
    // wait that long.
    jf_testkit::eventually_within(
        GARBAGE_COLLECTION,
        &format!("{what} to be gone"),
        || async {
            let result = get().await;
            ensure!(is_not_found(&result), "still there");
            Ok(())
        },
    )
    .await;
}

/// The names of the Events recorded for an object, by reason.
pub async fn event_reasons(client: &Client, name: &str) -> anyhow::Result<Vec<String>> {
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::all(client.clone());
    let list = events
        .list(&kube::api::ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|event| event.reason)
        .collect())
}

pub fn name_of(environment: &Environment) -> String {
    environment.name_any()
}
