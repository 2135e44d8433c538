//! The operator's own permissions, as the install grants them (deploy/): the ServiceAccount's
//! token, from the TokenRequest API, asks the API server what it may do. The end-to-end tests
//! of `jf` run the operator with that token, so they prove it has every permission it needs;
//! these prove it lacks the dangerous ones.

use jf_api::conditions::{self, READY};
use jf_api::{Environment, EnvironmentSpec, PostgreSQL, PostgreSQLSpec, Redis, RedisSpec};
use jf_testkit::{cluster, eventually, unique_name};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

/// A client acting as the operator's ServiceAccount.
async fn operator_client() -> anyhow::Result<Client> {
    let cluster = cluster().await;
    jf_testkit::install_crds(&cluster.client().await?).await?;
    let kubeconfig = jf_testkit::operator_kubeconfig(cluster).await?;
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig)?,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    Ok(Client::try_from(config)?)
}

/// Whether the operator may `verb` the `resource` (in `group`, `namespace`, by `name`).
async fn may(
    client: &Client,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> anyhow::Result<bool> {
    let (resource, subresource) = match resource.split_once('/') {
        Some((resource, subresource)) => (resource, Some(subresource.to_owned())),
        None => (resource, None),
    };
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.to_owned()),
                group: Some(group.to_owned()),
                resource: Some(resource.to_owned()),
                subresource,
                namespace: namespace.map(str::to_owned),
                name: name.map(str::to_owned),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let answer = Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await?;
    Ok(answer.status.is_some_and(|status| status.allowed))
}

