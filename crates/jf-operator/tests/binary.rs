//! The `jango-fett-operator` binary against the local cluster: it connects, serves its health
//! and metrics endpoints, stops cleanly on SIGTERM, and of two replicas only the leader
//! reconciles, the other taking over when it dies or steps down.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use jf_api::conditions;
use jf_api::{Environment, EnvironmentSpec};
use jf_testkit::{cluster, eventually, eventually_within};
use k8s_openapi::api::coordination::v1::Lease;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

async fn http_get(address: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: operator\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

/// The operator process, killed if the test ends before it does.
struct Operator(std::process::Child);

impl Drop for Operator {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn answers_version_and_help() {
    let output = Command::new(env!("CARGO_BIN_EXE_jango-fett-operator"))
        .arg("--version")
        .output()
        .expect("the operator runs");
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("jango-fett-operator {}", env!("CARGO_PKG_VERSION"))
    );
    let output = Command::new(env!("CARGO_BIN_EXE_jango-fett-operator"))
        .arg("--help")
        .output()
        .expect("the operator runs");
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("--log-format"));
}

#[tokio::test]
async fn serves_health_and_metrics_then_stops_on_sigterm() -> anyhow::Result<()> {
    let cluster = cluster().await;
    jf_testkit::install_crds(&cluster.client().await?).await?;
    let mut operator = Operator(
        Command::new(env!("CARGO_BIN_EXE_jango-fett-operator"))
            .args(["--http-address", "127.0.0.1:0", "--log-format", "json"])
            .args(["--leader-election-id", &jf_testkit::unique_name("lease")])
            .env("KUBECONFIG", cluster.kubeconfig())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let stdout = operator.0.stdout.take().expect("piped stdout");
    // The log line announcing the server carries its address; the rest of the log is drained.
    let (announce, announced) = tokio::sync::oneshot::channel::<SocketAddr>();
    std::thread::spawn(move || {
        let mut announce = Some(announce);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let address = serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .and_then(|line| line.get("address")?.as_str()?.parse().ok());
            if let Some(address) = address
                && let Some(announce) = announce.take()
            {
                let _ = announce.send(address);
            }
        }
    });
    let address = announced.await?;

    let health = http_get(address, "/healthz").await?;
    assert!(
        health.starts_with("HTTP/1.0 200") && health.ends_with("ok"),
        "{health}"
    );
    eventually("the operator to be ready", || async {
        let ready = http_get(address, "/readyz").await?;
        anyhow::ensure!(ready.starts_with("HTTP/1.0 200"), "{ready}");
        Ok(())
    })
    .await;
    let metrics = http_get(address, "/metrics").await?;
    assert!(
        metrics.contains("jango_fett_build_info{version="),
        "{metrics}"
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(operator.0.id())?),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    let status = tokio::task::spawn_blocking(move || operator.0.wait()).await??;
    assert!(status.success(), "exit status {status}");
    Ok(())
}

/// An operator process started by a test, with its HTTP address and its log so far.
struct Candidate {
    operator: Operator,
    address: SocketAddr,
    log: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl Candidate {
    /// The JSON log lines so far.
    fn log(&self) -> Vec<serde_json::Value> {
        self.log.lock().map(|log| log.clone()).unwrap_or_default()
    }
}

/// Starts an operator that competes for `lease` as `identity`, with `arguments` added.
async fn candidate(lease: &str, identity: &str) -> anyhow::Result<Candidate> {
    operator_with(&[
        "--leader-election-id",
        lease,
        "--identity",
        identity,
        "--lease-duration",
        &format!("{}s", LEASE_DURATION.as_secs()),
    ])
    .await
}

/// Starts the operator with `arguments` added to its command line and the local PostgreSQL
/// server configured.
async fn operator_with(arguments: &[&str]) -> anyhow::Result<Candidate> {
    let cluster = cluster().await;
    let mut operator = Operator(
        Command::new(env!("CARGO_BIN_EXE_jango-fett-operator"))
            .args(["--http-address", "127.0.0.1:0", "--log-format", "json"])
            .args(arguments)
            .env("KUBECONFIG", cluster.kubeconfig())
            .env("JF_POSTGRES_ADMIN_URL", cluster.postgres_admin_url())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let stdout = operator.0.stdout.take().expect("piped stdout");
    let (announce, announced) = tokio::sync::oneshot::channel::<SocketAddr>();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let lines = log.clone();
    std::thread::spawn(move || {
        let mut announce = Some(announce);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let Ok(line) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let address = line
                .get("address")
                .and_then(|address| address.as_str()?.parse().ok());
            if let Some(address) = address
                && let Some(announce) = announce.take()
            {
                let _ = announce.send(address);
            }
            if let Ok(mut lines) = lines.lock() {
                lines.push(line);
            }
        }
    });
    Ok(Candidate {
        operator,
        address: announced.await?,
        log,
    })
}

const LEASE_DURATION: std::time::Duration = std::time::Duration::from_secs(4);

/// The Lease's holder, if any.
async fn holder(leases: &kube::Api<Lease>, lease: &str) -> anyhow::Result<Option<String>> {
    Ok(leases
        .get_opt(lease)
        .await?
        .and_then(|lease| lease.spec?.holder_identity))
}

/// How many Environment reconciliations an operator has run.
async fn environment_reconciles(candidate: &Candidate) -> anyhow::Result<u64> {
    let metrics = http_get(candidate.address, "/metrics").await?;
    Ok(metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix("jango_fett_reconciles_total{kind=\"Environment\"} ")?
                .parse()
                .ok()
        })
        .unwrap_or(0))
}

