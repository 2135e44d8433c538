//! A local Kubernetes cluster built the way controller-runtime's envtest builds one, plus the
//! real things envtest leaves out: etcd → kube-apiserver (RBAC, own CA) → controller manager,
//! scheduler and kwok with fake nodes, so a Deployment really becomes available; and a
//! PostgreSQL and a Redis server. Everything listens on free loopback ports and keeps its
//! data in one temporary directory, so several clusters can run side by side.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use nix::sys::signal::Signal;
use rand::Rng as _;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::binaries::Binaries;
use crate::pki::Pki;
use crate::process::{self, Process};

/// The file, inside a cluster directory, that describes the running cluster.
const INFO_FILE: &str = "cluster.json";

/// How long any one component may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// kwok stages for pods whose images come from `image-pull-fails.invalid/…` (they wait in
/// ImagePullBackOff) or `crash-loops.invalid/…` (CrashLoopBackOff).
const FAILURE_STAGES: [(&str, &str); 2] = [
    (
        "stage-image-pull-fails.yaml",
        include_str!("../stages/pod-image-pull-fails.yaml"),
    ),
    (
        "stage-crash-loops.yaml",
        include_str!("../stages/pod-crash-loops.yaml"),
    ),
];

/// kwok's configuration of container logs (`ClusterLogs`): every container on the fake nodes
/// shows the simulated logs at `SIMULATED_LOG` and `SIMULATED_PREVIOUS_LOG`, whose paths
/// replace `CURRENT_LOG` and `PREVIOUS_LOG`.
const POD_LOGS: (&str, &str) = ("pod-logs.yaml", include_str!("../stages/pod-logs.yaml"));

/// The simulated log of every container on the fake nodes, inside a cluster directory, in a
/// directory of the simulated logs only: kwok watches it while a client follows the log.
const SIMULATED_LOG: &str = "simulated-logs/current.log";

/// The simulated log of every container's previous run (`kubectl logs --previous`).
const SIMULATED_PREVIOUS_LOG: &str = "simulated-logs/previous.log";

/// What the simulated log of every container on the fake nodes says when the cluster starts
/// (`kubectl logs` shows it without the timestamps); lines appended later follow it.
pub const SIMULATED_LOG_START: &str = "\
kwok: this container runs on a simulated node of the local test cluster; no process of it \
really runs, so its log is simulated
kwok: every container on the simulated nodes shows this same log
";

/// What the simulated log of every container's previous run says.
const SIMULATED_PREVIOUS_LOG_TEXT: &str = "\
kwok: this is the simulated log of the previous run of a container on a simulated node of \
the local test cluster; kwok shows it whether or not the container has restarted
";

/// An image that kwok's pods never pull: they wait in `ImagePullBackOff`.
pub const IMAGE_THAT_FAILS_TO_PULL: &str = "image-pull-fails.invalid/app:1";

/// An image whose containers exit at once, over and over: `CrashLoopBackOff`.
pub const IMAGE_THAT_CRASH_LOOPS: &str = "crash-loops.invalid/app:1";

/// The fake nodes kwok runs.
pub const NODE_NAMES: [&str; 3] = ["kwok-node-0", "kwok-node-1", "kwok-node-2"];

/// Who ends the cluster's processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// They end with this process (a test binary), whatever way it exits.
    Process,
    /// They outlive this process until `LocalCluster::stop` (the `./dev/up` cluster).
    Detached,
}

/// What a client needs to use a running cluster. Written to `cluster.json` in its directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    /// The kube-apiserver's URL.
    pub server: String,
    /// A kubeconfig for the admin (group `system:masters`).
    pub kubeconfig: PathBuf,
    /// The superuser's URL of the PostgreSQL server.
    pub postgres_url: String,
    /// The Redis server's address (no password).
    pub redis_address: SocketAddr,
    /// The API server's version, e.g. `v1.36.3`.
    pub kubernetes_version: String,
    /// The directory holding `kubectl` and the other control-plane programs.
    pub bin_dir: PathBuf,
}

/// A running local cluster.
#[derive(Debug)]
pub struct LocalCluster {
    dir: PathBuf,
    info: ClusterInfo,
    /// Open for as long as this value lives when the lifetime is `Process`.
    _lifeline: Option<ChildStdin>,
}

