//! `jf`: one command for a developer environment on the shared cluster.

mod cmds;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use jf_cli::connection::ConnectionArgs;

/// Spawn isolated, prod-like developer environments on a shared Kubernetes cluster.
#[derive(Debug, Parser)]
#[command(name = "jf", version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    connection: ConnectionArgs,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Completion(cmds::completion::Args),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = &cli.connection;
    match cli.command {
        Command::Completion(args) => cmds::completion::run::<Cli>(&args),
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn arguments_are_consistent() {
        Cli::command().debug_assert();
    }
}
