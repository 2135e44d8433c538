//! The seed's transcript, timed as a developer lives it: `jf deploy ENV logistics-api` of the
//! logistics Blueprint (an API and a worker, PostgreSQL with `uuid-ossp`, Redis, an
//! Ingress) into a Ready Environment, from starting the release `jf` until it exits 0 with
//! everything ready. Each run gets an Environment of its own, made beforehand (not timed).

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use jf_api::Blueprint;
use kube::api::{Api, Patch, PatchParams};

use super::{Bench, ready_environments};
use crate::progress;
use crate::report::{DeployRun, Latency};

/// The seed's Blueprint, as the platform team publishes it.
const BLUEPRINT: &str = include_str!("../../../../deploy/examples/logistics/blueprint.yaml");

pub async fn run(bench: &mut Bench<'_>) -> anyhow::Result<()> {
    let runs = bench.settings.deploys;
    progress::step(&format!(
        "jf deploy ENV logistics-api: {runs} run(s), each into a new Environment"
    ));
    publish(bench).await?;
    let batch = bench.batch("seed");
    let (tracker, names, _, missing) =
        ready_environments(bench, &batch, runs, "Environments Ready").await?;
    ensure!(
        missing == 0,
        "{missing} Environments for jf deploy were not Ready"
    );
    drop(tracker);
    bench.settle().await?;
    let mut samples = Vec::new();
    let mut failed = 0;
    for (index, environment) in names.iter().enumerate() {
        let run = deploy(bench, environment).await?;
        progress::info(&format!(
            "run {} of {runs}: exit {} after {:.2} s",
            index + 1,
            run.exit_code
                .map_or_else(|| "by signal".to_owned(), |code| code.to_string()),
            run.seconds
        ));
        if run.exit_code == Some(0) {
            samples.push(Duration::from_secs_f64(run.seconds));
        } else {
            failed += 1;
            bench.report.errors.push(format!(
                "jf deploy {environment} logistics-api exited {:?}: {}",
                run.exit_code,
                run.stderr.trim()
            ));
        }
        bench.report.deploys.push(run);
    }
    bench.report.latencies.push(Latency::new(
        "jf deploy logistics-api → exit 0",
        1,
        runs,
        &samples,
        failed,
    ));
    Ok(())
}

/// Publishes the logistics Blueprint, as `./dev/up` and the tests do.
async fn publish(bench: &Bench<'_>) -> anyhow::Result<()> {
    let blueprint: Blueprint =
        serde_saphyr::from_str(BLUEPRINT).context("the logistics Blueprint is not valid")?;
    Api::<Blueprint>::all(bench.stack.client.clone())
        .patch(
            "logistics-api",
            &PatchParams::apply("jf-bench").force(),
            &Patch::Apply(&blueprint),
        )
        .await
        .context("failed to publish the logistics Blueprint")?;
    Ok(())
}

/// Runs `jf deploy` with the admin's kubeconfig and times it.
async fn deploy(bench: &Bench<'_>, environment: &str) -> anyhow::Result<DeployRun> {
    let started = Instant::now();
    let output = tokio::process::Command::new(&bench.stack.programs.jf)
        .args(["deploy", environment, "logistics-api"])
        .env("KUBECONFIG", bench.stack.cluster.kubeconfig())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .context("failed to run jf")?;
    Ok(DeployRun {
        environment: environment.to_owned(),
        seconds: started.elapsed().as_secs_f64(),
        exit_code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}
