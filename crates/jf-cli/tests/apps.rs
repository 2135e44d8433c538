//! End to end: the seed's transcript and the rest of `jf deploy`, `undeploy`, `restart`,
//! `logs` and `blueprints`, through the `jf` binary, as a developer, against the real local
//! cluster and the real operator binary.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use jf_api::{Blueprint, Environment};
use jf_testkit::{IMAGE_THAT_CRASH_LOOPS, IMAGE_THAT_FAILS_TO_PULL, eventually, unique_name};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt as _};
use serde_json::json;
use support::{admin, admin_kubeconfig, jf, jf_fails, jf_ok, kubeconfig_as};
use tokio::io::AsyncBufReadExt as _;

/// The seed's logistics Blueprint, published under its own name.
async fn publish_logistics(client: &Client) -> anyhow::Result<()> {
    let blueprint: Blueprint = serde_saphyr::from_str(include_str!(
        "../../../deploy/examples/logistics/blueprint.yaml"
    ))?;
    Api::<Blueprint>::all(client.clone())
        .patch(
            "logistics-api",
            &PatchParams::apply("jf-tests").force(),
            &Patch::Apply(&blueprint),
        )
        .await?;
    Ok(())
}

/// A developer: the developer role, as a platform team grants it, and a kubeconfig acting
/// as them.
async fn developer(client: &Client, admin_kubeconfig: &Path) -> anyhow::Result<PathBuf> {
    let user = unique_name("dev");
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("jango-fett-developer-{user}")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "jango-fett-developer"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }))?;
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&Default::default(), &binding)
        .await?;
    jf_testkit::until_allowed(
        client,
        &user,
        "create",
        "jango-fett.dev",
        "environments",
        None,
    )
    .await;
    kubeconfig_as(admin_kubeconfig, &user)
}

async fn namespace_of(client: &Client, environment: &str) -> anyhow::Result<String> {
    Api::<Environment>::all(client.clone())
        .get(environment)
        .await?
        .status
        .and_then(|status| status.namespace)
        .context("the environment reports its namespace")
}

/// The names of the pods of a Deployment, by its `app.kubernetes.io/name` label.
async fn pods(client: &Client, namespace: &str, name: &str) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/name={name}")))
        .await?
        .items
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .map(|pod| pod.name_any())
        .collect();
    names.sort();
    Ok(names)
}

fn template_annotation(deployment: &Deployment, key: &str) -> Option<String> {
    deployment
        .spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(key)
        .cloned()
}

fn image_of(deployment: &Deployment, container: &str) -> Option<String> {
    deployment
        .spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|candidate| candidate.name == container)?
        .image
        .clone()
}

#[tokio::test]
async fn the_seeds_transcript() -> anyhow::Result<()> {
    let admin_kubeconfig = admin_kubeconfig().await;
    let client = admin().await;
    publish_logistics(&client).await?;
    let kubeconfig = developer(&client, admin_kubeconfig).await?;
    let env = unique_name("logistics-fix-bug");

    // $ jf create env logistics-fix-bug
    let output = jf_ok(&kubeconfig, &["create", "env", &env]).await;
    assert_eq!(output, format!("Created new environment \"{env}\"\n"));
    let namespace = namespace_of(&client, &env).await?;

    // $ jf deploy logistics-fix-bug logistics-api
    let output = jf_ok(&kubeconfig, &["deploy", &env, "logistics-api"]).await;
    assert_eq!(
        output,
        format!(
            "Deployed \"logistics-api\"\n\
             Deployed \"logistics-worker\"\n\
             Created service \"logistics-api\"\n\
             Deployed PostgreSQL \"logistics-api\"\n\
             Deployed Redis \"logistics-api\"\n\
             \"logistics-api\" is ready at https://logistics-api-{env}.dev.localhost\n"
        )
    );

    // $ jf restart logistics-fix-bug logistics-worker
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let before = pods(&client, &namespace, "logistics-worker").await?;
    let output = jf_ok(&kubeconfig, &["restart", &env, "logistics-worker"]).await;
    assert_eq!(output, "Restarted \"logistics-worker\"\n");
    let worker = deployments.get("logistics-worker").await?;
    assert!(
        template_annotation(&worker, "kubectl.kubernetes.io/restartedAt").is_some(),
        "the pod template has the restart annotation"
    );
    let after = pods(&client, &namespace, "logistics-worker").await?;
    ensure!(
        !after.is_empty() && after.iter().all(|pod| !before.contains(pod)),
        "every pod was replaced: {before:?} → {after:?}"
    );

    // $ jf config update logistics-fix-bug key1=value1: the pods roll with the new config.
    let api = deployments.get("logistics-api").await?;
    let hash = template_annotation(&api, "jango-fett.dev/config-hash");
    let output = jf_ok(&kubeconfig, &["config", "update", &env, "key1=value1"]).await;
    assert_eq!(output, "Updated config\n");
    eventually("the App's pods to roll with the new config", || async {
        let api = deployments.get("logistics-api").await?;
        let now = template_annotation(&api, "jango-fett.dev/config-hash");
        ensure!(now.is_some() && now != hash, "{now:?}");
        Ok(())
    })
    .await;

    // $ jf delete env logistics-fix-bug
    let output = jf_ok(&kubeconfig, &["delete", "env", &env]).await;
    assert_eq!(output, format!("Deleted environment \"{env}\"\n"));
    // It waited for the namespace, and all in it, to be gone.
    assert!(
        Api::<Namespace>::all(client.clone())
            .get_opt(&namespace)
            .await?
            .is_none()
    );
    Ok(())
}

