//! The pure part of the Redis controller: the objects a Redis resource should have, from the
//! resource, its password and the operator's settings alone, and how ready it is from what
//! the cluster reports.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use jf_api::naming::{self, REDIS_PORT};
use jf_api::redis::{is_image_tag, memory_bytes};
use jf_api::{MANAGED_BY, MANAGED_BY_LABEL, Redis};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::ObjectMeta;
use kube::{Resource as _, ResourceExt as _};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::postgres::sql::url_credentials;
use crate::settings::RedisSettings;

/// The label naming the Redis resource an object belongs to.
pub const REDIS_LABEL: &str = "jango-fett.dev/redis";

/// On the pod template: a hash of the configuration file, so that a new configuration (which
/// Redis reads only when it starts) rolls the pod.
pub const CONFIG_HASH_ANNOTATION: &str = "jango-fett.dev/config-hash";

/// The key of the configuration Secret holding the file.
pub const CONFIG_KEY: &str = "redis.conf";

/// Where the configuration Secret is mounted in the container.
pub const CONFIG_DIR: &str = "/etc/redis";

/// The data directory: the container's working directory, where Redis writes by default.
pub const DATA_DIR: &str = "/data";

/// The user and group of the official image's `redis` account.
pub const REDIS_USER: i64 = 999;

/// The objects of one Redis resource, besides its credentials Secret.
#[derive(Debug, Clone, PartialEq)]
pub struct Children {
    /// The Secret `<name>-redis-config` with `redis.conf`.
    pub config: Secret,
    pub stateful_set: StatefulSet,
    pub service: Service,
}

/// Why a Redis resource cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("spec.version {0:?} is not an image tag")]
    Version(String),
    #[error("spec.maxMemory {0:?} is not a memory size such as 64mb")]
    MaxMemory(String),
    #[error("the Redis has no uid yet")]
    NoUid,
    #[error("failed to build the Redis's objects: {0}")]
    Build(String),
}

impl Invalid {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Version(_) | Self::MaxMemory(_) => "InvalidSpec",
            Self::NoUid => "NotPersisted",
            Self::Build(_) => "InternalError",
        }
    }
}

/// Checks what the schema already checks, so that nothing from a spec reaches the
/// configuration file or the image reference unvalidated.
pub fn validate(resource: &Redis) -> Result<(), Invalid> {
    let spec = &resource.spec;
    if !is_image_tag(&spec.version) {
        return Err(Invalid::Version(spec.version.clone()));
    }
    if memory_bytes(&spec.max_memory).is_none() {
        return Err(Invalid::MaxMemory(spec.max_memory.clone()));
    }
    Ok(())
}

/// The labels of every object of `resource`.
fn labels(resource: &Redis) -> Value {
    json!({
        MANAGED_BY_LABEL: MANAGED_BY,
        "app.kubernetes.io/name": "redis",
        "app.kubernetes.io/instance": resource.name_any(),
        REDIS_LABEL: resource.name_any(),
    })
}

/// The labels that select the pod; fixed, since a StatefulSet's selector cannot change.
fn selector(resource: &Redis) -> Value {
    json!({
        "app.kubernetes.io/name": "redis",
        REDIS_LABEL: resource.name_any(),
    })
}

fn metadata(resource: &Redis, name: &str) -> Result<Value, Invalid> {
    let owner = resource.controller_owner_ref(&()).ok_or(Invalid::NoUid)?;
    if owner.uid.is_empty() {
        return Err(Invalid::NoUid);
    }
    Ok(json!({
        "name": name,
        "namespace": resource.namespace(),
        "labels": labels(resource),
        "ownerReferences": [owner],
    }))
}

fn object<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, Invalid> {
    serde_json::from_value(value).map_err(|error| Invalid::Build(error.to_string()))
}

fn data(entries: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
    entries
        .iter()
        .map(|(key, value)| ((*key).to_owned(), ByteString(value.as_bytes().to_vec())))
        .collect()
}

/// The connection URL: `redis://:<password>@<host>:6379/0`, the password URL-encoded.
pub fn url(resource: &Redis, password: &str) -> String {
    let host = naming::redis_host(
        &resource.namespace().unwrap_or_default(),
        &resource.name_any(),
    );
    format!(
        "redis://{}{host}:{REDIS_PORT}/0",
        url_credentials("", password)
    )
}

