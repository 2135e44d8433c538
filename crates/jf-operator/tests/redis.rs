//! The Redis controller against the real local cluster (kwok runs the pods) and the real
//! `redis-server`, which runs the configuration the operator renders.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use jf_api::conditions::{self, READY};
use jf_api::{Redis, RedisPersistence, RedisSpec};
use jf_testkit::redis::{Connection, Reply};
use jf_testkit::{eventually, unique_name};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Event, Namespace, PersistentVolumeClaim, Pod, Secret, Service};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt as _};
use serde_json::json;
use support::admin;

/// A namespace of its own, with `labels`.
async fn namespace(client: &Client, labels: serde_json::Value) -> anyhow::Result<String> {
    let name = unique_name("redis");
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))?,
        )
        .await?;
    Ok(name)
}

fn redis(name: &str, spec: RedisSpec) -> Redis {
    Redis::new(name, spec)
}

async fn create(client: &Client, namespace: &str, resource: Redis) -> anyhow::Result<Redis> {
    Ok(Api::<Redis>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &resource)
        .await?)
}

/// Waits until the Redis's Ready condition has `reason` at its current generation.
async fn with_reason(client: &Client, namespace: &str, name: &str, reason: &str) -> Redis {
    let api: Api<Redis> = Api::namespaced(client.clone(), namespace);
    eventually(&format!("redis {name} to be {reason}"), || async {
        let resource = api.get(name).await?;
        let condition = resource
            .status
            .as_ref()
            .and_then(|status| conditions::find(&status.conditions, READY).cloned());
        ensure!(
            condition
                .as_ref()
                .is_some_and(|condition| condition.reason == reason
                    && condition.observed_generation == resource.metadata.generation),
            "condition: {condition:?}"
        );
        Ok(resource)
    })
    .await
}

async fn ready(client: &Client, namespace: &str, name: &str) -> Redis {
    with_reason(client, namespace, name, "Ready").await
}

/// The text values of a Secret.
async fn secret_data(
    client: &Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get(name)
        .await?;
    secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| Ok((key, String::from_utf8(value.0)?)))
        .collect()
}

