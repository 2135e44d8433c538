//! `jf list`: the environments of the cluster.

use jf_cli::environments;
use jf_cli::output::{self, Format, OutputArgs};
use k8s_openapi::jiff::Timestamp;
use kube::Client;

/// List the environments.
///
/// Example: jf list -o yaml
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub output: OutputArgs,
}

pub async fn run(client: &Client, args: Args) -> anyhow::Result<()> {
    let environments = environments::list(client).await?;
    match args.output.output {
        Format::Table if environments.is_empty() => {
            eprintln!("No environments; create one with `jf create env NAME`");
        }
        Format::Table => print!(
            "{}",
            output::environments_table(&environments, Timestamp::now())
        ),
        format => {
            let printable: Vec<_> = environments.iter().map(output::printable).collect();
            print!("{}", output::serialize(format, &printable)?);
        }
    }
    Ok(())
}