/// The Secret `<name>-redis` with the credentials, in the servicebinding.io layout plus
/// `REDIS_URL`.
pub fn credentials(resource: &Redis, password: &str) -> Result<Secret, Invalid> {
    let host = naming::redis_host(
        &resource.namespace().unwrap_or_default(),
        &resource.name_any(),
    );
    let url = url(resource, password);
    let port = REDIS_PORT.to_string();
    object(json!({
        "metadata": metadata(resource, &naming::redis(&resource.name_any()))?,
        "type": "servicebinding.io/redis",
        "data": data(&[
            ("type", "redis"),
            ("provider", MANAGED_BY),
            ("host", &host),
            ("port", &port),
            ("password", password),
            ("uri", &url),
            ("REDIS_URL", &url),
        ]),
    }))
}

/// A string as Redis's configuration parser reads it back: double-quoted, with `\\`, `\"`
/// and anything unprintable escaped.
fn quoted(text: &str) -> String {
    let mut quoted = String::from("\"");
    for byte in text.bytes() {
        match byte {
            b'"' => quoted.push_str("\\\""),
            b'\\' => quoted.push_str("\\\\"),
            0x20..=0x7e => quoted.push(char::from(byte)),
            _ => {
                let _ = write!(quoted, "\\x{byte:02x}");
            }
        }
    }
    quoted.push('"');
    quoted
}

/// `redis.conf`. The password is in it, so that it is on no command line; the data directory
/// is the working directory (a `dir` that does not exist would stop Redis at startup, wherever
/// else the file is run).
pub fn config(resource: &Redis, password: &str) -> String {
    let spec = &resource.spec;
    let persistence = if spec.persistence.enabled {
        "# Persistence: every write is appended to a file on the volume, synced every second.\n\
         save \"\"\n\
         appendonly yes\n\
         appendfsync everysec\n"
    } else {
        "# No persistence: the data lives as long as the pod.\n\
         save \"\"\n\
         appendonly no\n"
    };
    format!(
        "# Made by Jango Fett for the Redis {namespace}/{name}; changes here are overwritten.\n\
         port {REDIS_PORT}\n\
         bind * -::*\n\
         # A password is required, so clients from anywhere may connect.\n\
         protected-mode no\n\
         requirepass {password}\n\
         maxmemory {max_memory}\n\
         maxmemory-policy allkeys-lru\n\
         {persistence}\
         # Logs go to the container's output.\n\
         logfile \"\"\n",
        namespace = resource.namespace().unwrap_or_default(),
        name = resource.name_any(),
        password = quoted(password),
        max_memory = spec.max_memory,
    )
}