/// The names of the Events recorded for the object `name` in `namespace`, by reason.
async fn event_reasons(
    client: &Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<Vec<String>> {
    let events = Api::<Event>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await?;
    Ok(events
        .items
        .into_iter()
        .filter_map(|event| event.reason)
        .collect())
}

#[tokio::test]
async fn a_redis_gets_its_secrets_stateful_set_and_service_owned_by_it() -> anyhow::Result<()> {
    let client = admin().await;
    let namespace = namespace(&client, json!({})).await?;
    let created = create(&client, &namespace, redis("cache", RedisSpec::default())).await?;
    let uid = created.uid().context("a uid")?;
    let resource = ready(&client, &namespace, "cache").await;

    let status = resource.status.clone().unwrap_or_default();
    let host = format!("cache-redis.{namespace}.svc");
    assert_eq!(status.secret_name.as_deref(), Some("cache-redis"));
    assert_eq!(status.service.as_deref(), Some("cache-redis"));
    assert_eq!(status.host.as_deref(), Some(host.as_str()));
    let condition = conditions::find(&status.conditions, READY).context("Ready")?;
    assert_eq!(
        condition.message,
        format!(
            "Redis is ready at {host}:6379; its password and URL are in the Secret cache-redis"
        )
    );

    let owned = |owners: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference]| {
        owners.len() == 1
            && owners[0].uid == uid
            && owners[0].kind == "Redis"
            && owners[0].controller == Some(true)
    };

    // The credentials.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let credentials = secrets.get("cache-redis").await?;
    assert!(owned(credentials.owner_references()));
    assert_eq!(
        credentials.type_.as_deref(),
        Some("servicebinding.io/redis")
    );
    let data = secret_data(&client, &namespace, "cache-redis").await?;
    let keys: Vec<&str> = data.keys().map(String::as_str).collect();
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
    let password = &data["password"];
    assert!(password.len() >= 22, "at least 128 bits");
    let url = format!("redis://:{password}@{host}:6379/0");
    assert_eq!(data["uri"], url);
    assert_eq!(data["REDIS_URL"], url);
    assert_eq!(
        (
            data["host"].as_str(),
            data["port"].as_str(),
            data["type"].as_str()
        ),
        (host.as_str(), "6379", "redis")
    );

    // The configuration, with the password in it rather than on a command line.
    let config = secrets.get("cache-redis-config").await?;
    assert!(owned(config.owner_references()));
    let file = &secret_data(&client, &namespace, "cache-redis-config").await?["redis.conf"];
    assert!(
        file.contains(&format!("\nrequirepass \"{password}\"\n")),
        "{file}"
    );
    assert!(
        file.contains("\nmaxmemory 64mb\nmaxmemory-policy allkeys-lru\n"),
        "{file}"
    );
    assert!(file.contains("\nsave \"\"\nappendonly no\n"), "{file}");

    // The StatefulSet: one replica, restricted, the configuration mounted read-only.
    let stateful_set = Api::<StatefulSet>::namespaced(client.clone(), &namespace)
        .get("cache-redis")
        .await?;
    assert!(owned(stateful_set.owner_references()));
    let spec = serde_json::to_value(stateful_set.spec.context("a spec")?)?;
    assert_eq!(spec["replicas"], json!(1));
    let pod = &spec["template"]["spec"];
    assert_eq!(
        pod["securityContext"],
        json!({
            "runAsNonRoot": true, "runAsUser": 999, "runAsGroup": 999, "fsGroup": 999,
            "seccompProfile": {"type": "RuntimeDefault"}
        })
    );
    let container = &pod["containers"][0];
    assert_eq!(container["image"], json!("docker.io/library/redis:7.2"));
    assert_eq!(
        container["command"],
        json!(["redis-server", "/etc/redis/redis.conf"])
    );
    assert_eq!(
        container["securityContext"],
        json!({
            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": true, "runAsNonRoot": true, "runAsUser": 999,
            "runAsGroup": 999, "seccompProfile": {"type": "RuntimeDefault"}
        })
    );
    assert!(
        !serde_json::to_string(&spec)?.contains(password.as_str()),
        "the password is in the StatefulSet"
    );
    assert_eq!(
        container["env"],
        json!([{"name": "REDISCLI_AUTH", "valueFrom": {"secretKeyRef": {"name": "cache-redis", "key": "password"}}}])
    );
    assert_eq!(
        container["volumeMounts"],
        json!([
            {"name": "config", "mountPath": "/etc/redis", "readOnly": true},
            {"name": "data", "mountPath": "/data"}
        ])
    );
    assert_eq!(pod["volumes"][1], json!({"name": "data", "emptyDir": {}}));

    // The Service.
    let service = Api::<Service>::namespaced(client.clone(), &namespace)
        .get("cache-redis")
        .await?;
    assert!(owned(service.owner_references()));
    let ports = serde_json::to_value(&service.spec.context("a spec")?.ports)?;
    assert_eq!(
        ports,
        json!([{"name": "redis", "port": 6379, "targetPort": "redis", "protocol": "TCP"}])
    );

    // The pod kwok runs is the StatefulSet's, and ready.
    let pod = Api::<Pod>::namespaced(client.clone(), &namespace)
        .get("cache-redis-0")
        .await?;
    assert_eq!(pod.labels()["jango-fett.dev/redis"], "cache");
    let reasons = event_reasons(&client, &namespace, "cache").await?;
    for reason in ["CreatedSecret", "Created", "Ready"] {
        assert!(reasons.iter().any(|seen| seen == reason), "{reasons:?}");
    }

    // The password is in the Secrets only: not in the log, an Event or the status.
    let log = std::fs::read_to_string(&support::operator().await.log)?;
    assert!(
        !log.contains(password.as_str()),
        "the password is in the log"
    );
    let events = Api::<Event>::namespaced(client.clone(), &namespace)
        .list(&ListParams::default())
        .await?;
    assert!(!serde_json::to_string(&events)?.contains(password.as_str()));
    assert!(!serde_json::to_string(&resource)?.contains(password.as_str()));
    Ok(())
}

