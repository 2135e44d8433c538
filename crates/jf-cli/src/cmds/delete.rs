//! `jf delete env NAME`: deletes an environment and waits until its namespace is gone.

use jf_cli::arguments;
use jf_cli::environments;
use jf_cli::wait::{self, Goal, WaitArgs};
use kube::Client;

/// Delete an environment.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Delete an environment, its namespace and everything in it, and wait until they are gone.
    ///
    /// Example: jf delete env fix-bug
    #[command(visible_alias = "environment")]
    Env(EnvArgs),
}

#[derive(Debug, clap::Args)]
pub struct EnvArgs {
    /// The environment to delete.
    #[arg(value_parser = arguments::environment_name)]
    pub name: String,

    #[command(flatten)]
    pub wait: WaitArgs,
}

pub async fn run(client: &Client, args: Args) -> anyhow::Result<()> {
    let What::Env(args) = args.what;
    environments::delete(client, &args.name).await?;
    if args.wait.no_wait {
        println!("Deleting environment \"{}\"", args.name);
        return Ok(());
    }
    wait::with_spinner(client, &args.name, Goal::Gone, &args.wait).await?;
    println!("Deleted environment \"{}\"", args.name);
    Ok(())
}
