//! The App controller against the real local cluster: Blueprints rendered into environments,
//! kept in line with their Blueprint and configuration, and diagnosed when they fail.

mod support;

use std::collections::BTreeMap;

use anyhow::{Context as _, ensure};
use jf_api::conditions::{self, READY};
use jf_api::{App, AppSpec, Blueprint, EnvironmentSpec};
use jf_testkit::{
    IMAGE_THAT_CRASH_LOOPS, IMAGE_THAT_FAILS_TO_PULL, eventually, eventually_within, unique_name,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt as _};
use serde_json::json;
use support::{admin, create, ready};

/// The seed's logistics Blueprint, under a name of its own.
fn logistics(name: &str) -> anyhow::Result<Blueprint> {
    let text = include_str!("../../../deploy/examples/logistics/blueprint.yaml");
    let mut blueprint: Blueprint = serde_saphyr::from_str(text).context("the example parses")?;
    blueprint.metadata.name = Some(name.to_owned());
    Ok(blueprint)
}

async fn publish(client: &Client, blueprint: &Blueprint) -> anyhow::Result<()> {
    Api::<Blueprint>::all(client.clone())
        .patch(
            &blueprint.name_any(),
            &PatchParams::apply("test").force(),
            &Patch::Apply(blueprint),
        )
        .await?;
    Ok(())
}

/// A new environment, ready; returns its namespace.
async fn environment(client: &Client, spec: EnvironmentSpec) -> anyhow::Result<(String, String)> {
    let name = unique_name("apps");
    create(client, &name, spec).await?;
    ready(client, &name).await;
    Ok((name.clone(), format!("jf-{name}")))
}

async fn deploy(
    client: &Client,
    namespace: &str,
    name: &str,
    blueprint: &str,
    images: &[(&str, &str)],
) -> anyhow::Result<()> {
    let app = App::new(
        name,
        AppSpec {
            blueprint: blueprint.to_owned(),
            images: images
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            replicas: None,
        },
    );
    Api::<App>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &app)
        .await?;
    Ok(())
}

/// Waits until the App's Ready condition has `reason` (and is about its current spec).
async fn app_reason(client: &Client, namespace: &str, name: &str, reason: &str) -> App {
    let api: Api<App> = Api::namespaced(client.clone(), namespace);
    eventually_within(
        std::time::Duration::from_secs(60),
        &format!("app {name} to be {reason}"),
        || async {
            let app = api.get(name).await?;
            let condition = app
                .status
                .as_ref()
                .and_then(|status| conditions::find(&status.conditions, READY).cloned());
            ensure!(
                condition
                    .as_ref()
                    .is_some_and(|condition| condition.reason == reason
                        && condition.observed_generation == app.metadata.generation),
                "{condition:?}"
            );
            Ok(app)
        },
    )
    .await
}

fn image_of(deployment: &Deployment) -> Option<String> {
    deployment
        .spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .image
        .clone()
}

