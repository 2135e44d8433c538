//! The operator's memory at scale: real Environments (each a namespace, RBAC, ConfigMap and
//! NetworkPolicy, all held in the operator's caches) are added until `--scale` exist, or
//! until `--scale-timeout` runs out, and the operator's resident memory is read once it is
//! idle. Then a new operator starts over all of them, as after a crash or an upgrade: it lists
//! every cache and reconciles every Environment, and its peak (`VmHWM`) is read once it has
//! settled, with the writes it made (a restarted operator should make none).

use std::time::{Duration, Instant};

use futures::{StreamExt as _, TryStreamExt as _};
use jf_api::Environment;
use kube::api::{Api, PostParams};

use super::{BATCH_LABEL, Bench, SETTLE, SETTLE_TIMEOUT, environment, names};
use crate::operator::QUIET_LOG;
use crate::progress;
use crate::report::{MemoryFigure, RelistFigure, ScaleFigure};

/// Target: operator memory at 1,000 / 10,000 objects, in MB.
pub fn memory_target(environments: usize) -> f64 {
    if environments <= 1_100 { 50.0 } else { 150.0 }
}

use crate::tracker::{Tracker, Until};

pub async fn run(bench: &mut Bench<'_>) -> anyhow::Result<()> {
    let wanted = bench.settings.scale;
    if wanted == 0 {
        bench.report.not_measured.push(
            "operator memory at 10,000 Environments: no --scale in this run (each Environment here takes 50 to 60 ms of the API server's time, so 10,000 add 10 to 15 minutes: ./dev/bench --scale 10000)".to_owned(),
        );
        return Ok(());
    }
    let existing = bench.environment_count().await?;
    let missing = wanted.saturating_sub(existing);
    let timeout = Duration::from_secs(bench.settings.scale_timeout);
    progress::step(&format!(
        "Scale: adding {missing} Environments to the {existing} there are, for {wanted} (at most {} s)",
        timeout.as_secs()
    ));
    let batch = bench.batch("scale");
    let api: Api<Environment> = Api::all(bench.stack.client.clone());
    let tracker = Tracker::start(api.clone(), &format!("{BATCH_LABEL}={batch}")).await?;
    let started = Instant::now();
    let deadline = started + timeout;
    let created = create_until(bench, &api, &batch, missing, deadline).await?;
    let ready = tracker
        .wait(
            &created,
            Until::Ready,
            deadline.saturating_duration_since(Instant::now()),
            "scale: Environments Ready",
        )
        .await;
    let seconds = started.elapsed().as_secs_f64();
    bench.report.scale = Some(ScaleFigure {
        wanted,
        created: existing + created.len(),
        ready: existing + ready.len(),
        seconds,
        ready_per_second: ready.len() as f64 / seconds,
    });
    drop(tracker);
    // What was created but not Ready yet is still being worked on; it gets as long again.
    let environments = steady(bench, timeout).await?;
    relist(bench, environments).await
}

/// The operator's memory once it has nothing left to do (or after `timeout`, said so), with
/// the number of Environments then.
pub async fn steady(bench: &mut Bench<'_>, timeout: Duration) -> anyhow::Result<usize> {
    let settled = bench.operator()?.wait_quiet(SETTLE, timeout).await;
    let environments = bench.environment_count().await?;
    let memory = bench.operator()?.memory()?;
    let idle = match &settled {
        Ok(_) => "",
        Err(_) => ", still reconciling",
    };
    progress::info(&format!(
        "operator RSS {:.1} MB (peak {:.1} MB) with {environments} Environments{idle}",
        memory.rss_mb(),
        memory.peak_mb()
    ));
    if let Err(error) = settled {
        bench.report.notes.push(format!(
            "the memory with {environments} Environments was read while the operator still worked: {error:#}"
        ));
    }
    let target = memory_target(environments);
    bench.report.memory.push(MemoryFigure {
        name: format!("steady at {environments} Environments{idle}"),
        environments,
        rss_mb: memory.rss_mb(),
        peak_mb: memory.peak_mb(),
        target_mb: Some(target),
        met: Some(memory.rss_mb() < target),
    });
    Ok(environments)
}

/// Creates up to `count` Environments, issuing no more once `deadline` has passed; returns
/// the names of those created.
async fn create_until(
    bench: &Bench<'_>,
    api: &Api<Environment>,
    batch: &str,
    count: usize,
    deadline: Instant,
) -> anyhow::Result<Vec<String>> {
    let names = names(batch, count);
    let mut last_report = Instant::now();
    let mut created = Vec::with_capacity(count);
    let mut requests = futures::stream::iter(names)
        .take_while(|_| std::future::ready(Instant::now() < deadline))
        .map(|name| async move {
            api.create(&PostParams::default(), &environment(&name, batch))
                .await
                .map(|_| name)
        })
        .buffer_unordered(bench.settings.concurrency.max(1));
    while let Some(name) = requests.try_next().await? {
        created.push(name);
        if last_report.elapsed() >= Duration::from_secs(5) {
            progress::info(&format!("scale: {}/{count} created", created.len()));
            last_report = Instant::now();
        }
    }
    Ok(created)
}

/// A new operator over every Environment: how long until it has settled, its peak memory,
/// and the writes it made.
pub async fn relist(bench: &mut Bench<'_>, environments: usize) -> anyhow::Result<()> {
    progress::step(&format!(
        "Re-list: a new operator over {environments} Environments"
    ));
    bench.stop_operator().await?;
    bench.start_operator(QUIET_LOG).await?;
    let operator = bench.operator()?;
    operator
        .wait_for_reconciles("Environment", environments as f64, SETTLE_TIMEOUT)
        .await?;
    let samples = operator.wait_quiet(SETTLE, SETTLE_TIMEOUT).await?;
    let seconds_to_settle = (operator.started.elapsed().saturating_sub(SETTLE)).as_secs_f64();
    let memory = operator.memory()?;
    let figure = RelistFigure {
        environments,
        seconds_to_settle,
        reconciles: samples.sum("jango_fett_reconciles_total", &[("kind", "Environment")]),
        writes: samples.sum("jango_fett_api_writes_total", &[]),
        peak_mb: memory.peak_mb(),
        rss_after_mb: memory.rss_mb(),
    };
    progress::info(&format!(
        "settled in {:.1} s; peak RSS {:.1} MB, {:.1} MB after; {:.0} writes",
        figure.seconds_to_settle, figure.peak_mb, figure.rss_after_mb, figure.writes
    ));
    let target = memory_target(environments);
    bench.report.memory.push(MemoryFigure {
        name: format!("peak while a new operator lists and reconciles {environments} Environments"),
        environments,
        rss_mb: memory.peak_mb(),
        peak_mb: memory.peak_mb(),
        target_mb: Some(target),
        met: Some(memory.peak_mb() < target),
    });
    bench.report.relists.push(figure);
    Ok(())
}
