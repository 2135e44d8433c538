//! Bad resources of every kind are refused at admission by their CRD's schema, with a message naming the
//! field, before the operator ever sees them.

use jf_testkit::{cluster, unique_name};
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::ApiResource;
use serde_json::json;

async fn rejection(body: serde_json::Value) -> anyhow::Result<String> {
    let client = cluster().await.client().await?;
    jf_testkit::install_crds(&client).await?;
    let resource = ApiResource::erase::<jf_api::Environment>(&());
    let api: Api<DynamicObject> = Api::all_with(client, &resource);
    let mut object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "jango-fett.dev/v1alpha1",
        "kind": "Environment",
    }))?;
    refused(api, object_with(&mut object, &body)).await
}

fn object_with<'a>(object: &'a mut DynamicObject, body: &serde_json::Value) -> &'a DynamicObject {
    object.metadata.name = body["name"].as_str().map(str::to_owned);
    object.data = json!({"spec": body["spec"]});
    object
}

/// The message of the API server's refusal to create `object`.
async fn refused(api: Api<DynamicObject>, object: &DynamicObject) -> anyhow::Result<String> {
    match api.create(&PostParams::default(), object).await {
        Ok(_) => anyhow::bail!("{object:?} was accepted"),
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            Ok(status.message)
        }
        Err(error) => Err(error.into()),
    }
}

/// The message of the refusal of a PostgreSQL resource with `spec` in the default namespace.
async fn postgresql_rejection(spec: serde_json::Value) -> anyhow::Result<String> {
    let client = cluster().await.client().await?;
    jf_testkit::install_crds(&client).await?;
    let resource = ApiResource::erase::<jf_api::PostgreSQL>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client, "default", &resource);
    let mut object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "jango-fett.dev/v1alpha1",
        "kind": "PostgreSQL",
    }))?;
    refused(
        api,
        object_with(
            &mut object,
            &json!({"name": unique_name("pg"), "spec": spec}),
        ),
    )
    .await
}

/// The message of the refusal of a Redis resource named `name` with `spec`.
async fn redis_rejection(name: &str, spec: serde_json::Value) -> anyhow::Result<String> {
    let client = cluster().await.client().await?;
    jf_testkit::install_crds(&client).await?;
    let resource = ApiResource::erase::<jf_api::Redis>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client, "default", &resource);
    let mut object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "jango-fett.dev/v1alpha1",
        "kind": "Redis",
    }))?;
    refused(
        api,
        object_with(&mut object, &json!({"name": name, "spec": spec})),
    )
    .await
}

