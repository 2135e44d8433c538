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
    Create(cmds::create::Args),
    Delete(cmds::delete::Args),
    List(cmds::list::Args),
    Get(cmds::get::Args),
    Status(cmds::status::Args),
    Deploy(cmds::deploy::Args),
    Undeploy(cmds::deploy::UndeployArgs),
    Restart(cmds::restart::Args),
    Logs(cmds::logs::Args),
    Blueprints(cmds::blueprints::Args),
    Config(cmds::config::Args),
    Users(cmds::users::Args),
    Extend(cmds::extend::Args),
    /// Put an environment to sleep: scale its Deployments and StatefulSets to zero until `jf wake`.
    ///
    /// Example: jf sleep fix-bug
    Sleep(cmds::sleep::Args),
    /// Wake a sleeping environment: scale its workloads back to their replicas.
    ///
    /// Example: jf wake fix-bug
    Wake(cmds::sleep::Args),
    Db(cmds::db::Args),
    Completion(cmds::completion::Args),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            if let Some(hint) = jf_cli::hint(error.as_ref()) {
                eprintln!("hint: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Completion(args) = &cli.command {
        cmds::completion::run::<Cli>(args);
        return Ok(());
    }
    let client = cli.connection.client().await?;
    match cli.command {
        Command::Create(args) => cmds::create::run(&client, args).await,
        Command::Delete(args) => cmds::delete::run(&client, args).await,
        Command::List(args) => cmds::list::run(&client, args).await,
        Command::Get(cmds::get::Args {
            what: cmds::get::What::Environments(args),
        }) => cmds::list::run(&client, args).await,
        Command::Status(args) => cmds::status::run(&client, args).await,
        Command::Deploy(args) => cmds::deploy::run(&client, args).await,
        Command::Undeploy(args) => cmds::deploy::undeploy(&client, args).await,
        Command::Restart(args) => cmds::restart::run(&client, args).await,
        Command::Logs(args) => cmds::logs::run(&client, args).await,
        Command::Blueprints(args) => cmds::blueprints::run(&client, args).await,
        Command::Config(args) => cmds::config::run(&client, args).await,
        Command::Users(args) => cmds::users::run(&client, args).await,
        Command::Extend(args) => cmds::extend::run(&client, args).await,
        Command::Sleep(args) => cmds::sleep::run(&client, args, true).await,
        Command::Wake(args) => cmds::sleep::run(&client, args, false).await,
        Command::Db(args) => cmds::db::run(&client, args).await,
        Command::Completion(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;
    use clap::error::ErrorKind;

    use super::*;

    #[test]
    fn arguments_are_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(arguments: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("jf").chain(arguments.iter().copied()))
    }

    fn refused(arguments: &[&str]) -> String {
        let error = parse(arguments).expect_err("refused");
        assert_eq!(error.exit_code(), 2, "{error}");
        error.to_string()
    }

    #[test]
    fn parses_create_env() {
        let cli = parse(&[
            "create",
            "env",
            "fix-bug",
            "--user",
            "bob",
            "--user",
            "carol",
            "--group",
            "qa",
            "--config",
            "FEATURE_X=on",
            "--config",
            "URL=http://x?a=b",
            "--ttl",
            "24h",
            "--role",
            "edit",
            "--timeout",
            "90s",
        ])
        .expect("parses");
        let Command::Create(cmds::create::Args {
            what: cmds::create::What::Env(args),
        }) = cli.command
        else {
            panic!("not create env: {cli:?}");
        };
        assert_eq!(args.name, "fix-bug");
        assert_eq!(args.users, ["bob", "carol"]);
        assert_eq!(args.groups, ["qa"]);
        assert_eq!(
            args.config,
            [
                ("FEATURE_X".to_owned(), "on".to_owned()),
                ("URL".to_owned(), "http://x?a=b".to_owned())
            ]
        );
        assert_eq!(args.ttl.as_secs(), 24 * 3600);
        assert_eq!(args.role.as_deref(), Some("edit"));
        assert_eq!(args.wait.timeout.as_secs(), 90);
        assert!(!args.wait.no_wait);
    }

    #[test]
    fn defaults_ttl_and_timeout() {
        let cli = parse(&["create", "environment", "a"]).expect("parses");
        let Command::Create(cmds::create::Args {
            what: cmds::create::What::Env(args),
        }) = cli.command
        else {
            panic!("not create env");
        };
        assert_eq!(args.ttl.as_secs(), 72 * 3600);
        assert_eq!(args.wait.timeout.as_secs(), 120);
    }

    #[test]
    fn refuses_bad_values_with_what_is_allowed() {
        assert!(
            refused(&["create", "env", "Fix_Bug"]).contains("DNS label of at most 40 characters")
        );
        assert!(refused(&["create", "env", &"a".repeat(41)]).contains("at most 40"));
        assert!(refused(&["create", "env", "a", "--config", "JF_URL=x"]).contains("reserved"));
        assert!(refused(&["create", "env", "a", "--config", "novalue"]).contains("KEY=VALUE"));
        assert!(refused(&["create", "env", "a", "--ttl", "soon"]).contains("72h"));
        assert!(refused(&["create", "env", "a", "--ttl", "0s"]).contains("longer than zero"));
        assert!(refused(&["create", "env", "a", "--role", "cluster-admin"]).contains("never"));
        assert!(refused(&["create", "env", "a", "--timeout=-1m"]).contains("longer than zero"));
        assert!(refused(&["config", "update", "a"]).contains("KEY=VALUE"));
        assert!(refused(&["config", "unset", "a", "JF_NAMESPACE"]).contains("reserved"));
        assert!(refused(&["users", "add", "a"]).contains("USER"));
        assert!(refused(&["extend", "a", "tomorrow"]).contains("72h"));
        assert!(refused(&["list", "-o", "xml"]).contains("possible values"));
        assert!(refused(&["status", "UPPER"]).contains("DNS label"));
        let error = parse(&["create"]).expect_err("needs a subcommand");
        assert_eq!(
            error.kind(),
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        );
    }

    #[test]
    fn get_envs_is_list() {
        for word in ["envs", "env", "environments"] {
            let cli = parse(&["get", word, "-o", "yaml"]).expect(word);
            let Command::Get(cmds::get::Args {
                what: cmds::get::What::Environments(args),
            }) = cli.command
            else {
                panic!("not get envs");
            };
            assert_eq!(args.output.output, jf_cli::output::Format::Yaml);
        }
    }

    #[test]
    fn parses_db_commands() {
        let cli = parse(&["db", "url", "fix-bug", "api"]).expect("parses");
        let Command::Db(cmds::db::Args {
            command: cmds::db::Command::Url(args),
        }) = cli.command
        else {
            panic!("not db url: {cli:?}");
        };
        assert_eq!(
            (args.environment.as_str(), args.name.as_str()),
            ("fix-bug", "api")
        );

        let cli = parse(&["db", "reset", "fix-bug", "api", "--timeout", "30s"]).expect("parses");
        let Command::Db(cmds::db::Args {
            command: cmds::db::Command::Reset(args),
        }) = cli.command
        else {
            panic!("not db reset: {cli:?}");
        };
        assert_eq!(args.database.name, "api");
        assert_eq!(args.wait.timeout.as_secs(), 30);
        assert!(!args.wait.no_wait);

        for list in ["list", "ls"] {
            let cli = parse(&["db", list, "fix-bug", "-o", "json"]).expect("parses");
            let Command::Db(cmds::db::Args {
                command: cmds::db::Command::List(args),
            }) = cli.command
            else {
                panic!("not db list: {cli:?}");
            };
            assert_eq!(args.output.output, jf_cli::output::Format::Json);
        }

        assert!(refused(&["db", "url", "fix-bug", "Api"]).contains("at most 53 characters"));
        assert!(refused(&["db", "url", "Fix", "api"]).contains("DNS label"));
        assert!(refused(&["db", "url", "fix-bug"]).contains("NAME"));
        assert!(refused(&["db", "reset", "fix-bug", "api", "--timeout", "soon"]).contains("72h"));
    }

    #[test]
    fn connection_flags_go_anywhere() {
        let cli =
            parse(&["status", "a", "--context", "dev", "--kubeconfig", "/tmp/k"]).expect("parses");
        assert_eq!(cli.connection.context.as_deref(), Some("dev"));
        let cli = parse(&["--context", "dev", "list"]).expect("parses");
        assert_eq!(cli.connection.context.as_deref(), Some("dev"));
    }
}