#[tokio::test]
async fn the_operator_may_do_what_it_needs_and_nothing_dangerous() -> anyhow::Result<()> {
    let client = operator_client().await?;
    // What it needs.
    for (verb, group, resource, name) in [
        ("watch", "jango-fett.dev", "environments", None),
        ("patch", "jango-fett.dev", "environments/status", None),
        ("create", "", "namespaces", None),
        (
            "bind",
            "rbac.authorization.k8s.io",
            "clusterroles",
            Some("admin"),
        ),
        (
            "bind",
            "rbac.authorization.k8s.io",
            "clusterroles",
            Some("view"),
        ),
    ] {
        assert!(
            may(&client, verb, group, resource, None, name).await?,
            "the operator needs to {verb} {resource} {name:?}"
        );
    }
    assert!(
        may(
            &client,
            "update",
            "coordination.k8s.io",
            "leases",
            Some("jango-fett-system"),
            Some("jango-fett-operator")
        )
        .await?,
        "its own Lease"
    );
    // Nothing more dangerous.
    for (verb, group, resource, namespace, name) in [
        (
            "bind",
            "rbac.authorization.k8s.io",
            "clusterroles",
            None,
            Some("cluster-admin"),
        ),
        (
            "escalate",
            "rbac.authorization.k8s.io",
            "clusterroles",
            None,
            None,
        ),
        ("impersonate", "", "users", None, None),
        ("create", "", "pods/exec", Some("kube-system"), None),
        (
            "delete",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            None,
            None,
        ),
        ("update", "", "nodes", None, None),
        (
            "update",
            "coordination.k8s.io",
            "leases",
            Some("kube-system"),
            Some("kube-controller-manager"),
        ),
        (
            "update",
            "coordination.k8s.io",
            "leases",
            Some("jango-fett-system"),
            Some("someone-else"),
        ),
        (
            "create",
            "",
            "serviceaccounts/token",
            Some("kube-system"),
            None,
        ),
        ("*", "*", "*", None, None),
    ] {
        assert!(
            !may(&client, verb, group, resource, namespace, name).await?,
            "the operator must not {verb} {resource} {name:?} in {namespace:?}"
        );
    }
    // And the API server enforces it: binding cluster-admin is refused.
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": jf_testkit::unique_name("root")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "jango-fett-operator", "namespace": "jango-fett-system"}],
    }))?;
    match Api::<ClusterRoleBinding>::all(client)
        .create(&PostParams::default(), &binding)
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("binding cluster-admin was not refused: {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn the_operator_may_use_secrets_only_in_environments_namespaces() -> anyhow::Result<()> {
    let client = operator_client().await?;
    // Nowhere by the install alone: not in kube-system, not across the cluster.
    for (verb, namespace) in [
        ("get", Some("kube-system")),
        ("list", Some("kube-system")),
        ("watch", Some("kube-system")),
        ("list", None),
        ("watch", None),
        ("create", Some("default")),
    ] {
        assert!(
            !may(&client, verb, "", "secrets", namespace, None).await?,
            "the operator must not {verb} Secrets in {namespace:?}"
        );
    }
    // And the API server enforces it.
    match Api::<Secret>::namespaced(client.clone(), "kube-system")
        .list(&ListParams::default())
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("listing the Secrets of kube-system was not refused: {other:?}"),
    }

    // In an environment's namespace, only once something there needs Secrets.
    let admin = cluster().await.client().await?;
    jf_testkit::operator(&[]).await;
    let name = unique_name("rbac");
    let environments: Api<Environment> = Api::all(admin.clone());
    environments
        .create(
            &PostParams::default(),
            &Environment::new(&name, EnvironmentSpec::default()),
        )
        .await?;
    let namespace = eventually("the environment to be ready", || async {
        let status = environments.get(&name).await?.status.unwrap_or_default();
        anyhow::ensure!(
            conditions::find(&status.conditions, READY).is_some_and(|ready| ready.status == "True"),
            "not ready: {:?}",
            status.conditions
        );
        status
            .namespace
            .ok_or_else(|| anyhow::anyhow!("no namespace in the status"))
    })
    .await;
    assert!(
        !may(&client, "get", "", "secrets", Some(&namespace), None).await?,
        "an environment with nothing that needs Secrets grants the operator none"
    );
    let redis: Api<Redis> = Api::namespaced(admin.clone(), &namespace);
    redis
        .create(
            &PostParams::default(),
            &Redis::new("cache", RedisSpec::default()),
        )
        .await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    eventually("the operator to make the Redis's Secret", || async {
        let listed = secrets.list(&ListParams::default()).await?;
        anyhow::ensure!(!listed.items.is_empty(), "no Secret yet");
        Ok(())
    })
    .await;
    for verb in ["get", "list", "create", "patch", "delete"] {
        assert!(
            may(&client, verb, "", "secrets", Some(&namespace), None).await?,
            "the operator needs to {verb} Secrets in {namespace}"
        );
    }
    // Only the Secrets: nothing else comes with its RoleBinding there.
    assert!(!may(&client, "create", "", "pods/exec", Some(&namespace), None).await?);

    // Outside environments, a PostgreSQL resource is refused, saying why and what to do, even
    // in a namespace that claims to be the environment's by its label.
    let plain = unique_name("rbac-plain");
    Api::<Namespace>::all(admin.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {
                "name": plain,
                "labels": {"jango-fett.dev/environment": name},
            }}))?,
        )
        .await?;
    let databases: Api<PostgreSQL> = Api::namespaced(admin.clone(), &plain);
    databases
        .create(
            &PostParams::default(),
            &PostgreSQL::new("outside", PostgreSQLSpec::default()),
        )
        .await?;
    let message = eventually("the PostgreSQL to say SecretForbidden", || async {
        let status = databases.get("outside").await?.status.unwrap_or_default();
        let ready = conditions::find(&status.conditions, READY)
            .filter(|ready| ready.reason == "SecretForbidden")
            .ok_or_else(|| anyhow::anyhow!("not refused yet: {:?}", status.conditions))?;
        anyhow::Ok(ready.message.clone())
    })
    .await;
    assert!(
        message.contains(&format!(
            "the operator may not use Secrets in namespace {plain}"
        )) && message.contains("jango-fett-operator-namespaced"),
        "{message}"
    );
    assert!(!may(&client, "get", "", "secrets", Some(&plain), None).await?);
    environments.delete(&name, &DeleteParams::default()).await?;
    Api::<Namespace>::all(admin)
        .delete(&plain, &DeleteParams::default())
        .await?;
    Ok(())
}
