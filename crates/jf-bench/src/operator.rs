//! The release `jango-fett-operator` binary, run the way the end-to-end tests run it (the
//! install's ServiceAccount, leader election in `jango-fett-system`, JSON logs, the local
//! PostgreSQL server), but under the benchmark's own control: it is stopped and started again
//! between scenarios, and its memory is read from `/proc/<pid>/status` of the operator process
//! itself, never of the shell that ties its life to ours.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::metrics::Samples;
use crate::stack::Stack;

/// The operator's log filter for latency and memory runs: what an install logs.
pub const QUIET_LOG: &str = "info";

/// The log filter that shows every reconciliation with its writes (`jf_operator=debug`) and
/// every request its Kubernetes client makes (`kube_client=debug`, inside the reconcile's
/// span), so that requests are attributed to the operator and to one reconciliation.
pub const TRACING_LOG: &str = "info,jf_operator=debug,kube_client=debug";

/// How long the operator may take to serve and lead.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long it gets to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The shell between us and the operator: it writes the operator's pid to `$1`, then waits
/// for its stdin (our end) to close, which happens however the benchmark exits, and stops
/// the operator then. The benchmark signals the operator's pid itself to stop it on purpose.
const SCRIPT: &str = r#"pid_file=$1; shift
"$@" </dev/null & child=$!
echo "$child" >"$pid_file"
read -r _ || :
kill -TERM "$child" 2>/dev/null
wait "$child""#;

/// The operator's resident memory, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Memory {
    /// `VmRSS`: resident now, in bytes.
    pub rss_bytes: u64,
    /// `VmHWM`: the most it was ever resident since it started, in bytes.
    pub peak_bytes: u64,
}

impl Memory {
    pub fn rss_mb(&self) -> f64 {
        self.rss_bytes as f64 / 1_000_000.0
    }

    pub fn peak_mb(&self) -> f64 {
        self.peak_bytes as f64 / 1_000_000.0
    }
}

/// A running operator.
pub struct Operator {
    pid: Pid,
    shell: Child,
    lifeline: Option<ChildStdin>,
    /// Where `/metrics` is served.
    pub http_address: SocketAddr,
    /// Its log (JSON lines).
    pub log: PathBuf,
    /// When it was started.
    pub started: Instant,
}

