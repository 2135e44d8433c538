//! `jf restart ENV WORKLOAD`: replace a workload's pods, one by one, and wait for the rollout.

use jf_cli::arguments;
use jf_cli::wait::{Spinner, WaitArgs};
use jf_cli::workloads;
use kube::Client;

/// Restart a Deployment or StatefulSet: its pods are replaced one by one, as `kubectl rollout
/// restart` does, and the command waits until every new pod is ready.
///
/// Example: jf restart fix-bug logistics-worker
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The environment.
    #[arg(value_name = "ENV", value_parser = arguments::environment_name)]
    pub environment: String,

    /// The Deployment or StatefulSet.
    #[arg(value_name = "WORKLOAD", value_parser = arguments::object_name)]
    pub workload: String,

    #[command(flatten)]
    pub wait: WaitArgs,
}

pub async fn run(client: &Client, args: Args) -> anyhow::Result<()> {
    let restarted = workloads::restart(client, &args.environment, &args.workload).await?;
    if args.wait.no_wait {
        println!("Restarting \"{}\"", args.workload);
        return Ok(());
    }
    let spinner = Spinner::start(format!("Restarting \"{}\"…", args.workload));
    workloads::until_rolled_out(client, &restarted, args.wait.timeout, &spinner).await?;
    drop(spinner);
    println!("Restarted \"{}\"", args.workload);
    Ok(())
}
