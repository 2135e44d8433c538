//! `jf users add|remove`: who has access to an environment.

use jf_cli::arguments;
use jf_cli::environments;
use jf_cli::wait::{self, Goal, WaitArgs};
use kube::Client;

/// Give people access to an environment, or take it away.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Give users access to the environment and wait until they have it.
    ///
    /// Example: jf users add fix-bug bob carol
    Add(UsersArgs),
    /// Take access to the environment away from users and wait until it is gone.
    ///
    /// Example: jf users remove fix-bug bob
    #[command(visible_alias = "rm")]
    Remove(UsersArgs),
}

#[derive(Debug, clap::Args)]
pub struct UsersArgs {
    /// The environment.
    #[arg(value_name = "ENV", value_parser = arguments::environment_name)]
    pub name: String,

    /// User names, as the cluster knows them.
    #[arg(required = true, value_name = "USER", value_parser = arguments::subject_name)]
    pub users: Vec<String>,

    #[command(flatten)]
    pub wait: WaitArgs,
}

pub async fn run(client: &Client, args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Add(args) => {
            let change = environments::add_users(client, &args.name, &args.users).await?;
            wait::with_spinner(
                client,
                &args.name,
                Goal::ready(&change.environment),
                &args.wait,
            )
            .await?;
            for user in &change.unchanged {
                println!(
                    "User \"{user}\" already has access to environment \"{}\"",
                    args.name
                );
            }
            for user in &change.changed {
                println!("Added user \"{user}\" to environment \"{}\"", args.name);
            }
        }
        Command::Remove(args) => {
            let change = environments::remove_users(client, &args.name, &args.users).await?;
            // Whoever removes themselves can no longer watch the environment.
            let caller = environments::whoami(client).await.ok();
            let removed_self = caller.is_some_and(|caller| change.changed.contains(&caller));
            if !removed_self {
                wait::with_spinner(
                    client,
                    &args.name,
                    Goal::ready(&change.environment),
                    &args.wait,
                )
                .await?;
            }
            for user in &change.changed {
                println!("Removed user \"{user}\" from environment \"{}\"", args.name);
            }
        }
    }
    Ok(())
}
