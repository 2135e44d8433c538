//! `Redis` (namespaced, short name `rd`): a Redis server of its own, with a password, run by
//! the operator as a one-replica StatefulSet behind the Service `<name>-redis`, its
//! credentials in the Secret `<name>-redis`.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A Docker image tag.
pub const VERSION_PATTERN: &str = r"^[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127}$";

/// A memory size as Redis writes it: a positive number of bytes, or of `k` (1000), `kb`
/// (1024), `m`, `mb`, `g` or `gb`, in any case. Ten digits at most, so that it fits in 64 bits
/// in any unit.
pub const MAX_MEMORY_PATTERN: &str = r"^[1-9][0-9]{0,9}([bB]|[kKmMgG][bB]?)?$";

/// The image tag used when `spec.version` is not given.
pub const DEFAULT_VERSION: &str = "7.2";

/// The memory limit used when `spec.maxMemory` is not given.
pub const DEFAULT_MAX_MEMORY: &str = "64mb";

/// The volume size used when persistence is on and no size is given.
pub const DEFAULT_VOLUME_SIZE: &str = "1Gi";

/// A Redis server of its own for an environment's services.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "jango-fett.dev",
    version = "v1alpha1",
    kind = "Redis",
    plural = "redis",
    singular = "redis",
    shortname = "rd",
    namespaced,
    status = "RedisStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A Redis server with a password, run as a one-replica StatefulSet behind the Service <name>-redis, with its credentials in the Secret <name>-redis.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.version"),
    printcolumn(name = "Max Memory", type_ = "string", json_path = ".spec.maxMemory"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason", priority = 1),
    printcolumn(name = "Secret", type_ = "string", json_path = ".status.secretName", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 46").message("metadata.name: a Redis name may be at most 46 characters, so that the names of its StatefulSet's pods (<name>-redis-0) fit in a label").reason(Reason::FieldValueInvalid),
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("metadata.name: a Redis name must be lowercase letters, digits and '-', starting with a letter and ending with a letter or digit, so that its Service (<name>-redis) can be named after it").reason(Reason::FieldValueInvalid),
)]
#[serde(rename_all = "camelCase")]
pub struct RedisSpec {
    /// The Redis image tag, such as `7.2` or `7.2.5-alpine`; the image repository is the
    /// operator's (`--redis-image`, by default `docker.io/library/redis`).
    #[serde(default = "default_version")]
    #[schemars(regex(pattern = VERSION_PATTERN), length(min = 1, max = 128))]
    #[x_kube(validation = Rule::new("self.matches('^[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127}$')").message("version must be an image tag: letters, digits, '_', '.' and '-', not starting with '.' or '-', at most 128 characters").reason(Reason::FieldValueInvalid))]
    pub version: String,

    /// The most memory Redis uses for data before it evicts the least recently used keys
    /// (`maxmemory`, with the policy `allkeys-lru`): a number of bytes, or of `k`, `kb`, `m`,
    /// `mb`, `g` or `gb`, as Redis writes it (`kb` is 1024 bytes, `k` 1000). Keep the
    /// container's memory limit, if any, well above it.
    #[serde(default = "default_max_memory")]
    #[schemars(regex(pattern = MAX_MEMORY_PATTERN), length(min = 1, max = 12))]
    #[x_kube(validation = Rule::new("self.matches('^[1-9][0-9]{0,9}([bB]|[kKmMgG][bB]?)?$')").message("maxMemory must be a positive size such as 64mb, 500k or 1gb: a number with one of the units b, k, kb, m, mb, g or gb").reason(Reason::FieldValueInvalid))]
    pub max_memory: String,

    /// Whether the data outlives the pod. Off by default: the data is in an `emptyDir` and
    /// disposable, as a development environment's should be. It cannot be changed once the
    /// Redis exists.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("persistence cannot be changed once the Redis exists; delete the Redis and create it again").reason(Reason::FieldValueForbidden))]
    pub persistence: RedisPersistence,