impl Operator {
    /// Starts the operator with the log filter `filter`, its log in `log`, and waits until it
    /// serves `/metrics` and leads (runs its controllers).
    pub async fn start(stack: &Stack, log: &Path, filter: &str) -> anyhow::Result<Self> {
        let pid_file = log.with_extension("pid");
        let _ = fs::remove_file(&pid_file);
        let file = fs::File::create(log)
            .with_context(|| format!("failed to create the operator's log {}", log.display()))?;
        let started = Instant::now();
        let mut shell = Command::new("sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("jango-fett-operator")
            .arg(&pid_file)
            .arg(&stack.programs.operator)
            .args(["--http-address", "127.0.0.1:0", "--log-format", "json"])
            .args([
                "--leader-election-namespace",
                jf_testkit::OPERATOR_NAMESPACE,
            ])
            .args(["--log", filter])
            .env("KUBECONFIG", &stack.operator_kubeconfig)
            .env("JF_POSTGRES_ADMIN_URL", stack.cluster.postgres_admin_url())
            .stdin(Stdio::piped())
            .stdout(
                file.try_clone()
                    .context("failed to open the operator's log")?,
            )
            .stderr(file)
            .spawn()
            .context("failed to start the operator (sh)")?;
        let lifeline = shell.stdin.take();
        let mut operator = Self {
            pid: Pid::from_raw(0),
            shell,
            lifeline,
            http_address: SocketAddr::from(([127, 0, 0, 1], 0)),
            log: log.to_owned(),
            started,
        };
        operator.pid = operator.wait_for_pid(&pid_file).await?;
        operator.http_address = operator.wait_until_leading().await?;
        Ok(operator)
    }

    /// The operator process's id (not its shell's).
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    async fn wait_for_pid(&mut self, pid_file: &Path) -> anyhow::Result<Pid> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(pid) = fs::read_to_string(pid_file)
                .ok()
                .and_then(|text| text.trim().parse().ok())
            {
                return Ok(Pid::from_raw(pid));
            }
            self.check_started(deadline)?;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for the log lines saying where it serves and that it leads.
    async fn wait_until_leading(&mut self) -> anyhow::Result<SocketAddr> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(address) = jf_testkit::operator::serving_and_leading(&self.log) {
                return Ok(address);
            }
            self.check_started(deadline)?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn check_started(&mut self, deadline: Instant) -> anyhow::Result<()> {
        if let Some(status) = self.shell.try_wait()? {
            bail!(
                "the operator exited ({status}) while starting; see {}",
                self.log.display()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the operator did not serve and lead within {START_TIMEOUT:?}; see {}",
                self.log.display()
            );
        }
        Ok(())
    }

    /// Whether the operator process is still running (an exited one waiting to be reaped by
    /// its shell is not).
    pub fn running(&self) -> bool {
        running(self.pid)
    }

    /// Its resident memory now and at its peak.
    pub fn memory(&self) -> anyhow::Result<Memory> {
        let path = format!("/proc/{}/status", self.pid);
        let status = fs::read_to_string(&path).with_context(|| format!("failed to read {path}"))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name)?.trim().strip_suffix("kB"))
                .and_then(|kilobytes| kilobytes.trim().parse::<u64>().ok())
                .map(|kilobytes| kilobytes * 1024)
                .with_context(|| format!("{path} has no {name}"))
        };
        Ok(Memory {
            rss_bytes: field("VmRSS:")?,
            peak_bytes: field("VmHWM:")?,
        })
    }

    /// Its `/metrics`.
    pub async fn metrics(&self) -> anyhow::Result<Samples> {
        Ok(Samples::parse(&self.metrics_text().await?))
    }

    /// Its `/metrics`, as text.
    pub async fn metrics_text(&self) -> anyhow::Result<String> {
        let mut stream = tokio::net::TcpStream::connect(self.http_address)
            .await
            .context("failed to connect to the operator's /metrics")?;
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: operator\r\n\r\n")
            .await?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .await
            .context("failed to read the operator's /metrics")?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .context("the operator's /metrics answered without a body")?;
        Ok(body)
    }

    /// Waits until the operator has run at least `count` reconciliations of `kind` in total.
    pub async fn wait_for_reconciles(
        &self,
        kind: &str,
        count: f64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let done = self
                .metrics()
                .await?
                .sum("jango_fett_reconciles_total", &[("kind", kind)]);
            if done >= count {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the operator ran {done} of {count} {kind} reconciliations in {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until no reconciliation runs and none has started for `settle`, and returns the
    /// metrics then. Bounded by `timeout`.
    pub async fn wait_quiet(&self, settle: Duration, timeout: Duration) -> anyhow::Result<Samples> {
        let deadline = Instant::now() + timeout;
        let mut last = f64::NAN;
        let mut since = Instant::now();
        loop {
            let samples = self.metrics().await?;
            let reconciles = samples.sum("jango_fett_reconciles_total", &[]);
            let in_flight = samples.sum("jango_fett_reconciles_in_flight", &[]);
            if reconciles != last || in_flight > 0.0 {
                last = reconciles;
                since = Instant::now();
            } else if since.elapsed() >= settle {
                return Ok(samples);
            }
            if Instant::now() > deadline {
                bail!(
                    "the operator did not settle within {timeout:?} ({in_flight} reconciliations in flight)"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the operator with SIGTERM, as Kubernetes would (it releases its Lease, so the
    /// next one leads at once), and kills it if it takes longer than [`STOP_TIMEOUT`].
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = kill(self.pid, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while self.running() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let killed = self.running();
        if killed {
            let _ = kill(self.pid, Signal::SIGKILL);
        }
        // Closing the lifeline lets the shell reap the operator and exit.
        self.lifeline.take();
        self.shell
            .wait()
            .context("failed to wait for the operator's shell")?;
        if killed {
            bail!(
                "the operator did not stop within {STOP_TIMEOUT:?} of SIGTERM and was killed; see {}",
                self.log.display()
            );
        }
        Ok(())
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        // The shell stops the operator when its stdin closes.
        if self.lifeline.take().is_some() {
            let _ = self.shell.wait();
        }
    }
}

/// Whether `pid` runs: it exists and is not a zombie.
fn running(pid: Pid) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The state follows the command name, which is in parentheses.
            let after = stat.rsplit_once(')')?.1;
            after.split_whitespace().next().map(|state| state != "Z")
        })
        .unwrap_or(false)
}
