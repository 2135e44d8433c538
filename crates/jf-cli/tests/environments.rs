//! End to end: the `jf` binary against the real local cluster with the real operator binary,
//! and the library's operations as a user of one environment (RBAC decides, not a mock).

mod support;

use std::collections::BTreeMap;

use anyhow::{Context as _, ensure};
use jf_api::conditions::is_ready;
use jf_api::naming::{CONFIG_MAP, ENVIRONMENT_FINALIZER, USERS_ROLE_BINDING};
use jf_api::{Environment, EnvironmentPhase};
use jf_cli::environments::{self, NewEnvironment};
use jf_cli::wait::{self, Goal};
use jf_testkit::{eventually, unique_name};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt as _};
use serde_json::{Value, json};
use support::{admin, admin_kubeconfig, jf_fails, jf_ok, kubeconfig_as};

async fn environment(client: &Client, name: &str) -> Environment {
    Api::<Environment>::all(client.clone())
        .get(name)
        .await
        .expect("the environment exists")
}

fn namespace_of(name: &str) -> String {
    format!("jf-{name}")
}

async fn replicas(client: &Client, namespace: &str, name: &str) -> Option<i32> {
    Api::<Deployment>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .expect("the deployment exists")
        .spec
        .and_then(|spec| spec.replicas)
}

