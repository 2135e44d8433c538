//! The Environment controller against the real local cluster.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::ensure;
use jf_api::naming::REPLICAS_BEFORE_SLEEP_ANNOTATION;
use jf_api::{Environment, EnvironmentPhase, EnvironmentSpec};
use jf_operator::controllers::environment::Reconciled;
use jf_testkit::{eventually, unique_name};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt as _};
use serde_json::json;
use support::{admin, create, gone, is_not_found, operator, ready, spec, with_reason};

fn merge(value: serde_json::Value) -> Patch<serde_json::Value> {
    Patch::Merge(value)
}

#[tokio::test]
async fn lifecycle_create_ready_update_delete() -> anyhow::Result<()> {
    let client = admin().await;
    let name = unique_name("life");
    create(&client, &name, spec(&["alice"], &[("FEATURE_X", "off")])).await?;
    let environment = ready(&client, &name).await;
    let namespace = format!("jf-{name}");

    let status = environment.status.clone().unwrap_or_default();
    assert_eq!(status.phase, Some(EnvironmentPhase::Ready));
    assert_eq!(status.namespace.as_deref(), Some(namespace.as_str()));
    assert_eq!(status.url, Some(format!("https://{name}.dev.localhost")));
    assert_eq!(status.observed_generation, environment.metadata.generation);
    assert!(
        environment
            .finalizers()
            .contains(&"jango-fett.dev/namespace".to_owned())
    );

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = namespaces.get(&namespace).await?;
    assert_eq!(ns.labels()["jango-fett.dev/environment"], name);
    assert_eq!(
        ns.labels()["pod-security.kubernetes.io/enforce"],
        "baseline"
    );
    assert_eq!(
        ns.owner_references()[0].uid,
        environment.uid().unwrap_or_default()
    );

    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let data = config_maps
        .get("env-config")
        .await?
        .data
        .unwrap_or_default();
    assert_eq!(data["FEATURE_X"], "off");
    assert_eq!(data["JF_ENVIRONMENT"], name);
    assert_eq!(data["JF_NAMESPACE"], namespace);
    assert_eq!(data["JF_URL"], format!("https://{name}.dev.localhost"));
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &namespace);
    let binding = bindings.get("jf-users").await?;
    assert_eq!(binding.role_ref.name, "admin");
    assert_eq!(binding.subjects.unwrap_or_default()[0].name, "alice");
    Api::<NetworkPolicy>::namespaced(client.clone(), &namespace)
        .get("jf-isolation")
        .await?;
    Api::<ClusterRole>::all(client.clone())
        .get(&format!("jf-env-{name}"))
        .await?;
    Api::<ClusterRoleBinding>::all(client.clone())
        .get(&format!("jf-env-{name}"))
        .await?;

    // Update: a key changes, one is added and one removed.
    let environments: Api<Environment> = Api::all(client.clone());
    environments
        .patch(
            &name,
            &PatchParams::default(),
            &merge(json!({"spec": {"config": {"FEATURE_X": "on", "NEW": "1"}}})),
        )
        .await?;
    let updated = ready(&client, &name).await;
    assert!(updated.metadata.generation > environment.metadata.generation);
    eventually("env-config to follow the update", || async {
        let data = config_maps
            .get("env-config")
            .await?
            .data
            .unwrap_or_default();
        ensure!(
            data.get("FEATURE_X").map(String::as_str) == Some("on") && data.contains_key("NEW"),
            "{data:?}"
        );
        Ok(())
    })
    .await;
    environments
        .patch(
            &name,
            &PatchParams::default(),
            &merge(json!({"spec": {"config": {"NEW": null}}})),
        )
        .await?;
    eventually("the removed key to leave env-config", || async {
        let data = config_maps
            .get("env-config")
            .await?
            .data
            .unwrap_or_default();
        ensure!(!data.contains_key("NEW"), "{data:?}");
        Ok(())
    })
    .await;

    // Another role: a binding's role cannot change in place, so it is made again.
    environments
        .patch(
            &name,
            &PatchParams::default(),
            &merge(json!({"spec": {"role": "view"}})),
        )
        .await?;
    eventually("the users' binding to grant view", || async {
        let binding = bindings.get("jf-users").await?;
        ensure!(binding.role_ref.name == "view", "{:?}", binding.role_ref);
        ensure!(binding.subjects.unwrap_or_default()[0].name == "alice");
        Ok(())
    })
    .await;
    ready(&client, &name).await;

    // Delete: the Environment stays, Terminating, until its namespace is gone.
    environments.delete(&name, &DeleteParams::default()).await?;
    let terminating = with_reason(&client, &name, "Terminating").await;
    assert_eq!(
        terminating.status.and_then(|status| status.phase),
        Some(EnvironmentPhase::Terminating)
    );
    gone(&format!("environment {name}"), || environments.get(&name)).await;
    assert!(
        is_not_found(&namespaces.get(&namespace).await),
        "the namespace is gone before the Environment"
    );
    // The cluster-scoped RBAC goes with it, through its owner reference.
    let cluster_roles: Api<ClusterRole> = Api::all(client.clone());
    let role = format!("jf-env-{name}");
    gone("the environment's ClusterRole", || cluster_roles.get(&role)).await;
    Ok(())
}

