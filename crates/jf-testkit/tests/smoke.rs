//! The local cluster is the real thing: the scheduler, the controller manager and kwok turn a
//! Deployment into available pods, RBAC decides for impersonated users, deleting a namespace
//! cascades, pods' (simulated) logs come through the API server, and PostgreSQL and Redis
//! answer.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use futures::{AsyncBufReadExt as _, TryStreamExt as _};
use jf_testkit::{LocalCluster, NODE_NAMES, SIMULATED_LOG_START, cluster, eventually, unique_name};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use kube::{Client, ResourceExt as _};
use serde_json::json;

async fn create_namespace(client: &Client, prefix: &str) -> anyhow::Result<String> {
    let name = unique_name(prefix);
    let namespace: Namespace = serde_json::from_value(json!({
        "metadata": { "name": name }
    }))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await?;
    Ok(name)
}

fn deployment(name: &str, replicas: i32) -> anyhow::Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "app", "image": "registry.example/app:1" }] }
            }
        }
    }))?)
}

fn is_forbidden(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 403)
}

fn is_not_found<T>(result: &Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(status)) if status.code == 404)
}

#[tokio::test]
async fn a_deployment_becomes_available_on_fake_nodes() -> anyhow::Result<()> {
    let client = cluster().await.client().await?;
    let namespace = create_namespace(&client, "smoke-deploy").await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    deployments
        .create(&PostParams::default(), &deployment("web", 2)?)
        .await?;

    eventually("the Deployment to have 2 available replicas", || async {
        let deployment = deployments.get("web").await?;
        let available = deployment
            .status
            .and_then(|status| status.available_replicas);
        ensure!(available == Some(2), "available replicas: {available:?}");
        Ok(())
    })
    .await;

    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    let pods = pods.list(&ListParams::default().labels("app=web")).await?;
    assert_eq!(pods.items.len(), 2);
    for pod in &pods.items {
        let node = pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref());
        assert!(
            node.is_some_and(|node| NODE_NAMES.contains(&node)),
            "{} is on {node:?}",
            pod.name_any()
        );
        let phase = pod
            .status
            .as_ref()
            .and_then(|status| status.phase.as_deref());
        assert_eq!(phase, Some("Running"), "{}", pod.name_any());
    }
    Ok(())
}

#[tokio::test]
async fn rbac_decides_for_impersonated_users() -> anyhow::Result<()> {
    let cluster = cluster().await;
    let admin = cluster.client().await?;
    let namespace = create_namespace(&admin, "smoke-rbac").await?;
    let other = create_namespace(&admin, "smoke-rbac-other").await?;
    let user = unique_name("user");
    let as_user = cluster.impersonate(&user, &[]).await?;
    let config_maps: Api<ConfigMap> = Api::namespaced(as_user.clone(), &namespace);

    let error = config_maps
        .list(&ListParams::default())
        .await
        .expect_err("a user without a binding must not list config maps");
    assert!(is_forbidden(&error), "expected Forbidden, got {error}");

    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": { "name": "edit" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit" },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user }]
    }))?;
    Api::<RoleBinding>::namespaced(admin, &namespace)
        .create(&PostParams::default(), &binding)
        .await?;

    eventually("the RoleBinding to grant access", || async {
        Ok(config_maps.list(&ListParams::default()).await?)
    })
    .await;
    let config_map: ConfigMap =
        serde_json::from_value(json!({ "metadata": { "name": "mine" }, "data": { "a": "b" } }))?;
    config_maps
        .create(&PostParams::default(), &config_map)
        .await
        .context("the user can create in the bound namespace")?;

    let elsewhere: Api<ConfigMap> = Api::namespaced(as_user, &other);
    let error = elsewhere
        .list(&ListParams::default())
        .await
        .expect_err("the binding must not reach another namespace");
    assert!(is_forbidden(&error), "expected Forbidden, got {error}");
    Ok(())
}