#[tokio::test]
async fn lifecycle_from_create_to_delete() -> anyhow::Result<()> {
    let kubeconfig = admin_kubeconfig().await;
    let client = admin().await;
    let name = unique_name("cli");
    let namespace = namespace_of(&name);

    // Create: ready when jf returns.
    let out = jf_ok(
        kubeconfig,
        &[
            "create",
            "env",
            &name,
            "--user",
            "bob",
            "--config",
            "FEATURE_X=off",
            "--ttl",
            "72h",
        ],
    )
    .await;
    assert_eq!(out, format!("Created new environment \"{name}\"\n"));
    let created = environment(&client, &name).await;
    let status = created.status.clone().unwrap_or_default();
    assert!(
        is_ready(&status.conditions, created.metadata.generation),
        "{status:?}"
    );
    assert!(
        created
            .finalizers()
            .contains(&ENVIRONMENT_FINALIZER.to_owned())
    );
    let me = environments::whoami(&client).await?;
    assert_eq!(created.spec.users, [me.clone(), "bob".to_owned()]);
    assert_eq!(created.spec.config["FEATURE_X"], "off");
    let expires_at = created.spec.expires_at.clone().context("an expiry")?.0;
    let ttl = expires_at.duration_since(Timestamp::now());
    ensure!(
        ttl > SignedDuration::from_hours(71) && ttl <= SignedDuration::from_hours(72),
        "{ttl:?}"
    );
    Api::<Namespace>::all(client.clone())
        .get(&namespace)
        .await?;

    // List, in every spelling and format.
    let table = jf_ok(kubeconfig, &["list"]).await;
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    ensure!(
        header.split_whitespace().collect::<Vec<_>>()
            == [
                "NAME",
                "NAMESPACE",
                "READY",
                "STATUS",
                "EXPIRES",
                "URL",
                "AGE"
            ],
        "{table}"
    );
    let row = lines
        .find(|line| line.split_whitespace().next() == Some(name.as_str()))
        .with_context(|| format!("no row for {name}:\n{table}"))?;
    let cells: Vec<&str> = row.split_whitespace().collect();
    ensure!(
        cells[1..6] == [namespace.as_str(), "True", "Ready", "in", "71h"],
        "{row}"
    );
    ensure!(
        cells[6].starts_with("https://") && cells[6].contains(&name),
        "{row}"
    );
    for spelling in ["envs", "env", "environments"] {
        let table = jf_ok(kubeconfig, &["get", spelling]).await;
        ensure!(
            table
                .lines()
                .any(|line| line.starts_with(&format!("{name} "))),
            "{table}"
        );
    }
    let listed: Value = serde_json::from_str(&jf_ok(kubeconfig, &["list", "-o", "json"]).await)?;
    let item = listed
        .as_array()
        .context("a JSON array")?
        .iter()
        .find(|item| item["metadata"]["name"] == json!(name))
        .context("our environment in the JSON list")?;
    assert_eq!(item["kind"], json!("Environment"));
    assert_eq!(item["metadata"]["managedFields"], Value::Null);
    let yaml = jf_ok(kubeconfig, &["get", "envs", "-o", "yaml"]).await;
    ensure!(yaml.contains(&format!("name: {name}\n")), "{yaml}");

    // Status.
    let summary = jf_ok(kubeconfig, &["status", &name]).await;
    for expected in [
        format!("Name:       {name}\n"),
        format!("Namespace:  {namespace}\n"),
        "Status:     Ready\n".to_owned(),
        format!("Users:      {me}, bob\n"),
        "Config:     1 key".to_owned(),
        "Expires:    ".to_owned(),
        "(in 71h)".to_owned(),
        "Conditions:\n".to_owned(),
        "  Ready   True     Ready".to_owned(),
    ] {
        ensure!(
            summary.contains(&expected),
            "{expected:?} not in:\n{summary}"
        );
    }
    let object: Value =
        serde_json::from_str(&jf_ok(kubeconfig, &["status", &name, "-o", "json"]).await)?;
    assert_eq!(object["status"]["phase"], json!("Ready"));
    let object = jf_ok(kubeconfig, &["status", &name, "-o", "yaml"]).await;
    ensure!(object.contains("phase: Ready"), "{object}");

    // Config: applied to the ConfigMap when jf returns.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let out = jf_ok(
        kubeconfig,
        &["config", "update", &name, "FEATURE_X=on", "LOG_LEVEL=debug"],
    )
    .await;
    assert_eq!(out, "Updated config\n");
    let data = config_maps.get(CONFIG_MAP).await?.data.unwrap_or_default();
    assert_eq!(data.get("FEATURE_X").map(String::as_str), Some("on"));
    assert_eq!(data.get("LOG_LEVEL").map(String::as_str), Some("debug"));
    assert_eq!(
        jf_ok(kubeconfig, &["config", "get", &name]).await,
        "FEATURE_X=on\nLOG_LEVEL=debug\n"
    );
    assert_eq!(
        jf_ok(kubeconfig, &["config", "get", &name, "LOG_LEVEL"]).await,
        "debug\n"
    );
    let config: Value =
        serde_json::from_str(&jf_ok(kubeconfig, &["config", "get", &name, "-o", "json"]).await)?;
    assert_eq!(config, json!({"FEATURE_X": "on", "LOG_LEVEL": "debug"}));
    assert_eq!(
        jf_ok(kubeconfig, &["config", "unset", &name, "LOG_LEVEL"]).await,
        "Updated config\n"
    );
    let data = config_maps.get(CONFIG_MAP).await?.data.unwrap_or_default();
    assert_eq!(data.get("LOG_LEVEL"), None);
    assert_eq!(
        jf_ok(kubeconfig, &["config", "get", &name]).await,
        "FEATURE_X=on\n"
    );
    let stderr = jf_fails(kubeconfig, &["config", "unset", &name, "NOPE"]).await;
    ensure!(
        stderr.contains(&format!(
            "error: environment \"{name}\" has no config key \"NOPE\""
        )),
        "{stderr}"
    );
    ensure!(
        stderr.contains(&format!("hint: run `jf config get {name}`")),
        "{stderr}"
    );
    let stderr = jf_fails(kubeconfig, &["config", "get", &name, "NOPE"]).await;
    ensure!(stderr.contains("has no config key \"NOPE\""), "{stderr}");

    // Users: in the RoleBinding when jf returns.
    let out = jf_ok(kubeconfig, &["users", "add", &name, "carol", "dave", "bob"]).await;
    assert_eq!(
        out,
        format!(
            "User \"bob\" already has access to environment \"{name}\"\n\
             Added user \"carol\" to environment \"{name}\"\n\
             Added user \"dave\" to environment \"{name}\"\n"
        )
    );
    let role_bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &namespace);
    let subjects = |binding: RoleBinding| -> Vec<String> {
        binding
            .subjects
            .unwrap_or_default()
            .into_iter()
            .map(|subject| subject.name)
            .collect()
    };
    let bound = subjects(role_bindings.get(USERS_ROLE_BINDING).await?);
    ensure!(
        bound.contains(&"carol".to_owned()) && bound.contains(&"dave".to_owned()),
        "{bound:?}"
    );
    let out = jf_ok(kubeconfig, &["users", "remove", &name, "carol"]).await;
    assert_eq!(
        out,
        format!("Removed user \"carol\" from environment \"{name}\"\n")
    );
    let bound = subjects(role_bindings.get(USERS_ROLE_BINDING).await?);
    ensure!(
        !bound.contains(&"carol".to_owned()) && bound.contains(&"dave".to_owned()),
        "{bound:?}"
    );
    assert_eq!(
        environment(&client, &name).await.spec.users,
        [me.clone(), "bob".to_owned(), "dave".to_owned()]
    );
    let stderr = jf_fails(kubeconfig, &["users", "remove", &name, "zed"]).await;
    ensure!(
        stderr.contains(&format!("\"zed\" is not a user of environment \"{name}\"")),
        "{stderr}"
    );

    // Extend: from the current expiry, which is later than now.
    let before = environment(&client, &name)
        .await
        .spec
        .expires_at
        .context("an expiry")?
        .0;
    let out = jf_ok(kubeconfig, &["extend", &name, "24h"]).await;
    let after = before + SignedDuration::from_hours(24);
    assert_eq!(
        out,
        format!("Extended environment \"{name}\" until {after}\n")
    );
    assert_eq!(
        environment(&client, &name)
            .await
            .spec
            .expires_at
            .map(|time| time.0),
        Some(after)
    );

    // Sleep and wake: the workloads scale to zero and back.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    deployments
        .create(&PostParams::default(), &deployment("web", 2))
        .await?;
    assert_eq!(
        jf_ok(kubeconfig, &["sleep", &name]).await,
        format!("Environment \"{name}\" is sleeping\n")
    );
    let asleep = environment(&client, &name).await;
    assert_eq!(
        asleep.status.and_then(|status| status.phase),
        Some(EnvironmentPhase::Sleeping)
    );
    assert_eq!(replicas(&client, &namespace, "web").await, Some(0));
    assert_eq!(
        jf_ok(kubeconfig, &["wake", &name]).await,
        format!("Environment \"{name}\" is awake\n")
    );
    let awake = environment(&client, &name).await;
    assert_eq!(
        awake.status.and_then(|status| status.phase),
        Some(EnvironmentPhase::Ready)
    );
    assert_eq!(replicas(&client, &namespace, "web").await, Some(2));

    // Delete: returns once the Environment and its namespace are gone.
    let out = jf_ok(kubeconfig, &["delete", "env", &name]).await;
    assert_eq!(out, format!("Deleted environment \"{name}\"\n"));
    assert!(
        Api::<Namespace>::all(client.clone())
            .get_opt(&namespace)
            .await?
            .is_none()
    );
    assert!(
        Api::<Environment>::all(client.clone())
            .get_opt(&name)
            .await?
            .is_none()
    );
    Ok(())
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "app",
                    "image": "registry.example/app:1",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "10m", "memory": "16Mi"}},
                }]},
            },
        },
    }))
    .expect("a valid Deployment")
}

