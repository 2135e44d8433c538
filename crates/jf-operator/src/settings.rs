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

    #[command(flatten)]
    pub environments: EnvironmentSettings,
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

    /// ClusterRoles an Environment may grant its users in its namespace, comma-separated;
    /// the first is the default. `cluster-admin` is refused.
    #[arg(long, env = "JF_USER_ROLES", value_delimiter = ',', default_value = "admin,edit,view", value_parser = parse_user_role)]
    pub user_roles: Vec<String>,

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
