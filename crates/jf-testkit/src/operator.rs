//! The `jango-fett-operator` binary, run against the shared cluster for the rest of a test
//! process, for end-to-end tests of `jf`. It runs with the cluster's admin kubeconfig; its log
//! goes to a file whose path the handle gives.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use tokio::sync::OnceCell;

use crate::{Error, LocalCluster};

/// A running operator.
#[derive(Debug)]
pub struct OperatorProcess {
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub http_address: SocketAddr,
    /// The operator's log (JSON lines).
    pub log: PathBuf,
    /// Keeps the operator alive; it is stopped when this process exits.
    _lifeline: std::process::ChildStdin,
}

static OPERATOR: OnceCell<Result<OperatorProcess, String>> = OnceCell::const_new();

/// Installs the CRDs and starts the operator binary once for this test process, with
/// `arguments` added to its command line the first time. Panics, with the reason, if it cannot.
pub async fn operator(arguments: &[&str]) -> &'static OperatorProcess {
    let result = OPERATOR
        .get_or_init(|| async {
            let cluster = crate::cluster().await;
            start(cluster, arguments)
                .await
                .map_err(|error| format!("{:#}", anyhow::Error::from(error)))
        })
        .await;
    match result {
        Ok(operator) => operator,
        Err(error) => panic!("the operator did not start: {error}"),
    }
}

/// The ClusterRoles of Jango Fett's users: developer and viewer, and those aggregated into
/// the namespace roles admin, edit and view.
const USER_ROLES: &str = include_str!("../../../deploy/rbac/user-roles.yaml");

/// Applies every CRD of the API and waits until they are established, the ClusterRoles of its
/// users, and the admission policy that gives new Environments their finalizer.
pub async fn install_crds(client: &Client) -> Result<(), Error> {
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let params = PatchParams::apply("jf-testkit").force();
    for role in serde_saphyr::from_multiple::<ClusterRole>(USER_ROLES).map_err(|error| {
        Error::io(
            "deploy/rbac/user-roles.yaml is not valid",
            std::io::Error::other(error.to_string()),
        )
    })? {
        let name = role.metadata.name.clone().unwrap_or_default();
        roles.patch(&name, &params, &Patch::Apply(&role)).await?;
    }
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in jf_api::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &params, &Patch::Apply(&crd)).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let established =
                api.get(&name).await?.status.is_some_and(|status| {
                    status.conditions.iter().flatten().any(|condition| {
                        condition.type_ == "Established" && condition.status == "True"
                    })
                });
            if established {
                break;
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: format!("the CRD {name} to be established"),
                    after: Duration::from_secs(30),
                    logs: Vec::new(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    apply_from_install(
        client,
        &["MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"],
    )
    .await?;
    until_the_policy_applies(client).await
}

/// Waits until the API server enforces the finalizer policy: a new policy takes effect a
/// moment after it is written. A dry-run create goes through admission and stores nothing.
async fn until_the_policy_applies(client: &Client) -> Result<(), Error> {
    use kube::api::PostParams;
    let environments: Api<jf_api::Environment> = Api::all(client.clone());
    let probe = jf_api::Environment::new("jf-testkit-admission-probe", Default::default());
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let timeout = Duration::from_secs(30);
    let deadline = Instant::now() + timeout;
    loop {
        let created = environments.create(&params, &probe).await?;
        if created
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|finalizer| finalizer == jf_api::naming::ENVIRONMENT_FINALIZER)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                what: "the Environment finalizer policy to take effect".to_owned(),
                after: timeout,
                logs: Vec::new(),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `jango-fett-operator` built beside the running test binary, or `$JF_OPERATOR_BIN`.
pub fn operator_binary() -> Result<PathBuf, Error> {
    let path = match std::env::var_os("JF_OPERATOR_BIN") {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe()
            .ok()
            .and_then(|test| Some(test.parent()?.parent()?.join("jango-fett-operator")))
            .unwrap_or_default(),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::MissingProgram {
            program: "jango-fett-operator".to_owned(),
            looked_in: path,
            hint: "build it with `cargo build -p jf-operator` (cargo test --workspace does)",
        })
    }
}

/// The operator's install (`kubectl apply -k deploy/` renders it from the Helm chart): its
/// namespace, ServiceAccount and RBAC are what the end-to-end tests run the operator with.
const INSTALL: &str = include_str!("../../../deploy/operator/install.yaml");

/// The namespace of the operator's install.
pub const OPERATOR_NAMESPACE: &str = "jango-fett-system";

/// The operator's ServiceAccount in the install.
pub const OPERATOR_SERVICE_ACCOUNT: &str = "jango-fett-operator";

/// Applies the namespace, the ServiceAccount and the RBAC of the operator's install: exactly
/// the permissions a cluster that installs it gives it.
pub async fn install_operator_rbac(client: &Client) -> Result<(), Error> {
    apply_from_install(
        client,
        &[
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
        ],
    )
    .await
}

/// Applies the objects of these kinds from deploy/operator/install.yaml, in its order.
async fn apply_from_install(client: &Client, kinds: &[&str]) -> Result<(), Error> {
    use kube::api::{ApiResource, DynamicObject};
    use kube::core::GroupVersionKind;
    let params = PatchParams::apply("jf-testkit").force();
    let objects = serde_saphyr::from_multiple::<DynamicObject>(INSTALL).map_err(|error| {
        Error::io(
            "deploy/operator/install.yaml is not valid",
            std::io::Error::other(error.to_string()),
        )
    })?;
    for object in objects {
        let Some(types) = &object.types else { continue };
        if !kinds.contains(&types.kind.as_str()) {
            continue;
        }
        let (group, version) = types
            .api_version
            .rsplit_once('/')
            .unwrap_or(("", types.api_version.as_str()));
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &types.kind));
        let api: Api<DynamicObject> = match object.metadata.namespace.as_deref() {
            Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let name = object.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &params, &Patch::Apply(&object)).await?;
    }
    Ok(())
}