#[tokio::test]
async fn deleting_the_environment_cascades_to_everything_in_it() -> anyhow::Result<()> {
    let client = admin().await;
    let name = unique_name("cascade");
    create(&client, &name, spec(&[], &[])).await?;
    ready(&client, &name).await;
    let namespace = format!("jf-{name}");
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    config_maps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "app-data"}}))?,
        )
        .await?;
    Api::<Environment>::all(client.clone())
        .delete(&name, &DeleteParams::default())
        .await?;
    let environments: Api<Environment> = Api::all(client.clone());
    gone(&format!("environment {name}"), || environments.get(&name)).await;
    assert!(is_not_found(&config_maps.get("app-data").await));
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let binding = format!("jf-env-{name}");
    gone("the ClusterRoleBinding", || bindings.get(&binding)).await;
    Ok(())
}

#[tokio::test]
async fn children_deleted_or_edited_by_hand_are_put_back() -> anyhow::Result<()> {
    let client = admin().await;
    let name = unique_name("restore");
    // The finalizer comes with the create itself, from the install's admission policy.
    let created = create(&client, &name, spec(&["alice"], &[("KEY", "value")])).await?;
    assert_eq!(created.finalizers(), ["jango-fett.dev/namespace"]);
    ready(&client, &name).await;
    // Removed by hand, it is put back by the operator.
    let environments: Api<Environment> = Api::all(client.clone());
    environments
        .patch(
            &name,
            &PatchParams::default(),
            &merge(json!({"metadata": {"finalizers": null}})),
        )
        .await?;
    eventually("the finalizer to be back", || async {
        let environment = environments.get(&name).await?;
        ensure!(
            environment.finalizers() == ["jango-fett.dev/namespace"],
            "{:?}",
            environment.finalizers()
        );
        Ok(())
    })
    .await;
    let namespace = format!("jf-{name}");
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &namespace);
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &namespace);
    let cluster_roles: Api<ClusterRole> = Api::all(client.clone());

    config_maps
        .delete("env-config", &DeleteParams::default())
        .await?;
    bindings
        .delete("jf-users", &DeleteParams::default())
        .await?;
    policies
        .delete("jf-isolation", &DeleteParams::default())
        .await?;
    cluster_roles
        .delete(&format!("jf-env-{name}"), &DeleteParams::default())
        .await?;
    eventually("the deleted children to be back", || async {
        let data = config_maps
            .get("env-config")
            .await?
            .data
            .unwrap_or_default();
        ensure!(data.get("KEY").map(String::as_str) == Some("value"));
        bindings.get("jf-users").await?;
        policies.get("jf-isolation").await?;
        cluster_roles.get(&format!("jf-env-{name}")).await?;
        Ok(())
    })
    .await;

    // An edit by hand (another field manager) is reverted.
    config_maps
        .patch(
            "env-config",
            &PatchParams::default(),
            &merge(json!({"data": {"KEY": "edited", "JF_URL": "https://evil.example"}})),
        )
        .await?;
    bindings
        .patch("jf-users", &PatchParams::default(), &merge(json!({"subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "mallory"}]})))
        .await?;
    eventually("the edits to be reverted", || async {
        let data = config_maps
            .get("env-config")
            .await?
            .data
            .unwrap_or_default();
        ensure!(
            data.get("KEY").map(String::as_str) == Some("value"),
            "{data:?}"
        );
        ensure!(
            data.get("JF_URL") == Some(&format!("https://{name}.dev.localhost")),
            "{data:?}"
        );
        let subjects = bindings.get("jf-users").await?.subjects.unwrap_or_default();
        ensure!(
            subjects.len() == 1 && subjects[0].name == "alice",
            "{subjects:?}"
        );
        Ok(())
    })
    .await;

    // The namespace itself, deleted by hand, is made again once it is gone.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let before = namespaces.get(&namespace).await?.uid();
    namespaces
        .delete(&namespace, &DeleteParams::default())
        .await?;
    eventually("a new namespace with its children", || async {
        let now = namespaces.get(&namespace).await?;
        ensure!(
            now.uid() != before && now.metadata.deletion_timestamp.is_none(),
            "still the old one"
        );
        config_maps.get("env-config").await?;
        Ok(())
    })
    .await;
    ready(&client, &name).await;
    Ok(())
}

/// Every child's resourceVersion, and the Environment's status.
async fn snapshot(client: &Client, name: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let namespace = format!("jf-{name}");
    let mut versions = BTreeMap::new();
    let mut put = |kind: &str, version: Option<String>| {
        versions.insert(kind.to_owned(), version.unwrap_or_default());
    };
    put(
        "Namespace",
        Api::<Namespace>::all(client.clone())
            .get(&namespace)
            .await?
            .resource_version(),
    );
    put(
        "ClusterRole",
        Api::<ClusterRole>::all(client.clone())
            .get(&format!("jf-env-{name}"))
            .await?
            .resource_version(),
    );
    put(
        "ClusterRoleBinding",
        Api::<ClusterRoleBinding>::all(client.clone())
            .get(&format!("jf-env-{name}"))
            .await?
            .resource_version(),
    );
    put(
        "RoleBinding",
        Api::<RoleBinding>::namespaced(client.clone(), &namespace)
            .get("jf-users")
            .await?
            .resource_version(),
    );
    put(
        "ConfigMap",
        Api::<ConfigMap>::namespaced(client.clone(), &namespace)
            .get("env-config")
            .await?
            .resource_version(),
    );
    put(
        "NetworkPolicy",
        Api::<NetworkPolicy>::namespaced(client.clone(), &namespace)
            .get("jf-isolation")
            .await?
            .resource_version(),
    );
    let environment = Api::<Environment>::all(client.clone()).get(name).await?;
    put("status", Some(serde_json::to_string(&environment.status)?));
    Ok(versions)
}

#[tokio::test]
async fn a_reconcile_with_nothing_to_change_writes_nothing() -> anyhow::Result<()> {
    let client = admin().await;
    let mut reconciled = operator().await.reconciled();
    let name = unique_name("noop");
    let spec = EnvironmentSpec {
        users: vec!["alice".to_owned()],
        groups: vec!["team".to_owned()],
        config: BTreeMap::from([("A".to_owned(), "1".to_owned())]),
        quota: Some(jf_api::EnvironmentQuota {
            cpu: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
                "2".to_owned(),
            )),
            memory: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
                "4Gi".to_owned(),
            )),
            pods: Some(20),
        }),
        ..EnvironmentSpec::default()
    };
    let mut environment = Environment::new(&name, spec);
    environment.metadata.finalizers = Some(vec!["jango-fett.dev/namespace".to_owned()]);
    Api::<Environment>::all(client.clone())
        .create(&PostParams::default(), &environment)
        .await?;
    ready(&client, &name).await;
    // The first reconciliation does the work; the ones its writes cause find nothing to do.
    let mut next = async || -> anyhow::Result<Reconciled> {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let event = reconciled.recv().await?;
                if event.environment == name && event.ok {
                    return anyhow::Ok(event);
                }
            }
        })
        .await?
    };
    let first = next().await?;
    println!("first reconciliation of {name}: {} writes", first.writes);
    assert!(first.writes > 0);
    while next().await?.writes > 0 {}
    let before = snapshot(&client, &name).await?;

    // Force a reconciliation: a change to the Environment's metadata is watched.
    Api::<Environment>::all(client.clone())
        .patch(
            &name,
            &PatchParams::default(),
            &merge(json!({"metadata": {"annotations": {"test/poke": "1"}}})),
        )
        .await?;
    let forced = next().await?;
    assert_eq!(forced.writes, 0);
    assert_eq!(
        snapshot(&client, &name).await?,
        before,
        "no child and no status changed"
    );
    Api::<Environment>::all(client)
        .delete(&name, &DeleteParams::default())
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_namespace_that_is_not_ours_is_refused_and_left_alone() -> anyhow::Result<()> {
    let client = admin().await;
    let name = unique_name("foreign");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": format!("jf-{name}"), "labels": {"owner": "someone-else"}}}))?)
        .await?;
    create(&client, &name, spec(&["alice"], &[])).await?;
    let environment = with_reason(&client, &name, "NamespaceConflict").await;
    let status = environment.status.unwrap_or_default();
    assert_eq!(status.phase, Some(EnvironmentPhase::Failed));
    let message = &jf_api::conditions::find(&status.conditions, "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains(&format!("namespace jf-{name} already exists")),
        "{message}"
    );
    eventually("a NamespaceConflict event", || async {
        let reasons = support::event_reasons(&client, &name).await?;
        ensure!(
            reasons.iter().any(|reason| reason == "NamespaceConflict"),
            "{reasons:?}"
        );
        Ok(())
    })
    .await;

    let untouched = namespaces.get(&format!("jf-{name}")).await?;
    assert!(untouched.owner_references().is_empty());
    assert_eq!(untouched.labels().get("jango-fett.dev/environment"), None);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &format!("jf-{name}"));
    assert!(is_not_found(&config_maps.get("env-config").await));

    // Deleting the Environment leaves the foreign namespace in place.
    let environments: Api<Environment> = Api::all(client.clone());
    environments.delete(&name, &DeleteParams::default()).await?;
    gone(&format!("environment {name}"), || environments.get(&name)).await;
    let still = namespaces.get(&format!("jf-{name}")).await?;
    assert!(still.metadata.deletion_timestamp.is_none());
    namespaces
        .delete(&format!("jf-{name}"), &DeleteParams::default())
        .await?;
    Ok(())
}