impl LocalCluster {
    /// Starts a new cluster in a new temporary directory and waits until every part is ready.
    pub async fn start(lifetime: Lifetime) -> Result<Self, Error> {
        let binaries = Binaries::locate()?;
        let dir = tempfile::Builder::new()
            .prefix("jf-cluster-")
            .tempdir()
            .map_err(|source| Error::io("failed to create the cluster directory", source))?
            .keep();
        // The PostgreSQL server runs as its own user and must reach its data directory.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
            .map_err(|source| Error::io("failed to open up the cluster directory", source))?;
        let lifeline = match lifetime {
            Lifetime::Process => Some(process::spawn_lifeline(&dir)?),
            Lifetime::Detached => None,
        };
        match boot(&dir, &binaries).await {
            Ok(info) => {
                write_private(&dir.join(INFO_FILE), &serde_json::to_vec_pretty(&info)?)?;
                Ok(Self {
                    dir,
                    info,
                    _lifeline: lifeline,
                })
            }
            Err(error) => {
                let _ = process::stop_all(&dir);
                let _ = fs::remove_dir_all(&dir);
                Err(error)
            }
        }
    }

    /// Opens a cluster that is already running (started by `jf-testkit start`).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, Error> {
        let dir = dir.as_ref().canonicalize().map_err(|source| {
            Error::io(
                format!("no cluster directory at {}", dir.as_ref().display()),
                source,
            )
        })?;
        let path = dir.join(INFO_FILE);
        let bytes = fs::read(&path)
            .map_err(|source| Error::io(format!("failed to read {}", path.display()), source))?;
        let info = serde_json::from_slice(&bytes)?;
        let cluster = Self {
            dir,
            info,
            _lifeline: None,
        };
        let stopped = cluster.stopped_processes()?;
        if stopped.is_empty() {
            Ok(cluster)
        } else {
            Err(Error::NotRunning {
                dir: cluster.dir,
                stopped,
            })
        }
    }

    /// Stops every process of the cluster in `dir` and removes the directory.
    pub fn stop(dir: impl AsRef<Path>) -> Result<Vec<String>, Error> {
        let dir = dir.as_ref();
        let killed = process::stop_all(dir)?;
        fs::remove_dir_all(dir)
            .map_err(|source| Error::io(format!("failed to remove {}", dir.display()), source))?;
        Ok(killed)
    }

    /// The names of recorded processes that are no longer running.
    /// A program started again (PostgreSQL, by a test) counts by its latest start.
    pub fn stopped_processes(&self) -> Result<Vec<String>, Error> {
        let mut latest = std::collections::BTreeMap::new();
        for recorded in process::recorded(&self.dir)? {
            latest.insert(recorded.name.clone(), recorded);
        }
        Ok(latest
            .into_values()
            .filter(|recorded| !process::is_ours(recorded.pid, &self.dir))
            .map(|recorded| recorded.name)
            .collect())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn info(&self) -> &ClusterInfo {
        &self.info
    }

    /// The admin kubeconfig's path.
    pub fn kubeconfig(&self) -> &Path {
        &self.info.kubeconfig
    }

    /// The PostgreSQL superuser's connection URL (it holds the password).
    pub fn postgres_admin_url(&self) -> &str {
        &self.info.postgres_url
    }

    /// The PostgreSQL server's log, with every statement (`log_statement=all`).
    pub fn postgres_log(&self) -> PathBuf {
        self.dir.join("logs").join("postgres.log")
    }

    /// Stops the PostgreSQL server (fast shutdown) and waits until it has exited.
    pub async fn stop_postgres(&self) -> Result<(), Error> {
        for recorded in process::recorded(&self.dir)? {
            if recorded.name == "postgres" && process::is_ours(recorded.pid, &self.dir) {
                let pid = nix::unistd::Pid::from_raw(recorded.pid);
                let _ = nix::sys::signal::kill(pid, Signal::SIGINT);
                let deadline = Instant::now() + READY_TIMEOUT;
                while process::is_ours(recorded.pid, &self.dir) {
                    if Instant::now() > deadline {
                        return Err(Error::Timeout {
                            what: "PostgreSQL to stop".to_owned(),
                            after: READY_TIMEOUT,
                            logs: vec![self.postgres_log()],
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        Ok(())
    }

    /// Starts the PostgreSQL server again, with its data, on its port.
    pub async fn start_postgres(&self) -> Result<(), Error> {
        let config: tokio_postgres::Config = self.info.postgres_url.parse().map_err(|_| {
            Error::io(
                "the PostgreSQL URL is invalid",
                std::io::Error::other("bad URL"),
            )
        })?;
        let port = config.get_ports().first().copied().unwrap_or(5432);
        start_postgres_server(
            &self.dir,
            &Binaries::locate()?,
            port,
            &self.info.postgres_url,
        )
        .await
    }

    /// The simulated log that `pods/log` (`kubectl logs`) shows for every container on the
    /// fake nodes, in the CRI log format (`<RFC 3339 time> stdout F <line>`).
    pub fn simulated_log(&self) -> PathBuf {
        self.dir.join(SIMULATED_LOG)
    }

    /// Appends the lines of `text`, stamped with the time, to the simulated log of every
    /// container on the fake nodes: a client following a pod's log (`kubectl logs -f`) gets
    /// them within about a second. Every test using the cluster sees them, so look for lines
    /// of your own rather than for the whole log.
    pub fn append_to_simulated_log(&self, text: &str) -> Result<(), Error> {
        use std::io::Write as _;
        let path = self.simulated_log();
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            // One write, so that lines appended at the same time do not interleave.
            .and_then(|mut file| file.write_all(cri_log_lines(text).as_bytes()))
            .map_err(|source| Error::io(format!("failed to append to {}", path.display()), source))
    }

    pub fn redis_address(&self) -> SocketAddr {
        self.info.redis_address
    }

    /// A client configuration for the admin.
    pub async fn config(&self) -> Result<Config, Error> {
        let kubeconfig = Kubeconfig::read_from(&self.info.kubeconfig)?;
        Ok(Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?)
    }

    /// A client acting as the admin (group `system:masters`).
    pub async fn client(&self) -> Result<Client, Error> {
        Ok(Client::try_from(self.config().await?)?)
    }

    /// A client that impersonates `user` in `groups` (plus `system:authenticated`, which the
    /// API server adds), so that RBAC decides as it would for that user.
    pub async fn impersonate(&self, user: &str, groups: &[&str]) -> Result<Client, Error> {
        let mut config = self.config().await?;
        config.auth_info.impersonate = Some(user.to_owned());
        config.auth_info.impersonate_groups =
            Some(groups.iter().map(|group| (*group).to_owned()).collect());
        Ok(Client::try_from(config)?)
    }
}

/// Loopback ports, all free at the time they were picked.
struct Ports {
    etcd_client: u16,
    etcd_peer: u16,
    apiserver: u16,
    controller_manager: u16,
    scheduler: u16,
    kwok: u16,
    postgres: u16,
    redis: u16,
}

impl Ports {
    fn pick() -> Result<Self, Error> {
        // Hold every listener until all are picked, so no two ports are the same.
        let listeners = (0..8)
            .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| Error::io("failed to find free loopback ports", source))?;
        let ports = listeners
            .iter()
            .map(|listener| listener.local_addr().map(|address| address.port()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| Error::io("failed to find free loopback ports", source))?;
        Ok(Self {
            etcd_client: ports[0],
            etcd_peer: ports[1],
            apiserver: ports[2],
            controller_manager: ports[3],
            scheduler: ports[4],
            kwok: ports[5],
            postgres: ports[6],
            redis: ports[7],
        })
    }
}

async fn boot(dir: &Path, binaries: &Binaries) -> Result<ClusterInfo, Error> {
    let ports = Ports::pick()?;
    for sub in ["logs", "pki"] {
        fs::create_dir_all(dir.join(sub))
            .map_err(|source| Error::io(format!("failed to create {sub}/"), source))?;
    }
    let pki = Pki::generate()?;
    let pki_dir = dir.join("pki");
    for (name, pem) in [
        ("ca.crt", &pki.ca_cert),
        ("ca.key", &pki.ca_key),
        ("apiserver.crt", &pki.server_cert),
        ("apiserver.key", &pki.server_key),
        ("admin.crt", &pki.admin_cert),
        ("admin.key", &pki.admin_key),
        ("service-account.key", &pki.service_account_key),
        ("service-account.pub", &pki.service_account_public_key),
    ] {
        write_private(&pki_dir.join(name), pem.as_bytes())?;
    }
    let server = format!("https://127.0.0.1:{}", ports.apiserver);
    let kubeconfig = dir.join("kubeconfig");
    write_private(&kubeconfig, kubeconfig_yaml(&server, &pki_dir).as_bytes())?;

    let (kubernetes_version, postgres_url, redis_address) = tokio::try_join!(
        control_plane(dir, binaries, &ports, &kubeconfig),
        postgres(dir, binaries, ports.postgres),
        redis(dir, binaries, ports.redis),
    )?;
    Ok(ClusterInfo {
        server,
        kubeconfig,
        postgres_url,
        redis_address,
        kubernetes_version,
        bin_dir: binaries
            .kubectl
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    })
}

fn kubeconfig_yaml(server: &str, pki: &Path) -> String {
    let pki = pki.display();
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: jango-fett-local
  cluster:
    server: {server}
    certificate-authority: {pki}/ca.crt
users:
- name: jango-fett-admin
  user:
    client-certificate: {pki}/admin.crt
    client-key: {pki}/admin.key
contexts:
- name: jango-fett-local
  context:
    cluster: jango-fett-local
    user: jango-fett-admin
current-context: jango-fett-local
"
    )
}

/// etcd, kube-apiserver, then the controller manager, scheduler and kwok with its nodes.
/// Returns the API server's version.
async fn control_plane(
    dir: &Path,
    binaries: &Binaries,
    ports: &Ports,
    kubeconfig: &Path,
) -> Result<String, Error> {
    let pki = dir.join("pki");
    let path = |name: &str| pki.join(name).display().to_string();
    let etcd_client = format!("http://127.0.0.1:{}", ports.etcd_client);
    let etcd_peer = format!("http://127.0.0.1:{}", ports.etcd_peer);
    let mut etcd = Command::new(&binaries.etcd);
    etcd.args(["--name", "jf", "--data-dir"])
        .arg(dir.join("etcd"))
        .args(["--listen-client-urls", &etcd_client])
        .args(["--advertise-client-urls", &etcd_client])
        .args(["--listen-peer-urls", &etcd_peer])
        .args(["--initial-advertise-peer-urls", &etcd_peer])
        .args(["--initial-cluster", &format!("jf={etcd_peer}")])
        .args(["--unsafe-no-fsync", "--log-level", "warn"]);
    let mut etcd = process::spawn(dir, "etcd", Signal::SIGTERM, etcd)?;
    wait_for("etcd to listen", &mut [&mut etcd], || {
        port_open(ports.etcd_client)
    })
    .await?;

    let mut apiserver = Command::new(&binaries.kube_apiserver);
    apiserver
        .args(["--etcd-servers", &etcd_client])
        .args([
            "--bind-address",
            "127.0.0.1",
            "--advertise-address",
            "127.0.0.1",
        ])
        .args(["--secure-port", &ports.apiserver.to_string()])
        .args(["--cert-dir", &path("")])
        .args(["--tls-cert-file", &path("apiserver.crt")])
        .args(["--tls-private-key-file", &path("apiserver.key")])
        .args(["--client-ca-file", &path("ca.crt")])
        .args([
            "--service-account-issuer",
            "https://kubernetes.default.svc.cluster.local",
        ])
        .args(["--service-account-key-file", &path("service-account.pub")])
        .args([
            "--service-account-signing-key-file",
            &path("service-account.key"),
        ])
        // For `pods/log`, `exec` and the like at kwok's kubelet endpoint (127.0.0.1), which
        // serves the API server's certificate.
        .args(["--kubelet-client-certificate", &path("admin.crt")])
        .args(["--kubelet-client-key", &path("admin.key")])
        .args(["--kubelet-certificate-authority", &path("ca.crt")])
        .args(["--authorization-mode", "RBAC"])
        .args(["--service-cluster-ip-range", "10.96.0.0/16"])
        .args(["--endpoint-reconciler-type", "none"])
        .args(["--allow-privileged=true", "--profiling=false"]);
    let mut apiserver = process::spawn(dir, "kube-apiserver", Signal::SIGTERM, apiserver)?;
    let config = Config::from_custom_kubeconfig(
        Kubeconfig::read_from(kubeconfig)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    let client = Client::try_from(config)?;
    wait_for(
        "kube-apiserver to be ready",
        &mut [&mut etcd, &mut apiserver],
        || {
            let client = client.clone();
            async move {
                let request = http::Request::get("/readyz").body(Vec::new());
                match request {
                    Ok(request) => client
                        .request_text(request)
                        .await
                        .is_ok_and(|body| body == "ok"),
                    Err(_) => false,
                }
            }
        },
    )
    .await?;
    let version = client.apiserver_version().await?.git_version;

    let mut controller_manager = Command::new(&binaries.kube_controller_manager);
    controller_manager
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--bind-address", "127.0.0.1"])
        .args(["--secure-port", &ports.controller_manager.to_string()])
        .args(["--cert-dir", &path("")])
        .args(["--leader-elect=false"])
        .args([
            "--service-account-private-key-file",
            &path("service-account.key"),
        ])
        .args(["--root-ca-file", &path("ca.crt")])
        .args(["--cluster-signing-cert-file", &path("ca.crt")])
        .args(["--cluster-signing-key-file", &path("ca.key")])
        // Namespaces and garbage collection should be quick in tests.
        .args([
            "--concurrent-namespace-syncs",
            "10",
            "--concurrent-gc-syncs",
            "20",
        ]);
    let mut controller_manager = process::spawn(
        dir,
        "kube-controller-manager",
        Signal::SIGTERM,
        controller_manager,
    )?;

    let mut scheduler = Command::new(&binaries.kube_scheduler);
    scheduler
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--bind-address", "127.0.0.1"])
        .args(["--secure-port", &ports.scheduler.to_string()])
        .args(["--cert-dir", &path("")])
        .args(["--leader-elect=false"]);
    let mut scheduler = process::spawn(dir, "kube-scheduler", Signal::SIGTERM, scheduler)?;

    let stages = &binaries.kwok_stages;
    let mut kwok = Command::new(&binaries.kwok);
    kwok.arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--manage-all-nodes=false"])
        .args([
            "--manage-nodes-with-annotation-selector",
            "kwok.x-k8s.io/node=fake",
        ])
        .args([
            "--node-ip",
            "127.0.0.1",
            "--node-port",
            &ports.kwok.to_string(),
        ])
        .args(["--server-address", &format!("127.0.0.1:{}", ports.kwok)])
        .args(["--tls-cert-file", &path("apiserver.crt")])
        .args(["--tls-private-key-file", &path("apiserver.key")])
        .args(["--node-lease-duration-seconds", "40"])
        .args(["--cidr", "10.244.0.0/16"]);
    for stage in [
        "node/fast/node-initialize.yaml",
        "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
        "pod/fast/pod-ready.yaml",
        "pod/fast/pod-complete.yaml",
        "pod/fast/pod-delete.yaml",
    ] {
        kwok.arg("--config").arg(stages.join(stage));
    }
    // Stages of our own: images that fail to pull or crash-loop, to test the diagnosis.
    for (name, stage) in FAILURE_STAGES {
        let path = dir.join(name);
        fs::write(&path, stage)
            .map_err(|source| Error::io(format!("failed to write {name}"), source))?;
        kwok.arg("--config").arg(path);
    }
    // Logs for `kubectl logs`: the same simulated logs for every container.
    let (name, mut config) = (POD_LOGS.0, POD_LOGS.1.to_owned());
    for (placeholder, log, text) in [
        ("CURRENT_LOG", SIMULATED_LOG, SIMULATED_LOG_START),
        (
            "PREVIOUS_LOG",
            SIMULATED_PREVIOUS_LOG,
            SIMULATED_PREVIOUS_LOG_TEXT,
        ),
    ] {
        let log = dir.join(log);
        if let Some(parent) = log.parent() {
            fs::create_dir_all(parent).map_err(|source| {
                Error::io("failed to create the simulated logs' directory", source)
            })?;
        }
        fs::write(&log, cri_log_lines(text))
            .map_err(|source| Error::io(format!("failed to write {}", log.display()), source))?;
        config = config.replace(
            placeholder,
            &serde_json::to_string(&log.display().to_string())?,
        );
    }
    let path = dir.join(name);
    fs::write(&path, config)
        .map_err(|source| Error::io(format!("failed to write {name}"), source))?;
    kwok.arg("--config").arg(path);
    let mut kwok = process::spawn(dir, "kwok", Signal::SIGTERM, kwok)?;

    let nodes: Api<Node> = Api::all(client.clone());
    for name in NODE_NAMES {
        nodes
            .create(&PostParams::default(), &fake_node(name)?)
            .await?;
    }
    let mut all = [
        &mut etcd,
        &mut apiserver,
        &mut controller_manager,
        &mut scheduler,
        &mut kwok,
    ];
    wait_for("kwok to make the nodes Ready", &mut all, || {
        let nodes = nodes.clone();
        async move {
            nodes.list(&Default::default()).await.is_ok_and(|list| {
                list.items.iter().filter(|node| node_ready(node)).count() == NODE_NAMES.len()
            })
        }
    })
    .await?;
    // The controller manager is working once it has made the default service account.
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    wait_for("the controller manager to be working", &mut all, || {
        let accounts = accounts.clone();
        async move {
            accounts
                .get_opt("default")
                .await
                .is_ok_and(|account| account.is_some())
        }
    })
    .await?;
    wait_for("kube-scheduler to listen", &mut all, || {
        port_open(ports.scheduler)
    })
    .await?;
    Ok(version)
}

/// `text`'s lines as a container runtime logs a container's output: each stamped with the time
/// and marked as a full line of standard output.
fn cri_log_lines(text: &str) -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    text.lines()
        .map(|line| format!("{now} stdout F {line}\n"))
        .collect()
}

fn fake_node(name: &str) -> Result<Node, Error> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {
                "kwok.x-k8s.io/node": "fake",
                "node.alpha.kubernetes.io/ttl": "0"
            },
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok"
            }
        },
        "status": {
            "allocatable": { "cpu": "16", "memory": "64Gi", "pods": "110" },
            "capacity": { "cpu": "16", "memory": "64Gi", "pods": "110" }
        }
    }))?)
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|condition| condition.type_ == "Ready" && condition.status == "True")
        })
}