/// A kubeconfig for the operator's ServiceAccount, with a token from the TokenRequest API, as
/// a pod of the install would have.
pub async fn operator_kubeconfig(cluster: &LocalCluster) -> Result<PathBuf, Error> {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let client = cluster.client().await?;
    install_operator_rbac(&client).await?;
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(24 * 3600),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let token = Api::<ServiceAccount>::namespaced(client, OPERATOR_NAMESPACE)
        .create_token_request(OPERATOR_SERVICE_ACCOUNT, &Default::default(), &request)
        .await?
        .status
        .and_then(|status| status.token)
        .unwrap_or_default();
    let invalid = |error: kube::config::KubeconfigError| {
        Error::io(
            "failed to write the operator's kubeconfig",
            std::io::Error::other(error.to_string()),
        )
    };
    let mut kubeconfig =
        kube::config::Kubeconfig::read_from(cluster.kubeconfig()).map_err(invalid)?;
    for named in &mut kubeconfig.auth_infos {
        named.name = OPERATOR_SERVICE_ACCOUNT.to_owned();
        named.auth_info = Some(kube::config::AuthInfo {
            token: Some(token.clone().into()),
            ..kube::config::AuthInfo::default()
        });
    }
    for context in &mut kubeconfig.contexts {
        if let Some(context) = &mut context.context {
            context.user = Some(OPERATOR_SERVICE_ACCOUNT.to_owned());
        }
    }
    let path = std::env::temp_dir().join(format!(
        "jango-fett-operator-{}.kubeconfig",
        std::process::id()
    ));
    // JSON is YAML. The token is a test cluster's, short-lived.
    let text = serde_json::to_vec(&kubeconfig).map_err(|error| {
        Error::io(
            "failed to write the operator's kubeconfig",
            std::io::Error::other(error.to_string()),
        )
    })?;
    std::fs::write(&path, text)
        .map_err(|source| Error::io("failed to write the operator's kubeconfig", source))?;
    Ok(path)
}

async fn start(cluster: &LocalCluster, arguments: &[&str]) -> Result<OperatorProcess, Error> {
    install_crds(&cluster.client().await?).await?;
    // It runs as the install's ServiceAccount: a permission missing from deploy/ fails a test.
    let kubeconfig = operator_kubeconfig(cluster).await?;
    let binary = operator_binary()?;
    let log = tempfile::Builder::new()
        .prefix("jango-fett-operator-")
        .suffix(".log")
        .tempfile()
        .map_err(|source| Error::io("failed to create the operator's log", source))?
        .keep()
        .map_err(|error| Error::io("failed to keep the operator's log", error.error))?
        .1;
    let (lifeline, log_file) = spawn_tied(&binary, cluster, &kubeconfig, arguments, &log)?;
    drop(log_file);
    // The operator logs the address it serves on once it is up, then that it runs the
    // controllers (a Lease left by an operator killed earlier may keep it waiting a while).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(http_address) = serving_and_leading(&log) {
            return Ok(OperatorProcess {
                http_address,
                log,
                _lifeline: lifeline,
            });
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                what: "the operator to serve".to_owned(),
                after: Duration::from_secs(30),
                logs: vec![log],
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The address the operator whose JSON log is `log` serves `/metrics` on, once that log says
/// it also runs its controllers (it became the leader, or leader election is off).
pub fn serving_and_leading(log: &Path) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let leading = lines.iter().any(|line| {
        line.pointer("/fields/message")
            .or_else(|| line.get("message"))
            .and_then(serde_json::Value::as_str)
            .is_some_and(|message| {
                message == "became the leader" || message.starts_with("leader election is off")
            })
    });
    leading
        .then(|| {
            lines
                .iter()
                .find_map(|line| line.get("address")?.as_str()?.parse().ok())
        })
        .flatten()
}

/// Starts the operator under a shell that stops it when our end of its stdin closes.
fn spawn_tied(
    binary: &Path,
    cluster: &LocalCluster,
    kubeconfig: &Path,
    arguments: &[&str],
    log: &Path,
) -> Result<(std::process::ChildStdin, std::fs::File), Error> {
    let log_file = std::fs::File::create(log)
        .map_err(|source| Error::io("failed to open the operator's log", source))?;
    let stderr = log_file
        .try_clone()
        .map_err(|source| Error::io("failed to open the operator's log", source))?;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#""$@" </dev/null & child=$!; read -r _ || :; kill -TERM "$child"; wait "$child""#)
        .arg("jango-fett-operator")
        .arg(binary)
        .args(["--http-address", "127.0.0.1:0", "--log-format", "json"])
        .args(["--leader-election-namespace", OPERATOR_NAMESPACE])
        .args(arguments)
        .env("KUBECONFIG", kubeconfig)
        .env("JF_POSTGRES_ADMIN_URL", cluster.postgres_admin_url())
        .stdin(Stdio::piped())
        .stdout(
            log_file
                .try_clone()
                .map_err(|source| Error::io("failed to open the operator's log", source))?,
        )
        .stderr(stderr)
        .spawn()
        .map_err(|source| Error::io("failed to start the operator", source))?;
    let stdin = child.stdin.take().ok_or_else(|| {
        Error::io(
            "the operator's shell has no stdin",
            std::io::Error::other("no pipe"),
        )
    })?;
    Ok((stdin, log_file))
}