#[tokio::test]
async fn the_seeds_logistics_blueprint_deploys_and_becomes_ready() -> anyhow::Result<()> {
    let client = admin().await;
    let blueprint = unique_name("logistics");
    publish(&client, &logistics(&blueprint)?).await?;
    let (environment, namespace) = environment(&client, EnvironmentSpec::default()).await?;
    deploy(
        &client,
        &namespace,
        "logistics-api",
        &blueprint,
        &[("api", "registry.example.com/logistics/api:fix")],
    )
    .await?;
    let app = app_reason(&client, &namespace, "logistics-api", "Ready").await;
    let status = app.status.unwrap_or_default();
    assert_eq!(
        status.url,
        Some(format!("https://logistics-api-{environment}.dev.localhost"))
    );
    let objects: Vec<(String, String, bool)> = status
        .objects
        .iter()
        .map(|object| (object.kind.clone(), object.name.clone(), object.ready))
        .collect();
    assert_eq!(
        objects,
        [
            ("Deployment", "logistics-api"),
            ("Deployment", "logistics-worker"),
            ("Service", "logistics-api"),
            ("ConfigMap", "logistics-settings"),
            ("PostgreSQL", "logistics-api"),
            ("Redis", "logistics-api"),
            ("Ingress", "logistics-api"),
        ]
        .map(|(kind, name)| (kind.to_owned(), name.to_owned(), true))
    );

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let api = deployments.get("logistics-api").await?;
    assert_eq!(
        image_of(&api).as_deref(),
        Some("registry.example.com/logistics/api:fix")
    );
    assert_eq!(api.owner_references()[0].kind, "App");
    let worker = deployments.get("logistics-worker").await?;
    assert_eq!(
        image_of(&worker).as_deref(),
        Some("registry.example.com/logistics/worker:1.14.0")
    );
    let env: Vec<(String, Option<String>)> = api
        .spec
        .and_then(|spec| spec.template.spec)
        .map(|pod| pod.containers[0].env.clone().unwrap_or_default())
        .unwrap_or_default()
        .into_iter()
        .map(|variable| (variable.name, variable.value))
        .collect();
    assert!(
        env.contains(&("ENVIRONMENT".to_owned(), Some(environment.clone()))),
        "{env:?}"
    );
    let ingress = Api::<Ingress>::namespaced(client.clone(), &namespace)
        .get("logistics-api")
        .await?;
    let host = ingress
        .spec
        .and_then(|spec| spec.rules)
        .and_then(|rules| rules[0].host.clone());
    assert_eq!(
        host,
        Some(format!("logistics-api-{environment}.dev.localhost"))
    );
    Ok(())
}

#[tokio::test]
async fn configuration_changes_roll_the_pods() -> anyhow::Result<()> {
    let client = admin().await;
    let blueprint = unique_name("logistics");
    publish(&client, &logistics(&blueprint)?).await?;
    let (environment, namespace) = environment(&client, EnvironmentSpec::default()).await?;
    deploy(&client, &namespace, "logistics-api", &blueprint, &[]).await?;
    app_reason(&client, &namespace, "logistics-api", "Ready").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let hash = |deployment: &Deployment| {
        deployment
            .spec
            .as_ref()
            .and_then(|spec| spec.template.metadata.as_ref())
            .and_then(|metadata| metadata.annotations.as_ref())
            .and_then(|annotations| annotations.get("jango-fett.dev/config-hash").cloned())
    };
    let before = hash(&deployments.get("logistics-worker").await?);
    assert!(before.is_some());
    Api::<jf_api::Environment>::all(client.clone())
        .patch(
            &environment,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"config": {"FEATURE_X": "on"}}})),
        )
        .await?;
    eventually(
        "the worker's pod template to carry the new configuration",
        || async {
            let now = hash(&deployments.get("logistics-worker").await?);
            ensure!(now != before, "still {now:?}");
            Ok(())
        },
    )
    .await;
    app_reason(&client, &namespace, "logistics-api", "Ready").await;
    Ok(())
}

