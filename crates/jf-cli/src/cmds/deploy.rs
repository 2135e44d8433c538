//! `jf deploy ENV BLUEPRINT` and `jf undeploy ENV APP`.

use std::collections::BTreeMap;

use jf_cli::apps;
use jf_cli::arguments;
use jf_cli::wait::{Spinner, WaitArgs};
use kube::Client;

/// Deploy a Blueprint into an environment, with the images of your branch, and wait until
/// everything it holds is ready. Deploying again updates it.
///
/// Example: jf deploy fix-bug logistics-api --image api=registry.example.com/logistics/api:fix-bug
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The environment.
    #[arg(value_name = "ENV", value_parser = arguments::environment_name)]
    pub environment: String,

    /// The Blueprint to deploy (`jf blueprints` lists them).
    #[arg(value_name = "BLUEPRINT", value_parser = arguments::object_name)]
    pub blueprint: String,

    /// Run IMAGE in every container named CONTAINER; repeat for more containers. Containers
    /// not named run the Blueprint's images.
    #[arg(long = "image", value_name = "CONTAINER=IMAGE", value_parser = arguments::image_pair)]
    pub images: Vec<(String, String)>,

    /// The App's name in the environment; the Blueprint's by default.
    #[arg(long, value_name = "NAME", value_parser = arguments::app_name)]
    pub name: Option<String>,

    #[command(flatten)]
    pub wait: WaitArgs,
}

/// Remove an App from an environment, with everything deployed with it (its database too),
/// and wait until it is gone.
///
/// Example: jf undeploy fix-bug logistics-api
#[derive(Debug, clap::Args)]
pub struct UndeployArgs {
    /// The environment.
    #[arg(value_name = "ENV", value_parser = arguments::environment_name)]
    pub environment: String,

    /// The App to remove.
    #[arg(value_name = "APP", value_parser = arguments::app_name)]
    pub name: String,

    #[command(flatten)]
    pub wait: WaitArgs,
}

pub async fn run(client: &Client, args: Args) -> anyhow::Result<()> {
    let name = match &args.name {
        Some(name) => name.clone(),
        None => arguments::app_name(&args.blueprint).map_err(|_| {
            anyhow::anyhow!(
                "the Blueprint's name \"{}\" cannot name an App (at most 40 characters, no '.'); \
                 give one with --name",
                args.blueprint
            )
        })?,
    };
    let images: BTreeMap<String, String> = args.images.into_iter().collect();
    let deployed = apps::deploy(client, &args.environment, &name, &args.blueprint, &images).await?;
    if args.wait.no_wait {
        println!(
            "Deploying \"{name}\" to environment \"{}\"; `jf status {}` shows how far it is",
            args.environment, args.environment
        );
        return Ok(());
    }
    let spinner = Spinner::start(format!("Deploying \"{name}\"…"));
    let app = apps::until_ready(client, &deployed, args.wait.timeout, &spinner).await?;
    drop(spinner);
    let status = app.status.clone().unwrap_or_default();
    for line in apps::deployed_lines(&status.objects) {
        println!("{line}");
    }
    match status.url {
        Some(url) => println!("\"{name}\" is ready at {url}"),
        None => println!("\"{name}\" is ready"),
    }
    Ok(())
}

pub async fn undeploy(client: &Client, args: UndeployArgs) -> anyhow::Result<()> {
    let namespace = apps::undeploy(client, &args.environment, &args.name).await?;
    if args.wait.no_wait {
        println!("Undeploying \"{}\"", args.name);
        return Ok(());
    }
    let spinner = Spinner::start(format!("Undeploying \"{}\"…", args.name));
    apps::until_gone(
        client,
        &args.environment,
        &namespace,
        &args.name,
        &args.wait,
    )
    .await?;
    drop(spinner);
    println!("Undeployed \"{}\"", args.name);
    Ok(())
}
