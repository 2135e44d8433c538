//! `jf logs ENV WORKLOAD [-f]`: the logs of a workload's pods.

use std::io::Write as _;

use futures::StreamExt as _;
use jf_cli::arguments;
use jf_cli::workloads::{self, LogRequest};
use kube::Client;

/// Print the logs of a Deployment's or StatefulSet's pods; every container's, each line
/// prefixed with `[pod/container]` when there is more than one.
///
/// Example: jf logs fix-bug logistics-api -f
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The environment.
    #[arg(value_name = "ENV", value_parser = arguments::environment_name)]
    pub environment: String,

    /// The Deployment or StatefulSet.
    #[arg(value_name = "WORKLOAD", value_parser = arguments::object_name)]
    pub workload: String,

    /// Keep printing lines as they are written, until interrupted.
    #[arg(short, long)]
    pub follow: bool,

    /// Only this container's log.
    #[arg(short, long, value_name = "CONTAINER")]
    pub container: Option<String>,

    /// Only the last N lines of each log.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(0..))]
    pub tail: Option<i64>,
}

pub async fn run(client: &Client, args: Args) -> anyhow::Result<()> {
    let request = LogRequest {
        follow: args.follow,
        container: args.container,
        tail: args.tail,
    };
    let mut lines = workloads::logs(client, &args.environment, &args.workload, &request).await?;
    let mut stdout = std::io::stdout().lock();
    while let Some(line) = lines.next().await {
        let line = line?;
        // A closed pipe (`jf logs … | head`) ends the command quietly.
        if writeln!(stdout, "{line}").is_err() || stdout.flush().is_err() {
            break;
        }
    }
    Ok(())
}
