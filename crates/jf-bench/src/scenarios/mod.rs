//! The scenarios, in the order they run, and what they share: the running operator, the
//! report they fill in, and creating or deleting many objects at once with the moment of
//! each request recorded.
//!
//! The order matters: the API request and SQL counts run first, on a quiet new cluster, so
//! that the API server's counters can be attributed; the floor runs while no operator does
//! (nothing reacts to its writes); then the batches; the 10,000 Environments for the memory
//! figure come last, since they load the cluster for good.

pub mod environments;
pub mod floor;
pub mod memory;
pub mod postgresql;
pub mod requests;
pub mod seed;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::{StreamExt as _, TryStreamExt as _};
use jf_api::{Environment, EnvironmentSpec};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Resource, ResourceExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Settings;
use crate::operator::{Operator, QUIET_LOG};
use crate::progress;
use crate::report::Report;
use crate::stack::Stack;
use crate::tracker::{self, Tracker, Until};

/// The label on everything the benchmark creates, naming its batch, so each batch has a
/// watch of its own.
pub const BATCH_LABEL: &str = "bench.jango-fett.dev/batch";

/// How long the operator has to settle (no reconciliation for [`SETTLE`]) between phases.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How long without any reconciliation counts as settled.
pub const SETTLE: Duration = Duration::from_secs(1);

/// A run of the benchmark: the cluster, the operator of the moment and the report so far.
pub struct Bench<'a> {
    pub stack: &'a Stack,
    pub settings: &'a Settings,
    pub operator: Option<Operator>,
    pub report: Report,
    /// A suffix that makes this run's names unique.
    pub run: String,
    starts: usize,
}

impl<'a> Bench<'a> {
    pub fn new(stack: &'a Stack, settings: &'a Settings, report: Report) -> Self {
        let run = jf_testkit::unique_name("r")
            .trim_start_matches("r-")
            .to_owned();
        Self {
            stack,
            settings,
            operator: None,
            report,
            run,
            starts: 0,
        }
    }

    /// Starts the operator with the log filter `filter` (stopping the running one first).
    pub async fn start_operator(&mut self, filter: &str) -> anyhow::Result<()> {
        self.stop_operator().await?;
        self.starts += 1;
        let log = self
            .stack
            .logs
            .join(format!("operator-{}.log", self.starts));
        let operator = Operator::start(self.stack, &log, filter).await?;
        progress::info(&format!(
            "operator {} (pid {}) leads after {:.1} s; log {}",
            self.starts,
            operator.pid(),
            operator.started.elapsed().as_secs_f64(),
            log.display()
        ));
        self.operator = Some(operator);
        Ok(())
    }

    /// Stops the running operator, keeping its last metrics beside its log as evidence
    /// (reconciliations and errors by reason, writes, durations).
    pub async fn stop_operator(&mut self) -> anyhow::Result<()> {
        let Some(operator) = self.operator.take() else {
            return Ok(());
        };
        if let Ok(text) = operator.metrics_text().await {
            let _ = std::fs::write(operator.log.with_extension("metrics"), text);
        }
        operator.stop().await
    }

    /// The running operator.
    pub fn operator(&self) -> anyhow::Result<&Operator> {
        let operator = self
            .operator
            .as_ref()
            .context("the operator is not running")?;
        if !operator.running() {
            bail!("the operator exited; see {}", operator.log.display());
        }
        Ok(operator)
    }

    /// Makes sure the operator of the latency runs (quiet logs) is running.
    pub async fn ensure_quiet_operator(&mut self) -> anyhow::Result<()> {
        if self.operator().is_err() {
            self.start_operator(QUIET_LOG).await?;
        }
        Ok(())
    }

    /// Waits until the operator has nothing left to do.
    pub async fn settle(&self) -> anyhow::Result<()> {
        self.operator()?.wait_quiet(SETTLE, SETTLE_TIMEOUT).await?;
        Ok(())
    }

    pub fn batch_timeout(&self) -> Duration {
        Duration::from_secs(self.settings.batch_timeout)
    }

    /// A batch name unique to this run: a label value and a prefix of object names.
    pub fn batch(&self, what: &str) -> String {
        format!("{what}-{}", self.run)
    }