#[tokio::test]
async fn errors_say_what_went_wrong_and_what_to_do() -> anyhow::Result<()> {
    let kubeconfig = admin_kubeconfig().await;
    let missing = unique_name("missing");

    let stderr = jf_fails(kubeconfig, &["status", &missing]).await;
    assert_eq!(
        stderr,
        format!(
            "error: environment \"{missing}\" not found\nhint: run `jf list` to see your environments\n"
        )
    );
    let stderr = jf_fails(kubeconfig, &["delete", "env", &missing]).await;
    ensure!(stderr.contains("hint: run `jf list`"), "{stderr}");
    let stderr = jf_fails(kubeconfig, &["config", "update", &missing, "A=1"]).await;
    ensure!(
        stderr.contains(&format!("environment \"{missing}\" not found")),
        "{stderr}"
    );
    let stderr = jf_fails(kubeconfig, &["extend", &missing, "1h"]).await;
    ensure!(
        stderr.contains(&format!("environment \"{missing}\" not found")),
        "{stderr}"
    );

    let name = unique_name("twice");
    jf_ok(kubeconfig, &["create", "env", &name]).await;
    let stderr = jf_fails(kubeconfig, &["create", "env", &name]).await;
    assert_eq!(
        stderr,
        format!(
            "error: environment \"{name}\" already exists\n\
             hint: choose another name, or run `jf status {name}` to see the existing one\n"
        )
    );
    jf_ok(kubeconfig, &["delete", "env", &name]).await;
    Ok(())
}

