//! End to end: the Redis servers in `jf status`, the `jf` binary against the real local
//! cluster and the real operator binary.

mod support;

use anyhow::{Context as _, ensure};
use jf_api::conditions::{self, READY};
use jf_api::{Environment, Redis, RedisSpec};
use jf_testkit::{eventually, unique_name};
use kube::api::{Api, PostParams};
use support::{admin, admin_kubeconfig, jf, jf_ok, kubeconfig_as};

#[tokio::test]
async fn a_user_sees_the_redis_servers_of_their_environment() -> anyhow::Result<()> {
    let admin_kubeconfig = admin_kubeconfig().await;
    let client = admin().await;
    let alice = unique_name("alice");
    let env = unique_name("cache");
    jf_ok(admin_kubeconfig, &["create", "env", &env, "--user", &alice]).await;
    let namespace = Api::<Environment>::all(client.clone())
        .get(&env)
        .await?
        .status
        .and_then(|status| status.namespace)
        .context("the environment reports its namespace")?;
    let api: Api<Redis> = Api::namespaced(client.clone(), &namespace);
    api.create(
        &PostParams::default(),
        &Redis::new("sessions", RedisSpec::default()),
    )
    .await?;
    eventually("redis sessions to be ready", || async {
        let server = api.get("sessions").await?;
        let status = server.status.unwrap_or_default();
        ensure!(
            conditions::is_ready(&status.conditions, server.metadata.generation),
            "{:?}",
            conditions::find(&status.conditions, READY)
        );
        Ok(())
    })
    .await;

    // Alice lists them through her role in the namespace.
    let kubeconfig = kubeconfig_as(admin_kubeconfig, &alice)?;
    let summary = eventually("alice to see the environment's Redis", || async {
        let output = jf(&kubeconfig, &["status", &env]).await;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        ensure!(
            output.status.success() && stdout.contains("\nRedis:\n  NAME "),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(stdout)
    })
    .await;
    let section = summary
        .split_once("\nRedis:\n")
        .map(|(_, section)| section)
        .context("a Redis section")?;
    let row = section
        .lines()
        .find(|line| line.starts_with("  sessions "))
        .with_context(|| format!("no row for sessions:\n{summary}"))?;
    ensure!(
        row.split_whitespace().collect::<Vec<_>>() == ["sessions", "True", "7.2", "sessions-redis"],
        "{row}"
    );
    jf_ok(admin_kubeconfig, &["delete", "env", &env]).await;
    Ok(())
}
