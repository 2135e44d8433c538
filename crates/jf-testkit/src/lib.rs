//! The local control plane for tests and the demo: a real kube-apiserver with etcd, the
//! controller manager, the scheduler and kwok's fake nodes, plus PostgreSQL and Redis, all
//! built or installed by `./dev/build-control-plane` and `./dev/deps`.
//!
//! An integration test asks for the shared cluster of its test binary with one call:
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! let cluster = jf_testkit::cluster().await;
//! let admin = cluster.client().await?;
//! let alice = cluster.impersonate("alice", &["developers"]).await?;
//! # Ok(()) }
//! ```
//!
//! The cluster is started once per test binary and ends with it, or, when the environment
//! variable `JF_TEST_CLUSTER` names the directory of a running cluster (`jf-testkit start`),
//! that cluster is reused.

pub mod binaries;
mod cluster;
pub mod operator;
mod pki;
mod process;
pub mod redis;

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::Rng as _;
use tokio::sync::OnceCell;

pub use cluster::{
    ClusterInfo, IMAGE_THAT_CRASH_LOOPS, IMAGE_THAT_FAILS_TO_PULL, Lifetime, LocalCluster,
    NODE_NAMES, SIMULATED_LOG_START,
};
pub use operator::{
    OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT, OperatorProcess, install_crds,
    install_operator_rbac, operator, operator_kubeconfig,
};

/// The environment variable naming a running cluster's directory for tests to reuse.
pub const CLUSTER_VARIABLE: &str = "JF_TEST_CLUSTER";

/// How long `eventually` waits by default.
pub const EVENTUALLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a local cluster could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{program} is not installed (looked in {looked_in}); {hint}", looked_in = .looked_in.display())]
    MissingProgram {
        program: String,
        looked_in: PathBuf,
        hint: &'static str,
    },
    #[error("dev/versions.env has no {0}")]
    Versions(String),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{name} exited ({status}); the end of {log}:\n{tail}", log = .log.display())]
    Exited {
        name: &'static str,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("timed out after {after:?} waiting for {what}; see {}", logs.iter().map(|log| log.display().to_string()).collect::<Vec<_>>().join(", "))]
    Timeout {
        what: String,
        after: Duration,
        logs: Vec<PathBuf>,
    },
    #[error("the cluster in {dir} is not running: {} stopped", stopped.join(", "), dir = .dir.display())]
    NotRunning { dir: PathBuf, stopped: Vec<String> },
    #[error("failed to generate certificates")]
    Certificate(#[from] rcgen::Error),
    #[error("failed to read the kubeconfig")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("failed to configure a Kubernetes client")]
    InferConfig(#[from] kube::config::InferConfigError),
    #[error("Kubernetes API request failed")]
    Kube(#[from] kube::Error),
    #[error("failed to read or write the cluster description")]
    Json(#[from] serde_json::Error),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

static SHARED: OnceCell<Result<LocalCluster, String>> = OnceCell::const_new();

/// The cluster shared by every test of this test binary: the one named by `JF_TEST_CLUSTER`,
/// or one started now that ends with the process. Panics, with the reason, when there is none.
pub async fn cluster() -> &'static LocalCluster {
    let shared = SHARED
        .get_or_init(|| async {
            let result = match std::env::var_os(CLUSTER_VARIABLE) {
                Some(dir) => LocalCluster::open(&dir),
                None => LocalCluster::start(Lifetime::Process).await,
            };
            result.map_err(|error| format!("{:#}", anyhow::Error::from(error)))
        })
        .await;
    match shared {
        Ok(cluster) => cluster,
        Err(error) => panic!("no local cluster for the tests: {error}"),
    }
}

/// Polls `check` until it returns `Ok`, for at most [`EVENTUALLY_TIMEOUT`]; panics naming
/// `what` and the last error otherwise.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    eventually_within(EVENTUALLY_TIMEOUT, what, check).await
}

/// [`eventually`] with its own time limit.
pub async fn eventually_within<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(20);
    loop {
        match check().await {
            Ok(value) => return value,
            Err(error) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}: {error:#}")
            }
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(250));
            }
        }
    }
}

/// A name no other test uses: `prefix` plus a random lowercase suffix, a valid DNS label.
pub fn unique_name(prefix: &str) -> String {
    let suffix: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .filter(u8::is_ascii_alphanumeric)
        .map(|byte| char::from(byte.to_ascii_lowercase()))
        .take(6)
        .collect();
    format!("{prefix}-{suffix}")
}

/// Waits until the API server's authorizer lets `user` `verb` `resource` of `group` (in
/// `namespace`, or cluster-wide): a new binding reaches the authorizer a moment after it is
/// written, and a test that acts as `user` at once may otherwise be refused.
pub async fn until_allowed(
    admin: &kube::Client,
    user: &str,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
) {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
    };
    let reviews: kube::Api<SubjectAccessReview> = kube::Api::all(admin.clone());
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_owned()),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.to_owned()),
                group: Some(group.to_owned()),
                resource: Some(resource.to_owned()),
                namespace: namespace.map(str::to_owned),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    eventually(
        &format!("{user} to be allowed to {verb} {resource}"),
        || async {
            let answer = reviews.create(&Default::default(), &review).await?;
            let status = answer.status.unwrap_or_default();
            anyhow::ensure!(
                status.allowed,
                "not yet: {}",
                status.reason.unwrap_or_default()
            );
            Ok(())
        },
    )
    .await;
}
