//! The floor: what the API server alone costs for an environment. A bare client makes the
//! minimal writes of an Environment, with no operator involved: the namespace, then its
//! RoleBinding, ConfigMap and NetworkPolicy at once, then the Environment's status, all with
//! server-side apply like the operator. Run for the same batch sizes as the Environments, at
//! the same concurrency, so every latency can be read as a multiple of it.
//!
//! It runs while no operator does: nothing reacts to these Environments, which are deleted
//! before the operator starts again. The install's admission policy gives them the
//! operator's finalizer as they are created; the floor takes it off before it deletes them,
//! or the next operator would start on a thousand deletions. The namespaces carry none of
//! the operator's labels, so its caches never hold them.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use futures::{StreamExt as _, TryStreamExt as _};
use jf_api::Environment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{Bench, create_all, delete_all, environment, names};
use crate::progress;
use crate::report::Latency;

const FIELD_MANAGER: &str = "jf-bench-floor";

pub async fn run(bench: &mut Bench<'_>) -> anyhow::Result<()> {
    ensure!(
        bench.operator.is_none(),
        "the floor must run while no operator does"
    );
    for (size, rounds) in bench.settings.batch_sizes() {
        progress::step(&format!(
            "floor: {size} environment(s) at once, {rounds} round(s)"
        ));
        let mut samples = Vec::new();
        let mut all_done = Duration::ZERO;
        for round in 1..=rounds {
            let (round, took) = round_of(bench, size, round).await?;
            samples.extend(round);
            all_done = all_done.max(took);
        }
        let latency = Latency::new("floor", size, rounds, &samples, 0).with_all_done(all_done);
        if let Some(summary) = &latency.summary {
            progress::info(&format!(
                "floor {}: p50 {:.1} ms, p99 {:.1} ms, all done in {:.1} ms",
                latency.size(),
                summary.p50_ms,
                summary.p99_ms,
                crate::stats::millis(all_done)
            ));
        }
        bench.report.floor.push(latency);
    }
    Ok(())
}

/// One batch: the Environments are made first (not timed), then each environment's writes
/// are timed, and the whole batch's, then the Environments are deleted.
async fn round_of(
    bench: &Bench<'_>,
    size: usize,
    round: usize,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let client = &bench.stack.client;
    let batch = bench.batch(&format!("floor{size}-{round}"));
    let api: Api<Environment> = Api::all(client.clone());
    let names = names(&batch, size);
    let objects = names.iter().map(|name| environment(name, &batch)).collect();
    create_all(|_| api.clone(), objects, bench.settings.concurrency).await?;
    let started = Instant::now();
    let samples = futures::stream::iter(names.iter().map(|name| writes(client, name)))
        .buffer_unordered(bench.settings.concurrency.max(1))
        .try_collect()
        .await?;
    let all_done = started.elapsed();
    let no_finalizers = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    futures::stream::iter(names.iter().map(|name| {
        let (api, patch) = (&api, &no_finalizers);
        async move {
            api.patch(name, &PatchParams::default(), patch)
                .await
                .with_context(|| format!("failed to take the finalizer off Environment {name}"))
        }
    }))
    .buffer_unordered(bench.settings.concurrency.max(1))
    .try_collect::<Vec<_>>()
    .await?;
    delete_all::<Environment>(|_| api.clone(), &names, bench.settings.concurrency).await?;
    Ok((samples, all_done))
}

/// The writes of one environment, timed from just before the first to the end of the last.
async fn writes(client: &Client, name: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let namespace = name;
    apply::<Namespace>(
        Api::all(client.clone()),
        json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": namespace,
                "labels": {"pod-security.kubernetes.io/enforce": "baseline"},
            },
        }),
    )
    .await?;
    let role_binding = apply::<RoleBinding>(
        Api::namespaced(client.clone(), namespace),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "jf-users", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "developer"}],
        }),
    );
    let config_map = apply::<ConfigMap>(
        Api::namespaced(client.clone(), namespace),
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "env-config", "namespace": namespace},
            "data": {
                "JF_ENVIRONMENT": name,
                "JF_NAMESPACE": namespace,
                "JF_DOMAIN": "dev.localhost",
                "JF_URL": format!("https://{name}.dev.localhost"),
            },
        }),
    );
    let network_policy = apply::<NetworkPolicy>(
        Api::namespaced(client.clone(), namespace),
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "jf-isolation", "namespace": namespace},
            "spec": {
                "podSelector": {},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [
                    {"podSelector": {}},
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
                ]}],
            },
        }),
    );
    tokio::try_join!(role_binding, config_map, network_policy)?;
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    Api::<Environment>::all(client.clone())
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(json!({
                "apiVersion": "jango-fett.dev/v1alpha1",
                "kind": "Environment",
                "status": {
                    "phase": "Ready",
                    "namespace": namespace,
                    "url": format!("https://{name}.dev.localhost"),
                    "observedGeneration": 1,
                    "conditions": [{
                        "type": "Ready",
                        "status": "True",
                        "reason": "Ready",
                        "message": format!("namespace {namespace} is ready"),
                        "observedGeneration": 1,
                        "lastTransitionTime": now,
                    }],
                },
            })),
        )
        .await
        .with_context(|| format!("failed to write the status of Environment {name}"))?;
    Ok(started.elapsed())
}

async fn apply<K>(api: Api<K>, object: serde_json::Value) -> anyhow::Result<()>
where
    K: kube::Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&object),
    )
    .await
    .with_context(|| format!("failed to apply {} {name}", K::kind(&())))?;
    Ok(())
}