#[tokio::test]
async fn a_failure_ends_the_wait_with_its_reason() -> anyhow::Result<()> {
    let kubeconfig = admin_kubeconfig().await;
    let name = unique_name("role");
    let started = std::time::Instant::now();
    let stderr = jf_fails(
        kubeconfig,
        &["create", "env", &name, "--role", "secret-reader"],
    )
    .await;
    ensure!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "waited for the timeout"
    );
    ensure!(
        stderr.contains(&format!("error: environment \"{name}\" failed: ")),
        "{stderr}"
    );
    ensure!(stderr.contains("(RoleNotAllowed)"), "{stderr}");
    ensure!(
        stderr.contains(&format!("hint: run `jf status {name}`")),
        "{stderr}"
    );
    let summary = jf_ok(kubeconfig, &["status", &name]).await;
    ensure!(summary.contains("Status:     Failed"), "{summary}");
    ensure!(summary.contains("RoleNotAllowed"), "{summary}");
    assert_eq!(
        jf_ok(kubeconfig, &["delete", "env", &name]).await,
        format!("Deleted environment \"{name}\"\n")
    );
    Ok(())
}

#[tokio::test]
async fn a_namespace_that_is_not_ours_is_refused() -> anyhow::Result<()> {
    let kubeconfig = admin_kubeconfig().await;
    let client = admin().await;
    let name = unique_name("taken");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let foreign: Namespace =
        serde_json::from_value(json!({"metadata": {"name": namespace_of(&name)}}))?;
    namespaces.create(&PostParams::default(), &foreign).await?;

    let stderr = jf_fails(kubeconfig, &["create", "env", &name]).await;
    ensure!(stderr.contains("(NamespaceConflict)"), "{stderr}");
    jf_ok(kubeconfig, &["delete", "env", &name]).await;
    let left = namespaces.get(&namespace_of(&name)).await?;
    ensure!(
        left.metadata.deletion_timestamp.is_none(),
        "the foreign namespace was deleted"
    );
    Ok(())
}

#[tokio::test]
async fn waiting_is_bounded_and_optional() -> anyhow::Result<()> {
    let kubeconfig = admin_kubeconfig().await;
    let client = admin().await;

    let name = unique_name("hurry");
    let stderr = jf_fails(kubeconfig, &["create", "env", &name, "--timeout", "1ms"]).await;
    ensure!(
        stderr.starts_with(&format!(
            "error: timed out after 1ms waiting for environment \"{name}\" to be ready"
        )),
        "{stderr}"
    );
    ensure!(stderr.contains("hint: "), "{stderr}");

    let other = unique_name("nowait");
    assert_eq!(
        jf_ok(kubeconfig, &["create", "env", &other, "--no-wait"]).await,
        format!("Created new environment \"{other}\"\n")
    );
    for name in [&name, &other] {
        assert_eq!(
            jf_ok(kubeconfig, &["delete", "env", name, "--no-wait"]).await,
            format!("Deleting environment \"{name}\"\n")
        );
    }
    let environments: Api<Environment> = Api::all(client.clone());
    for name in [name, other] {
        eventually(&format!("environment {name} to be gone"), || async {
            ensure!(environments.get_opt(&name).await?.is_none(), "still there");
            Ok(())
        })
        .await;
    }
    Ok(())
}