    /// How many Environments exist now.
    pub async fn environment_count(&self) -> anyhow::Result<usize> {
        let api: Api<Environment> = Api::all(self.stack.client.clone());
        Ok(api
            .list_metadata(&ListParams::default())
            .await
            .context("failed to count the Environments")?
            .items
            .len())
    }
}

/// An Environment of a batch, with a user as `jf create env` would add.
pub fn environment(name: &str, batch: &str) -> Environment {
    let mut environment = Environment::new(
        name,
        EnvironmentSpec {
            users: vec!["developer".to_owned()],
            ..EnvironmentSpec::default()
        },
    );
    environment
        .labels_mut()
        .insert(BATCH_LABEL.to_owned(), batch.to_owned());
    environment
}

/// `count` names for a batch: `<batch>-00001`…
pub fn names(batch: &str, count: usize) -> Vec<String> {
    (1..=count)
        .map(|index| format!("{batch}-{index:05}"))
        .collect()
}

/// Creates every object with at most `concurrency` requests in flight; returns the moment
/// just before each one's request, by key.
pub async fn create_all<K>(
    api_of: impl Fn(&K) -> Api<K>,
    objects: Vec<K>,
    concurrency: usize,
) -> anyhow::Result<HashMap<String, Instant>>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    futures::stream::iter(objects.into_iter().map(|object| {
        let api = api_of(&object);
        async move {
            let key = tracker::key(&object);
            let started = Instant::now();
            api.create(&PostParams::default(), &object)
                .await
                .with_context(|| format!("failed to create {} {key}", K::kind(&())))?;
            Ok::<_, anyhow::Error>((key, started))
        }
    }))
    .buffer_unordered(concurrency.max(1))
    .try_collect()
    .await
}

/// Deletes every object by key (`namespace/name` or `name`) with at most `concurrency`
/// requests in flight; returns the moment just before each one's request.
pub async fn delete_all<K>(
    api_of: impl Fn(Option<&str>) -> Api<K>,
    keys: &[String],
    concurrency: usize,
) -> anyhow::Result<HashMap<String, Instant>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    futures::stream::iter(keys.iter().map(|key| {
        let (namespace, name) = match key.split_once('/') {
            Some((namespace, name)) => (Some(namespace), name),
            None => (None, key.as_str()),
        };
        let api = api_of(namespace);
        async move {
            let started = Instant::now();
            api.delete(name, &DeleteParams::default())
                .await
                .with_context(|| format!("failed to delete {} {key}", K::kind(&())))?;
            Ok::<_, anyhow::Error>((key.clone(), started))
        }
    }))
    .buffer_unordered(concurrency.max(1))
    .try_collect()
    .await
}

/// The time from each start to its end; those without an end are counted as missing.
pub fn latencies(
    starts: &HashMap<String, Instant>,
    ends: &HashMap<String, Instant>,
) -> (Vec<Duration>, usize) {
    let mut samples = Vec::with_capacity(starts.len());
    let mut missing = 0;
    for (key, started) in starts {
        match ends.get(key) {
            Some(ended) => samples.push(ended.saturating_duration_since(*started)),
            None => missing += 1,
        }
    }
    (samples, missing)
}

/// Creates a batch of Environments, waits until they are Ready and returns their latencies
/// and the tracker (which knows each one's namespace).
pub async fn ready_environments(
    bench: &Bench<'_>,
    batch: &str,
    count: usize,
    label: &str,
) -> anyhow::Result<(Tracker<Environment>, Vec<String>, Vec<Duration>, usize)> {
    let api: Api<Environment> = Api::all(bench.stack.client.clone());
    let tracker = Tracker::start(api.clone(), &format!("{BATCH_LABEL}={batch}")).await?;
    let names = names(batch, count);
    let objects = names.iter().map(|name| environment(name, batch)).collect();
    let starts = create_all(|_| api.clone(), objects, bench.settings.concurrency).await?;
    let ready = tracker
        .wait(&names, Until::Ready, bench.batch_timeout(), label)
        .await;
    let (samples, missing) = latencies(&starts, &ready);
    Ok((tracker, names, samples, missing))
}