#[tokio::test]
async fn an_expired_environment_is_warned_about_then_deleted() -> anyhow::Result<()> {
    let client = admin().await;
    let name = unique_name("expiry");
    let expires_at = Timestamp::now() + SignedDuration::from_secs(4);
    let spec = EnvironmentSpec {
        expires_at: Some(Time(expires_at)),
        ..EnvironmentSpec::default()
    };
    create(&client, &name, spec).await?;
    // Within the hour before expiry: a warning, once.
    eventually("an ExpiringSoon event", || async {
        let reasons = support::event_reasons(&client, &name).await?;
        ensure!(
            reasons.iter().any(|reason| reason == "ExpiringSoon"),
            "{reasons:?}"
        );
        Ok(())
    })
    .await;
    let environments: Api<Environment> = Api::all(client.clone());
    gone(&format!("expired environment {name}"), || {
        environments.get(&name)
    })
    .await;
    assert!(Timestamp::now() >= expires_at, "deleted before its time");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    assert!(is_not_found(&namespaces.get(&format!("jf-{name}")).await));
    let reasons = support::event_reasons(&client, &name).await?;
    assert!(
        reasons.iter().any(|reason| reason == "Expired"),
        "{reasons:?}"
    );
    assert_eq!(
        reasons
            .iter()
            .filter(|reason| *reason == "ExpiringSoon")
            .count(),
        1,
        "{reasons:?}"
    );
    Ok(())
}