#[tokio::test]
async fn deploy_names_what_fails_and_what_to_do() -> anyhow::Result<()> {
    let admin_kubeconfig = admin_kubeconfig().await;
    let client = admin().await;
    publish_logistics(&client).await?;
    let kubeconfig = developer(&client, admin_kubeconfig).await?;
    let env = unique_name("diagnosis");
    jf_ok(&kubeconfig, &["create", "env", &env]).await;
    let namespace = namespace_of(&client, &env).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);

    // Refused before anything is written: no such Blueprint, no such container.
    let stderr = jf_fails(&kubeconfig, &["deploy", &env, "no-such-service"]).await;
    assert!(
        stderr.contains("error: blueprint \"no-such-service\" not found")
            && stderr.contains("hint: run `jf blueprints`"),
        "{stderr}"
    );
    let stderr = jf_fails(
        &kubeconfig,
        &["deploy", &env, "logistics-api", "--image", "web=nginx"],
    )
    .await;
    assert!(
        stderr.contains("has no container \"web\"; its containers are: api, worker"),
        "{stderr}"
    );
    let output = jf(
        &kubeconfig,
        &["deploy", &env, "logistics-api", "--image", "api"],
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&output.stderr).contains("CONTAINER=IMAGE"));

    // An image that cannot be pulled.
    let image = format!("api={IMAGE_THAT_FAILS_TO_PULL}");
    let stderr = jf_fails(
        &kubeconfig,
        &["deploy", &env, "logistics-api", "--image", &image],
    )
    .await;
    assert!(
        stderr.contains("(ImagePullBackOff)")
            && stderr.contains(IMAGE_THAT_FAILS_TO_PULL)
            && stderr.contains("hint: check the image's name and tag"),
        "{stderr}"
    );

    // A worker that crashes; the api's image is the Blueprint's again.
    let image = format!("worker={IMAGE_THAT_CRASH_LOOPS}");
    let stderr = jf_fails(
        &kubeconfig,
        &["deploy", &env, "logistics-api", "--image", &image],
    )
    .await;
    assert!(
        stderr.contains("(CrashLoopBackOff)")
            && stderr.contains(&format!(
                "hint: see why with `jf logs {env} logistics-worker`"
            )),
        "{stderr}"
    );
    let api = deployments.get("logistics-api").await?;
    assert_eq!(
        image_of(&api, "api").as_deref(),
        Some("registry.example.com/logistics/api:1.14.0")
    );

    // The fix: the branch's image, and the App is ready.
    let output = jf_ok(
        &kubeconfig,
        &[
            "deploy",
            &env,
            "logistics-api",
            "--image",
            "api=registry.example.com/logistics/api:fix-bug",
        ],
    )
    .await;
    assert!(
        output.ends_with(&format!(
            "\"logistics-api\" is ready at https://logistics-api-{env}.dev.localhost\n"
        )),
        "{output}"
    );
    let api = deployments.get("logistics-api").await?;
    assert_eq!(
        image_of(&api, "api").as_deref(),
        Some("registry.example.com/logistics/api:fix-bug")
    );

    // Status shows the tree.
    let status = jf_ok(&kubeconfig, &["status", &env]).await;
    let apps = status
        .split_once("Apps:\n")
        .map(|(_, apps)| apps)
        .context("an Apps section")?;
    let heading = apps.lines().next().unwrap_or_default();
    assert!(
        heading.starts_with("  logistics-api   blueprint logistics-api   Ready   https://"),
        "{status}"
    );
    for object in [
        "Deployment/logistics-api",
        "Deployment/logistics-worker",
        "Service/logistics-api",
        "PostgreSQL/logistics-api",
        "Redis/logistics-api",
    ] {
        assert!(
            apps.lines()
                .any(|line| line.contains(object) && line.trim_end().ends_with("ready")),
            "{object}: {status}"
        );
    }

    // Undeploy: the App and everything with it go.
    let output = jf_ok(&kubeconfig, &["undeploy", &env, "logistics-api"]).await;
    assert_eq!(output, "Undeployed \"logistics-api\"\n");
    assert!(deployments.get_opt("logistics-api").await?.is_none());
    let stderr = jf_fails(&kubeconfig, &["undeploy", &env, "logistics-api"]).await;
    assert!(
        stderr.contains("app \"logistics-api\" not found"),
        "{stderr}"
    );
    jf_ok(&kubeconfig, &["delete", "env", &env]).await;
    Ok(())
}

