//! What every scenario runs against: a local cluster of the benchmark's own (started through
//! jf-testkit, as `./dev/test` starts one), with the CRDs and the operator's RBAC installed
//! exactly as the end-to-end tests install them, and the release binaries built beside
//! `jf-bench`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, bail};
use jf_testkit::{Lifetime, LocalCluster};
use kube::Client;

/// The release programs the benchmark runs, found beside its own executable (cargo builds
/// them into the same directory).
#[derive(Debug, Clone)]
pub struct Programs {
    pub operator: PathBuf,
    pub jf: PathBuf,
}

impl Programs {
    pub fn beside_executable() -> anyhow::Result<Self> {
        let executable = std::env::current_exe().context("failed to find jf-bench's path")?;
        let dir = executable
            .parent()
            .context("jf-bench's executable has no directory")?;
        let programs = Self {
            operator: dir.join("jango-fett-operator"),
            jf: dir.join("jf"),
        };
        for program in [&programs.operator, &programs.jf] {
            if !program.is_file() {
                bail!(
                    "{} is missing; build it with `cargo build --release -p jf-operator -p jf-cli` (./dev/bench does)",
                    program.display()
                );
            }
        }
        Ok(programs)
    }
}

/// A running local cluster, ready for the operator.
pub struct Stack {
    pub cluster: LocalCluster,
    /// The admin (group `system:masters`).
    pub client: Client,
    /// A kubeconfig of the operator's ServiceAccount, with the install's RBAC.
    pub operator_kubeconfig: PathBuf,
    pub programs: Programs,
    /// Where the operator's logs go.
    pub logs: PathBuf,
    /// How long starting the cluster took, in seconds.
    pub startup_seconds: f64,
}

impl Stack {
    /// Starts a cluster that ends with this process at the latest, installs the CRDs, the
    /// users' ClusterRoles and the operator's RBAC, and makes the operator's kubeconfig.
    pub async fn start(programs: Programs, logs: &Path) -> anyhow::Result<Self> {
        let started = Instant::now();
        let cluster = LocalCluster::start(Lifetime::Process).await.context(
            "failed to start a local cluster (run ./dev/deps and ./dev/build-control-plane first)",
        )?;
        let client = cluster.client().await?;
        jf_testkit::install_crds(&client)
            .await
            .context("failed to install the CRDs")?;
        jf_testkit::install_operator_rbac(&client)
            .await
            .context("failed to install the operator's RBAC")?;
        let operator_kubeconfig = jf_testkit::operator_kubeconfig(&cluster)
            .await
            .context("failed to make the operator's kubeconfig")?;
        std::fs::create_dir_all(logs)
            .with_context(|| format!("failed to create {}", logs.display()))?;
        Ok(Self {
            cluster,
            client,
            operator_kubeconfig,
            programs,
            logs: logs.to_owned(),
            startup_seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Stops every process of the cluster and removes its directory.
    pub fn stop(self) -> anyhow::Result<()> {
        let dir = self.cluster.dir().to_owned();
        let _ = std::fs::remove_file(&self.operator_kubeconfig);
        let killed = LocalCluster::stop(&dir)
            .with_context(|| format!("failed to stop the cluster in {}", dir.display()))?;
        if !killed.is_empty() {
            eprintln!("    killed after the grace period: {}", killed.join(", "));
        }
        Ok(())
    }
}