#[tokio::test]
async fn sleep_scales_to_zero_and_wake_restores() -> anyhow::Result<()> {
    let client = admin().await;
    let name = unique_name("sleepy");
    create(&client, &name, spec(&[], &[])).await?;
    ready(&client, &name).await;
    let namespace = format!("jf-{name}");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "api"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "api"}},
            "template": {"metadata": {"labels": {"app": "api"}}, "spec": {"containers": [{"name": "api", "image": "registry.example/api:1"}]}}
        }
    }))?;
    deployments
        .create(&PostParams::default(), &deployment)
        .await?;
    let environments: Api<Environment> = Api::all(client.clone());

    environments
        .patch(
            &name,
            &PatchParams::default(),
            &merge(json!({"spec": {"sleeping": true}})),
        )
        .await?;
    let asleep = ready(&client, &name).await;
    assert_eq!(
        asleep.status.and_then(|status| status.phase),
        Some(EnvironmentPhase::Sleeping)
    );
    let api = deployments.get("api").await?;
    assert_eq!(api.spec.and_then(|spec| spec.replicas), Some(0));
    assert_eq!(
        api.metadata.annotations.unwrap_or_default()[REPLICAS_BEFORE_SLEEP_ANNOTATION],
        "3"
    );

    environments
        .patch(
            &name,
            &PatchParams::default(),
            &merge(json!({"spec": {"sleeping": false}})),
        )
        .await?;
    let awake = ready(&client, &name).await;
    assert_eq!(
        awake.status.and_then(|status| status.phase),
        Some(EnvironmentPhase::Ready)
    );
    let api = deployments.get("api").await?;
    assert_eq!(api.spec.and_then(|spec| spec.replicas), Some(3));
    assert!(
        !api.metadata
            .annotations
            .unwrap_or_default()
            .contains_key(REPLICAS_BEFORE_SLEEP_ANNOTATION)
    );
    eventually("the deployment to be available again", || async {
        let available = deployments
            .get("api")
            .await?
            .status
            .and_then(|status| status.available_replicas);
        ensure!(available == Some(3), "{available:?}");
        Ok(())
    })
    .await;
    environments.delete(&name, &DeleteParams::default()).await?;
    Ok(())
}

#[tokio::test]
async fn a_role_off_the_allowlist_is_refused() -> anyhow::Result<()> {
    let client = admin().await;
    let name = unique_name("role");
    let spec = EnvironmentSpec {
        role: Some("system:aggregate-to-admin".to_owned()),
        ..EnvironmentSpec::default()
    };
    create(&client, &name, spec).await?;
    let environment = with_reason(&client, &name, "RoleNotAllowed").await;
    assert_eq!(
        environment.status.and_then(|status| status.phase),
        Some(EnvironmentPhase::Failed)
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    assert!(is_not_found(&namespaces.get(&format!("jf-{name}")).await));
    let environments: Api<Environment> = Api::all(client.clone());
    environments
        .patch(
            &name,
            &PatchParams::default(),
            &merge(json!({"spec": {"role": "edit"}})),
        )
        .await?;
    ready(&client, &name).await;
    let binding = Api::<RoleBinding>::namespaced(client.clone(), &format!("jf-{name}"))
        .get("jf-users")
        .await?;
    assert_eq!(binding.role_ref.name, "edit");
    environments.delete(&name, &DeleteParams::default()).await?;
    Ok(())
}
