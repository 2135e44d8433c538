//! The pure part of the App controller: a Blueprint rendered for one App in one environment.
//! Variables are replaced, every object is forced into the App's namespace, labelled and
//! owned by the App, images are overridden by container name, replicas set (zero while the
//! environment sleeps), and pod templates stamped with the hash of the configuration they
//! read, so a change of configuration rolls the pods.

use std::collections::{BTreeMap, BTreeSet};

use jf_api::{App, Blueprint, PostgreSQL, PostgreSQLSpec};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Resource as _, ResourceExt as _};
use serde_json::{Value, json};

/// The label naming the App an object belongs to.
pub const APP_LABEL: &str = "jango-fett.dev/app";

/// On pod templates: the hash of `env-config` and the dependency Secrets.
pub const CONFIG_HASH_ANNOTATION: &str = "jango-fett.dev/config-hash";

/// What the environment contributes to a render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub name: String,
    pub namespace: String,
    pub domain: String,
    /// Whether this App answers at the environment's own host.
    pub default_app: bool,
    pub sleeping: bool,
    /// The hash of the configuration the pods read.
    pub config_hash: String,
    /// The IngressClass of the Ingresses, if the operator sets one.
    pub ingress_class: Option<String>,
}

/// Everything an App consists of.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The Blueprint's objects, in its order.
    pub objects: Vec<(ApiResource, DynamicObject)>,
    pub postgresql: Option<PostgreSQL>,
    /// The Redis resource, as an object of its own API.
    pub redis: Option<(ApiResource, DynamicObject)>,
    pub ingress: Option<Ingress>,
    /// `https://<app>-<environment>.<domain>` when something is exposed.
    pub url: Option<String>,
}

/// Why a Blueprint cannot be rendered for an App.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error(
        "the Blueprint's resource {index} has the kind {kind} ({api_version}), which is not allowed"
    )]
    KindNotAllowed {
        index: usize,
        kind: String,
        api_version: String,
    },
    #[error("the Blueprint's resource {index} has no name")]
    Unnamed { index: usize },
    #[error("the Blueprint has two {kind} resources named {name:?}")]
    Duplicate { kind: String, name: String },
    #[error(
        "spec.images names the container {container:?}, which no workload of the Blueprint has (containers: {known})"
    )]
    UnknownContainer { container: String, known: String },
}

impl RenderError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::KindNotAllowed { .. } | Self::Unnamed { .. } | Self::Duplicate { .. } => {
                "InvalidBlueprint"
            }
            Self::UnknownContainer { .. } => "UnknownContainer",
        }
    }
}

/// The API of an allowed `apiVersion` and `kind`.
pub fn api_resource(api_version: &str, kind: &str) -> Option<ApiResource> {
    let key = format!("{api_version}/{kind}");
    if !jf_api::blueprint::ALLOWED_KINDS.contains(&key.as_str()) {
        return None;
    }
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    Some(ApiResource::from_gvk(&GroupVersionKind::gvk(
        group, version, kind,
    )))
}

/// The host of an App: `<app>-<environment>.<domain>`.
pub fn host(app: &str, environment: &Environment) -> String {
    format!("{app}-{}.{}", environment.name, environment.domain)
}

/// Where the pod spec of a workload is, by kind.
fn pod_template_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Deployment" | "StatefulSet" | "Job" => Some("/spec/template"),
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