async fn ready_environment(client: &kube::Client) -> anyhow::Result<String> {
    let name = jf_testkit::unique_name("leader");
    let environments: kube::Api<Environment> = kube::Api::all(client.clone());
    environments
        .create(
            &Default::default(),
            &Environment::new(&name, EnvironmentSpec::default()),
        )
        .await?;
    eventually("the environment to be ready", || async {
        let environment = environments.get(&name).await?;
        let status = environment.status.unwrap_or_default();
        anyhow::ensure!(
            conditions::is_ready(&status.conditions, environment.metadata.generation),
            "{:?}",
            status.phase
        );
        Ok(())
    })
    .await;
    Ok(name)
}

#[tokio::test]
async fn only_the_leader_reconciles_and_another_takes_over() -> anyhow::Result<()> {
    let client = cluster().await.client().await?;
    jf_testkit::install_crds(&client).await?;
    let lease = jf_testkit::unique_name("lease");
    let leases: kube::Api<Lease> = kube::Api::namespaced(client.clone(), "default");

    let mut first = candidate(&lease, "first").await?;
    eventually("the first replica to lead", || async {
        anyhow::ensure!(holder(&leases, &lease).await?.as_deref() == Some("first"));
        Ok(())
    })
    .await;
    let second = candidate(&lease, "second").await?;
    // Both are healthy and ready; only the leader reconciles.
    for (replica, leading) in [(&first, 1), (&second, 0)] {
        let ready = http_get(replica.address, "/readyz").await?;
        assert!(ready.starts_with("HTTP/1.0 200"), "{ready}");
        let metrics = http_get(replica.address, "/metrics").await?;
        assert!(
            metrics.contains(&format!("\njango_fett_leader {leading}\n")),
            "{metrics}"
        );
    }
    ready_environment(&client).await?;
    assert!(environment_reconciles(&first).await? > 0);
    assert_eq!(
        environment_reconciles(&second).await?,
        0,
        "the standby reconciles nothing"
    );
    assert_eq!(holder(&leases, &lease).await?.as_deref(), Some("first"));

    // The leader dies without a word: the standby leads once the Lease has run out.
    first.operator.0.kill()?;
    first.operator.0.wait()?;
    eventually_within(
        LEASE_DURATION + std::time::Duration::from_secs(5),
        "the second replica to lead within the lease duration and 5 s",
        || async {
            anyhow::ensure!(holder(&leases, &lease).await?.as_deref() == Some("second"));
            Ok(())
        },
    )
    .await;
    ready_environment(&client).await?;
    assert!(environment_reconciles(&second).await? > 0);

    // A leader told to stop gives the Lease up at once: a new replica leads without waiting
    // for it to run out.
    let mut second = second;
    let second_log = second.log.clone();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(second.operator.0.id())?),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    let status = tokio::task::spawn_blocking(move || second.operator.0.wait()).await??;
    assert!(status.success(), "exit status {status}");
    let last_lines = || {
        let log = second_log.lock().map(|log| log.clone()).unwrap_or_default();
        log.iter()
            .rev()
            .take(15)
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        holder(&leases, &lease).await?,
        None,
        "released; the log ends with:\n{}",
        last_lines()
    );
    let _third = candidate(&lease, "third").await?;
    eventually_within(
        std::time::Duration::from_secs(3),
        "a new replica to lead at once",
        || async {
            anyhow::ensure!(holder(&leases, &lease).await?.as_deref() == Some("third"));
            Ok(())
        },
    )
    .await;
    Ok(())
}

