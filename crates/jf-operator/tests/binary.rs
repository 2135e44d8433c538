//! The `jango-fett-operator` binary against the local cluster: it connects, serves its health
//! and metrics endpoints, and stops cleanly on SIGTERM.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use jf_testkit::{cluster, eventually};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

async fn http_get(address: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: operator\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

/// The operator process, killed if the test ends before it does.
struct Operator(std::process::Child);

impl Drop for Operator {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn answers_version_and_help() {
    let output = Command::new(env!("CARGO_BIN_EXE_jango-fett-operator"))
        .arg("--version")
        .output()
        .expect("the operator runs");
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("jango-fett-operator {}", env!("CARGO_PKG_VERSION"))
    );
    let output = Command::new(env!("CARGO_BIN_EXE_jango-fett-operator"))
        .arg("--help")
        .output()
        .expect("the operator runs");
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("--log-format"));
}

#[tokio::test]
async fn serves_health_and_metrics_then_stops_on_sigterm() -> anyhow::Result<()> {
    let cluster = cluster().await;
    jf_testkit::install_crds(&cluster.client().await?).await?;
    let mut operator = Operator(
        Command::new(env!("CARGO_BIN_EXE_jango-fett-operator"))
            .args(["--http-address", "127.0.0.1:0", "--log-format", "json"])
            .env("KUBECONFIG", cluster.kubeconfig())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let stdout = operator.0.stdout.take().expect("piped stdout");
    // The log line announcing the server carries its address; the rest of the log is drained.
    let (announce, announced) = tokio::sync::oneshot::channel::<SocketAddr>();
    std::thread::spawn(move || {
        let mut announce = Some(announce);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let address = serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .and_then(|line| line.get("address")?.as_str()?.parse().ok());
            if let Some(address) = address
                && let Some(announce) = announce.take()
            {
                let _ = announce.send(address);
            }
        }
    });
    let address = announced.await?;

    let health = http_get(address, "/healthz").await?;
    assert!(
        health.starts_with("HTTP/1.0 200") && health.ends_with("ok"),
        "{health}"
    );
    eventually("the operator to be ready", || async {
        let ready = http_get(address, "/readyz").await?;
        anyhow::ensure!(ready.starts_with("HTTP/1.0 200"), "{ready}");
        Ok(())
    })
    .await;
    let metrics = http_get(address, "/metrics").await?;
    assert!(
        metrics.contains("jango_fett_build_info{version="),
        "{metrics}"
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(operator.0.id())?),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    let status = tokio::task::spawn_blocking(move || operator.0.wait()).await??;
    assert!(status.success(), "exit status {status}");
    Ok(())
}
