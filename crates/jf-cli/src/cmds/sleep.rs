//! `jf sleep ENV`: scales an environment's workloads to zero.

use jf_cli::wait::{self, Goal, WaitArgs};
use jf_cli::{arguments, environments};
use kube::Client;

/// Put an environment to sleep: scale its Deployments and StatefulSets to zero until `jf wake`.
///
/// Example: jf sleep fix-bug
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The environment.
    #[arg(value_name = "ENV", value_parser = arguments::environment_name)]
    pub name: String,

    #[command(flatten)]
    pub wait: WaitArgs,
}

pub async fn run(client: &Client, args: Args) -> anyhow::Result<()> {
    let environment = environments::set_sleeping(client, &args.name, true).await?;
    wait::with_spinner(client, &args.name, Goal::sleeping(&environment), &args.wait).await?;
    println!("Environment \"{}\" is sleeping", args.name);
    Ok(())
}