/// A short hash of `text`; SHA-256, because the configuration it stands for holds a password.
fn hash(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .take(8)
        .fold(String::new(), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// A probe that runs `redis-cli ping` and accepts the replies matching `accepted`, with
/// `timing`. `redis-cli` reads the password from `REDISCLI_AUTH`, so it is on no command line
/// either.
fn probe(accepted: &str, timing: Value) -> Value {
    let mut probe = timing;
    probe["exec"] = json!({"command": [
        "sh", "-c",
        format!("redis-cli -h 127.0.0.1 -p {REDIS_PORT} ping | grep -qE '^({accepted})'"),
    ]});
    probe
}

/// The configuration Secret, the StatefulSet and the Service of `resource`. `asleep`: its
/// environment sleeps, and the StatefulSet stays scaled to zero until it wakes.
pub fn children(
    resource: &Redis,
    password: &str,
    settings: &RedisSettings,
    asleep: bool,
) -> Result<Children, Invalid> {
    validate(resource)?;
    let spec = &resource.spec;
    let name = naming::redis(&resource.name_any());
    let config_name = naming::redis_config(&resource.name_any());
    let config = config(resource, password);
    let security = json!({
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "runAsUser": REDIS_USER,
        "runAsGroup": REDIS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    });
    let mut container = json!({
        "name": "redis",
        "image": format!("{}:{}", settings.image, spec.version),
        "command": ["redis-server", format!("{CONFIG_DIR}/{CONFIG_KEY}")],
        "workingDir": DATA_DIR,
        "ports": [{"name": "redis", "containerPort": REDIS_PORT, "protocol": "TCP"}],
        "env": [{
            "name": "REDISCLI_AUTH",
            "valueFrom": {"secretKeyRef": {"name": name, "key": "password"}},
        }],
        "readinessProbe": probe(
            "PONG",
            json!({"periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 3}),
        ),
        // Loading a large append-only file is slow, not dead.
        "livenessProbe": probe(
            "PONG|LOADING",
            json!({"initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 6}),
        ),
        "securityContext": security,
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": true},
            {"name": "data", "mountPath": DATA_DIR},
        ],
    });
    if let Some(resources) = &spec.resources {
        let mut resources = resources.clone();
        for quantities in [&mut resources.limits, &mut resources.requests]
            .into_iter()
            .flatten()
        {
            quantities.values_mut().for_each(canonical);
        }
        container["resources"] = json!(resources);
    }
    let mut volumes = vec![json!({
        // Readable by the group the pod runs as (fsGroup), and nobody else.
        "name": "config",
        "secret": {"secretName": config_name, "defaultMode": 0o440},
    })];
    let mut stateful_set_spec = json!({
        "replicas": if asleep { 0 } else { 1 },
        "serviceName": name,
        "selector": {"matchLabels": selector(resource)},
        "template": {
            "metadata": {
                "labels": labels(resource),
                "annotations": {CONFIG_HASH_ANNOTATION: hash(&config)},
            },
            "spec": {
                "automountServiceAccountToken": false,
                "enableServiceLinks": false,
                "securityContext": {
                    "runAsNonRoot": true,
                    "runAsUser": REDIS_USER,
                    "runAsGroup": REDIS_USER,
                    "fsGroup": REDIS_USER,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [container],
                "volumes": [],
            },
        },
    });
    if spec.persistence.enabled {
        let mut size = spec.persistence.size.clone();
        canonical(&mut size);
        let mut claim = json!({
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}},
        });
        if let Some(class) = &spec.persistence.storage_class_name {
            claim["storageClassName"] = json!(class);
        }
        stateful_set_spec["volumeClaimTemplates"] = json!([{
            "metadata": {"name": "data", "labels": labels(resource)},
            "spec": claim,
        }]);
        stateful_set_spec["persistentVolumeClaimRetentionPolicy"] =
            json!({"whenDeleted": "Delete", "whenScaled": "Retain"});
    } else {
        volumes.push(json!({"name": "data", "emptyDir": {}}));
    }
    stateful_set_spec["template"]["spec"]["volumes"] = json!(volumes);

    Ok(Children {
        config: object(json!({
            "metadata": metadata(resource, &config_name)?,
            "type": "Opaque",
            "data": data(&[(CONFIG_KEY, &config)]),
        }))?,
        stateful_set: object(json!({
            "metadata": metadata(resource, &name)?,
            "spec": stateful_set_spec,
        }))?,
        service: object(json!({
            "metadata": metadata(resource, &name)?,
            "spec": {
                "selector": selector(resource),
                "ports": [{"name": "redis", "port": REDIS_PORT, "targetPort": "redis", "protocol": "TCP"}],
            },
        }))?,
    })
}

/// Puts `quantity` in the form the API server stores, so that the object read back matches.
fn canonical(quantity: &mut Quantity) {
    if let Some(canonical) = crate::quantity::canonical(&quantity.0) {
        quantity.0 = canonical;
    }
}

/// Whether `metadata` is of an object Jango Fett made for `resource`: owned by it, or
/// labelled for a Redis of its name and owned by none other (made before its owner reference
/// could be set, or left by a Redis of the same name deleted a moment ago, which the garbage
/// collector has not reached yet).
pub fn is_ours(metadata: &ObjectMeta, resource: &Redis) -> bool {
    let uid = resource.uid().unwrap_or_default();
    let name = resource.name_any();
    let owners = metadata.owner_references.as_deref().unwrap_or_default();
    let labels = metadata.labels.clone().unwrap_or_default();
    let labelled = labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
        && labels.get(REDIS_LABEL) == Some(&name);
    let api_version = Redis::api_version(&());
    owners.iter().any(|owner| owner.uid == uid)
        || (labelled
            && owners.iter().all(|owner| {
                owner.kind == "Redis" && owner.name == name && owner.api_version == api_version
            }))
}

/// The password of an existing credentials Secret, if it is ours. Any other Secret of that
/// name is someone else's.
pub fn our_password(secret: &Secret, resource: &Redis) -> Result<String, String> {
    if !is_ours(&secret.metadata, resource) {
        return Err(format!(
            "a Secret {} already exists and was not made for this Redis; it is left untouched",
            secret.name_any()
        ));
    }
    secret
        .data
        .as_ref()
        .and_then(|data| data.get("password"))
        .and_then(|password| String::from_utf8(password.0.clone()).ok())
        .filter(|password| !password.is_empty())
        .ok_or_else(|| format!("the Secret {} has no password", secret.name_any()))
}

/// How ready a Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    /// CamelCase, for the condition, Events and `jf status`.
    pub reason: &'static str,
    pub message: String,
}

impl Readiness {
    fn not(reason: &'static str, message: String) -> Self {
        Self {
            ready: false,
            reason,
            message,
        }
    }
}

/// How ready `resource` is, from its StatefulSet and pod as the cluster reports them.
/// `up_to_date`: the StatefulSet reported is the one last applied (the cache may not have
/// the latest write yet).
pub fn readiness(
    resource: &Redis,
    stateful_set: Option<&StatefulSet>,
    pod: Option<&Pod>,
    up_to_date: bool,
) -> Readiness {
    let name = naming::redis(&resource.name_any());
    let pod_name = format!("{name}-0");
    let Some(stateful_set) = stateful_set else {
        return Readiness::not("Creating", format!("creating StatefulSet {name}"));
    };
    let asleep = stateful_set
        .spec
        .as_ref()
        .and_then(|spec| spec.replicas)
        .is_some_and(|replicas| replicas == 0);
    if asleep {
        return Readiness::not(
            "Sleeping",
            format!(
                "the environment is sleeping: StatefulSet {name} is scaled to zero until it wakes"
            ),
        );
    }
    let status = stateful_set.status.clone().unwrap_or_default();
    let observed = status.observed_generation.is_some()
        && status.observed_generation >= stateful_set.metadata.generation;
    let rolled_out = up_to_date && observed && status.current_revision == status.update_revision;
    if rolled_out && status.ready_replicas == Some(1) {
        let host = naming::redis_host(
            &resource.namespace().unwrap_or_default(),
            &resource.name_any(),
        );
        return Readiness {
            ready: true,
            reason: "Ready",
            message: format!(
                "Redis is ready at {host}:{REDIS_PORT}; its password and URL are in the Secret {name}"
            ),
        };
    }
    if let Some(trouble) = pod.and_then(|pod| pod_trouble(pod, &pod_name)) {
        return trouble;
    }
    // Updating: a spec newer than what the StatefulSet's pod runs, which it rolls out.
    let updating = !up_to_date
        || (status.observed_generation.is_some() && !observed)
        || (status.current_revision.is_some() && status.current_revision != status.update_revision);
    if updating {
        return Readiness::not(
            "Updating",
            format!("rolling out the new spec: pod {pod_name} restarts with it"),
        );
    }
    match pod {
        None => Readiness::not(
            "Starting",
            format!("waiting for StatefulSet {name} to create pod {pod_name}"),
        ),
        Some(_) => Readiness::not(
            "Starting",
            format!("waiting for pod {pod_name} to be ready"),
        ),
    }
}

/// Why a pod does not start, when it says.
fn pod_trouble(pod: &Pod, pod_name: &str) -> Option<Readiness> {
    let status = pod.status.as_ref()?;
    if let Some(unscheduled) = status.conditions.iter().flatten().find(|condition| {
        condition.type_ == "PodScheduled"
            && condition.status == "False"
            && condition.reason.as_deref() == Some("Unschedulable")
    }) {
        return Some(Readiness::not(
            "Unschedulable",
            format!(
                "pod {pod_name} cannot be scheduled: {}",
                unscheduled.message.as_deref().unwrap_or("no node fits it")
            ),
        ));
    }
    let waiting = status
        .container_statuses
        .iter()
        .flatten()
        .find_map(|container| container.state.as_ref()?.waiting.as_ref())?;
    let (reason, hint) = match waiting.reason.as_deref()? {
        "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" => (
            "ImagePullBackOff",
            "; check spec.version, or the operator's --redis-image",
        ),
        "CrashLoopBackOff" => ("CrashLoopBackOff", "; its log says why"),
        "CreateContainerConfigError" => ("CreateContainerConfigError", ""),
        _ => return None,
    };
    Some(Readiness::not(
        reason,
        format!(
            "pod {pod_name} is waiting ({reason}): {}{hint}",
            waiting.message.as_deref().unwrap_or("no message")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use jf_api::{RedisPersistence, RedisSpec};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::*;

    fn resource(spec: RedisSpec) -> Redis {
        let mut resource = Redis::new("cache", spec);
        resource.metadata.namespace = Some("jf-fix-bug".to_owned());
        resource.metadata.uid = Some("uid-1".to_owned());
        resource.metadata.generation = Some(1);
        resource
    }

    fn value<T: serde::Serialize>(object: &T) -> Value {
        serde_json::to_value(object).expect("serializes")
    }

    fn text(secret: &Secret, key: &str) -> String {
        String::from_utf8(secret.data.as_ref().expect("data")[key].0.clone()).expect("utf-8")
    }

    fn owner() -> Value {
        json!([{
            "apiVersion": "jango-fett.dev/v1alpha1", "kind": "Redis", "name": "cache",
            "uid": "uid-1", "controller": true
        }])
    }

    fn labels() -> Value {
        json!({
            "app.kubernetes.io/managed-by": "jango-fett",
            "app.kubernetes.io/name": "redis",
            "app.kubernetes.io/instance": "cache",
            "jango-fett.dev/redis": "cache"
        })
    }

    #[test]
    fn the_credentials_secret() {
        let secret = credentials(&resource(RedisSpec::default()), "pw/+").expect("builds");
        assert_eq!(
            value(&secret)["metadata"],
            json!({
                "name": "cache-redis", "namespace": "jf-fix-bug",
                "labels": labels(), "ownerReferences": owner()
            })
        );
        assert_eq!(secret.type_.as_deref(), Some("servicebinding.io/redis"));
        let keys: Vec<&String> = secret.data.as_ref().expect("data").keys().collect();
        assert_eq!(
            keys,
            [
                "REDIS_URL",
                "host",
                "password",
                "port",
                "provider",
                "type",
                "uri"
            ]
        );
        let url = "redis://:pw%2F%2B@cache-redis.jf-fix-bug.svc:6379/0";
        assert_eq!(text(&secret, "uri"), url);
        assert_eq!(text(&secret, "REDIS_URL"), url);
        assert_eq!(text(&secret, "host"), "cache-redis.jf-fix-bug.svc");
        assert_eq!(text(&secret, "port"), "6379");
        assert_eq!(text(&secret, "password"), "pw/+");
        assert_eq!(text(&secret, "type"), "redis");
        assert_eq!(text(&secret, "provider"), "jango-fett");
        assert_eq!(
            our_password(&secret, &resource(RedisSpec::default())),
            Ok("pw/+".to_owned())
        );
    }

    #[test]
    fn someone_elses_secret_is_refused() {
        let resource = resource(RedisSpec::default());
        let mut secret = credentials(&resource, "pw").expect("builds");
        secret.metadata.owner_references = None;
        // Made by us before the owner reference: still ours.
        assert!(our_password(&secret, &resource).is_ok());
        // Left by a Redis of the same name, deleted: taken over.
        let mut stale = credentials(&resource, "pw").expect("builds");
        if let Some(owners) = stale.metadata.owner_references.as_mut() {
            owners[0].uid = "uid-0".to_owned();
        }
        assert!(our_password(&stale, &resource).is_ok());
        // Someone else's, labelled or not.
        if let Some(owners) = stale.metadata.owner_references.as_mut() {
            owners[0].kind = "App".to_owned();
        }
        assert!(our_password(&stale, &resource).is_err());
        secret.metadata.labels = None;
        let refusal = our_password(&secret, &resource).expect_err("not ours");
        assert!(refusal.contains("cache-redis already exists"), "{refusal}");
    }

    #[test]
    fn the_configuration_file() {
        let config = config(&resource(RedisSpec::default()), "s3cret");
        assert_eq!(
            config,
            "# Made by Jango Fett for the Redis jf-fix-bug/cache; changes here are overwritten.\n\
             port 6379\n\
             bind * -::*\n\
             # A password is required, so clients from anywhere may connect.\n\
             protected-mode no\n\
             requirepass \"s3cret\"\n\
             maxmemory 64mb\n\
             maxmemory-policy allkeys-lru\n\
             # No persistence: the data lives as long as the pod.\n\
             save \"\"\n\
             appendonly no\n\
             # Logs go to the container's output.\n\
             logfile \"\"\n"
        );
        let persistent = config_of(RedisSpec {
            persistence: RedisPersistence {
                enabled: true,
                ..RedisPersistence::default()
            },
            ..RedisSpec::default()
        });
        assert!(persistent.contains("\nappendonly yes\nappendfsync everysec\n"));
        assert!(!persistent.contains("appendonly no"));
    }

    fn config_of(spec: RedisSpec) -> String {
        config(&resource(spec), "pw")
    }

    #[test]
    fn passwords_are_quoted_for_the_configuration_parser() {
        assert_eq!(quoted("plain"), "\"plain\"");
        assert_eq!(quoted("a b\"c\\d\ne"), "\"a b\\\"c\\\\d\\x0ae\"");
        // Whatever a person writes into the Secret stays one argument on one line.
        let config = config(&resource(RedisSpec::default()), "x\nrequirepass \"\"");
        assert_eq!(config.matches("requirepass").count(), 2, "{config}");
        assert!(config.contains("requirepass \"x\\x0arequirepass \\\"\\\"\"\n"));
    }

    #[test]
    fn the_stateful_set_runs_restricted_with_the_config_and_an_empty_dir() {
        let children = children(
            &resource(RedisSpec::default()),
            "pw",
            &RedisSettings::default(),
            false,
        )
        .expect("builds");
        let hash = hash(&config(&resource(RedisSpec::default()), "pw"));
        assert_eq!(hash.len(), 16);
        let probe = |accepted: &str| {
            json!([
                "sh",
                "-c",
                format!("redis-cli -h 127.0.0.1 -p 6379 ping | grep -qE '^({accepted})'")
            ])
        };
        assert_eq!(
            value(&children.stateful_set),
            json!({
                "apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {
                    "name": "cache-redis", "namespace": "jf-fix-bug",
                    "labels": labels(), "ownerReferences": owner()
                },
                "spec": {
                    "replicas": 1,
                    "serviceName": "cache-redis",
                    "selector": {"matchLabels": {"app.kubernetes.io/name": "redis", "jango-fett.dev/redis": "cache"}},
                    "template": {
                        "metadata": {
                            "labels": labels(),
                            "annotations": {"jango-fett.dev/config-hash": hash}
                        },
                        "spec": {
                            "automountServiceAccountToken": false,
                            "enableServiceLinks": false,
                            "securityContext": {
                                "runAsNonRoot": true, "runAsUser": 999, "runAsGroup": 999,
                                "fsGroup": 999, "seccompProfile": {"type": "RuntimeDefault"}
                            },
                            "containers": [{
                                "name": "redis",
                                "image": "docker.io/library/redis:7.2",
                                "command": ["redis-server", "/etc/redis/redis.conf"],
                                "workingDir": "/data",
                                "ports": [{"name": "redis", "containerPort": 6379, "protocol": "TCP"}],
                                "env": [{
                                    "name": "REDISCLI_AUTH",
                                    "valueFrom": {"secretKeyRef": {"name": "cache-redis", "key": "password"}}
                                }],
                                "readinessProbe": {
                                    "exec": {"command": probe("PONG")},
                                    "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 3
                                },
                                "livenessProbe": {
                                    "exec": {"command": probe("PONG|LOADING")},
                                    "initialDelaySeconds": 10, "periodSeconds": 10,
                                    "timeoutSeconds": 5, "failureThreshold": 6
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": false,
                                    "capabilities": {"drop": ["ALL"]},
                                    "readOnlyRootFilesystem": true,
                                    "runAsNonRoot": true, "runAsUser": 999, "runAsGroup": 999,
                                    "seccompProfile": {"type": "RuntimeDefault"}
                                },
                                "volumeMounts": [
                                    {"name": "config", "mountPath": "/etc/redis", "readOnly": true},
                                    {"name": "data", "mountPath": "/data"}
                                ]
                            }],
                            "volumes": [
                                {"name": "config", "secret": {"secretName": "cache-redis-config", "defaultMode": 288}},
                                {"name": "data", "emptyDir": {}}
                            ]
                        }
                    }
                }
            })
        );
        assert_eq!(
            value(&children.service),
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {
                    "name": "cache-redis", "namespace": "jf-fix-bug",
                    "labels": labels(), "ownerReferences": owner()
                },
                "spec": {
                    "selector": {"app.kubernetes.io/name": "redis", "jango-fett.dev/redis": "cache"},
                    "ports": [{"name": "redis", "port": 6379, "targetPort": "redis", "protocol": "TCP"}]
                }
            })
        );
        let config = value(&children.config);
        assert_eq!(
            config["metadata"],
            json!({
                "name": "cache-redis-config", "namespace": "jf-fix-bug",
                "labels": labels(), "ownerReferences": owner()
            })
        );
        assert_eq!(config["type"], json!("Opaque"));
        assert_eq!(
            text(&children.config, "redis.conf"),
            super::config(&resource(RedisSpec::default()), "pw")
        );
    }

    #[test]
    fn persistence_resources_and_sleep() {
        let spec = RedisSpec {
            version: "7.2.5-alpine".to_owned(),
            persistence: RedisPersistence {
                enabled: true,
                size: Quantity("5120Mi".to_owned()),
                storage_class_name: Some("fast".to_owned()),
            },
            resources: Some(
                serde_json::from_value(
                    json!({"requests": {"cpu": 0.5}, "limits": {"memory": "0.25Gi"}}),
                )
                .expect("resources"),
            ),
            ..RedisSpec::default()
        };
        let settings = RedisSettings {
            image: "mirror.example/redis".to_owned(),
        };
        let children = children(&resource(spec), "pw", &settings, true).expect("builds");
        let stateful_set = value(&children.stateful_set);
        let spec = &stateful_set["spec"];
        assert_eq!(spec["replicas"], json!(0));
        assert_eq!(
            spec["volumeClaimTemplates"],
            json!([{
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data", "labels": labels()},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "5Gi"}},
                    "storageClassName": "fast"
                }
            }])
        );
        assert_eq!(
            spec["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Delete", "whenScaled": "Retain"})
        );
        let pod = &spec["template"]["spec"];
        assert_eq!(
            pod["volumes"],
            json!([{"name": "config", "secret": {"secretName": "cache-redis-config", "defaultMode": 288}}])
        );
        let container = &pod["containers"][0];
        assert_eq!(
            container["image"],
            json!("mirror.example/redis:7.2.5-alpine")
        );
        // As the API server stores them, so that the object read back matches.
        assert_eq!(
            container["resources"],
            json!({"requests": {"cpu": "500m"}, "limits": {"memory": "256Mi"}})
        );
    }

    #[test]
    fn the_pod_template_changes_with_the_configuration() {
        let template_hash = |spec: RedisSpec, password: &str| {
            let children = children(&resource(spec), password, &RedisSettings::default(), false)
                .expect("builds");
            value(&children.stateful_set)["spec"]["template"]["metadata"]["annotations"]
                [CONFIG_HASH_ANNOTATION]
                .clone()
        };
        let small = RedisSpec {
            max_memory: "32mb".to_owned(),
            ..RedisSpec::default()
        };
        assert_eq!(
            template_hash(RedisSpec::default(), "a"),
            template_hash(RedisSpec::default(), "a")
        );
        assert_ne!(
            template_hash(RedisSpec::default(), "a"),
            template_hash(small, "a")
        );
        assert_ne!(
            template_hash(RedisSpec::default(), "a"),
            template_hash(RedisSpec::default(), "b")
        );
    }

    #[test]
    fn refuses_what_the_schema_refuses() {
        let settings = RedisSettings::default();
        for (spec, reason) in [
            (
                RedisSpec {
                    version: "7.2; rm -rf /".to_owned(),
                    ..RedisSpec::default()
                },
                "InvalidSpec",
            ),
            (
                RedisSpec {
                    max_memory: "64mb\nrequirepass \"\"".to_owned(),
                    ..RedisSpec::default()
                },
                "InvalidSpec",
            ),
        ] {
            let error = children(&resource(spec), "pw", &settings, false).expect_err("refused");
            assert_eq!(error.reason(), reason);
        }
        let unsaved = Redis::new("cache", RedisSpec::default());
        assert_eq!(
            children(&unsaved, "pw", &settings, false),
            Err(Invalid::NoUid)
        );
    }

    fn stateful_set(status: Value) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "cache-redis", "generation": 2},
            "spec": {
                "replicas": 1, "selector": {}, "template": {},
            },
            "status": status,
        }))
        .expect("a StatefulSet")
    }

    fn pod(status: Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "cache-redis-0"}, "status": status}))
            .expect("a pod")
    }

    #[test]
    fn ready_when_the_stateful_set_rolled_out_and_its_pod_is_ready() {
        let resource = resource(RedisSpec::default());
        let ready = json!({
            "replicas": 1, "readyReplicas": 1, "observedGeneration": 2,
            "currentRevision": "r2", "updateRevision": "r2"
        });
        let reported = readiness(&resource, Some(&stateful_set(ready.clone())), None, true);
        assert_eq!(
            reported,
            Readiness {
                ready: true,
                reason: "Ready",
                message: "Redis is ready at cache-redis.jf-fix-bug.svc:6379; its password and URL are in the Secret cache-redis".to_owned()
            }
        );
        // Not the StatefulSet last applied: not until the cache has that one.
        assert_eq!(
            readiness_of(&resource, ready.clone(), None, false).reason,
            "Updating"
        );
        let mut old_generation = ready.clone();
        old_generation["observedGeneration"] = json!(1);
        assert_eq!(
            readiness_of(&resource, old_generation, None, true).reason,
            "Updating"
        );
        let mut rolling = ready;
        rolling["currentRevision"] = json!("r1");
        assert_eq!(
            readiness_of(&resource, rolling, None, true).reason,
            "Updating"
        );
        assert_eq!(readiness(&resource, None, None, true).reason, "Creating");
        // Just created: the StatefulSet controller has not reported yet.
        assert_eq!(
            readiness_of(&resource, json!({}), None, true).reason,
            "Starting"
        );
        let starting = json!({"replicas": 1, "observedGeneration": 2, "currentRevision": "r2", "updateRevision": "r2"});
        assert_eq!(
            readiness_of(&resource, starting.clone(), None, true),
            Readiness::not(
                "Starting",
                "waiting for StatefulSet cache-redis to create pod cache-redis-0".to_owned()
            )
        );
        let mut asleep = stateful_set(starting);
        if let Some(spec) = asleep.spec.as_mut() {
            spec.replicas = Some(0);
        }
        assert_eq!(
            readiness(&resource, Some(&asleep), None, true).reason,
            "Sleeping"
        );
    }

    fn readiness_of(
        resource: &Redis,
        status: Value,
        pod: Option<&Pod>,
        up_to_date: bool,
    ) -> Readiness {
        readiness(resource, Some(&stateful_set(status)), pod, up_to_date)
    }

    #[test]
    fn a_pod_that_does_not_start_says_why() {
        let resource = resource(RedisSpec::default());
        let status = json!({"replicas": 1, "observedGeneration": 2, "currentRevision": "r2", "updateRevision": "r2"});
        let pulling = pod(json!({"containerStatuses": [{
            "name": "redis", "image": "redis:7.2", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"redis:nope\""}}
        }]}));
        let reported = readiness_of(&resource, status.clone(), Some(&pulling), true);
        assert_eq!(reported.reason, "ImagePullBackOff");
        assert_eq!(
            reported.message,
            "pod cache-redis-0 is waiting (ImagePullBackOff): Back-off pulling image \"redis:nope\"; check spec.version, or the operator's --redis-image"
        );
        let unschedulable = pod(json!({"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient memory."
        }]}));
        let reported = readiness_of(&resource, status.clone(), Some(&unschedulable), true);
        assert_eq!(reported.reason, "Unschedulable");
        assert!(reported.message.ends_with("3 Insufficient memory."));
        let running = pod(json!({"phase": "Running"}));
        assert_eq!(
            readiness_of(&resource, status, Some(&running), true).message,
            "waiting for pod cache-redis-0 to be ready"
        );
    }
}