#[tokio::test]
async fn a_namespace_enforcing_the_restricted_profile_admits_the_pod() -> anyhow::Result<()> {
    let client = admin().await;
    let namespace = namespace(
        &client,
        json!({
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest"
        }),
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    // The profile is enforced here: a pod that runs as root is refused.
    let root: Pod = serde_json::from_value(json!({
        "metadata": {"name": "root"},
        "spec": {"containers": [{"name": "root", "image": "docker.io/library/redis:7.2"}]}
    }))?;
    match pods.create(&PostParams::default(), &root).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(
                status
                    .message
                    .contains("violates PodSecurity \"restricted:latest\""),
                "{}",
                status.message
            );
        }
        other => anyhow::bail!("a root pod was not refused: {other:?}"),
    }

    create(&client, &namespace, redis("strict", RedisSpec::default())).await?;
    ready(&client, &namespace, "strict").await;
    let pod = pods.get("strict-redis-0").await?;
    let pod_ready = pod
        .status
        .iter()
        .flat_map(|status| status.conditions.iter().flatten())
        .any(|condition| condition.type_ == "Ready" && condition.status == "True");
    assert!(pod_ready, "{:?}", pod.status);
    let reasons = event_reasons(&client, &namespace, "strict-redis").await?;
    assert!(
        !reasons.iter().any(|reason| reason == "FailedCreate"),
        "the StatefulSet could not create its pod: {reasons:?}"
    );
    Ok(())
}

/// A `redis-server` of the test's own, stopped when dropped.
struct RedisServer {
    child: Child,
    address: SocketAddr,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Runs `config` on a free loopback port, in a directory of its own: the overrides come
    /// last, and Redis takes the last value of a directive.
    fn start(config: &str) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("redis.conf");
        std::fs::write(
            &file,
            format!(
                "{config}\n# The test's overrides.\nport {port}\nbind 127.0.0.1\ndir {}\n",
                dir.path().display()
            ),
        )?;
        let log = std::fs::File::create(dir.path().join("redis.log"))?;
        let child = Command::new("redis-server")
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("failed to start redis-server")?;
        Ok(Self {
            child,
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
        })
    }

    /// A connection, once the server answers; its log if it stops instead.
    async fn connect(&mut self) -> anyhow::Result<Connection> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut pause = Duration::from_millis(10);
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("redis-server exited ({status}):\n{}", self.log());
            }
            match Connection::open(self.address).await {
                Ok(connection) => return Ok(connection),
                Err(error) if std::time::Instant::now() > deadline => {
                    return Err(error)
                        .context(format!("redis-server does not answer:\n{}", self.log()));
                }
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
            }
        }
    }

    /// A connection that gave `password`.
    async fn authenticated(&mut self, password: &str) -> anyhow::Result<Connection> {
        let mut connection = self.connect().await?;
        let reply = connection.command(&["AUTH", password]).await?;
        ensure!(reply == "+OK", "AUTH: {reply}");
        Ok(connection)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `field:value` lines of an `INFO` reply.
fn info(reply: &Reply) -> BTreeMap<String, String> {
    reply
        .text()
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.to_owned(), value.trim().to_owned()))
        .collect()
}

fn number(info: &BTreeMap<String, String>, key: &str) -> anyhow::Result<u64> {
    info.get(key)
        .with_context(|| format!("no {key} in INFO"))?
        .parse()
        .with_context(|| format!("{key} is not a number"))
}

