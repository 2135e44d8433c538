//! What an environment's users can and cannot do, decided by the API server's RBAC for
//! impersonated users: everything in their own environment, nothing in another's.

mod support;

use jf_api::Environment;
use jf_testkit::{cluster, eventually, unique_name};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::{admin, create, is_forbidden, ready, spec};

fn deployment(name: &str) -> anyhow::Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}}
        }
    }))?)
}

#[tokio::test]
async fn users_act_in_their_environment_and_are_forbidden_in_another() -> anyhow::Result<()> {
    let admin = admin().await;
    let (a, b) = (unique_name("iso-a"), unique_name("iso-b"));
    let (alice, bob) = (unique_name("alice"), unique_name("bob"));
    create(&admin, &a, spec(&[&alice], &[])).await?;
    create(&admin, &b, spec(&[&bob], &[])).await?;
    ready(&admin, &a).await;
    ready(&admin, &b).await;
    let (namespace_a, namespace_b) = (format!("jf-{a}"), format!("jf-{b}"));
    for namespace in [&namespace_a, &namespace_b] {
        let secret: Secret = serde_json::from_value(
            json!({"metadata": {"name": "token"}, "stringData": {"token": "s3cret"}}),
        )?;
        Api::<Secret>::namespaced(admin.clone(), namespace)
            .create(&PostParams::default(), &secret)
            .await?;
    }
    let as_alice = cluster().await.impersonate(&alice, &[]).await?;

    // In A: deploy and read secrets.
    let deployments_a: Api<Deployment> = Api::namespaced(as_alice.clone(), &namespace_a);
    eventually("alice's rights in A", || async {
        Ok(deployments_a.list(&ListParams::default()).await?)
    })
    .await;
    deployments_a
        .create(&PostParams::default(), &deployment("api")?)
        .await?;
    let secret = Api::<Secret>::namespaced(as_alice.clone(), &namespace_a)
        .get("token")
        .await?;
    assert!(secret.data.is_some_and(|data| data.contains_key("token")));

    // In B: nothing.
    let deployments_b: Api<Deployment> = Api::namespaced(as_alice.clone(), &namespace_b);
    assert!(is_forbidden(
        &deployments_b
            .create(&PostParams::default(), &deployment("api")?)
            .await
    ));
    assert!(is_forbidden(
        &deployments_b.list(&ListParams::default()).await
    ));
    assert!(is_forbidden(
        &Api::<Secret>::namespaced(as_alice.clone(), &namespace_b)
            .get("token")
            .await
    ));

    // Her own Environment, and only it.
    let environments: Api<Environment> = Api::all(as_alice.clone());
    let patch = Patch::Merge(json!({"spec": {"config": {"FEATURE_X": "on"}}}));
    environments
        .patch(&a, &PatchParams::default(), &patch)
        .await?;
    assert!(is_forbidden(
        &environments
            .patch(&b, &PatchParams::default(), &patch)
            .await
    ));
    assert!(is_forbidden(&environments.get(&b).await));
    environments.get(&a).await?;

    // Not the namespace object itself, and no way to grant herself more than she has.
    let namespaces: Api<Namespace> = Api::all(as_alice.clone());
    let label = Patch::Merge(
        json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "privileged"}}}),
    );
    assert!(is_forbidden(
        &namespaces
            .patch(&namespace_a, &PatchParams::default(), &label)
            .await
    ));
    let escalation: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "escalate"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": alice}]
    }))?;
    let role_bindings: Api<RoleBinding> = Api::namespaced(as_alice.clone(), &namespace_a);
    assert!(is_forbidden(
        &role_bindings
            .create(&PostParams::default(), &escalation)
            .await
    ));

    // Bob is the mirror image.
    let as_bob = cluster().await.impersonate(&bob, &[]).await?;
    let bob_environments: Api<Environment> = Api::all(as_bob);
    assert!(is_forbidden(
        &bob_environments
            .patch(&a, &PatchParams::default(), &patch)
            .await
    ));
    Ok(())
}

#[tokio::test]
async fn groups_get_the_same_access_and_removed_users_lose_it() -> anyhow::Result<()> {
    let admin = admin().await;
    let name = unique_name("iso-group");
    let group = unique_name("team");
    let carol = unique_name("carol");
    let mut environment_spec = spec(&[&carol], &[]);
    environment_spec.groups = vec![group.clone()];
    create(&admin, &name, environment_spec).await?;
    ready(&admin, &name).await;
    let namespace = format!("jf-{name}");

    let as_member = cluster()
        .await
        .impersonate(&unique_name("dave"), &[&group])
        .await?;
    let deployments: Api<Deployment> = Api::namespaced(as_member, &namespace);
    eventually("the group's rights", || async {
        Ok(deployments.list(&ListParams::default()).await?)
    })
    .await;

    let as_carol = cluster().await.impersonate(&carol, &[]).await?;
    let carol_deployments: Api<Deployment> = Api::namespaced(as_carol, &namespace);
    carol_deployments.list(&ListParams::default()).await?;
    Api::<Environment>::all(admin.clone())
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"users": []}})),
        )
        .await?;
    eventually("carol to lose her rights", || async {
        let result = carol_deployments.list(&ListParams::default()).await;
        anyhow::ensure!(is_forbidden(&result), "still allowed");
        Ok(())
    })
    .await;
    Ok(())
}
