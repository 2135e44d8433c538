//! `jf sleep ENV` and `jf wake ENV`: scale an environment's workloads to zero and back.

use jf_cli::wait::{self, Goal, WaitArgs};
use jf_cli::{arguments, environments};
use kube::Client;

/// The environment to put to sleep or to wake.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The environment.
    #[arg(value_name = "ENV", value_parser = arguments::environment_name)]
    pub name: String,

    #[command(flatten)]
    pub wait: WaitArgs,
}

/// Sets `sleeping` and waits until the operator has scaled the workloads.
pub async fn run(client: &Client, args: Args, sleeping: bool) -> anyhow::Result<()> {
    let environment = environments::set_sleeping(client, &args.name, sleeping).await?;
    let goal = if sleeping {
        Goal::sleeping(&environment)
    } else {
        Goal::awake(&environment)
    };
    wait::with_spinner(client, &args.name, goal, &args.wait).await?;
    let state = if sleeping { "sleeping" } else { "awake" };
    println!("Environment \"{}\" is {state}", args.name);
    Ok(())
}