/// initdb (as the `postgres` user when running as root) and the server. Returns the
/// superuser's URL.
async fn postgres(dir: &Path, binaries: &Binaries, port: u16) -> Result<String, Error> {
    let home = dir.join("postgres");
    let data = home.join("data");
    fs::create_dir_all(&home)
        .map_err(|source| Error::io("failed to create the PostgreSQL directory", source))?;
    // PostgreSQL refuses to run as root: then its files and processes belong to `postgres`.
    let owner = if nix::unistd::geteuid().is_root() {
        let user = nix::unistd::User::from_name("postgres")
            .ok()
            .flatten()
            .ok_or(Error::MissingProgram {
                program: "the postgres system user".to_owned(),
                looked_in: PathBuf::from("/etc/passwd"),
                hint: "run ./dev/deps to install the Debian package postgresql-15",
            })?;
        Some((user.uid.as_raw(), user.gid.as_raw()))
    } else {
        None
    };
    let hand_over = |path: &Path| -> Result<(), Error> {
        match owner {
            Some((uid, gid)) => {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|source| {
                    Error::io(
                        format!("failed to hand {} over to postgres", path.display()),
                        source,
                    )
                })
            }
            None => Ok(()),
        }
    };
    hand_over(&home)?;
    let password: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    let password_file = home.join("password");
    fs::write(&password_file, &password)
        .map_err(|source| Error::io("failed to write the PostgreSQL password file", source))?;
    hand_over(&password_file)?;
    let mut initdb = postgres_command(&binaries.postgres_bin.join("initdb"));
    initdb
        .arg("--pgdata")
        .arg(&data)
        .args(["--username", "postgres", "--auth", "scram-sha-256"])
        .arg(format!("--pwfile={}", password_file.display()))
        .args([
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",
            "--no-instructions",
        ]);
    let initdb_log = dir.join("logs").join("initdb.log");
    // Killed if another part of the cluster fails first, so nothing writes to the directory
    // after it is removed.
    let output = tokio::process::Command::from(initdb)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| Error::io("failed to run initdb", source))?;
    let _ = fs::write(&initdb_log, [output.stdout, output.stderr].concat());
    let _ = fs::remove_file(&password_file);
    if !output.status.success() {
        return Err(Error::Exited {
            name: "initdb",
            status: output.status.to_string(),
            tail: process::log_tail(&initdb_log),
            log: initdb_log,
        });
    }

    let url = format!("postgres://postgres:{password}@127.0.0.1:{port}/postgres");
    start_postgres_server(dir, binaries, port, &url).await?;
    Ok(url)
}