#[tokio::test]
async fn the_rendered_configuration_requires_the_password_and_caps_memory() -> anyhow::Result<()> {
    let client = admin().await;
    let namespace = namespace(&client, json!({})).await?;
    let spec = RedisSpec {
        max_memory: "4mb".to_owned(),
        ..RedisSpec::default()
    };
    create(&client, &namespace, redis("capped", spec)).await?;
    ready(&client, &namespace, "capped").await;
    let config =
        secret_data(&client, &namespace, "capped-redis-config").await?["redis.conf"].clone();
    let password = secret_data(&client, &namespace, "capped-redis").await?["password"].clone();

    let mut server = RedisServer::start(&config)?;
    let mut connection = server.connect().await?;

    // Nothing without the password.
    let refused = connection.command(&["PING"]).await?;
    assert!(refused.starts_with("-NOAUTH"), "{refused}");
    let refused = connection.command(&["SET", "key", "value"]).await?;
    assert!(refused.starts_with("-NOAUTH"), "{refused}");
    let refused = connection.command(&["AUTH", "not-the-password"]).await?;
    assert!(refused.starts_with("-WRONGPASS"), "{refused}");
    assert_eq!(connection.command(&["AUTH", &password]).await?, "+OK");
    assert_eq!(connection.command(&["PING"]).await?, "+PONG");

    // The limit and the policy, as Redis read them.
    let limit = 4 * 1024 * 1024;
    for (parameter, value) in [
        ("maxmemory", limit.to_string()),
        ("maxmemory-policy", "allkeys-lru".to_owned()),
        ("appendonly", "no".to_owned()),
        ("save", String::new()),
        ("protected-mode", "no".to_owned()),
    ] {
        assert_eq!(
            connection.call(&["CONFIG", "GET", parameter]).await?,
            Reply::Array(Some(vec![
                Reply::Bulk(Some(parameter.to_owned())),
                Reply::Bulk(Some(value)),
            ])),
            "{parameter}"
        );
    }
    let memory = info(&connection.call(&["INFO", "memory"]).await?);
    assert_eq!(number(&memory, "maxmemory")?, limit);

    // Far more than the limit is written; the oldest keys make room.
    let value = "x".repeat(10 * 1024);
    for key in 0..2000 {
        let reply = connection
            .command(&["SET", &format!("key:{key}"), &value])
            .await?;
        ensure!(reply == "+OK", "SET key:{key}: {reply}");
    }
    // Eviction may take a few commands to catch up with the last writes.
    let mut probe = server.authenticated(&password).await?;
    let mut used = 0;
    for _ in 0..50 {
        used = number(
            &info(&probe.call(&["INFO", "memory"]).await?),
            "used_memory",
        )?;
        if used <= limit {
            break;
        }
    }
    assert!(used <= limit, "used_memory {used} > maxmemory {limit}");
    let stats = info(&connection.call(&["INFO", "stats"]).await?);
    let evicted = number(&stats, "evicted_keys")?;
    assert!(evicted > 0, "no key was evicted; used_memory {used}");
    let Reply::Integer(keys) = connection.call(&["DBSIZE"]).await? else {
        anyhow::bail!("DBSIZE is not a number");
    };
    assert!(keys < 2000, "{keys} keys kept");
    println!("used_memory {used} of {limit}; {evicted} keys evicted, {keys} kept");
    drop(server);
    Ok(())
}

#[tokio::test]
async fn a_new_max_memory_rolls_the_pod() -> anyhow::Result<()> {
    let client = admin().await;
    let namespace = namespace(&client, json!({})).await?;
    create(&client, &namespace, redis("rolling", RedisSpec::default())).await?;
    ready(&client, &namespace, "rolling").await;
    let stateful_sets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let template_hash = |stateful_set: &StatefulSet| {
        stateful_set
            .spec
            .as_ref()
            .and_then(|spec| spec.template.metadata.as_ref())
            .and_then(|metadata| metadata.annotations.as_ref())
            .and_then(|annotations| annotations.get("jango-fett.dev/config-hash").cloned())
    };
    let before = template_hash(&stateful_sets.get("rolling-redis").await?).context("a hash")?;
    let first_pod = pods.get("rolling-redis-0").await?.uid();
    let password = secret_data(&client, &namespace, "rolling-redis").await?["password"].clone();

    Api::<Redis>::namespaced(client.clone(), &namespace)
        .patch(
            "rolling",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"maxMemory": "128mb"}})),
        )
        .await?;
    let resource = ready(&client, &namespace, "rolling").await;
    assert_eq!(resource.metadata.generation, Some(2));
    let after = template_hash(&stateful_sets.get("rolling-redis").await?).context("a hash")?;
    assert_ne!(before, after, "the pod template did not change");
    let second_pod = pods.get("rolling-redis-0").await?.uid();
    assert_ne!(first_pod, second_pod, "the pod was not replaced");
    let file = &secret_data(&client, &namespace, "rolling-redis-config").await?["redis.conf"];
    assert!(file.contains("\nmaxmemory 128mb\n"), "{file}");
    // The password stays.
    assert_eq!(
        secret_data(&client, &namespace, "rolling-redis").await?["password"],
        password
    );
    let reasons = event_reasons(&client, &namespace, "rolling").await?;
    assert!(
        reasons.iter().any(|reason| reason == "Updated"),
        "{reasons:?}"
    );
    Ok(())
}