/// Replaces `${environment}`, `${namespace}`, `${domain}` and `${host}` in every string.
fn substitute(value: &mut Value, variables: &[(&str, &str)]) {
    match value {
        Value::String(text) if text.contains("${") => {
            for (name, replacement) in variables {
                *text = text.replace(&format!("${{{name}}}"), replacement);
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| substitute(item, variables)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|item| substitute(item, variables)),
        _ => {}
    }
}

/// Writes a container's requests and limits as the API server stores them (`0.5` → `500m`,
/// `1` → `"1"`), so that the object read back matches what was rendered.
fn canonical_resources(container: &mut Value) {
    for list in ["requests", "limits"] {
        let Some(quantities) = container
            .pointer_mut(&format!("/resources/{list}"))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        for quantity in quantities.values_mut() {
            let written = match quantity {
                Value::String(text) => text.clone(),
                Value::Number(number) => number.to_string(),
                _ => continue,
            };
            *quantity = json!(crate::quantity::canonical(&written).unwrap_or(written));
        }
    }
}

/// The Blueprint, rendered for `app` in `environment`.
pub fn render(
    app: &App,
    blueprint: &Blueprint,
    environment: &Environment,
) -> Result<Rendered, RenderError> {
    let name = app.name_any();
    // Blocking the owner's deletion: `jf undeploy` deletes the App in the foreground, so it is
    // gone only once everything it deployed is.
    let owner = app.controller_owner_ref(&()).map(|mut owner| {
        owner.block_owner_deletion = Some(true);
        owner
    });
    let app_host = host(&name, environment);
    let variables = [
        ("environment", environment.name.as_str()),
        ("namespace", environment.namespace.as_str()),
        ("domain", environment.domain.as_str()),
        ("host", app_host.as_str()),
    ];
    let labels = BTreeMap::from([
        (
            jf_api::MANAGED_BY_LABEL.to_owned(),
            jf_api::MANAGED_BY.to_owned(),
        ),
        (APP_LABEL.to_owned(), name.clone()),
    ]);

    let mut objects = Vec::new();
    let mut seen = BTreeSet::new();
    for (index, manifest) in blueprint.spec.resources.iter().enumerate() {
        let mut manifest = manifest.clone();
        let api_version = manifest["apiVersion"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let kind = manifest["kind"].as_str().unwrap_or_default().to_owned();
        let resource =
            api_resource(&api_version, &kind).ok_or_else(|| RenderError::KindNotAllowed {
                index,
                kind: kind.clone(),
                api_version: api_version.clone(),
            })?;
        let object_name = manifest
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .filter(|object_name| !object_name.is_empty())
            .ok_or(RenderError::Unnamed { index })?
            .to_owned();
        if !seen.insert((kind.clone(), object_name.clone())) {
            return Err(RenderError::Duplicate {
                kind,
                name: object_name,
            });
        }
        substitute(&mut manifest, &variables);
        // Whatever the manifest says, it lives in the App's namespace, owned by the App.
        let metadata = &mut manifest["metadata"];
        metadata["namespace"] = json!(environment.namespace);
        for field in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "generation",
            "managedFields",
            "ownerReferences",
        ] {
            if let Some(map) = metadata.as_object_mut() {
                map.remove(field);
            }
        }
        metadata["ownerReferences"] = json!([owner]);
        let mut object_labels: BTreeMap<String, String> =
            serde_json::from_value(metadata["labels"].clone()).unwrap_or_default();
        object_labels.extend(labels.clone());
        metadata["labels"] = json!(object_labels);

        if let Some(pointer) = jf_api::blueprint::pod_spec_pointer(&kind)
            && let Some(pod) = manifest.pointer_mut(pointer)
        {
            for list in ["containers", "initContainers"] {
                for container in pod
                    .get_mut(list)
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    let container_name = container["name"].as_str().unwrap_or_default();
                    if let Some(image) = app.spec.images.get(container_name) {
                        container["image"] = json!(image);
                    }
                    canonical_resources(container);
                }
            }
        }
        if let Some(pointer) = pod_template_pointer(&kind)
            && let Some(template) = manifest.pointer_mut(pointer)
        {
            template["metadata"]["annotations"][CONFIG_HASH_ANNOTATION] =
                json!(environment.config_hash);
        }
        if matches!(kind.as_str(), "Deployment" | "StatefulSet") {
            let replicas = if environment.sleeping {
                Some(0)
            } else {
                app.spec.replicas
            };
            if let Some(replicas) = replicas {
                manifest["spec"]["replicas"] = json!(replicas);
            }
        }
        let object: DynamicObject =
            serde_json::from_value(manifest).map_err(|_| RenderError::Unnamed { index })?;
        objects.push((resource, object));
    }
    let containers = blueprint.containers();
    if let Some(container) = app
        .spec
        .images
        .keys()
        .find(|container| !containers.contains(*container))
    {
        return Err(RenderError::UnknownContainer {
            container: container.clone(),
            known: containers.into_iter().collect::<Vec<_>>().join(", "),
        });
    }

    let metadata = |kind_labels: &BTreeMap<String, String>| {
        json!({
            "name": name,
            "namespace": environment.namespace,
            "labels": kind_labels,
            "ownerReferences": [owner],
        })
    };
    let postgresql = blueprint.spec.postgresql.as_ref().map(|database| {
        let mut resource = PostgreSQL::new(
            &name,
            PostgreSQLSpec {
                extensions: database.extensions.clone(),
                template: database.template.clone(),
                ..PostgreSQLSpec::default()
            },
        );
        resource.metadata = serde_json::from_value(metadata(&labels)).unwrap_or_default();
        resource
    });
    let redis = blueprint.spec.redis.as_ref().map(|redis| {
        let resource = ApiResource::erase::<jf_api::Redis>(&());
        let mut spec = serde_json::Map::new();
        if let Some(version) = &redis.version {
            spec.insert("version".to_owned(), json!(version));
        }
        if let Some(max_memory) = &redis.max_memory {
            spec.insert("maxMemory".to_owned(), json!(max_memory));
        }
        let mut object = DynamicObject::new(&name, &resource).within(&environment.namespace);
        object.metadata = serde_json::from_value(metadata(&labels)).unwrap_or_default();
        object.data = json!({"spec": spec});
        (resource, object)
    });
    let (ingress, url) = match &blueprint.spec.expose {
        Some(expose) => {
            let mut hosts = vec![app_host.clone()];
            if environment.default_app {
                hosts.push(jf_api::naming::environment_host(
                    &environment.name,
                    &environment.domain,
                ));
            }
            let rules: Vec<Value> = hosts
                .iter()
                .map(|host| {
                    json!({
                        "host": host,
                        "http": {"paths": [{
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": expose.service, "port": {"number": expose.port}}}
                        }]}
                    })
                })
                .collect();
            let mut spec = json!({"rules": rules});
            if let Some(class) = &environment.ingress_class {
                spec["ingressClassName"] = json!(class);
            }
            let ingress: Option<Ingress> = serde_json::from_value(json!({
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": metadata(&labels),
                "spec": spec,
            }))
            .ok();
            (ingress, Some(format!("https://{app_host}")))
        }
        None => (None, None),
    };
    Ok(Rendered {
        objects,
        postgresql,
        redis,
        ingress,
        url,
    })
}