#[tokio::test]
async fn deleting_a_namespace_cascades() -> anyhow::Result<()> {
    let client = cluster().await.client().await?;
    let namespace = create_namespace(&client, "smoke-cascade").await?;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let config_map: ConfigMap =
        serde_json::from_value(json!({ "metadata": { "name": "settings" } }))?;
    config_maps
        .create(&PostParams::default(), &config_map)
        .await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    deployments
        .create(&PostParams::default(), &deployment("worker", 1)?)
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    eventually("the worker's pod to exist", || async {
        let list = pods.list(&ListParams::default()).await?;
        ensure!(list.items.len() == 1, "{} pods", list.items.len());
        Ok(())
    })
    .await;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(&namespace, &DeleteParams::default())
        .await?;
    eventually("the namespace to be gone", || async {
        let result = namespaces.get(&namespace).await;
        ensure!(
            is_not_found(&result),
            "still there: {:?}",
            result.map(|ns| ns.status)
        );
        Ok(())
    })
    .await;
    assert!(is_not_found(&config_maps.get("settings").await));
    assert!(is_not_found(&deployments.get("worker").await));
    assert!(pods.list(&ListParams::default()).await?.items.is_empty());
    Ok(())
}

#[tokio::test]
async fn the_garbage_collector_deletes_dependents() -> anyhow::Result<()> {
    let client = cluster().await.client().await?;
    let namespace = create_namespace(&client, "smoke-gc").await?;
    let config_maps: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let owner = config_maps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": "owner" } }))?,
        )
        .await?;
    let dependent: ConfigMap = serde_json::from_value(json!({
        "metadata": {
            "name": "dependent",
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.uid()
            }]
        }
    }))?;
    config_maps
        .create(&PostParams::default(), &dependent)
        .await?;
    config_maps
        .delete("owner", &DeleteParams::default())
        .await?;
    eventually("the dependent to be collected", || async {
        let result = config_maps.get("dependent").await;
        ensure!(is_not_found(&result), "the dependent is still there");
        Ok(())
    })
    .await;
    Ok(())
}

#[tokio::test]
async fn postgresql_accepts_a_query() -> anyhow::Result<()> {
    let url = cluster().await.postgres_admin_url();
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let row = client.query_one("SELECT version()", &[]).await?;
    let version: String = row.get(0);
    assert!(version.starts_with("PostgreSQL 15"), "{version}");
    let row = client.query_one("SELECT $1::int + 1", &[&41i32]).await?;
    assert_eq!(row.get::<_, i32>(0), 42);
    Ok(())
}

#[tokio::test]
async fn redis_answers_ping() -> anyhow::Result<()> {
    let address = cluster().await.redis_address();
    let mut redis = jf_testkit::redis::Connection::open(address).await?;
    assert_eq!(redis.command(&["PING"]).await?, "+PONG");
    let key = unique_name("smoke");
    assert_eq!(redis.command(&["SET", &key, "value"]).await?, "+OK");
    assert_eq!(redis.command(&["GET", &key]).await?, "$5");
    Ok(())
}

/// A second cluster runs beside the shared one on other ports, and `stop` ends exactly its
/// own processes and removes its directory.
#[tokio::test]
async fn a_second_cluster_runs_beside_the_first_and_stops_cleanly() -> anyhow::Result<()> {
    let first = cluster().await;
    let second = LocalCluster::start(jf_testkit::Lifetime::Process).await?;
    assert_ne!(first.info().server, second.info().server);
    assert_ne!(first.redis_address(), second.redis_address());
    let version = second.client().await?.apiserver_version().await?;
    assert!(
        version.git_version.starts_with("v1.36."),
        "{}",
        version.git_version
    );

    let dir = second.dir().to_path_buf();
    let processes = std::fs::read_to_string(dir.join("processes"))?;
    let pids: Vec<i32> = processes
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1)?.parse().ok())
        .collect();
    assert_eq!(pids.len(), 7, "{processes}");

    LocalCluster::stop(&dir)?;
    assert!(!dir.exists(), "the directory is removed");
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie this test process has not reaped.
        let state = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().chars().next());
        assert!(
            stat.is_empty() || state == Some(Some('Z')),
            "{pid} still runs: {stat}"
        );
    }
    assert!(
        first.stopped_processes()?.is_empty(),
        "the first cluster still runs"
    );
    first.client().await?.apiserver_version().await?;
    Ok(())
}

