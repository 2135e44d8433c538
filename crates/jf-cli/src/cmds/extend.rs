//! `jf extend ENV DURATION`: keeps an environment longer.

use jf_cli::{arguments, duration, environments};
use k8s_openapi::jiff::SignedDuration;
use kube::Client;

/// Keep an environment longer: move its expiry later by DURATION (from now, if already past).
///
/// Example: jf extend fix-bug 24h
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The environment.
    #[arg(value_name = "ENV", value_parser = arguments::environment_name)]
    pub name: String,

    /// How much longer, e.g. 24h or 7d.
    #[arg(value_parser = duration::parse)]
    pub duration: SignedDuration,
}

pub async fn run(client: &Client, args: Args) -> anyhow::Result<()> {
    let until = environments::extend(client, &args.name, args.duration).await?;
    println!("Extended environment \"{}\" until {until}", args.name);
    Ok(())
}
