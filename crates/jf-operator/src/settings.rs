//! The operator's settings: command-line flags, each with an environment-variable fallback.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use clap::{Parser, ValueEnum};

/// Reconciles Jango Fett's developer environments and their dependencies.
#[derive(Debug, Clone, Parser)]
#[command(name = "jango-fett-operator", version)]
pub struct Settings {
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "JF_HTTP_ADDRESS", default_value = "0.0.0.0:8080")]
    pub http_address: SocketAddr,

    /// Log format: `human` for terminals, `json` for log collectors.
    #[arg(long, env = "JF_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// Log filter, in tracing's `EnvFilter` syntax (e.g. `info,jf_operator=debug`).
    #[arg(long, env = "JF_LOG", default_value = "info")]
    pub log: String,

    /// Most requests the controllers have in flight to the API server at once; more wait
    /// their turn. Each takes a connection of its own while in flight, which then stays open,
    /// idle, for a while: the bound keeps a burst of reconciliations from opening hundreds.
    #[arg(long, env = "JF_MAX_REQUESTS_IN_FLIGHT", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub max_requests_in_flight: u16,

    #[command(flatten)]
    pub leader_election: LeaderElectionSettings,

    #[command(flatten)]
    pub environments: EnvironmentSettings,

    #[command(flatten)]
    pub postgres: PostgresSettings,

    #[command(flatten)]
    pub redis: RedisSettings,
}

/// Leader election, so that several replicas can run and only one reconciles.
#[derive(Debug, Clone, clap::Args)]
pub struct LeaderElectionSettings {
    /// Run the controllers only while holding the Lease; `false` for a single replica.
    #[arg(long = "leader-election", env = "JF_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub enabled: bool,

    /// Namespace of the Lease (in a cluster, the operator's own).
    #[arg(
        long = "leader-election-namespace",
        env = "JF_LEADER_ELECTION_NAMESPACE",
        default_value = "default"
    )]
    pub namespace: String,

    /// Name of the Lease.
    #[arg(
        long = "leader-election-id",
        env = "JF_LEADER_ELECTION_ID",
        default_value = "jango-fett-operator"
    )]
    pub id: String,

    /// This replica's name in the Lease (in a cluster, its pod's); the host name and process
    /// id by default.
    #[arg(long = "identity", env = "JF_IDENTITY")]
    pub identity: Option<String>,

    /// How long the Lease lasts without renewal before another replica takes over.
    #[arg(long = "lease-duration", env = "JF_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: std::time::Duration,
}

impl LeaderElectionSettings {
    /// This replica's name in the Lease.
    pub fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|host| host.trim().to_owned())
                .unwrap_or_else(|_| "jango-fett-operator".to_owned());
            format!("{host}-{}", std::process::id())
        })
    }
}

/// How Environments are turned into namespaces.
#[derive(Debug, Clone, clap::Args)]
pub struct EnvironmentSettings {
    /// Prefix of every environment's namespace: `<prefix><environment>`.
    #[arg(long, env = "JF_NAMESPACE_PREFIX", default_value = jf_api::naming::DEFAULT_NAMESPACE_PREFIX, value_parser = parse_namespace_prefix)]
    pub namespace_prefix: String,

    /// Base domain of the environments' hosts: `<environment>.<domain>`.
    #[arg(long, env = "JF_BASE_DOMAIN", default_value = "dev.localhost")]
    pub base_domain: String,

    /// IngressClass of the Ingresses that publish Apps; unset uses the cluster's default.
    #[arg(long, env = "JF_INGRESS_CLASS")]
    pub ingress_class: Option<String>,

    /// ClusterRoles an Environment may grant its users in its namespace, comma-separated;
    /// the first is the default. `cluster-admin` is refused.
    #[arg(long, env = "JF_USER_ROLES", value_delimiter = ',', default_value = "admin,edit,view", value_parser = parse_user_role)]
    pub user_roles: Vec<String>,

    /// ClusterRole of what the operator may do only inside environments' namespaces (their
    /// Secrets), bound to it in each by the RoleBinding `jf-operator`. The operator needs
    /// `bind` on it.
    #[arg(
        long,
        env = "JF_OPERATOR_NAMESPACE_ROLE",
        default_value = "jango-fett-operator-namespaced"
    )]
    pub operator_namespace_role: String,

    /// Pod Security Standard enforced in every environment's namespace.
    #[arg(long, env = "JF_POD_SECURITY", value_enum, default_value_t = PodSecurityLevel::Baseline)]
    pub pod_security: PodSecurityLevel,

    /// Labels of the namespaces of ingress controllers, whose pods may reach every
    /// environment (`key=value,…`).
    #[arg(long, env = "JF_INGRESS_NAMESPACE_LABELS", value_parser = parse_labels, default_value = "kubernetes.io/metadata.name=ingress-nginx")]
    pub ingress_namespace_labels: Labels,

    /// Default quota on the CPU requests of an environment's pods (e.g. `8`); empty for none.
    #[arg(long, env = "JF_DEFAULT_QUOTA_CPU", default_value = "")]
    pub default_quota_cpu: String,

    /// Default quota on the memory requests of an environment's pods (e.g. `16Gi`).
    #[arg(long, env = "JF_DEFAULT_QUOTA_MEMORY", default_value = "")]
    pub default_quota_memory: String,

    /// Default limit on the number of an environment's pods; 0 for none.
    #[arg(long, env = "JF_DEFAULT_QUOTA_PODS", default_value_t = 0)]
    pub default_quota_pods: i32,
}

