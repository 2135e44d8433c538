//! `jf db url|reset|list`: the PostgreSQL databases of an environment.

use jf_cli::arguments;
use jf_cli::databases;
use jf_cli::output::{self, Format, OutputArgs};
use jf_cli::wait::WaitArgs;
use k8s_openapi::jiff::Timestamp;
use kube::Client;

/// Use an environment's PostgreSQL databases.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print a database's connection URL, with its credentials; the database must be ready.
    ///
    /// Example: psql "$(jf db url fix-bug api)"
    Url(DatabaseArgs),
    /// Drop a database and create it again, empty or from its template, and wait until it is
    /// ready. Its URL and credentials stay the same; open connections are closed.
    ///
    /// Example: jf db reset fix-bug api
    Reset(ResetArgs),
    /// List the environment's databases.
    ///
    /// Example: jf db list fix-bug
    #[command(visible_alias = "ls")]
    List(ListArgs),
}

#[derive(Debug, clap::Args)]
pub struct DatabaseArgs {
    /// The environment.
    #[arg(value_name = "ENV", value_parser = arguments::environment_name)]
    pub environment: String,

    /// The database: the name of its PostgreSQL resource.
    #[arg(value_name = "NAME", value_parser = arguments::postgresql_name)]
    pub name: String,
}

#[derive(Debug, clap::Args)]
pub struct ResetArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The environment.
    #[arg(value_name = "ENV", value_parser = arguments::environment_name)]
    pub environment: String,

    #[command(flatten)]
    pub output: OutputArgs,
}

pub async fn run(client: &Client, args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Url(args) => {
            let url = databases::url(client, &args.environment, &args.name).await?;
            println!("{url}");
        }
        Command::Reset(args) => {
            let DatabaseArgs { environment, name } = args.database;
            let request = databases::request_reset(client, &environment, &name).await?;
            let Some(database) = databases::wait_for_reset(client, &request, &args.wait).await?
            else {
                println!("Resetting database \"{name}\"");
                return Ok(());
            };
            match &database.spec.template {
                Some(template) => {
                    println!("Reset database \"{name}\" from template \"{template}\"");
                }
                None => println!("Reset database \"{name}\""),
            }
        }
        Command::List(args) => {
            let databases = databases::list(client, &args.environment).await?;
            match args.output.output {
                Format::Table if databases.is_empty() => {
                    eprintln!("No databases in environment \"{}\"", args.environment);
                }
                Format::Table => {
                    print!("{}", output::databases_table(&databases, Timestamp::now()))
                }
                format => {
                    let printable: Vec<_> = databases.iter().map(output::printable).collect();
                    print!("{}", output::serialize(format, &printable)?);
                }
            }
        }
    }
    Ok(())
}
