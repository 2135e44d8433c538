//! The Jango Fett operator. One process runs every controller; each controller lives in its
//! own module and follows the same pipeline: validate → build (pure) → apply → status.

pub mod controllers;
pub mod http;
pub mod settings;
pub mod telemetry;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use tokio::sync::watch;

pub use settings::Settings;

/// Runs the operator until SIGTERM or SIGINT.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("failed to configure the Kubernetes client (in-cluster or KUBECONFIG)")?;
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
    let environments = tokio::spawn(controllers::environment::run(
        client,
        settings.environments.clone(),
        metrics,
        tokio::sync::broadcast::channel(1).0,
        wait_for(stopped.clone()),
    ));
    health.ready.store(true, Ordering::Relaxed);

    let result = tokio::select! {
        signal = shutdown_signal() => signal,
        finished = environments => finished
            .context("the environment controller panicked")?
            .context("the environment controller stopped"),
    };
    tracing::info!("shutting down");
    health.ready.store(false, Ordering::Relaxed);
    let _ = stop.send(true);
    server.await.context("the HTTP server panicked")??;
    result
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