#[tokio::test]
async fn a_redis_version_that_is_not_an_image_tag() -> anyhow::Result<()> {
    for version in ["7.2; rm -rf /", "7.2@sha256:abc", ":latest", ""] {
        let message = redis_rejection(&unique_name("rd"), json!({"version": version})).await?;
        assert!(
            message.contains("spec.version") && message.contains("version must be an image tag"),
            "{version:?}: {message}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_redis_max_memory_that_is_not_a_size() -> anyhow::Result<()> {
    for max_memory in ["lots", "0", "64MiB", "-1mb", "1.5gb", "64 mb"] {
        let message = redis_rejection(&unique_name("rd"), json!({"maxMemory": max_memory})).await?;
        assert!(
            message.contains("spec.maxMemory")
                && message.contains("maxMemory must be a positive size such as 64mb"),
            "{max_memory:?}: {message}"
        );
    }
    let message = redis_rejection(
        &unique_name("rd"),
        json!({"maxMemory": "64mb\nrequirepass \"\""}),
    )
    .await?;
    assert!(message.contains("spec.maxMemory: Too long"), "{message}");
    Ok(())
}

#[tokio::test]
async fn redis_names_its_children_can_take() -> anyhow::Result<()> {
    let message = redis_rejection("1cache", json!({})).await?;
    assert!(
        message.contains("metadata.name: a Redis name must be lowercase letters"),
        "{message}"
    );
    let message = redis_rejection(&"r".repeat(47), json!({})).await?;
    assert!(
        message.contains("metadata.name: a Redis name may be at most 46 characters"),
        "{message}"
    );
    Ok(())
}

#[tokio::test]
async fn sql_in_an_extension_name() -> anyhow::Result<()> {
    let message =
        postgresql_rejection(json!({"extensions": ["uuid\"; DROP DATABASE x; --"]})).await?;
    assert!(
        message.contains("spec.extensions[0]") && message.contains("should match"),
        "{message}"
    );
    Ok(())
}

#[tokio::test]
async fn sql_in_a_template_name() -> anyhow::Result<()> {
    let message = postgresql_rejection(json!({"template": "x' OR '1'='1"})).await?;
    assert!(
        message.contains("spec.template") && message.contains("should match"),
        "{message}"
    );
    let message = postgresql_rejection(json!({"extensions": ["uuid", "uuid"]})).await?;
    assert!(
        message.contains("spec.extensions[1]") && message.contains("Duplicate"),
        "{message}"
    );
    let message = postgresql_rejection(json!({"deletionPolicy": "Shred"})).await?;
    assert!(
        message.contains("spec.deletionPolicy") && message.contains("Unsupported value"),
        "{message}"
    );
    Ok(())
}

#[tokio::test]
async fn names_longer_than_40_characters() -> anyhow::Result<()> {
    let message = rejection(json!({"name": "a".repeat(41), "spec": {}})).await?;
    assert!(
        message.contains("metadata.name") && message.contains("at most 40 characters"),
        "{message}"
    );
    Ok(())
}

#[tokio::test]
async fn names_that_are_not_dns_labels() -> anyhow::Result<()> {
    let message = rejection(json!({"name": "Fix-Bug", "spec": {}})).await?;
    assert!(message.contains("metadata.name"), "{message}");
    let message = rejection(json!({"name": "fix.bug", "spec": {}})).await?;
    assert!(
        message.contains("metadata.name: an environment name must be a DNS label"),
        "{message}"
    );
    Ok(())
}

#[tokio::test]
async fn bad_config_keys() -> anyhow::Result<()> {
    let name = unique_name("bad");
    let message = rejection(json!({"name": name, "spec": {"config": {"has space": "x"}}})).await?;
    assert!(
        message.contains("spec.config") && message.contains("keys may only contain"),
        "{message}"
    );
    let message = rejection(json!({"name": name, "spec": {"config": {"JF_URL": "x"}}})).await?;
    assert!(
        message.contains("spec.config") && message.contains("JF_ are reserved"),
        "{message}"
    );
    Ok(())
}

#[tokio::test]
async fn malformed_expiry() -> anyhow::Result<()> {
    let message =
        rejection(json!({"name": unique_name("bad"), "spec": {"expiresAt": "next tuesday"}}))
            .await?;
    assert!(
        message.contains("spec.expiresAt") && message.contains("date-time"),
        "{message}"
    );
    Ok(())
}

#[tokio::test]
async fn cluster_admin_for_users() -> anyhow::Result<()> {
    let message =
        rejection(json!({"name": unique_name("bad"), "spec": {"role": "cluster-admin"}})).await?;
    assert!(
        message.contains("spec.role") && message.contains("cluster-admin can never be granted"),
        "{message}"
    );
    Ok(())
}

#[tokio::test]
async fn empty_user_names() -> anyhow::Result<()> {
    let message =
        rejection(json!({"name": unique_name("bad"), "spec": {"users": ["alice", ""]}})).await?;
    assert!(message.contains("spec.users[1]"), "{message}");
    Ok(())
}

/// The message of the refusal of a Blueprint with `spec`.
async fn blueprint_rejection(spec: serde_json::Value) -> anyhow::Result<String> {
    let client = cluster().await.client().await?;
    jf_testkit::install_crds(&client).await?;
    let resource = ApiResource::erase::<jf_api::Blueprint>(&());
    let api: Api<DynamicObject> = Api::all_with(client, &resource);
    let mut object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "jango-fett.dev/v1alpha1",
        "kind": "Blueprint",
    }))?;
    refused(
        api,
        object_with(
            &mut object,
            &json!({"name": unique_name("bp"), "spec": spec}),
        ),
    )
    .await
}

#[tokio::test]
async fn blueprints_hold_only_namespaced_workloads_and_their_configuration() -> anyhow::Result<()> {
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api"}, "spec": {}});
    for (offending, kind) in [
        (
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "root"}, "rules": []}),
            "ClusterRole (rbac.authorization.k8s.io/v1)",
        ),
        (
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "admin"}}),
            "RoleBinding (rbac.authorization.k8s.io/v1)",
        ),
        (
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}}),
            "Namespace (v1)",
        ),
        (
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "debug"}}),
            "Pod (v1)",
        ),
        (
            json!({"apiVersion": "extensions/v1beta1", "kind": "Deployment", "metadata": {"name": "old"}}),
            "Deployment (extensions/v1beta1)",
        ),
    ] {
        let message =
            blueprint_rejection(json!({"resources": [deployment.clone(), offending]})).await?;
        assert!(
            message.contains("spec.resources[1]")
                && message.contains(&format!("{kind} is not allowed in a Blueprint")),
            "{kind}: {message}"
        );
    }
    let message = blueprint_rejection(json!({"resources": [
        deployment.clone(),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}},
    ]}))
    .await?;
    assert!(
        message.contains("spec.resources[1]") && message.contains("needs metadata.name"),
        "{message}"
    );
    let message = blueprint_rejection(json!({
        "resources": [deployment],
        "expose": {"service": "api", "port": 80},
    }))
    .await?;
    assert!(
        message.contains("spec.expose.service must name a Service among spec.resources"),
        "{message}"
    );
    Ok(())
}