impl Default for EnvironmentSettings {
    fn default() -> Self {
        Settings::parse_from(["jango-fett-operator"]).environments
    }
}

/// PostgreSQL's trusted extensions (PostgreSQL 15), which a database owner could create.
pub const DEFAULT_POSTGRES_EXTENSIONS: &str = "btree_gin,btree_gist,citext,cube,dict_int,\
fuzzystrmatch,hstore,intarray,isn,lo,ltree,pg_trgm,pgcrypto,seg,tablefunc,tcn,tsm_system_rows,\
tsm_system_time,unaccent,uuid-ossp";

/// The shared PostgreSQL server.
#[derive(Debug, Clone, clap::Args)]
pub struct PostgresSettings {
    /// Connection URL of the shared PostgreSQL server, for a superuser
    /// (`postgres://user:password@host:5432/postgres`). Never logged. Without it, PostgreSQL
    /// resources report `NotConfigured`.
    #[arg(
        long = "postgres-admin-url",
        env = "JF_POSTGRES_ADMIN_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub admin_url: Option<AdminUrl>,

    /// Host that applications use to reach the server [default: the admin URL's host].
    #[arg(long = "postgres-host", env = "JF_POSTGRES_HOST")]
    pub host: Option<String>,

    /// Port that applications use to reach the server [default: the admin URL's port].
    #[arg(long = "postgres-port", env = "JF_POSTGRES_PORT")]
    pub port: Option<u16>,

    /// Extensions a PostgreSQL resource may ask for, comma-separated (`uuid` is an alias of
    /// `uuid-ossp`).
    #[arg(long = "postgres-extensions", env = "JF_POSTGRES_EXTENSIONS", value_delimiter = ',', default_value = DEFAULT_POSTGRES_EXTENSIONS)]
    pub extensions: Vec<String>,

    /// How often each database is checked for changes made outside Jango Fett (a dropped
    /// database, a changed password, missing extensions), e.g. `5m`.
    #[arg(long = "postgres-drift-interval", env = "JF_POSTGRES_DRIFT_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub drift_interval: std::time::Duration,

    /// Most connections the operator holds to the server at once.
    #[arg(long = "postgres-max-connections", env = "JF_POSTGRES_MAX_CONNECTIONS", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_connections: u16,
}

impl Default for PostgresSettings {
    fn default() -> Self {
        Settings::parse_from(["jango-fett-operator"]).postgres
    }
}

/// The image repository of Redis resources, unless configured otherwise.
pub const DEFAULT_REDIS_IMAGE: &str = "docker.io/library/redis";

/// How Redis resources are run.
#[derive(Debug, Clone, clap::Args)]
pub struct RedisSettings {
    /// Image repository of Redis servers, without a tag: a Redis resource's `spec.version` is
    /// the tag (`<image>:<version>`). Point it at a mirror where Docker Hub is out of reach.
    #[arg(long = "redis-image", env = "JF_REDIS_IMAGE", default_value = DEFAULT_REDIS_IMAGE, value_parser = parse_image_repository)]
    pub image: String,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Settings::parse_from(["jango-fett-operator"]).redis
    }
}

/// An image repository: a reference without a tag or digest, which Redis resources add.
fn parse_image_repository(image: &str) -> Result<String, String> {
    let last = image.rsplit('/').next().unwrap_or_default();
    let valid = !image.is_empty()
        && !last.is_empty()
        && !last.contains(':')
        && !image.contains('@')
        && image.bytes().all(|byte| {
            byte.is_ascii_lowercase()
                || byte.is_ascii_digit()
                || matches!(byte, b'.' | b'_' | b'-' | b'/' | b':')
        });
    if valid {
        Ok(image.to_owned())
    } else {
        Err(format!(
            "{image:?} is not an image repository without a tag, such as docker.io/library/redis \
             or registry.example.com:5000/mirror/redis"
        ))
    }
}

/// A connection URL holding a password: shown nowhere.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminUrl(String);

impl AdminUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL itself, for connecting only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AdminUrl {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("AdminUrl(<redacted>)")
    }
}