/// The namespaces of Ready Environments, from what the watch saw of their status.
pub fn namespaces(tracker: &Tracker<Environment>, names: &[String]) -> Vec<String> {
    names
        .iter()
        .filter_map(|name| {
            let seen = tracker.seen(name);
            seen.ready?;
            seen.object?.status.as_ref()?.namespace.clone()
        })
        .collect()
}

/// Runs every scenario in order. A scenario that fails is reported and the next one runs,
/// unless the operator cannot be started.
pub async fn run_all(bench: &mut Bench<'_>) {
    let started = Instant::now();
    let result = quiet_cluster(bench, "the API requests were counted").await;
    finish_phase(bench, "waiting for a quiet cluster", started, result);

    let started = Instant::now();
    if let Err(error) = bench.start_operator(crate::operator::TRACING_LOG).await {
        finish_phase(bench, "operator start", started, Err(error));
        return;
    }
    let result = requests::run(bench).await;
    finish_phase(bench, "API requests and SQL statements", started, result);

    let started = Instant::now();
    let result = match bench.stop_operator().await {
        Ok(()) => floor::run(bench).await,
        Err(error) => Err(error),
    };
    finish_phase(bench, "floor", started, result);

    // The controller manager is still filling the floor's namespaces (a ServiceAccount and a
    // ConfigMap in each) for a while after its last write: the latencies wait for it.
    let started = Instant::now();
    let result = quiet_cluster(bench, "the latencies were measured").await;
    finish_phase(bench, "waiting for a quiet cluster", started, result);

    // Latency and memory runs: an operator logging as an install does.
    let started = Instant::now();
    if let Err(error) = bench.start_operator(QUIET_LOG).await {
        finish_phase(bench, "operator restart", started, Err(error));
        return;
    }
    let result = environments::run(bench).await;
    finish_phase(bench, "Environments", started, result);

    for (name, phase) in [
        ("PostgreSQL", Phase::Databases),
        ("jf deploy", Phase::Deploy),
        ("scale and re-list", Phase::Scale),
    ] {
        let started = Instant::now();
        let result = match bench.ensure_quiet_operator().await {
            Ok(()) => match phase {
                Phase::Databases => postgresql::run(bench).await,
                Phase::Deploy => seed::run(bench).await,
                Phase::Scale => memory::run(bench).await,
            },
            Err(error) => Err(error),
        };
        finish_phase(bench, name, started, result);
    }
    bench.report.not_measured.extend([
        "operator killed at any point, 100 times: 0 orphans (crates/jf-operator/tests/crash.rs, JF_CRASH_ROUNDS=100)".to_owned(),
        "passwords in logs, events, status, PostgreSQL logs: 0 (the PostgreSQL and binary tests check them)".to_owned(),
    ]);
}

/// Waits until no client but the nodes' and controllers' leases makes requests, so that
/// the next scenario has the API server to itself (and its counts are the operator's doing);
/// says so in the report when the cluster does not get quiet in time, before `what`.
async fn quiet_cluster(bench: &mut Bench<'_>, what: &str) -> anyhow::Result<()> {
    progress::step("Waiting for the cluster to be quiet");
    let busy = crate::metrics::wait_for_quiet_apiserver(
        &bench.stack.client,
        Duration::from_secs(2),
        Duration::from_secs(90),
    )
    .await?;
    if let Some(rate) = busy {
        bench.report.notes.push(format!(
            "the cluster was still busy ({rate:.1} requests/s from other clients) when {what}"
        ));
    }
    Ok(())
}

enum Phase {
    Databases,
    Deploy,
    Scale,
}

fn finish_phase(bench: &mut Bench<'_>, name: &str, started: Instant, result: anyhow::Result<()>) {
    let seconds = started.elapsed().as_secs_f64();
    if let Err(error) = result {
        let error = format!("{name}: {error:#}");
        progress::info(&format!("FAILED: {error}"));
        bench.report.errors.push(error);
    }
    progress::info(&format!("{name}: {seconds:.0} s"));
    bench.report.phases.push(crate::report::Phase {
        name: name.to_owned(),
        seconds,
    });
}