/// Waits for the next successful reconciliation of `name` in `namespace`; its writes.
async fn next_writes(
    reconciled: &mut tokio::sync::broadcast::Receiver<jf_operator::controllers::redis::Reconciled>,
    namespace: &str,
    name: &str,
) -> anyhow::Result<u64> {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let event = reconciled.recv().await?;
            if event.namespace == namespace && event.name == name && event.ok {
                return anyhow::Ok(event.writes);
            }
        }
    })
    .await?
}

/// Pokes the Redis (an annotation) and checks that its reconciliation writes nothing.
async fn quiet(client: &Client, namespace: &str, name: &str) -> anyhow::Result<()> {
    let mut reconciled = support::operator().await.redis();
    let api: Api<Redis> = Api::namespaced(client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let stateful_sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let secret = format!("{name}-redis");
    let config = format!("{name}-redis-config");
    let versions = || async {
        // The StatefulSet's controller writes its status as pods come and go: what the
        // operator could have written is its metadata and spec.
        let stateful_set = stateful_sets.get(&secret).await?;
        let written = serde_json::to_string(&(
            stateful_set.metadata.labels,
            stateful_set.metadata.annotations,
            stateful_set.metadata.generation,
            stateful_set.spec,
        ))?;
        anyhow::Ok([
            secrets.get(&secret).await?.resource_version(),
            secrets.get(&config).await?.resource_version(),
            Some(written),
            services.get(&secret).await?.resource_version(),
        ])
    };
    // Whatever is still settling settles first.
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"test/poke": "0"}}})),
    )
    .await?;
    while next_writes(&mut reconciled, namespace, name).await? > 0 {}
    let before = versions().await?;
    let status = api.get(name).await?.status;
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"test/poke": "1"}}})),
    )
    .await?;
    assert_eq!(next_writes(&mut reconciled, namespace, name).await?, 0);
    assert_eq!(versions().await?, before);
    assert_eq!(api.get(name).await?.status, status);
    Ok(())
}

#[tokio::test]
async fn a_reconcile_with_nothing_to_change_writes_nothing() -> anyhow::Result<()> {
    let client = admin().await;
    let namespace = namespace(&client, json!({})).await?;
    create(&client, &namespace, redis("quiet", RedisSpec::default())).await?;
    ready(&client, &namespace, "quiet").await;
    quiet(&client, &namespace, "quiet").await
}