#[tokio::test]
async fn blueprint_changes_propagate_and_dropped_resources_go() -> anyhow::Result<()> {
    let client = admin().await;
    let name = unique_name("logistics");
    let mut blueprint = logistics(&name)?;
    publish(&client, &blueprint).await?;
    let (_, namespace) = environment(&client, EnvironmentSpec::default()).await?;
    deploy(&client, &namespace, "logistics-api", &name, &[]).await?;
    app_reason(&client, &namespace, "logistics-api", "Ready").await;

    // A new setting and no more worker.
    blueprint
        .spec
        .resources
        .retain(|resource| resource["metadata"]["name"] != json!("logistics-worker"));
    for resource in &mut blueprint.spec.resources {
        if resource["kind"] == json!("ConfigMap") {
            resource["data"]["LOG_LEVEL"] = json!("debug");
        }
    }
    publish(&client, &blueprint).await?;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    eventually("the Blueprint's change to reach the App", || async {
        let data: BTreeMap<String, String> = config_maps
            .get("logistics-settings")
            .await?
            .data
            .unwrap_or_default();
        ensure!(
            data.get("LOG_LEVEL").map(String::as_str) == Some("debug"),
            "{data:?}"
        );
        let worker = deployments.get_opt("logistics-worker").await?;
        ensure!(
            worker.is_none_or(|worker| worker.metadata.deletion_timestamp.is_some()),
            "the worker is still there"
        );
        Ok(())
    })
    .await;
    // The App's status follows the Blueprint's latest generation.
    let generation = Api::<Blueprint>::all(client.clone())
        .get(&blueprint.name_any())
        .await?
        .metadata
        .generation;
    let apps: Api<App> = Api::namespaced(client.clone(), &namespace);
    eventually("the App to be ready with the new Blueprint", || async {
        let app = apps.get("logistics-api").await?;
        let status = app.status.unwrap_or_default();
        ensure!(
            status.blueprint_generation == generation
                && conditions::is_ready(&status.conditions, app.metadata.generation),
            "{:?} {:?}",
            status.blueprint_generation,
            conditions::find(&status.conditions, READY)
        );
        ensure!(
            !status
                .objects
                .iter()
                .any(|object| object.name == "logistics-worker"),
            "{:?}",
            status.objects
        );
        Ok(())
    })
    .await;
    Ok(())
}

#[tokio::test]
async fn images_that_fail_are_diagnosed() -> anyhow::Result<()> {
    let client = admin().await;
    let blueprint = unique_name("logistics");
    publish(&client, &logistics(&blueprint)?).await?;
    let (_, namespace) = environment(&client, EnvironmentSpec::default()).await?;
    deploy(
        &client,
        &namespace,
        "pulls",
        &blueprint,
        &[("api", IMAGE_THAT_FAILS_TO_PULL)],
    )
    .await?;
    let app = app_reason(&client, &namespace, "pulls", "ImagePullBackOff").await;
    let message = conditions::find(&app.status.unwrap_or_default().conditions, READY)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains(IMAGE_THAT_FAILS_TO_PULL), "{message}");

    deploy(
        &client,
        &namespace,
        "crashes",
        &blueprint,
        &[("worker", IMAGE_THAT_CRASH_LOOPS)],
    )
    .await?;
    let app = app_reason(&client, &namespace, "crashes", "CrashLoopBackOff").await;
    let status = app.status.unwrap_or_default();
    let worker = status
        .objects
        .iter()
        .find(|object| object.name == "logistics-worker")
        .context("the worker")?;
    assert_eq!(worker.reason.as_deref(), Some("CrashLoopBackOff"));
    Ok(())
}

#[tokio::test]
async fn unschedulable_pods_and_exceeded_quotas_are_diagnosed() -> anyhow::Result<()> {
    let client = admin().await;
    let name = unique_name("heavy");
    let mut blueprint = logistics(&name)?;
    for resource in &mut blueprint.spec.resources {
        if resource["metadata"]["name"] == json!("logistics-worker") {
            resource["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] =
                json!("500");
        }
    }
    publish(&client, &blueprint).await?;
    let (_, namespace) = environment(&client, EnvironmentSpec::default()).await?;
    deploy(&client, &namespace, "heavy", &name, &[]).await?;
    let app = app_reason(&client, &namespace, "heavy", "Unschedulable").await;
    let message = conditions::find(&app.status.unwrap_or_default().conditions, READY)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("Insufficient cpu"), "{message}");

    let blueprint = unique_name("logistics");
    publish(&client, &logistics(&blueprint)?).await?;
    let spec = EnvironmentSpec {
        quota: Some(jf_api::EnvironmentQuota {
            cpu: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
                "150m".to_owned(),
            )),
            ..Default::default()
        }),
        ..EnvironmentSpec::default()
    };
    let (_, namespace) = environment(&client, spec).await?;
    deploy(&client, &namespace, "squeezed", &blueprint, &[]).await?;
    let app = app_reason(&client, &namespace, "squeezed", "QuotaExceeded").await;
    let message = conditions::find(&app.status.unwrap_or_default().conditions, READY)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("exceeded quota"), "{message}");
    Ok(())
}