/// kwok's stages of our own make chosen images fail the way a kubelet reports it.
#[tokio::test]
async fn chosen_images_fail_to_pull_or_crash_loop() -> anyhow::Result<()> {
    let client = cluster().await.client().await?;
    let namespace = create_namespace(&client, "smoke-fail").await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    for (name, image) in [
        ("pull", jf_testkit::IMAGE_THAT_FAILS_TO_PULL),
        ("crash", jf_testkit::IMAGE_THAT_CRASH_LOOPS),
    ] {
        let mut deployment = deployment(name, 1)?;
        if let Some(pod) = deployment
            .spec
            .as_mut()
            .and_then(|spec| spec.template.spec.as_mut())
        {
            pod.containers[0].image = Some(image.to_owned());
        }
        deployments
            .create(&PostParams::default(), &deployment)
            .await?;
    }
    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    for (app, reason) in [("pull", "ImagePullBackOff"), ("crash", "CrashLoopBackOff")] {
        eventually(&format!("the {app} pod to wait in {reason}"), || async {
            let list = pods
                .list(&ListParams::default().labels(&format!("app={app}")))
                .await?;
            let waiting: Vec<String> = list
                .items
                .iter()
                .flat_map(|pod| {
                    pod.status
                        .iter()
                        .flat_map(|status| status.container_statuses.iter().flatten())
                })
                .filter_map(|status| status.state.as_ref()?.waiting.as_ref()?.reason.clone())
                .collect();
            ensure!(waiting == [reason], "waiting: {waiting:?}");
            Ok(())
        })
        .await;
    }
    Ok(())
}

/// kwok serves a simulated log for the containers on the fake nodes, which the API server
/// reaches as `pods/log`; a followed log stays open and gets the lines appended later.
#[tokio::test]
async fn pod_logs_come_through_the_api_server_and_follow() -> anyhow::Result<()> {
    const WITHIN: Duration = Duration::from_secs(30);
    let cluster = cluster().await;
    let client = cluster.client().await?;
    let namespace = create_namespace(&client, "smoke-logs").await?;
    Api::<Deployment>::namespaced(client.clone(), &namespace)
        .create(&PostParams::default(), &deployment("logs", 1)?)
        .await?;
    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    let pod = eventually("the pod to be Running", || async {
        let list = pods.list(&ListParams::default().labels("app=logs")).await?;
        list.items
            .iter()
            .find(|pod| {
                pod.status
                    .as_ref()
                    .and_then(|status| status.phase.as_deref())
                    == Some("Running")
            })
            .map(|pod| pod.name_any())
            .context("no Running pod yet")
    })
    .await;

    let params = LogParams {
        container: Some("app".to_owned()),
        ..LogParams::default()
    };
    let logs = pods.logs(&pod, &params).await?;
    assert!(logs.starts_with(SIMULATED_LOG_START), "{logs}");

    let follow = LogParams {
        follow: true,
        ..params
    };
    let mut lines = pods.log_stream(&pod, &follow).await?.lines();
    let first = tokio::time::timeout(WITHIN, lines.try_next())
        .await
        .context("no first line of the followed log in time")??;
    assert_eq!(first.as_deref(), SIMULATED_LOG_START.lines().next());

    let appended = format!("smoke: {}", unique_name("appended"));
    cluster.append_to_simulated_log(&appended)?;
    tokio::time::timeout(WITHIN, async {
        while let Some(line) = lines.try_next().await? {
            if line == appended {
                return Ok(());
            }
        }
        anyhow::bail!("the followed log ended before the appended line")
    })
    .await
    .context("the appended line did not come in time")??;
    Ok(())
}