#[tokio::test]
async fn persistence_claims_a_volume_per_redis() -> anyhow::Result<()> {
    let client = admin().await;
    let namespace = namespace(&client, json!({})).await?;
    let spec = RedisSpec {
        persistence: RedisPersistence {
            enabled: true,
            ..RedisPersistence::default()
        },
        resources: Some(serde_json::from_value(
            json!({"requests": {"cpu": "0.1", "memory": "128Mi"}, "limits": {"memory": "0.25Gi"}}),
        )?),
        ..RedisSpec::default()
    };
    create(&client, &namespace, redis("durable", spec)).await?;
    // This cluster has no volume provisioner: the claim stays pending, and the Redis says so.
    let resource = with_reason(&client, &namespace, "durable", "Unschedulable").await;
    let message = conditions::find(&resource.status.unwrap_or_default().conditions, READY)
        .map(|condition| condition.message.clone())
        .unwrap_or_default();
    assert!(message.contains("PersistentVolumeClaim"), "{message}");
    let claim = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &namespace)
        .get("data-durable-redis-0")
        .await?;
    let requests = serde_json::to_value(&claim.spec.as_ref().context("a spec")?.resources)?;
    assert_eq!(requests, json!({"requests": {"storage": "1Gi"}}));
    // Deleted with the StatefulSet, and so with the Redis.
    assert!(
        claim
            .owner_references()
            .iter()
            .any(|owner| owner.kind == "StatefulSet" && owner.name == "durable-redis"),
        "{:?}",
        claim.owner_references()
    );
    let file = &secret_data(&client, &namespace, "durable-redis-config").await?["redis.conf"];
    assert!(file.contains("\nappendonly yes\n"), "{file}");
    quiet(&client, &namespace, "durable").await?;

    // Persistence cannot be turned off afterwards.
    let refused = Api::<Redis>::namespaced(client.clone(), &namespace)
        .patch(
            "durable",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"persistence": {"enabled": false}}})),
        )
        .await;
    match refused {
        Err(kube::Error::Api(status)) => assert!(
            status.message.contains("spec.persistence")
                && status
                    .message
                    .contains("cannot be changed once the Redis exists"),
            "{}",
            status.message
        ),
        other => anyhow::bail!("the change was not refused: {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn a_secret_that_is_not_ours_is_refused_and_left_alone() -> anyhow::Result<()> {
    let client = admin().await;
    let namespace = namespace(&client, json!({})).await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "taken-redis"},
                "stringData": {"password": "theirs"}
            }))?,
        )
        .await?;
    create(&client, &namespace, redis("taken", RedisSpec::default())).await?;
    let resource = with_reason(&client, &namespace, "taken", "SecretConflict").await;
    let message = conditions::find(&resource.status.unwrap_or_default().conditions, READY)
        .map(|condition| condition.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("a Secret taken-redis already exists and was not made for this Redis"),
        "{message}"
    );
    assert_eq!(
        secret_data(&client, &namespace, "taken-redis").await?,
        BTreeMap::from([("password".to_owned(), "theirs".to_owned())])
    );
    let untouched = secrets.get("taken-redis").await?;
    assert!(untouched.owner_references().is_empty());
    assert!(
        Api::<StatefulSet>::namespaced(client.clone(), &namespace)
            .get_opt("taken-redis")
            .await?
            .is_none()
    );
    Ok(())
}

#[tokio::test]
async fn deleting_the_redis_deletes_everything_it_owns() -> anyhow::Result<()> {
    let client = admin().await;
    let namespace = namespace(&client, json!({})).await?;
    create(&client, &namespace, redis("brief", RedisSpec::default())).await?;
    ready(&client, &namespace, "brief").await;
    Api::<Redis>::namespaced(client.clone(), &namespace)
        .delete("brief", &Default::default())
        .await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let stateful_sets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    support::gone("the Secret brief-redis", || secrets.get("brief-redis")).await;
    support::gone("the Secret brief-redis-config", || {
        secrets.get("brief-redis-config")
    })
    .await;
    support::gone("the StatefulSet brief-redis", || {
        stateful_sets.get("brief-redis")
    })
    .await;
    support::gone("the Service brief-redis", || services.get("brief-redis")).await;
    Ok(())
}

#[tokio::test]
async fn a_sleeping_environment_keeps_its_redis_asleep_until_it_wakes() -> anyhow::Result<()> {
    let client = admin().await;
    let environment = unique_name("rd-nap");
    support::create(&client, &environment, support::spec(&[], &[])).await?;
    let namespace = support::ready(&client, &environment)
        .await
        .status
        .and_then(|status| status.namespace)
        .context("a namespace")?;
    create(&client, &namespace, redis("nap", RedisSpec::default())).await?;
    ready(&client, &namespace, "nap").await;
    let environments: Api<jf_api::Environment> = Api::all(client.clone());
    let stateful_sets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    let replicas = || async {
        anyhow::Ok(
            stateful_sets
                .get("nap-redis")
                .await?
                .spec
                .and_then(|spec| spec.replicas),
        )
    };
    let sleep = async |sleeping: bool| {
        environments
            .patch(
                &environment,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"sleeping": sleeping}})),
            )
            .await
    };

    sleep(true).await?;
    let resource = with_reason(&client, &namespace, "nap", "Sleeping").await;
    assert!(
        conditions::find(&resource.status.unwrap_or_default().conditions, READY)
            .is_some_and(|condition| condition.message.contains("scaled to zero")),
    );
    assert_eq!(replicas().await?, Some(0));
    // The Redis controller does not scale it back up behind the environment's back.
    quiet(&client, &namespace, "nap").await?;
    assert_eq!(replicas().await?, Some(0));

    sleep(false).await?;
    ready(&client, &namespace, "nap").await;
    assert_eq!(replicas().await?, Some(1));
    Ok(())
}