#[cfg(test)]
mod tests {
    use jf_api::{AppSpec, BlueprintPostgreSQL, BlueprintRedis, BlueprintSpec, Expose};

    use super::*;

    fn blueprint() -> Blueprint {
        let mut blueprint = Blueprint::new(
            "logistics-api",
            BlueprintSpec {
                resources: vec![
                    json!({
                        "apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": "logistics-api", "namespace": "production", "labels": {"tier": "web"}},
                        "spec": {
                            "replicas": 3,
                            "selector": {"matchLabels": {"app": "logistics-api"}},
                            "template": {
                                "metadata": {"labels": {"app": "logistics-api"}},
                                "spec": {"containers": [{
                                    "name": "api", "image": "registry.example/api:1.4",
                                    "env": [{"name": "PUBLIC_URL", "value": "https://${host}"}, {"name": "ENV", "value": "${environment}"}],
                                    "resources": {"requests": {"cpu": 0.5, "memory": "0.25Gi"}, "limits": {"cpu": "1000m"}}
                                }]}
                            }
                        }
                    }),
                    json!({
                        "apiVersion": "batch/v1", "kind": "CronJob",
                        "metadata": {"name": "cleanup"},
                        "spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
                            "restartPolicy": "Never",
                            "containers": [{"name": "api", "image": "registry.example/api:1.4"}]
                        }}}}}
                    }),
                    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "logistics-api"},
                           "spec": {"selector": {"app": "logistics-api"}, "ports": [{"port": 80}]}}),
                ],
                postgresql: Some(BlueprintPostgreSQL {
                    extensions: vec!["uuid".to_owned()],
                    template: None,
                }),
                redis: Some(BlueprintRedis {
                    version: None,
                    max_memory: Some("32mb".to_owned()),
                }),
                expose: Some(Expose {
                    service: "logistics-api".to_owned(),
                    port: 80,
                }),
                description: None,
            },
        );
        blueprint.metadata.generation = Some(2);
        blueprint
    }

    fn app(images: &[(&str, &str)], replicas: Option<i32>) -> App {
        let mut app = App::new(
            "logistics-api",
            AppSpec {
                blueprint: "logistics-api".to_owned(),
                images: images
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                replicas,
            },
        );
        app.metadata.namespace = Some("jf-fix-bug".to_owned());
        app.metadata.uid = Some("app-uid".to_owned());
        app
    }

    fn environment() -> Environment {
        Environment {
            name: "fix-bug".to_owned(),
            namespace: "jf-fix-bug".to_owned(),
            domain: "dev.example.com".to_owned(),
            default_app: false,
            sleeping: false,
            config_hash: "c0ffee".to_owned(),
            ingress_class: Some("nginx".to_owned()),
        }
    }

    fn value(object: &DynamicObject) -> Value {
        serde_json::to_value(object).expect("serializes")
    }

    #[test]
    fn renders_the_blueprint_into_the_apps_namespace() {
        let rendered = render(
            &app(&[("api", "registry.example/api:fix")], None),
            &blueprint(),
            &environment(),
        )
        .expect("renders");
        assert_eq!(rendered.objects.len(), 3);
        let deployment = value(&rendered.objects[0].1);
        assert_eq!(deployment["metadata"]["namespace"], json!("jf-fix-bug"));
        assert_eq!(
            deployment["metadata"]["labels"],
            json!({"tier": "web", "app.kubernetes.io/managed-by": "jango-fett", "jango-fett.dev/app": "logistics-api"})
        );
        assert_eq!(
            deployment["metadata"]["ownerReferences"][0]["uid"],
            json!("app-uid")
        );
        assert_eq!(deployment["spec"]["replicas"], json!(3));
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["image"], json!("registry.example/api:fix"));
        assert_eq!(
            container["resources"],
            json!({"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"cpu": "1"}}),
            "quantities are written as the API server stores them"
        );
        assert_eq!(
            container["env"],
            json!([
                {"name": "PUBLIC_URL", "value": "https://logistics-api-fix-bug.dev.example.com"},
                {"name": "ENV", "value": "fix-bug"}
            ])
        );
        assert_eq!(
            deployment["spec"]["template"]["metadata"]["annotations"],
            json!({"jango-fett.dev/config-hash": "c0ffee"})
        );
        let cron = value(&rendered.objects[1].1);
        assert_eq!(
            cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"],
            json!("registry.example/api:fix")
        );
        assert_eq!(rendered.objects[1].0.kind, "CronJob");
        assert_eq!(rendered.objects[1].0.group, "batch");
        assert_eq!(
            rendered.url.as_deref(),
            Some("https://logistics-api-fix-bug.dev.example.com")
        );
    }

    #[test]
    fn dependencies_and_ingress() {
        let mut environment = environment();
        environment.default_app = true;
        let rendered = render(&app(&[], None), &blueprint(), &environment).expect("renders");
        let postgresql = rendered.postgresql.expect("a database");
        assert_eq!(postgresql.metadata.name.as_deref(), Some("logistics-api"));
        assert_eq!(postgresql.metadata.namespace.as_deref(), Some("jf-fix-bug"));
        assert_eq!(postgresql.spec.extensions, ["uuid"]);
        let (resource, redis) = rendered.redis.expect("a redis");
        assert_eq!(resource.plural, "redis");
        assert_eq!(redis.data["spec"], json!({"maxMemory": "32mb"}));
        let ingress =
            serde_json::to_value(rendered.ingress.expect("an ingress")).expect("serializes");
        assert_eq!(ingress["spec"]["ingressClassName"], json!("nginx"));
        let hosts: Vec<&str> = ingress["spec"]["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|rule| rule["host"].as_str())
            .collect();
        assert_eq!(
            hosts,
            [
                "logistics-api-fix-bug.dev.example.com",
                "fix-bug.dev.example.com"
            ]
        );
        assert_eq!(
            ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"],
            json!({"service": {"name": "logistics-api", "port": {"number": 80}}})
        );
    }

    #[test]
    fn sleep_and_replicas() {
        let rendered = render(&app(&[], Some(1)), &blueprint(), &environment()).expect("renders");
        assert_eq!(value(&rendered.objects[0].1)["spec"]["replicas"], json!(1));
        let mut sleeping = environment();
        sleeping.sleeping = true;
        let rendered = render(&app(&[], Some(1)), &blueprint(), &sleeping).expect("renders");
        assert_eq!(value(&rendered.objects[0].1)["spec"]["replicas"], json!(0));
    }

    #[test]
    fn refuses_unknown_containers_and_bad_blueprints() {
        let error = render(&app(&[("apii", "x")], None), &blueprint(), &environment())
            .expect_err("unknown");
        assert_eq!(error.reason(), "UnknownContainer");
        assert!(
            error.to_string().contains("\"apii\"") && error.to_string().contains("containers: api"),
            "{error}"
        );

        let mut bad = blueprint();
        bad.spec.resources.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "x"}}));
        assert!(matches!(
            render(&app(&[], None), &bad, &environment()),
            Err(RenderError::KindNotAllowed { index: 3, .. })
        ));
        let mut duplicate = blueprint();
        duplicate.spec.resources.push(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "logistics-api"}}),
        );
        assert!(matches!(
            render(&app(&[], None), &duplicate, &environment()),
            Err(RenderError::Duplicate { .. })
        ));
        // Deployment under the wrong group.
        assert_eq!(api_resource("v1", "Deployment"), None);
    }
}
