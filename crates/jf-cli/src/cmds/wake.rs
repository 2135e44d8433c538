//! `jf wake ENV`: restores a sleeping environment's workloads.

use jf_cli::wait::{self, Goal, WaitArgs};
use jf_cli::{arguments, environments};
use kube::Client;

/// Wake a sleeping environment: scale its workloads back to their replicas.
///
/// Example: jf wake fix-bug
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The environment.
    #[arg(value_name = "ENV", value_parser = arguments::environment_name)]
    pub name: String,

    #[command(flatten)]
    pub wait: WaitArgs,
}

pub async fn run(client: &Client, args: Args) -> anyhow::Result<()> {
    let environment = environments::set_sleeping(client, &args.name, false).await?;
    wait::with_spinner(client, &args.name, Goal::awake(&environment), &args.wait).await?;
    println!("Environment \"{}\" is awake", args.name);
    Ok(())
}