#[tokio::test]
async fn logs_blueprints_and_what_a_stranger_may_not_do() -> anyhow::Result<()> {
    let admin_kubeconfig = admin_kubeconfig().await;
    let client = admin().await;
    publish_logistics(&client).await?;
    let kubeconfig = developer(&client, admin_kubeconfig).await?;
    let env = unique_name("logs");
    jf_ok(&kubeconfig, &["create", "env", &env]).await;
    jf_ok(&kubeconfig, &["deploy", &env, "logistics-api"]).await;

    // What can be deployed.
    let listing = jf_ok(&kubeconfig, &["blueprints"]).await;
    let row = listing
        .lines()
        .find(|line| line.starts_with("logistics-api "))
        .with_context(|| format!("no row for logistics-api:\n{listing}"))?;
    assert!(
        row.contains("logistics-api,logistics-worker")
            && row.contains("PostgreSQL (uuid), Redis")
            && row.contains("logistics-api:80"),
        "{row}"
    );

    // The logs of both pods of the api, each line with its source.
    let logs = jf_ok(&kubeconfig, &["logs", &env, "logistics-api"]).await;
    let first_line = jf_testkit::SIMULATED_LOG_START
        .lines()
        .next()
        .unwrap_or_default();
    let sources: Vec<&str> = logs
        .lines()
        .filter(|line| line.ends_with(first_line))
        .collect();
    assert_eq!(sources.len(), 2, "{logs}");
    assert!(
        sources
            .iter()
            .all(|line| line.starts_with("[logistics-api-") && line.contains("/api] ")),
        "{logs}"
    );
    let stderr = jf_fails(&kubeconfig, &["logs", &env, "logistics"]).await;
    assert!(
        stderr.contains("has no workload \"logistics\"; its workloads are: logistics-api, logistics-api-redis, logistics-worker"),
        "{stderr}"
    );

    // Following: a line written later arrives.
    let mut follower = tokio::process::Command::new(env!("CARGO_BIN_EXE_jf"))
        .args(["logs", &env, "logistics-worker", "-f", "--tail", "1"])
        .env("KUBECONFIG", &kubeconfig)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = tokio::io::BufReader::new(follower.stdout.take().context("stdout")?).lines();
    let marker = unique_name("written-later");
    let followed = tokio::time::timeout(Duration::from_secs(30), async {
        // The first line shows the stream is open; then the new line is written.
        lines.next_line().await?;
        jf_testkit::cluster()
            .await
            .append_to_simulated_log(&marker)?;
        while let Some(line) = lines.next_line().await? {
            if line.ends_with(&marker) {
                return anyhow::Ok(());
            }
        }
        anyhow::bail!("the log ended before {marker}")
    })
    .await;
    follower.kill().await?;
    followed.context("the followed log did not show the new line")??;

    // Someone who is not a user of the environment may not deploy to it.
    let stranger = developer(&client, admin_kubeconfig).await?;
    let stderr = jf_fails(&stranger, &["deploy", &env, "logistics-api"]).await;
    assert!(
        stderr.contains(&format!("only the users of environment \"{env}\"")),
        "{stderr}"
    );
    jf_ok(&kubeconfig, &["delete", "env", &env]).await;
    Ok(())
}