/// `program` run as the `postgres` user when this process is root: PostgreSQL refuses root.
fn postgres_command(program: &Path) -> Command {
    if nix::unistd::geteuid().is_root() {
        let mut command = Command::new("setpriv");
        command
            .args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Starts the server on an initialised data directory and waits until it answers.
async fn start_postgres_server(
    dir: &Path,
    binaries: &Binaries,
    port: u16,
    url: &str,
) -> Result<(), Error> {
    let home = dir.join("postgres");
    let mut server = postgres_command(&binaries.postgres_bin.join("postgres"));
    server
        .arg("-D")
        .arg(home.join("data"))
        .args(["-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1"])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", home.display()))
        .args([
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ])
        .args(["-c", "max_connections=300", "-c", "log_statement=all"])
        .args(["-c", "log_line_prefix=%m [%p] %q%u@%d "]);
    // SIGINT is PostgreSQL's fast shutdown: clients are disconnected, not waited for.
    let mut server = process::spawn(dir, "postgres", Signal::SIGINT, server)?;
    wait_for(
        "PostgreSQL to accept connections",
        &mut [&mut server],
        || {
            let url = url.to_owned();
            async move { postgres_ready(&url).await }
        },
    )
    .await
}

async fn postgres_ready(url: &str) -> bool {
    let Ok((client, connection)) = tokio_postgres::connect(url, tokio_postgres::NoTls).await else {
        return false;
    };
    let connection = tokio::spawn(connection);
    let ready = client.simple_query("SELECT 1").await.is_ok();
    drop(client);
    let _ = connection.await;
    ready
}

/// A Redis server without a password and without persistence.
async fn redis(dir: &Path, binaries: &Binaries, port: u16) -> Result<SocketAddr, Error> {
    let home = dir.join("redis");
    fs::create_dir_all(&home)
        .map_err(|source| Error::io("failed to create the Redis directory", source))?;
    let config = home.join("redis.conf");
    fs::write(
        &config,
        format!(
            "bind 127.0.0.1\nport {port}\nprotected-mode yes\nsave \"\"\nappendonly no\n\
             dir {}\n# Keep the command line, which names this directory, visible to `stop`.\n\
             set-proc-title no\n",
            home.display()
        ),
    )
    .map_err(|source| Error::io("failed to write redis.conf", source))?;
    let mut command = Command::new(&binaries.redis_server);
    command.arg(&config);
    let mut server = process::spawn(dir, "redis", Signal::SIGTERM, command)?;
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    wait_for("Redis to answer PING", &mut [&mut server], || async move {
        crate::redis::command(address, &["PING"])
            .await
            .is_ok_and(|reply| reply == "+PONG")
    })
    .await?;
    Ok(address)
}

async fn port_open(port: u16) -> bool {
    tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .is_ok()
}

/// Polls `ready` until it holds, failing early with its log if one of `processes` exits.
async fn wait_for<F, Fut>(
    what: &str,
    processes: &mut [&mut Process],
    mut ready: F,
) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if ready().await {
            return Ok(());
        }
        for process in processes.iter_mut() {
            process.check_running()?;
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                what: what.to_owned(),
                after: READY_TIMEOUT,
                logs: processes
                    .iter()
                    .map(|process| process.log.clone())
                    .collect(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes a file only its owner can read: keys, passwords, the kubeconfig.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(contents))
        .map_err(|source| Error::io(format!("failed to write {}", path.display()), source))
}
