//! Environments created at once, from just before each create request to the moment the
//! batch's watch sees it Ready; then deleted at once, from just before each delete request
//! to the moment the watch sees it gone (the finalizer holds it until its namespace is gone),
//! and when its namespace was gone. While the largest batch is Ready and the operator idle,
//! its memory is read, then a new operator starts over them (a re-list).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jf_api::Environment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;

use super::{Bench, SETTLE_TIMEOUT, delete_all, latencies, memory, ready_environments};
use crate::progress;
use crate::report::{Latency, Target};
use crate::tracker::{Tracker, Until};

/// Target: Environment ready, local control plane.
pub fn ready_target() -> Target {
    Target::percentiles("p50 < 200 ms, p99 < 1 s", 200.0, 1000.0)
}

/// Target: 1,000 Environments created at once.
pub fn batch_target() -> Target {
    Target {
        all: true,
        ..Target::percentiles("all Ready, p99 < 5 s", f64::INFINITY, 5000.0)
    }
}

pub async fn run(bench: &mut Bench<'_>) -> anyhow::Result<()> {
    let largest = bench.settings.largest_batch();
    for (size, rounds) in bench.settings.batch_sizes() {
        let mut all = Round::default();
        for round in 1..=rounds {
            progress::step(&format!(
                "Environments: {size} created at once (round {round} of {rounds})"
            ));
            all.extend(round_of(bench, size, round, size == largest).await?);
        }
        // DESIGN's targets are for one environment and for the largest batch; a batch in
        // between is shown against the floor only.
        let target = match size {
            1 => Some(ready_target()),
            size if size == largest => Some(batch_target()),
            _ => None,
        };
        let row = |scenario: &str, (samples, missing): &Samples| {
            Latency::new(scenario, size, rounds, samples, *missing)
        };
        let latencies = &mut bench.report.latencies;
        latencies.push(row("Environment create→Ready", &all.ready).with_target(target));
        latencies.push(row("Environment delete→gone", &all.deleted));
        latencies.push(row(
            "Environment delete→namespace gone",
            &all.namespace_gone,
        ));
    }
    Ok(())
}

type Samples = (Vec<Duration>, usize);

/// The latencies of one or more rounds.
#[derive(Default)]
struct Round {
    ready: Samples,
    deleted: Samples,
    /// From the Environment's delete request until its namespace is gone (the operator deletes
    /// it; the controller manager empties it; then the operator lets the Environment go).
    namespace_gone: Samples,
}

impl Round {
    fn extend(&mut self, other: Self) {
        for (all, more) in [
            (&mut self.ready, other.ready),
            (&mut self.deleted, other.deleted),
            (&mut self.namespace_gone, other.namespace_gone),
        ] {
            all.0.extend(more.0);
            all.1 += more.1;
        }
    }
}

/// One batch: created, Ready, (memory and a re-list for the largest), deleted, gone.
async fn round_of(
    bench: &mut Bench<'_>,
    size: usize,
    round: usize,
    largest: bool,
) -> anyhow::Result<Round> {
    let batch = bench.batch(&format!("env{size}-{round}"));
    let (tracker, names, ready, missing) =
        ready_environments(bench, &batch, size, &format!("{size} Environments Ready")).await?;
    progress::info(&format!(
        "{} of {size} Ready{}",
        ready.len(),
        describe_p50(&ready)
    ));
    if largest {
        let environments = memory::steady(bench, SETTLE_TIMEOUT).await?;
        memory::relist(bench, environments).await?;
    }
    let client = bench.stack.client.clone();
    let namespaces =
        Tracker::<Namespace>::start(Api::all(client.clone()), &managed_selector()).await?;
    let api: Api<Environment> = Api::all(client);
    let starts = delete_all(|_| api.clone(), &names, bench.settings.concurrency).await?;
    let gone = tracker
        .wait(
            &names,
            Until::Gone,
            bench.batch_timeout(),
            &format!("{size} Environments gone"),
        )
        .await;
    let deleted = latencies(&starts, &gone);
    // The namespace of each Environment, and when its delete request was made.
    let namespace_starts: HashMap<String, Instant> = names
        .iter()
        .filter_map(|name| {
            let namespace = tracker
                .seen(name)
                .object?
                .status
                .as_ref()?
                .namespace
                .clone()?;
            Some((namespace, *starts.get(name)?))
        })
        .collect();
    let keys: Vec<String> = namespace_starts.keys().cloned().collect();
    let namespace_gone = latencies(&namespace_starts, &namespaces.reached(&keys, Until::Gone));
    progress::info(&format!(
        "{} of {size} gone{}; namespaces gone{}",
        deleted.0.len(),
        describe_p50(&deleted.0),
        describe_p50(&namespace_gone.0)
    ));
    Ok(Round {
        ready: (ready, missing),
        deleted,
        namespace_gone,
    })
}

/// The label of every namespace the operator makes.
fn managed_selector() -> String {
    format!("{}={}", jf_api::MANAGED_BY_LABEL, jf_api::MANAGED_BY)
}

/// `, p50 123 ms` of samples, for progress lines.
pub fn describe_p50(samples: &[Duration]) -> String {
    crate::stats::summarize(samples)
        .map(|summary| {
            format!(
                ", p50 {:.0} ms, max {:.0} ms",
                summary.p50_ms, summary.max_ms
            )
        })
        .unwrap_or_default()
}