/// The resource versions of an environment's objects: the Environment, its per-environment
/// RBAC and everything in its namespace that Jango Fett made or deployed.
async fn versions(
    client: &kube::Client,
    environment: &str,
    namespace: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    use kube::ResourceExt as _;
    use kube::api::{ApiResource, DynamicObject, ListParams};
    use kube::core::GroupVersionKind;
    let mut versions = std::collections::BTreeMap::new();
    let mut record = |kind: &str, object: &DynamicObject| {
        versions.insert(
            format!("{kind}/{}", object.name_any()),
            object.resource_version().unwrap_or_default(),
        );
    };
    let gvk =
        |group, version, kind| ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    let role = format!("jf-env-{environment}");
    let cluster_scoped = [
        (ApiResource::erase::<Environment>(&()), environment),
        (gvk("", "v1", "Namespace"), namespace),
        (
            gvk("rbac.authorization.k8s.io", "v1", "ClusterRole"),
            role.as_str(),
        ),
        (
            gvk("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"),
            role.as_str(),
        ),
    ];
    for (resource, name) in cluster_scoped {
        let object = kube::Api::<DynamicObject>::all_with(client.clone(), &resource)
            .get(name)
            .await?;
        record(&resource.kind, &object);
    }
    let namespaced = [
        ApiResource::erase::<jf_api::App>(&()),
        ApiResource::erase::<jf_api::PostgreSQL>(&()),
        ApiResource::erase::<jf_api::Redis>(&()),
        gvk("apps", "v1", "Deployment"),
        gvk("apps", "v1", "StatefulSet"),
        gvk("", "v1", "Service"),
        gvk("", "v1", "ConfigMap"),
        gvk("", "v1", "Secret"),
        gvk("networking.k8s.io", "v1", "Ingress"),
        gvk("networking.k8s.io", "v1", "NetworkPolicy"),
        gvk("rbac.authorization.k8s.io", "v1", "RoleBinding"),
    ];
    for resource in namespaced {
        let objects =
            kube::Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource)
                .list(&ListParams::default())
                .await?;
        for object in &objects.items {
            record(&resource.kind, object);
        }
    }
    Ok(versions)
}

#[tokio::test]
async fn a_restarted_operator_writes_nothing_over_what_exists() -> anyhow::Result<()> {
    use jf_api::{App, AppSpec, Blueprint};
    use kube::api::{Patch, PatchParams, PostParams};

    let client = cluster().await.client().await?;
    jf_testkit::install_crds(&client).await?;
    let lease = jf_testkit::unique_name("lease");
    let arguments = [
        "--leader-election-id",
        lease.as_str(),
        "--log",
        "info,jf_operator=debug",
    ];
    let first = operator_with(&arguments).await?;

    // An environment with the logistics App, its database and its Redis, all ready.
    let mut blueprint: Blueprint = serde_saphyr::from_str(include_str!(
        "../../../deploy/examples/logistics/blueprint.yaml"
    ))?;
    let blueprint_name = jf_testkit::unique_name("logistics");
    blueprint.metadata.name = Some(blueprint_name.clone());
    kube::Api::<Blueprint>::all(client.clone())
        .patch(
            &blueprint_name,
            &PatchParams::apply("jf-tests").force(),
            &Patch::Apply(&blueprint),
        )
        .await?;
    let environment = ready_environment(&client).await?;
    let namespace = format!("jf-{environment}");
    let apps: kube::Api<App> = kube::Api::namespaced(client.clone(), &namespace);
    apps.create(
        &PostParams::default(),
        &App::new(
            "logistics-api",
            AppSpec {
                blueprint: blueprint_name,
                ..AppSpec::default()
            },
        ),
    )
    .await?;
    eventually_within(
        std::time::Duration::from_secs(60),
        "the App to be ready",
        || async {
            let app = apps.get("logistics-api").await?;
            let status = app.status.unwrap_or_default();
            anyhow::ensure!(
                conditions::is_ready(&status.conditions, app.metadata.generation),
                "{:?}",
                conditions::find(&status.conditions, conditions::READY)
            );
            Ok(())
        },
    )
    .await;
    let mut first = first;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(first.operator.0.id())?),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    tokio::task::spawn_blocking(move || first.operator.0.wait()).await??;
    let before = versions(&client, &environment, &namespace).await?;

    // A new operator reconciles each of them once it has synced, and writes nothing.
    let second = operator_with(&arguments).await?;
    let reconciled = |field: &str, name: &str| {
        let log = second.log();
        log.iter()
            .filter(|line| line.get("message").and_then(|m| m.as_str()) == Some("reconciled"))
            .filter(|line| {
                line.pointer(&format!("/span/{field}"))
                    .and_then(|value| value.as_str())
                    == Some(name)
                    && line
                        .pointer("/span/namespace")
                        .and_then(|value| value.as_str())
                        .is_none_or(|in_namespace| in_namespace == namespace)
            })
            .map(|line| line.get("writes").and_then(serde_json::Value::as_u64))
            .collect::<Vec<_>>()
    };
    eventually("the new operator to reconcile every object", || async {
        for (field, name) in [
            ("environment", environment.as_str()),
            ("app", "logistics-api"),
            ("postgresql", "logistics-api"),
            ("redis", "logistics-api"),
        ] {
            let writes = reconciled(field, name);
            anyhow::ensure!(!writes.is_empty(), "{field} {name} not reconciled yet");
            anyhow::ensure!(
                writes.iter().all(|writes| *writes == Some(0)),
                "{field} {name} reconciled with writes: {writes:?}; applied: {:?}",
                second
                    .log()
                    .iter()
                    .filter(|line| line.get("message").and_then(|m| m.as_str()) == Some("applying"))
                    .collect::<Vec<_>>()
            );
        }
        Ok(())
    })
    .await;
    let after = versions(&client, &environment, &namespace).await?;
    assert_eq!(before, after, "no object changed");
    assert!(before.len() > 15, "{before:?}");
    Ok(())
}
