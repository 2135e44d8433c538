//! The Jango Fett operator. One process runs every controller; each controller lives in its
//! own module and follows the same pipeline: validate → build (pure) → apply → status.

pub mod controllers;
pub mod http;
pub mod leader;
pub mod postgres;
pub mod quantity;
pub mod settings;
pub mod telemetry;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use tokio::sync::watch;

pub use settings::Settings;

/// How long the controllers may take to stop after SIGTERM.
const STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Runs the operator until SIGTERM or SIGINT.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let config = kube::Config::infer()
        .await
        .context("failed to configure the Kubernetes client (in-cluster or KUBECONFIG)")?;
    let client = limited_client(config.clone(), settings.max_requests_in_flight.into())?;
    let version = client
        .apiserver_version()
        .await
        .context("failed to reach the Kubernetes API server")?;
    tracing::info!(kubernetes = %version.git_version, "connected to the API server");

    let (stop, stopped) = watch::channel(false);
    let metrics = telemetry::Metrics::new();
    let health = http::Health {
        ready: Arc::new(AtomicBool::new(false)),
        metrics: metrics.clone(),
    };
    let server = tokio::spawn(http::serve(
        settings.http_address,
        health.clone(),
        wait_for(stopped.clone()),
    ));
    // Alive and ready at once; a replica waiting for the Lease is a healthy standby.
    health.ready.store(true, Ordering::Relaxed);
    let mut elector = settings
        .leader_election
        .enabled
        .then(|| {
            // A client of its own, outside the controllers' limit: a renewal never waits for
            // their requests.
            let client = kube::Client::try_from(config.clone())?;
            anyhow::Ok(leader::Elector::new(client, &settings.leader_election))
        })
        .transpose()?;
    if elector.is_none() {
        tracing::info!("leader election is off: this replica runs the controllers");
    }
    if let Some(elector) = &mut elector {
        tokio::select! {
            acquired = elector.acquire() => acquired?,
            signal = shutdown_signal() => {
                signal?;
                tracing::info!("stopped before becoming the leader");
                let _ = stop.send(true);
                server.await.context("the HTTP server panicked")??;
                return Ok(());
            }
        }
    }
    metrics.set_leader(true);
    let lost = async {
        match &mut elector {
            Some(elector) => elector.keep().await,
            None => std::future::pending().await,
        }
    };

    let (postgres, endpoint) = postgres_server(&settings.postgres, &metrics)?;
    if postgres.is_none() {
        tracing::warn!("no --postgres-admin-url: PostgreSQL resources will report NotConfigured");
    }
    let access = Arc::new(
        controllers::secrets::Access::new(
            client.clone(),
            &settings.environments.operator_namespace_role,
        )
        .await?,
    );
    let mut environments = tokio::spawn(controllers::environment::run(
        client.clone(),
        settings.environments.clone(),
        metrics.clone(),
        tokio::sync::broadcast::channel(1).0,
        wait_for(stopped.clone()),
    ));
    let mut databases = tokio::spawn(controllers::postgresql::run(
        client.clone(),
        settings.postgres.clone(),
        (postgres, endpoint),
        metrics.clone(),
        access.clone(),
        tokio::sync::broadcast::channel(1).0,
        wait_for(stopped.clone()),
    ));
    let mut redis = tokio::spawn(controllers::redis::run(
        client.clone(),
        settings.redis.clone(),
        metrics.clone(),
        access.clone(),
        tokio::sync::broadcast::channel(1).0,
        wait_for(stopped.clone()),
    ));
    let mut blueprints = tokio::spawn(controllers::blueprint::run(
        client.clone(),
        metrics.clone(),
        wait_for(stopped.clone()),
    ));
    let mut apps = tokio::spawn(controllers::app::run(
        client,
        settings.environments.clone(),
        metrics.clone(),
        access.clone(),
        tokio::sync::broadcast::channel(1).0,
        wait_for(stopped.clone()),
    ));

    let result = tokio::select! {
        signal = shutdown_signal() => signal,
        lost = lost => Err(lost).context("stopping: another replica may lead now"),
        finished = &mut environments => finished
            .context("the environment controller panicked")?
            .context("the environment controller stopped"),
        finished = &mut databases => finished
            .context("the PostgreSQL controller panicked")?
            .context("the PostgreSQL controller stopped"),
        finished = &mut redis => finished
            .context("the Redis controller panicked")?
            .context("the Redis controller stopped"),
        finished = &mut blueprints => finished
            .context("the Blueprint controller panicked")?
            .context("the Blueprint controller stopped"),
        finished = &mut apps => finished
            .context("the App controller panicked")?
            .context("the App controller stopped"),
    };
    tracing::info!("shutting down");
    metrics.set_leader(false);
    health.ready.store(false, Ordering::Relaxed);
    let _ = stop.send(true);
    // The controllers stop with `stop` (a reconciliation under way finishes); only then may
    // another replica lead.
    let controllers = [environments, databases, redis, blueprints, apps];
    let aborts: Vec<_> = controllers.iter().map(|task| task.abort_handle()).collect();
    let stopping = async {
        for controller in controllers {
            if !controller.is_finished() {
                let _ = controller.await;
            }
        }
    };
    if tokio::time::timeout(STOP_TIMEOUT, stopping).await.is_err() {
        // What is still running is cut short, as the process's exit would.
        tracing::warn!("the controllers did not stop in {STOP_TIMEOUT:?}; stopping them now");
        aborts.iter().for_each(tokio::task::AbortHandle::abort);
    }
    if result.is_ok()
        && let Some(elector) = &mut elector
    {
        elector.release().await;
    }
    server.await.context("the HTTP server panicked")??;
    result
}

/// The controllers' Kubernetes client: at most `in_flight` requests in flight (a watch counts
/// only until its response starts).
fn limited_client(config: kube::Config, in_flight: usize) -> anyhow::Result<kube::Client> {
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&tower::limit::ConcurrencyLimitLayer::new(in_flight))
        .build())
}

/// The shared PostgreSQL server, if one is configured, and where applications reach it.
pub fn postgres_server(
    settings: &settings::PostgresSettings,
    metrics: &Arc<telemetry::Metrics>,
) -> anyhow::Result<(
    Option<Arc<postgres::PgServer>>,
    controllers::postgresql::secret::Endpoint,
)> {
    let Some(url) = &settings.admin_url else {
        let endpoint = controllers::postgresql::secret::Endpoint {
            host: settings.host.clone().unwrap_or_default(),
            port: settings.port.unwrap_or(5432),
        };
        return Ok((None, endpoint));
    };
    let pool = postgres::Pool::new(url.expose(), usize::from(settings.max_connections))
        .context("invalid --postgres-admin-url")?;
    let (host, port) = pool.address();
    let endpoint = controllers::postgresql::secret::Endpoint {
        host: settings.host.clone().unwrap_or(host),
        port: settings.port.unwrap_or(port),
    };
    let server = postgres::PgServer::new(pool, Some(metrics.clone()));
    Ok((Some(Arc::new(server)), endpoint))
}

async fn wait_for(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stopped| *stopped).await;
}

async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}
