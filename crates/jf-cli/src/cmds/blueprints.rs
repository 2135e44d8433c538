//! `jf blueprints`: what can be deployed.

use jf_cli::apps;
use jf_cli::output::{self, Format, OutputArgs};
use k8s_openapi::jiff::Timestamp;
use kube::Client;

/// List the Blueprints: the services that `jf deploy` can deploy into an environment.
///
/// Example: jf blueprints
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub output: OutputArgs,
}

pub async fn run(client: &Client, args: Args) -> anyhow::Result<()> {
    let blueprints = apps::blueprints(client).await?;
    match args.output.output {
        Format::Table if blueprints.is_empty() => {
            eprintln!("No blueprints; your platform team publishes them");
        }
        Format::Table => print!(
            "{}",
            output::blueprints_table(&blueprints, Timestamp::now())
        ),
        format => {
            let printable: Vec<_> = blueprints.iter().map(output::printable).collect();
            print!("{}", output::serialize(format, &printable)?);
        }
    }
    Ok(())
}