#[tokio::test]
async fn a_user_can_use_their_environment_and_nothing_else() -> anyhow::Result<()> {
    let admin_kubeconfig = admin_kubeconfig().await;
    let client = admin().await;
    let alice = unique_name("alice");
    let theirs = unique_name("theirs");
    let others = unique_name("others");
    let timeout = SignedDuration::from_secs(60);

    for (name, users) in [(&theirs, vec![alice.clone()]), (&others, vec![])] {
        let request = NewEnvironment {
            users,
            ..NewEnvironment::default()
        };
        let created = environments::create(&client, name, &request).await?;
        wait::until(&client, name, Goal::ready(&created), timeout).await?;
    }

    // The library, as alice: reads and watches by name only, which her ClusterRole allows.
    let as_alice = jf_testkit::cluster().await.impersonate(&alice, &[]).await?;
    eventually("alice to be allowed her environment", || async {
        environments::get(&as_alice, &theirs).await?;
        Ok(())
    })
    .await;
    let config = BTreeMap::from([("FROM_ALICE".to_owned(), "yes".to_owned())]);
    let updated = environments::update_config(&as_alice, &theirs, &config).await?;
    let applied = wait::until(&as_alice, &theirs, Goal::ready(&updated), timeout)
        .await?
        .context("the environment")?;
    assert_eq!(applied.spec.config["FROM_ALICE"], "yes");
    environments::extend(&as_alice, &theirs, SignedDuration::from_hours(1)).await?;

    let error = environments::get(&as_alice, &others)
        .await
        .expect_err("forbidden");
    ensure!(matches!(error, environments::Error::Get { .. }), "{error}");
    ensure!(
        error.hint().unwrap_or_default().contains("only the users"),
        "{error}"
    );
    let error = environments::list(&as_alice).await.expect_err("forbidden");
    ensure!(
        error.hint().unwrap_or_default().contains("developer role"),
        "{error}"
    );

    // The binary, as alice.
    let kubeconfig = kubeconfig_as(admin_kubeconfig, &alice)?;
    let summary = jf_ok(&kubeconfig, &["status", &theirs]).await;
    ensure!(
        summary.contains(&format!("Name:       {theirs}\n")),
        "{summary}"
    );
    assert_eq!(
        jf_ok(&kubeconfig, &["config", "update", &theirs, "B=2"]).await,
        "Updated config\n"
    );
    assert_eq!(
        jf_ok(&kubeconfig, &["sleep", &theirs]).await,
        format!("Environment \"{theirs}\" is sleeping\n")
    );
    assert_eq!(
        jf_ok(&kubeconfig, &["wake", &theirs]).await,
        format!("Environment \"{theirs}\" is awake\n")
    );
    let stderr = jf_fails(&kubeconfig, &["list"]).await;
    ensure!(
        stderr.starts_with("error: failed to list environments: "),
        "{stderr}"
    );
    ensure!(
        stderr.contains("hint: listing every environment needs the developer role"),
        "{stderr}"
    );
    let stderr = jf_fails(&kubeconfig, &["status", &others]).await;
    ensure!(stderr.contains("forbidden"), "{stderr}");
    ensure!(
        stderr.contains(&format!("hint: only the users of environment \"{others}\"")),
        "{stderr}"
    );
    // A user may delete their environment, and only theirs.
    let stderr = jf_fails(&kubeconfig, &["delete", "env", &others]).await;
    ensure!(
        stderr.contains(&format!("hint: only the users of environment \"{others}\"")),
        "{stderr}"
    );
    assert_eq!(
        jf_ok(&kubeconfig, &["delete", "env", &theirs]).await,
        format!("Deleted environment \"{theirs}\"\n")
    );
    let _ = std::fs::remove_file(&kubeconfig);
    assert_eq!(
        jf_ok(admin_kubeconfig, &["delete", "env", &others]).await,
        format!("Deleted environment \"{others}\"\n")
    );
    Ok(())
}