    /// CPU and memory requests and limits of the Redis container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl Default for RedisSpec {
    fn default() -> Self {
        Self {
            version: default_version(),
            max_memory: default_max_memory(),
            persistence: RedisPersistence::default(),
            resources: None,
        }
    }
}

fn default_version() -> String {
    DEFAULT_VERSION.to_owned()
}

fn default_max_memory() -> String {
    DEFAULT_MAX_MEMORY.to_owned()
}

fn default_volume_size() -> Quantity {
    Quantity(DEFAULT_VOLUME_SIZE.to_owned())
}

/// Where a Redis keeps its data.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RedisPersistence {
    /// Keep the data on a PersistentVolumeClaim of its own (append-only file), so that it
    /// survives the pod. The claim is deleted with the Redis.
    #[serde(default)]
    pub enabled: bool,

    /// The size of the volume, such as `1Gi`; used when `enabled`.
    #[serde(default = "default_volume_size")]
    #[schemars(extend("nullable" = false))]
    pub size: Quantity,

    /// The StorageClass of the volume; the cluster's default class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
}

impl Default for RedisPersistence {
    fn default() -> Self {
        Self {
            enabled: false,
            size: default_volume_size(),
            storage_class_name: None,
        }
    }
}

/// What the operator observed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RedisStatus {
    /// The Secret with the password and the connection URL (`uri`, `REDIS_URL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,

    /// The Service in front of Redis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,

    /// Where applications in the cluster reach Redis: `<name>-redis.<namespace>.svc`, port
    /// 6379.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,

    /// The latest observations; `Ready` is always present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The generation of the spec these observations are about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The number of bytes of a memory size as Redis reads it (`64mb`, `500k`, `1GB`), if it is
/// one that [`MAX_MEMORY_PATTERN`] allows.
pub fn memory_bytes(size: &str) -> Option<u64> {
    let split = size
        .find(|character: char| !character.is_ascii_digit())
        .unwrap_or(size.len());
    let (number, unit) = size.split_at(split);
    if number.is_empty() || number.len() > 10 || number.starts_with('0') {
        return None;
    }
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(multiplier)
}