#[tokio::test]
async fn a_missing_blueprint_or_an_unknown_container_is_refused() -> anyhow::Result<()> {
    let client = admin().await;
    let (_, namespace) = environment(&client, EnvironmentSpec::default()).await?;
    deploy(&client, &namespace, "ghost", &unique_name("nothing"), &[]).await?;
    app_reason(&client, &namespace, "ghost", "BlueprintNotFound").await;

    let blueprint = unique_name("logistics");
    publish(&client, &logistics(&blueprint)?).await?;
    deploy(&client, &namespace, "typo", &blueprint, &[("apii", "x:1")]).await?;
    let app = app_reason(&client, &namespace, "typo", "UnknownContainer").await;
    let message = conditions::find(&app.status.unwrap_or_default().conditions, READY)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("\"apii\"") && message.contains("api, worker"),
        "{message}"
    );
    Ok(())
}

#[tokio::test]
async fn a_sleeping_environment_keeps_its_apps_at_zero() -> anyhow::Result<()> {
    let client = admin().await;
    let blueprint = unique_name("logistics");
    publish(&client, &logistics(&blueprint)?).await?;
    let (environment, namespace) = environment(&client, EnvironmentSpec::default()).await?;
    deploy(&client, &namespace, "logistics-api", &blueprint, &[]).await?;
    app_reason(&client, &namespace, "logistics-api", "Ready").await;
    let environments: Api<jf_api::Environment> = Api::all(client.clone());
    environments
        .patch(
            &environment,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"sleeping": true}})),
        )
        .await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    eventually("the App's workloads to sleep", || async {
        let replicas: Vec<Option<i32>> = deployments
            .list(&Default::default())
            .await?
            .items
            .iter()
            .map(|deployment| deployment.spec.as_ref().and_then(|spec| spec.replicas))
            .collect();
        ensure!(
            !replicas.is_empty() && replicas.iter().all(|replicas| *replicas == Some(0)),
            "{replicas:?}"
        );
        Ok(())
    })
    .await;
    environments
        .patch(
            &environment,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"sleeping": false}})),
        )
        .await?;
    eventually("the App's workloads to wake", || async {
        let api = deployments.get("logistics-api").await?;
        ensure!(api.spec.and_then(|spec| spec.replicas) == Some(2));
        Ok(())
    })
    .await;
    app_reason(&client, &namespace, "logistics-api", "Ready").await;
    Ok(())
}

#[tokio::test]
async fn a_blueprint_says_whether_it_can_be_deployed() -> anyhow::Result<()> {
    let client = admin().await;
    let name = unique_name("logistics");
    let mut blueprint = logistics(&name)?;
    publish(&client, &blueprint).await?;
    let blueprints: Api<Blueprint> = Api::all(client.clone());
    let verdict = |reason: &'static str| {
        let blueprints = blueprints.clone();
        let name = name.clone();
        async move {
            eventually(&format!("blueprint {name} to be {reason}"), || async {
                let blueprint = blueprints.get(&name).await?;
                let status = blueprint.status.unwrap_or_default();
                let condition = conditions::find(&status.conditions, READY).cloned();
                ensure!(
                    condition
                        .as_ref()
                        .is_some_and(|condition| condition.reason == reason)
                        && status.observed_generation == blueprint.metadata.generation,
                    "{condition:?}"
                );
                Ok(condition
                    .map(|condition| condition.message)
                    .unwrap_or_default())
            })
            .await
        }
    };
    let message = verdict("Published").await;
    assert!(
        message.contains(&format!("jf deploy ENV {name}")),
        "{message}"
    );

    // Two ConfigMaps of one name: admission cannot see it; the status says it.
    let settings = blueprint.spec.resources[3].clone();
    blueprint.spec.resources.push(settings);
    publish(&client, &blueprint).await?;
    let message = verdict("InvalidBlueprint").await;
    assert_eq!(
        message,
        "spec.resources[4]: a second ConfigMap named \"logistics-settings\""
    );
    Ok(())
}
