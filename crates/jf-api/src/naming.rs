//! Names and labels of the objects Jango Fett makes, derived from the names users give.

/// The longest Environment name: it becomes part of a namespace name and of host names.
pub const ENVIRONMENT_NAME_MAX: usize = 40;

/// The namespace prefix used unless the operator is configured otherwise.
pub const DEFAULT_NAMESPACE_PREFIX: &str = "jf-";

/// Labels the namespace (and every child) with the Environment it belongs to.
pub const ENVIRONMENT_LABEL: &str = "jango-fett.dev/environment";

/// Keeps an Environment until its namespace is gone.
pub const ENVIRONMENT_FINALIZER: &str = "jango-fett.dev/namespace";

/// On a Deployment or StatefulSet of a sleeping environment: its replicas before sleep.
pub const REPLICAS_BEFORE_SLEEP_ANNOTATION: &str = "jango-fett.dev/replicas-before-sleep";

/// The RoleBinding that gives the environment's users their role in the namespace.
pub const USERS_ROLE_BINDING: &str = "jf-users";

/// The RoleBinding that gives the operator what it may do only in environments' namespaces
/// (their Secrets).
pub const OPERATOR_ROLE_BINDING: &str = "jf-operator";

/// The ConfigMap holding the environment's configuration.
pub const CONFIG_MAP: &str = "env-config";

/// The NetworkPolicy isolating the namespace.
pub const NETWORK_POLICY: &str = "jf-isolation";

/// The ResourceQuota and LimitRange of the namespace.
pub const RESOURCE_QUOTA: &str = "jf-quota";
pub const LIMIT_RANGE: &str = "jf-limits";

/// Configuration keys starting with this are set by Jango Fett.
pub const RESERVED_CONFIG_PREFIX: &str = "JF_";

/// The namespace of an environment.
pub fn namespace(prefix: &str, environment: &str) -> String {
    format!("{prefix}{environment}")
}

/// The ClusterRole (and its ClusterRoleBinding) that lets the users manage their Environment.
pub fn environment_cluster_role(environment: &str) -> String {
    format!("jf-env-{environment}")
}

/// The host of an environment: `<environment>.<base domain>`.
pub fn environment_host(environment: &str, base_domain: &str) -> String {
    format!("{environment}.{base_domain}")
}

/// The name of the database, and of its login role, of the PostgreSQL resource `name` in
/// `namespace`: `jf_` and a `[a-z0-9_]` slug of both, cut to fit, then `_` and a hash of
/// `namespace/name`, so that names are unique, deterministic and at most 63 bytes.
pub fn database_name(namespace: &str, name: &str) -> String {
    const MAX: usize = 63;
    let hash = format!(
        "{:010x}",
        stable_hash(format!("{namespace}/{name}").as_bytes()) >> 24
    );
    let mut slug = String::new();
    for character in format!("{namespace}_{name}").chars() {
        let character = character.to_ascii_lowercase();
        let character = if character.is_ascii_alphanumeric() {
            character
        } else {
            '_'
        };
        if !(character == '_' && slug.ends_with('_')) {
            slug.push(character);
        }
    }
    slug.truncate(MAX - "jf_".len() - 1 - hash.len());
    format!("jf_{}_{hash}", slug.trim_end_matches('_'))
}

/// The Secret with a PostgreSQL resource's credentials.
pub fn postgresql_secret(name: &str) -> String {
    format!("{name}-postgresql")
}

/// The port Redis listens on, in its pod and on its Service.
pub const REDIS_PORT: u16 = 6379;

/// The Secret with a Redis resource's credentials, which is also the name of its StatefulSet
/// and its Service: `<name>-redis`.
pub fn redis(name: &str) -> String {
    format!("{name}-redis")
}

/// The Secret holding a Redis resource's configuration file.
pub fn redis_config(name: &str) -> String {
    format!("{name}-redis-config")
}

/// Where applications in the cluster reach the Redis resource `name` of `namespace`.
pub fn redis_host(namespace: &str, name: &str) -> String {
    format!("{}.{namespace}.svc", redis(name))
}

/// 64-bit FNV-1a: stable across builds, platforms and versions, unlike `DefaultHasher`.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Whether `name` is a DNS label (RFC 1123) of at most `max` characters.
pub fn is_dns_label(name: &str, max: usize) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= max
        && bytes
            .iter()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || *byte == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// Whether `key` may be a key of an Environment's configuration.
pub fn is_config_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_'))
        && !key.starts_with(RESERVED_CONFIG_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("fix-bug", 40));
        assert!(is_dns_label("a", 40));
        assert!(is_dns_label(&"a".repeat(40), 40));
        assert!(!is_dns_label(&"a".repeat(41), 40));
        assert!(!is_dns_label("Fix-bug", 40));
        assert!(!is_dns_label("-fix", 40));
        assert!(!is_dns_label("fix-", 40));
        assert!(!is_dns_label("fix.bug", 40));
        assert!(!is_dns_label("", 40));
    }

    #[test]
    fn config_keys() {
        assert!(is_config_key("FEATURE_X"));
        assert!(is_config_key("log.level"));
        assert!(is_config_key("a-b_c.d"));
        assert!(!is_config_key("JF_URL"));
        assert!(!is_config_key("has space"));
        assert!(!is_config_key("a=b"));
        assert!(!is_config_key(""));
    }

    #[test]
    fn database_names_are_unique_deterministic_and_short() {
        let name = database_name("jf-fix-bug", "logistics-api");
        assert!(name.starts_with("jf_jf_fix_bug_logistics_api_"), "{name}");
        assert_eq!(name, database_name("jf-fix-bug", "logistics-api"));
        // Two resources whose slugs are the same still differ by their hash.
        assert_ne!(database_name("a-b", "c"), database_name("a", "b-c"));
        let long = database_name(&"n".repeat(63), &"p".repeat(53));
        assert_eq!(long.len(), 63, "{long}");
        for name in [name, long] {
            assert!(
                name.bytes()
                    .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_')
            );
        }
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
    }

    #[test]
    fn derived_names() {
        assert_eq!(namespace("jf-", "fix-bug"), "jf-fix-bug");
        assert_eq!(environment_cluster_role("fix-bug"), "jf-env-fix-bug");
        assert_eq!(
            environment_host("fix-bug", "dev.example.com"),
            "fix-bug.dev.example.com"
        );
        assert_eq!(redis("cache"), "cache-redis");
        assert_eq!(redis_config("cache"), "cache-redis-config");
        assert_eq!(
            redis_host("jf-fix-bug", "cache"),
            "cache-redis.jf-fix-bug.svc"
        );
    }
}
