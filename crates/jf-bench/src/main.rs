//! `jf-bench`: measures the operator against the performance targets on a local cluster of its own.
//!
//! It starts a cluster through jf-testkit (real kube-apiserver, etcd, controller manager,
//! scheduler, kwok, PostgreSQL and Redis), installs the CRDs and the operator's RBAC as the
//! end-to-end tests do, runs the release `jango-fett-operator` as its ServiceAccount, and
//! measures: Environment and PostgreSQL latencies in batches, deletes, `jf deploy` of the
//! seed's Blueprint, API requests and SQL statements per reconciliation, the operator's memory
//! at scale and during a re-list, and the same writes made by a bare client (the floor) that
//! every latency is compared to. It prints the tables, writes `report.json` and
//! `latency.svg`, and stops the cluster, also when a scenario fails.
//!
//! `./dev/bench` builds everything and runs it; `jf-bench --quick` checks the benchmark itself
//! in a few minutes.

mod chart;
mod machine;
mod metrics;
mod operator;
mod progress;
mod report;
mod scenarios;
mod stack;
mod stats;
mod tracker;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::Parser;
use serde::Serialize;

use crate::report::Report;
use crate::scenarios::Bench;
use crate::stack::{Programs, Stack};

/// Benchmarks the Jango Fett operator on a local cluster of its own and checks the figures
/// against the performance targets.
#[derive(Debug, Clone, Parser, Serialize)]
#[command(name = "jf-bench", version)]
pub struct Settings {
    /// The largest batch of Environments created at once; the batches are 1 (repeated),
    /// a tenth of this, and this.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub environments: usize,

    /// Environments in the cluster for the memory figure at scale, and the re-list after it
    /// (0: none; each Environment costs this machine's API server 50 to 60 ms, so 10,000 add
    /// 10 to 15 minutes, beyond the time the default run keeps to).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub scale: usize,

    /// PostgreSQL resources created at once.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub databases: usize,

    /// How many times the one-at-a-time scenarios (Environment, floor, PostgreSQL, delete
    /// with open connections) run, one after another.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub repeat: usize,

    /// How many times `jf deploy ENV logistics-api` runs.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub deploys: usize,

    /// Connections open to a database while it is deleted.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub connections: usize,

    /// Requests the benchmark's own client has in flight at most (creates, deletes, the
    /// floor's environments).
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub concurrency: usize,

    /// Longest wait for one batch to be Ready or gone, in seconds; what is not there by then
    /// counts as missing.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub batch_timeout: u64,

    /// Longest time to build up `--scale` Environments, in seconds; the memory is then read
    /// at what was reached, once the operator is idle (it gets as long again for that).
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub scale_timeout: u64,

    /// A small run that checks the benchmark itself: batches of 1, 10 and 100, 10 databases,
    /// 300 Environments at scale, two rounds and one deploy.
    #[arg(long)]
    pub quick: bool,

    /// Where report.json, latency.svg and the operator's logs go [default: `bench` in the
    /// target directory jf-bench was built in].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// How long the build before the run took, for the report (`./dev/bench` sets it).
    #[arg(long, env = "JF_BENCH_BUILD_SECONDS", value_name = "SECONDS")]
    pub build_seconds: Option<f64>,
}

impl Settings {
    /// The settings with `--quick` applied.
    fn resolved(mut self) -> Self {
        if self.quick {
            self.environments = 100;
            self.scale = 300;
            self.databases = 10;
            self.repeat = 2;
            self.deploys = 1;
        }
        self
    }

    /// The batch sizes of Environments and of the floor, each with its number of rounds.
    pub fn batch_sizes(&self) -> Vec<(usize, usize)> {
        let largest = self.largest_batch();
        let mut sizes = vec![(1, self.repeat.max(1))];
        for size in [(largest / 10).max(1), largest] {
            if sizes.iter().all(|(known, _)| *known != size) {
                sizes.push((size, 1));
            }
        }
        sizes
    }

    pub fn largest_batch(&self) -> usize {
        self.environments.max(1)
    }

    fn out_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(out) = &self.out {
            return Ok(out.clone());
        }
        // <target>/release/jf-bench → <target>/bench
        let executable = std::env::current_exe().context("failed to find jf-bench's path")?;
        let target = executable
            .parent()
            .and_then(std::path::Path::parent)
            .context("jf-bench is not in a target directory; give --out")?;
        Ok(target.join("bench"))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    progress::start();
    let settings = Settings::parse().resolved();
    match run(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let started = Instant::now();
    let out = settings.out_dir()?;
    std::fs::create_dir_all(&out).with_context(|| format!("failed to create {}", out.display()))?;
    let programs = Programs::beside_executable()?;
    progress::step("Starting a local cluster (jf-testkit) with the CRDs and the operator's RBAC");
    let stack = Stack::start(programs, &out.join("logs")).await?;
    progress::info(&format!(
        "Kubernetes {} at {} in {:.1} s",
        stack.cluster.info().kubernetes_version,
        stack.cluster.info().server,
        stack.startup_seconds
    ));
    let report = Report {
        date: k8s_openapi::jiff::Timestamp::now().to_string(),
        git: machine::git(),
        machine: machine::machine(),
        versions: machine::versions(
            &stack.cluster.info().kubernetes_version,
            &stack.programs.operator,
        ),
        settings: serde_json::to_value(&settings)?,
        cluster_start_seconds: stack.startup_seconds,
        build_seconds: settings.build_seconds,
        ..Report::default()
    };
    let mut bench = Bench::new(&stack, &settings, report);
    let interrupted = tokio::select! {
        () = scenarios::run_all(&mut bench) => false,
        signal = tokio::signal::ctrl_c() => {
            signal.context("failed to listen for Ctrl-C")?;
            true
        }
    };
    if interrupted {
        bench.report.errors.push("interrupted".to_owned());
    }
    if let Err(error) = bench.stop_operator().await {
        bench.report.errors.push(format!("{error:#}"));
    }
    let mut report = std::mem::take(&mut bench.report);
    drop(bench);
    progress::step("Stopping the cluster");
    if let Err(error) = stack.stop() {
        report.errors.push(format!("{error:#}"));
    }
    report.run_seconds = started.elapsed().as_secs_f64();
    finish(report, &out)
}

/// Compares, checks, prints and writes the report.
fn finish(mut report: Report, out: &std::path::Path) -> anyhow::Result<()> {
    report.compare_to_floor();
    report.check_targets();
    let json = out.join("report.json");
    std::fs::write(&json, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("failed to write {}", json.display()))?;
    let svg = out.join("latency.svg");
    let rows: Vec<&report::Latency> = report.latencies.iter().chain(&report.floor).collect();
    if let Err(error) = chart::latency_cdf(&svg, &rows) {
        report.errors.push(format!("{error:#}"));
    }
    print!("{}", report.render());
    println!("\nwrote {} and {}", json.display(), svg.display());
    anyhow::ensure!(
        report.errors.is_empty(),
        "the benchmark did not run to the end: {}",
        report.errors.join("; ")
    );
    Ok(())
}