/// Whether `version` is an image tag that [`VERSION_PATTERN`] allows.
pub fn is_image_tag(version: &str) -> bool {
    let bytes = version.as_bytes();
    (1..=128).contains(&bytes.len())
        && bytes
            .first()
            .is_some_and(|byte| byte.is_ascii_alphanumeric() || *byte == b'_')
        && bytes
            .iter()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt as _;
    use serde_json::{Value, json};

    use super::*;

    fn schema() -> Value {
        let crd = serde_json::to_value(Redis::crd()).expect("the CRD serializes");
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
    }

    #[test]
    fn crd_names_and_scope() {
        let crd = Redis::crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("redis.jango-fett.dev"));
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.plural, "redis");
        assert_eq!(crd.spec.names.singular.as_deref(), Some("redis"));
        assert_eq!(crd.spec.names.short_names, Some(vec!["rd".to_owned()]));
        let columns: Vec<(&str, Option<i32>)> = crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|column| (column.name.as_str(), column.priority))
            .collect();
        assert_eq!(
            columns,
            [
                ("Ready", None),
                ("Version", None),
                ("Max Memory", None),
                ("Reason", Some(1)),
                ("Secret", Some(1)),
                ("Age", None)
            ]
        );
    }

    #[test]
    fn schema_pins_the_validation_rules() {
        let schema = schema();
        let root_rules = schema["x-kubernetes-validations"].to_string();
        assert!(root_rules.contains("size() <= 46"), "{root_rules}");
        assert!(
            root_rules.contains("^[a-z]([-a-z0-9]*[a-z0-9])?$"),
            "{root_rules}"
        );

        let spec = &schema["properties"]["spec"]["properties"];
        assert_eq!(spec["version"]["pattern"], json!(VERSION_PATTERN));
        assert_eq!(spec["version"]["maxLength"], json!(128));
        assert_eq!(spec["version"]["default"], json!("7.2"));
        assert!(
            spec["version"]["x-kubernetes-validations"]
                .to_string()
                .contains("version must be an image tag")
        );
        assert_eq!(spec["maxMemory"]["pattern"], json!(MAX_MEMORY_PATTERN));
        assert_eq!(spec["maxMemory"]["maxLength"], json!(12));
        assert_eq!(spec["maxMemory"]["default"], json!("64mb"));
        assert!(
            spec["maxMemory"]["x-kubernetes-validations"]
                .to_string()
                .contains("maxMemory must be a positive size")
        );
        // The CEL rules test what the patterns test, with a message a person can act on.
        for (field, pattern) in [
            ("version", VERSION_PATTERN),
            ("maxMemory", MAX_MEMORY_PATTERN),
        ] {
            assert_eq!(
                spec[field]["x-kubernetes-validations"][0]["rule"],
                json!(format!("self.matches('{pattern}')"))
            );
        }
        assert_eq!(
            spec["persistence"]["default"],
            json!({"enabled": false, "size": "1Gi"})
        );
        assert_eq!(
            spec["persistence"]["x-kubernetes-validations"][0]["rule"],
            json!("self == oldSelf")
        );
        let persistence = &spec["persistence"]["properties"];
        assert_eq!(persistence["storageClassName"]["maxLength"], json!(253));
        assert_eq!(
            persistence["size"]["x-kubernetes-int-or-string"],
            json!(true)
        );
        // Not nullable: an explicit null would not be defaulted, and no Redis has no size.
        assert_eq!(persistence["size"]["nullable"], json!(false));
        assert!(spec["resources"]["properties"]["limits"].is_object());

        let conditions = &schema["properties"]["status"]["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], json!("map"));
        assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
    }

    #[test]
    fn defaults() {
        let redis: Redis = serde_json::from_value(json!({
            "apiVersion": "jango-fett.dev/v1alpha1",
            "kind": "Redis",
            "metadata": {"name": "cache"},
            "spec": {},
        }))
        .expect("an empty spec is a Redis");
        assert_eq!(redis.spec, RedisSpec::default());
        assert_eq!(redis.spec.version, "7.2");
        assert_eq!(redis.spec.max_memory, "64mb");
        assert!(!redis.spec.persistence.enabled);
        assert_eq!(
            serde_json::to_value(&redis.spec).expect("serializes"),
            json!({"version": "7.2", "maxMemory": "64mb", "persistence": {"enabled": false, "size": "1Gi"}})
        );
    }

    #[test]
    fn memory_sizes_as_redis_reads_them() {
        assert_eq!(memory_bytes("64mb"), Some(64 * 1024 * 1024));
        assert_eq!(memory_bytes("64MB"), Some(64 * 1024 * 1024));
        assert_eq!(memory_bytes("64m"), Some(64_000_000));
        assert_eq!(memory_bytes("500k"), Some(500_000));
        assert_eq!(memory_bytes("2Kb"), Some(2048));
        assert_eq!(memory_bytes("1gb"), Some(1 << 30));
        assert_eq!(memory_bytes("1g"), Some(1_000_000_000));
        assert_eq!(memory_bytes("1048576"), Some(1 << 20));
        assert_eq!(memory_bytes("100b"), Some(100));
        assert_eq!(
            memory_bytes("9999999999gb"),
            Some(9_999_999_999 * (1 << 30))
        );
        for bad in [
            "", "0", "0mb", "064mb", "mb", "64 mb", "64mib", "64Mi", "-1", "1tb", "1.5gb",
        ] {
            assert_eq!(memory_bytes(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn image_tags() {
        for good in ["7.2", "7.2.5-alpine", "latest", "_x", &"a".repeat(128)] {
            assert!(is_image_tag(good), "{good:?}");
        }
        for bad in [
            "",
            ".7",
            "-7",
            "7.2 ",
            "7:2",
            "7/2",
            "7.2@sha256",
            &"a".repeat(129),
        ] {
            assert!(!is_image_tag(bad), "{bad:?}");
        }
    }
}
