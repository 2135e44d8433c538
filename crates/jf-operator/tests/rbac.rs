//! The operator's own permissions, as the install grants them (deploy/): the ServiceAccount's
//! token, from the TokenRequest API, asks the API server what it may do. The end-to-end tests
//! of `jf` run the operator with that token, so they prove it has every permission it needs;
//! these prove it lacks the dangerous ones.

use jf_testkit::cluster;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::Client;
use kube::api::{Api, PostParams};
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
