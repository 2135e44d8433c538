//! Running the `jf` binary against the shared local cluster, with the real operator binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use kube::Client;
use kube::config::Kubeconfig;

/// The cluster's admin kubeconfig, with the operator running against the cluster.
pub async fn admin_kubeconfig() -> &'static Path {
    jf_testkit::operator(&[]).await;
    jf_testkit::cluster().await.kubeconfig()
}

pub async fn admin() -> Client {
    admin_kubeconfig().await;
    jf_testkit::cluster()
        .await
        .client()
        .await
        .expect("an admin client")
}

/// Runs `jf` with `kubeconfig`.
pub async fn jf(kubeconfig: &Path, arguments: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_jf"))
        .args(arguments)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .await
        .expect("jf runs")
}

/// Runs `jf`, which must succeed, and returns what it printed on stdout.
pub async fn jf_ok(kubeconfig: &Path, arguments: &[&str]) -> String {
    let output = jf(kubeconfig, arguments).await;
    assert!(
        output.status.success(),
        "jf {} failed ({}):\n{}{}",
        arguments.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `jf`, which must fail with exit code 1, and returns what it printed on stderr.
pub async fn jf_fails(kubeconfig: &Path, arguments: &[&str]) -> String {
    let output = jf(kubeconfig, arguments).await;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(1),
        "jf {}:\n{}{stderr}",
        arguments.join(" "),
        String::from_utf8_lossy(&output.stdout)
    );
    stderr
}

/// A kubeconfig that acts as `user`: the admin's, impersonating.
pub fn kubeconfig_as(admin: &Path, user: &str) -> anyhow::Result<PathBuf> {
    let mut kubeconfig = Kubeconfig::read_from(admin)?;
    for named in &mut kubeconfig.auth_infos {
        if let Some(auth_info) = &mut named.auth_info {
            auth_info.impersonate = Some(user.to_owned());
        }
    }
    let path = std::env::temp_dir().join(format!("jf-cli-test-{user}.kubeconfig"));
    // JSON is YAML.
    std::fs::write(&path, serde_json::to_vec(&kubeconfig)?)?;
    Ok(path)
}