impl std::str::FromStr for AdminUrl {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, String> {
        url.parse::<tokio_postgres::Config>()
            .map(|_| Self(url.to_owned()))
            .map_err(|_| {
                "not a PostgreSQL connection URL (postgres://user:password@host:port/database)"
                    .to_owned()
            })
    }
}

/// `90s`, `5m`, `1h`: a number and a unit.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|character: char| !character.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("expected a duration such as 90s or 5m, got {text:?}"))?;
    let seconds = match unit {
        "ms" => return Ok(std::time::Duration::from_millis(number)),
        "s" | "" => number,
        "m" => number * 60,
        "h" => number * 3600,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?}: use ms, s, m or h"
            ));
        }
    };
    Ok(std::time::Duration::from_secs(seconds))
}

/// Label key-value pairs from `key=value,key=value`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels(pub BTreeMap<String, String>);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PodSecurityLevel {
    Privileged,
    Baseline,
    Restricted,
}

impl PodSecurityLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Privileged => "privileged",
            Self::Baseline => "baseline",
            Self::Restricted => "restricted",
        }
    }
}

fn parse_namespace_prefix(prefix: &str) -> Result<String, String> {
    let valid = prefix.len() <= 22
        && prefix
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        && prefix
            .bytes()
            .next()
            .is_none_or(|byte| byte.is_ascii_lowercase());
    if valid {
        Ok(prefix.to_owned())
    } else {
        Err("a namespace prefix is at most 22 lowercase letters, digits or '-', starting with a letter".to_owned())
    }
}

fn parse_user_role(role: &str) -> Result<String, String> {
    match role.trim() {
        "cluster-admin" => {
            Err("cluster-admin can never be granted to an environment's users".to_owned())
        }
        "" => Err("a role name cannot be empty".to_owned()),
        role => Ok(role.to_owned()),
    }
}

fn parse_labels(text: &str) -> Result<Labels, String> {
    text.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            pair.split_once('=')
                .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
                .filter(|(key, _)| !key.is_empty())
                .ok_or_else(|| format!("expected key=value, got {pair:?}"))
        })
        .collect::<Result<_, _>>()
        .map(Labels)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn flags_are_consistent() {
        Settings::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let settings = Settings::parse_from(["jango-fett-operator"]);
        assert_eq!(settings.http_address.port(), 8080);
        assert_eq!(settings.log_format, LogFormat::Human);
        let environments = settings.environments;
        assert_eq!(environments.namespace_prefix, "jf-");
        assert_eq!(environments.user_roles, ["admin", "edit", "view"]);
        assert_eq!(environments.pod_security, PodSecurityLevel::Baseline);
        assert_eq!(
            environments
                .ingress_namespace_labels
                .0
                .get("kubernetes.io/metadata.name"),
            Some(&"ingress-nginx".to_owned())
        );
    }

    #[test]
    fn the_admin_url_is_never_shown() {
        let settings = Settings::parse_from([
            "op",
            "--postgres-admin-url",
            "postgres://postgres:hunter2@127.0.0.1:5432/postgres",
        ]);
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("AdminUrl(<redacted>)"));
        assert!(
            Settings::try_parse_from(["op", "--postgres-admin-url", "not a url at all"]).is_err()
        );
        assert_eq!(
            settings.postgres.drift_interval,
            std::time::Duration::from_secs(300)
        );
        assert!(
            settings
                .postgres
                .extensions
                .contains(&"uuid-ossp".to_owned())
        );
        assert!(
            !settings
                .postgres
                .extensions
                .contains(&"plpython3u".to_owned())
        );
    }

    #[test]
    fn redis_image_repositories() {
        let settings = Settings::parse_from(["op"]);
        assert_eq!(settings.redis.image, "docker.io/library/redis");
        let mirror = Settings::parse_from([
            "op",
            "--redis-image",
            "registry.example.com:5000/mirror/redis",
        ]);
        assert_eq!(mirror.redis.image, "registry.example.com:5000/mirror/redis");
        for bad in ["redis:7.2", "redis@sha256:0123", "", "Redis", "registry/"] {
            assert!(
                Settings::try_parse_from(["op", "--redis-image", bad]).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("90s"),
            Ok(std::time::Duration::from_secs(90))
        );
        assert_eq!(
            parse_duration("5m"),
            Ok(std::time::Duration::from_secs(300))
        );
        assert_eq!(
            parse_duration("250ms"),
            Ok(std::time::Duration::from_millis(250))
        );
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn refuses_cluster_admin_and_bad_prefixes() {
        let error = Settings::try_parse_from(["op", "--user-roles", "admin,cluster-admin"])
            .expect_err("cluster-admin is refused");
        assert!(
            error
                .to_string()
                .contains("cluster-admin can never be granted"),
            "{error}"
        );
        assert!(Settings::try_parse_from(["op", "--namespace-prefix", "Dev_"]).is_err());
        assert!(Settings::try_parse_from(["op", "--ingress-namespace-labels", "novalue"]).is_err());
    }
}
