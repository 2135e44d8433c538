//! `jf create env NAME`: creates an environment and waits until it is ready.

use std::collections::BTreeMap;

use jf_cli::environments::{self, NewEnvironment};
use jf_cli::wait::{self, Goal, WaitArgs};
use jf_cli::{arguments, duration};
use k8s_openapi::jiff::SignedDuration;
use kube::Client;

/// Create an environment.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Create an environment and wait until it is ready.
    ///
    /// You are always one of its users.
    ///
    /// Example: jf create env fix-bug --user bob --config FEATURE_X=on
    #[command(visible_alias = "environment")]
    Env(EnvArgs),
}

#[derive(Debug, clap::Args)]
pub struct EnvArgs {
    /// The environment's name: a DNS label of at most 40 characters.
    #[arg(value_parser = arguments::environment_name)]
    pub name: String,

    /// Give this user access too (repeatable).
    #[arg(long = "user", value_name = "USER", value_parser = arguments::subject_name)]
    pub users: Vec<String>,

    /// Give this group access (repeatable).
    #[arg(long = "group", value_name = "GROUP", value_parser = arguments::subject_name)]
    pub groups: Vec<String>,

    /// Set a configuration key (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = arguments::config_pair)]
    pub config: Vec<(String, String)>,

    /// How long the environment lives before the operator deletes it; `jf extend` adds time.
    #[arg(long, value_name = "DURATION", default_value = "72h", value_parser = duration::parse)]
    pub ttl: SignedDuration,

    /// The role the users get in the namespace: admin (the default), edit or view.
    #[arg(long, value_parser = arguments::role)]
    pub role: Option<String>,

    #[command(flatten)]
    pub wait: WaitArgs,
}

pub async fn run(client: &Client, args: Args) -> anyhow::Result<()> {
    let What::Env(args) = args.what;
    let request = NewEnvironment {
        users: args.users,
        groups: args.groups,
        config: args.config.into_iter().collect::<BTreeMap<_, _>>(),
        ttl: Some(args.ttl),
        role: args.role,
    };
    let environment = environments::create(client, &args.name, &request).await?;
    wait::with_spinner(client, &args.name, Goal::ready(&environment), &args.wait).await?;
    println!("Created new environment \"{}\"", args.name);
    Ok(())
}
