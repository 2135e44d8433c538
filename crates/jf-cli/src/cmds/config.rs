//! `jf config update|get|unset`: the environment's configuration, published to its services
//! as the ConfigMap `env-config`.

use jf_cli::arguments;
use jf_cli::environments;
use jf_cli::output::{self, Format, OutputArgs};
use jf_cli::wait::{self, Goal, WaitArgs};
use kube::Client;

/// Read or change an environment's configuration.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Set configuration keys and wait until the environment has them.
    ///
    /// Example: jf config update fix-bug FEATURE_X=on LOG_LEVEL=debug
    #[command(visible_alias = "set")]
    Update(UpdateArgs),
    /// Print the configuration as KEY=VALUE lines, or the value of one key.
    ///
    /// Example: jf config get fix-bug FEATURE_X
    Get(GetArgs),
    /// Remove configuration keys and wait until the environment no longer has them.
    ///
    /// Example: jf config unset fix-bug FEATURE_X
    Unset(UnsetArgs),
}

#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// The environment.
    #[arg(value_name = "ENV", value_parser = arguments::environment_name)]
    pub name: String,

    /// The keys to set.
    #[arg(required = true, value_name = "KEY=VALUE", value_parser = arguments::config_pair)]
    pub pairs: Vec<(String, String)>,

    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// The environment.
    #[arg(value_name = "ENV", value_parser = arguments::environment_name)]
    pub name: String,

    /// Print only the value of this key.
    #[arg(value_parser = arguments::config_key)]
    pub key: Option<String>,

    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, clap::Args)]
pub struct UnsetArgs {
    /// The environment.
    #[arg(value_name = "ENV", value_parser = arguments::environment_name)]
    pub name: String,

    /// The keys to remove.
    #[arg(required = true, value_name = "KEY", value_parser = arguments::config_key)]
    pub keys: Vec<String>,

    #[command(flatten)]
    pub wait: WaitArgs,
}

pub async fn run(client: &Client, args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Update(args) => {
            let config = args.pairs.into_iter().collect();
            let environment = environments::update_config(client, &args.name, &config).await?;
            wait::with_spinner(client, &args.name, Goal::ready(&environment), &args.wait).await?;
            println!("Updated config");
        }
        Command::Get(args) => {
            let environment = environments::get(client, &args.name).await?;
            let config = environment.spec.config;
            match (args.key, args.output.output) {
                (Some(key), format) => {
                    let value =
                        config
                            .get(&key)
                            .ok_or_else(|| environments::Error::UnknownConfigKey {
                                name: args.name.clone(),
                                key: key.clone(),
                            })?;
                    match format {
                        Format::Table => println!("{value}"),
                        format => print!("{}", output::serialize(format, value)?),
                    }
                }
                (None, Format::Table) => print!("{}", output::config_lines(&config)),
                (None, format) => print!("{}", output::serialize(format, &config)?),
            }
        }
        Command::Unset(args) => {
            let environment = environments::unset_config(client, &args.name, &args.keys).await?;
            wait::with_spinner(client, &args.name, Goal::ready(&environment), &args.wait).await?;
            println!("Updated config");
        }
    }
    Ok(())
}
