//! `jf status ENV`: what an environment is and how it is doing.

use jf_cli::output::{self, Format, OutputArgs};
use jf_cli::{apps, arguments, databases, environments, redis};
use k8s_openapi::jiff::Timestamp;
use kube::Client;

/// Show an environment: its namespace, URL, users, expiry and conditions, its Apps as a tree
/// of what they deployed, its databases and Redis servers.
///
/// Example: jf status fix-bug
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The environment to show.
    #[arg(value_name = "ENV", value_parser = arguments::environment_name)]
    pub name: String,

    #[command(flatten)]
    pub output: OutputArgs,
}

pub async fn run(client: &Client, args: Args) -> anyhow::Result<()> {
    let environment = environments::get(client, &args.name).await?;
    match args.output.output {
        Format::Table => {
            let databases = databases::listing(client, &environment).await?;
            let servers = redis::listing(client, &environment).await?;
            let apps = apps::listing(client, &environment).await?;
            print!(
                "{}{}{}{}",
                output::describe(&environment, Timestamp::now()),
                output::apps_section(&apps),
                output::databases_section(&databases),
                output::redis_section(&servers)
            );
        }
        format => print!(
            "{}",
            output::serialize(format, &output::printable(&environment))?
        ),
    }
    Ok(())
}
