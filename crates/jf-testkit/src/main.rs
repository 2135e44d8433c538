//! `jf-testkit`: starts, checks and stops local clusters from the shell (`./dev/up`,
//! `./dev/test`). Tests use the library directly.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use jf_testkit::{Lifetime, LocalCluster};

#[derive(Parser)]
#[command(
    version,
    about = "Local Kubernetes clusters for Jango Fett's tests and demo"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Start a cluster that runs until `stop`; prints its directory on stdout.
    Start,
    /// Check that every process of the cluster in DIR is running.
    Status {
        /// The cluster's directory, as printed by `start`.
        dir: PathBuf,
    },
    /// Stop every process of the cluster in DIR and remove the directory.
    Stop {
        /// The cluster's directory, as printed by `start`.
        dir: PathBuf,
    },
    /// Print the cluster's description (JSON): kubeconfig, server, PostgreSQL URL, Redis.
    Info {
        /// The cluster's directory, as printed by `start`.
        dir: PathBuf,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Commands::Start => {
            let started = Instant::now();
            let cluster = LocalCluster::start(Lifetime::Detached)
                .await
                .context("failed to start a local cluster")?;
            eprintln!(
                "Started Kubernetes {} in {:.1}s at {}",
                cluster.info().kubernetes_version,
                started.elapsed().as_secs_f64(),
                cluster.info().server
            );
            println!("{}", cluster.dir().display());
        }
        Commands::Status { dir } => {
            let cluster = LocalCluster::open(&dir)?;
            let version = cluster.client().await?.apiserver_version().await?;
            println!(
                "running: Kubernetes {} at {}",
                version.git_version,
                cluster.info().server
            );
        }
        Commands::Stop { dir } => {
            let killed = LocalCluster::stop(&dir)?;
            if !killed.is_empty() {
                eprintln!("killed after the grace period: {}", killed.join(", "));
            }
            eprintln!("Stopped the cluster in {}", dir.display());
        }
        Commands::Info { dir } => {
            let cluster = LocalCluster::open(&dir)?;
            println!("{}", serde_json::to_string_pretty(cluster.info())?);
        }
    }
    Ok(())
}
