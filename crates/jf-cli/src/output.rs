//! What read commands print: a table or summary for people, JSON or YAML for programs.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use jf_api::conditions::{self, READY};
use jf_api::{Blueprint, Environment, PostgreSQL};
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt as _};
use serde::Serialize;

use crate::databases::Listing;
use crate::{apps, duration, redis};

/// The `-o` flag of read commands.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OutputArgs {
    /// Print a table or summary for people, or JSON or YAML for programs.
    #[arg(short, long, value_enum, value_name = "FORMAT", default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
    Yaml,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to print JSON")]
    Json(#[from] serde_json::Error),
    #[error("failed to print YAML")]
    Yaml(#[from] serde_saphyr::SerializeError),
}

/// `value` as JSON or YAML, ending with a newline. A table is the caller's to make.
pub fn serialize<T: Serialize>(format: Format, value: &T) -> Result<String, Error> {
    let mut text = match format {
        Format::Yaml => {
            // One line per value, as kubectl prints them, so that grep finds messages whole.
            let mut options = serde_saphyr::SerializerOptions::default();
            options.prefer_block_scalars = false;
            serde_saphyr::to_string_with_options(value, options)?
        }
        Format::Json | Format::Table => serde_json::to_string_pretty(value)?,
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// An object as it is printed: without `managedFields`, which only the API server reads.
pub fn printable<K: Resource + Clone>(object: &K) -> K {
    let mut object = object.clone();
    object.meta_mut().managed_fields = None;
    object
}

/// Columns aligned with at least three spaces between them, like kubectl's.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers
        .iter()
        .map(|header| header.chars().count())
        .collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let headers: Vec<String> = headers.iter().map(|header| (*header).to_owned()).collect();
    for row in std::iter::once(&headers).chain(rows) {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            if index + 1 == row.len() {
                line.push_str(cell);
            } else {
                let width = widths.get(index).copied().unwrap_or_default();
                let _ = write!(line, "{cell:<width$}   ");
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

fn or_dash(value: Option<impl ToString>) -> String {
    value
        .map(|value| value.to_string())
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| "-".to_owned())
}

/// The table of `jf list`: NAME, NAMESPACE, READY, STATUS, EXPIRES, URL, AGE.
pub fn environments_table(environments: &[Environment], now: Timestamp) -> String {
    let rows: Vec<Vec<String>> = environments
        .iter()
        .map(|environment| {
            let status = environment.status.clone().unwrap_or_default();
            let ready = conditions::find(&status.conditions, READY)
                .map(|condition| condition.status.clone());
            vec![
                environment.name_any(),
                or_dash(status.namespace),
                or_dash(ready),
                or_dash(status.phase),
                or_dash(
                    environment
                        .spec
                        .expires_at
                        .as_ref()
                        .map(|at| duration::expires(at.0, now)),
                ),
                or_dash(status.url),
                or_dash(
                    environment
                        .creation_timestamp()
                        .map(|at| duration::age(at.0, now)),
                ),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "NAMESPACE",
            "READY",
            "STATUS",
            "EXPIRES",
            "URL",
            "AGE",
        ],
        &rows,
    )
}

/// The summary of `jf status`.
pub fn describe(environment: &Environment, now: Timestamp) -> String {
    let name = environment.name_any();
    let spec = &environment.spec;
    let status = environment.status.clone().unwrap_or_default();
    let list = |names: &[String]| {
        if names.is_empty() {
            "-".to_owned()
        } else {
            names.join(", ")
        }
    };
    let expires = spec.expires_at.as_ref().map_or_else(
        || "never".to_owned(),
        |at| format!("{} ({})", at.0, duration::expires(at.0, now)),
    );
    let config = match spec.config.len() {
        0 => "no keys".to_owned(),
        1 => format!("1 key (`jf config get {name}`)"),
        keys => format!("{keys} keys (`jf config get {name}`)"),
    };
    let mut fields = vec![
        ("Name", name.clone()),
        ("Namespace", or_dash(status.namespace.as_ref())),
        ("URL", or_dash(status.url.as_ref())),
        ("Status", or_dash(status.phase)),
        ("Users", list(&spec.users)),
        ("Groups", list(&spec.groups)),
        (
            "Role",
            spec.role
                .clone()
                .unwrap_or_else(|| "admin (the default)".to_owned()),
        ),
        ("Expires", expires),
        ("Config", config),
    ];
    if spec.sleeping {
        fields.push(("Sleeping", format!("yes (`jf wake {name}` wakes it)")));
    }
    if let Some(created) = environment.creation_timestamp() {
        fields.push(("Age", duration::age(created.0, now)));
    }
    let width = fields
        .iter()
        .map(|(label, _)| label.len() + 3)
        .max()
        .unwrap_or_default();
    let mut text = String::new();
    for (label, value) in fields {
        let _ = writeln!(text, "{:<width$}{value}", format!("{label}:"));
    }
    text.push_str("Conditions:\n");
    if status.conditions.is_empty() {
        text.push_str("  none yet: the operator has not reported on it\n");
    } else {
        let rows: Vec<Vec<String>> = status
            .conditions
            .iter()
            .map(|condition| {
                vec![
                    condition.type_.clone(),
                    condition.status.clone(),
                    condition.reason.clone(),
                    condition.message.clone(),
                ]
            })
            .collect();
        for line in table(&["TYPE", "STATUS", "REASON", "MESSAGE"], &rows).lines() {
            let _ = writeln!(text, "  {line}");
        }
    }
    text
}

/// The table of `jf db list`: NAME, DATABASE, READY, REASON, SECRET, AGE.
pub fn databases_table(databases: &[PostgreSQL], now: Timestamp) -> String {
    let rows: Vec<Vec<String>> = databases
        .iter()
        .map(|database| {
            let status = database.status.clone().unwrap_or_default();
            let ready = conditions::find(&status.conditions, READY);
            vec![
                database.name_any(),
                or_dash(status.database),
                or_dash(ready.map(|condition| &condition.status)),
                or_dash(ready.map(|condition| &condition.reason)),
                or_dash(status.secret_name),
                or_dash(
                    database
                        .creation_timestamp()
                        .map(|at| duration::age(at.0, now)),
                ),
            ]
        })
        .collect();
    table(
        &["NAME", "DATABASE", "READY", "REASON", "SECRET", "AGE"],
        &rows,
    )
}

/// The `Databases:` section of `jf status`: each database, whether it is ready (and if not,
/// why) and where its credentials are.
pub fn databases_section(listing: &Listing) -> String {
    let databases = match listing {
        Listing::NotAllowed => return "Databases:\n  (not allowed to list)\n".to_owned(),
        Listing::Listed(databases) if databases.is_empty() => {
            return "Databases:\n  none\n".to_owned();
        }
        Listing::Listed(databases) => databases,
    };
    let mut with_message = false;
    let mut rows: Vec<Vec<String>> = databases
        .iter()
        .map(|database| {
            let status = database.status.clone().unwrap_or_default();
            let ready = conditions::find(&status.conditions, READY);
            let (ready, message) = match ready {
                None => ("-".to_owned(), String::new()),
                Some(condition) if condition.status == "True" => {
                    (condition.status.clone(), String::new())
                }
                Some(condition) => {
                    with_message = true;
                    (
                        format!("{} ({})", condition.status, condition.reason),
                        condition.message.clone(),
                    )
                }
            };
            vec![
                database.name_any(),
                ready,
                or_dash(status.database),
                or_dash(status.secret_name),
                message,
            ]
        })
        .collect();
    let mut headers = vec!["NAME", "READY", "DATABASE", "SECRET"];
    if with_message {
        headers.push("MESSAGE");
    } else {
        for row in &mut rows {
            row.pop();
        }
    }
    let mut text = "Databases:\n".to_owned();
    for line in table(&headers, &rows).lines() {
        let _ = writeln!(text, "  {line}");
    }
    text
}

/// The `Redis:` section of `jf status`: each Redis server, whether it is ready (and if not,
/// why), its version and the Secret with its password and URL.
pub fn redis_section(listing: &redis::Listing) -> String {
    let servers = match listing {
        redis::Listing::NotAllowed => return "Redis:\n  (not allowed to list)\n".to_owned(),
        redis::Listing::Listed(servers) if servers.is_empty() => {
            return "Redis:\n  none\n".to_owned();
        }
        redis::Listing::Listed(servers) => servers,
    };
    let mut with_message = false;
    let mut rows: Vec<Vec<String>> = servers
        .iter()
        .map(|server| {
            let status = server.status.clone().unwrap_or_default();
            let (ready, message) = match conditions::find(&status.conditions, READY) {
                None => ("-".to_owned(), String::new()),
                Some(condition) if condition.status == "True" => {
                    (condition.status.clone(), String::new())
                }
                Some(condition) => {
                    with_message = true;
                    (
                        format!("{} ({})", condition.status, condition.reason),
                        condition.message.clone(),
                    )
                }
            };
            vec![
                server.name_any(),
                ready,
                server.spec.version.clone(),
                redis::secret_name(server),
                message,
            ]
        })
        .collect();
    let mut headers = vec!["NAME", "READY", "VERSION", "SECRET"];
    if with_message {
        headers.push("MESSAGE");
    } else {
        for row in &mut rows {
            row.pop();
        }
    }
    let mut text = "Redis:\n".to_owned();
    for line in table(&headers, &rows).lines() {
        let _ = writeln!(text, "  {line}");
    }
    text
}

/// The `Apps:` section of `jf status`: each App with its Blueprint, readiness and URL, and
/// under it, as a tree, every object deployed with it (dependencies included) and its state.
pub fn apps_section(listing: &apps::Listing) -> String {
    let apps = match listing {
        apps::Listing::NotAllowed => return "Apps:\n  (not allowed to list)\n".to_owned(),
        apps::Listing::Listed(apps) if apps.is_empty() => {
            return "Apps:\n  none; deploy one with `jf deploy ENV BLUEPRINT`\n".to_owned();
        }
        apps::Listing::Listed(apps) => apps,
    };
    let mut text = "Apps:\n".to_owned();
    for app in apps {
        let status = app.status.clone().unwrap_or_default();
        let ready = match conditions::find(&status.conditions, READY) {
            None => "Pending".to_owned(),
            Some(condition) if condition.status == "True" => "Ready".to_owned(),
            Some(condition) => format!("Not ready ({})", condition.reason),
        };
        let mut heading = format!(
            "  {}   blueprint {}   {ready}",
            app.name_any(),
            app.spec.blueprint
        );
        if let Some(url) = &status.url {
            let _ = write!(heading, "   {url}");
        }
        let _ = writeln!(text, "{heading}");
        let width = status
            .objects
            .iter()
            .map(|object| object.kind.chars().count() + object.name.chars().count() + 1)
            .max()
            .unwrap_or_default();
        for (index, object) in status.objects.iter().enumerate() {
            let branch = if index + 1 == status.objects.len() {
                "└─"
            } else {
                "├─"
            };
            let state = if object.ready {
                "ready".to_owned()
            } else {
                match (&object.reason, &object.message) {
                    (Some(reason), Some(message)) => format!("{reason}: {message}"),
                    (Some(reason), None) => reason.clone(),
                    (None, _) => "not ready".to_owned(),
                }
            };
            let object_name = format!("{}/{}", object.kind, object.name);
            let _ = writeln!(text, "  {branch} {object_name:<width$}   {state}");
        }
    }
    text
}

/// The table of `jf blueprints`: NAME, READY, WORKLOADS, DEPENDENCIES, EXPOSES, AGE,
/// DESCRIPTION.
pub fn blueprints_table(blueprints: &[Blueprint], now: Timestamp) -> String {
    let rows: Vec<Vec<String>> = blueprints
        .iter()
        .map(|blueprint| {
            let workloads: Vec<&str> = ["apps/v1/Deployment", "apps/v1/StatefulSet"]
                .into_iter()
                .flat_map(|kind| blueprint.resources_of(kind))
                .collect();
            let mut dependencies = Vec::new();
            if let Some(postgresql) = &blueprint.spec.postgresql {
                dependencies.push(if postgresql.extensions.is_empty() {
                    "PostgreSQL".to_owned()
                } else {
                    format!("PostgreSQL ({})", postgresql.extensions.join(", "))
                });
            }
            if blueprint.spec.redis.is_some() {
                dependencies.push("Redis".to_owned());
            }
            let ready = blueprint
                .status
                .as_ref()
                .and_then(|status| conditions::find(&status.conditions, READY))
                .map_or_else(|| "-".to_owned(), |condition| condition.status.clone());
            vec![
                blueprint.name_any(),
                ready,
                or_dash(Some(workloads.join(","))),
                or_dash(Some(dependencies.join(", "))),
                or_dash(
                    blueprint
                        .spec
                        .expose
                        .as_ref()
                        .map(|expose| format!("{}:{}", expose.service, expose.port)),
                ),
                blueprint
                    .meta()
                    .creation_timestamp
                    .as_ref()
                    .map(|created| duration::age(created.0, now))
                    .unwrap_or_else(|| "-".to_owned()),
                or_dash(blueprint.spec.description.clone()),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "READY",
            "WORKLOADS",
            "DEPENDENCIES",
            "EXPOSES",
            "AGE",
            "DESCRIPTION",
        ],
        &rows,
    )
}

/// The configuration as `KEY=VALUE` lines, sorted by key.
pub fn config_lines(config: &BTreeMap<String, String>) -> String {
    config
        .iter()
        .map(|(key, value)| format!("{key}={value}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use jf_api::conditions::condition;
    use jf_api::{
        EnvironmentPhase, EnvironmentSpec, EnvironmentStatus, PostgreSQLSpec, PostgreSQLStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};
    use k8s_openapi::jiff::SignedDuration;
    use serde_json::json;

    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).expect("a valid time")
    }

    fn ready(name: &str) -> Environment {
        let mut environment = Environment::new(
            name,
            EnvironmentSpec {
                users: vec!["alice".to_owned(), "bob".to_owned()],
                config: BTreeMap::from([
                    ("A".to_owned(), "1".to_owned()),
                    ("B".to_owned(), "2".to_owned()),
                ]),
                expires_at: Some(Time(now() + SignedDuration::from_hours(72))),
                ..EnvironmentSpec::default()
            },
        );
        environment.metadata.creation_timestamp = Some(Time(now() - SignedDuration::from_mins(5)));
        environment.metadata.generation = Some(1);
        environment.status = Some(EnvironmentStatus {
            phase: Some(EnvironmentPhase::Ready),
            namespace: Some(format!("jf-{name}")),
            url: Some(format!("https://{name}.dev.example.com")),
            conditions: vec![condition(
                READY,
                true,
                "Ready",
                format!("namespace jf-{name} is ready"),
                Some(1),
            )],
            observed_generation: Some(1),
            ..EnvironmentStatus::default()
        });
        environment
    }

    #[test]
    fn aligns_tables() {
        let rows = vec![
            vec!["a".to_owned(), "long value".to_owned(), "x".to_owned()],
            vec!["bbbb".to_owned(), "v".to_owned(), String::new()],
        ];
        assert_eq!(
            table(&["NAME", "VALUE", "LAST"], &rows),
            "NAME   VALUE        LAST\n\
             a      long value   x\n\
             bbbb   v\n"
        );
    }

    #[test]
    fn lists_environments() {
        let pending = Environment::new("new-one", EnvironmentSpec::default());
        assert_eq!(
            environments_table(&[ready("fix-bug"), pending], now()),
            "NAME      NAMESPACE    READY   STATUS   EXPIRES   URL                               AGE\n\
             fix-bug   jf-fix-bug   True    Ready    in 72h    https://fix-bug.dev.example.com   5m\n\
             new-one   -            -       -        -         -                                 -\n"
        );
    }

    #[test]
    fn describes_an_environment() {
        let text = describe(&ready("fix-bug"), now());
        assert_eq!(
            text,
            "Name:       fix-bug\n\
             Namespace:  jf-fix-bug\n\
             URL:        https://fix-bug.dev.example.com\n\
             Status:     Ready\n\
             Users:      alice, bob\n\
             Groups:     -\n\
             Role:       admin (the default)\n\
             Expires:    2027-01-18T08:00:00Z (in 72h)\n\
             Config:     2 keys (`jf config get fix-bug`)\n\
             Age:        5m\n\
             Conditions:\n  \
               TYPE    STATUS   REASON   MESSAGE\n  \
               Ready   True     Ready    namespace jf-fix-bug is ready\n"
        );
    }

    #[test]
    fn serializes_without_managed_fields() {
        let mut environment = ready("fix-bug");
        environment.metadata.managed_fields = Some(vec![ManagedFieldsEntry::default()]);
        let text = serialize(Format::Json, &printable(&environment)).expect("serializes");
        let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(value["metadata"]["managedFields"], serde_json::Value::Null);
        assert_eq!(value["spec"]["users"], json!(["alice", "bob"]));

        let yaml = serialize(Format::Yaml, &printable(&environment)).expect("serializes");
        assert!(yaml.contains("kind: Environment\n"), "{yaml}");
        assert!(
            yaml.contains("message: namespace jf-fix-bug is ready\n"),
            "{yaml}"
        );
        assert!(yaml.ends_with('\n'));
    }

    fn database(name: &str, ready: Option<(bool, &str, &str)>) -> PostgreSQL {
        let mut database = PostgreSQL::new(name, PostgreSQLSpec::default());
        database.metadata.creation_timestamp = Some(Time(now() - SignedDuration::from_secs(90)));
        database.status = Some(PostgreSQLStatus {
            database: Some(format!("jf_jf_fix_bug_{name}_0123456789")),
            secret_name: Some(format!("{name}-postgresql")),
            conditions: ready
                .map(|(ready, reason, message)| condition(READY, ready, reason, message, Some(1)))
                .into_iter()
                .collect(),
            ..PostgreSQLStatus::default()
        });
        database
    }

    #[test]
    fn lists_databases() {
        let databases = [
            database("api", Some((true, "Ready", "database is ready"))),
            database("geo", Some((false, "ExtensionNotAllowed", "no postgis"))),
            PostgreSQL::new("new", PostgreSQLSpec::default()),
        ];
        assert_eq!(
            databases_table(&databases, now()),
            "NAME   DATABASE                       READY   REASON                SECRET           AGE\n\
             api    jf_jf_fix_bug_api_0123456789   True    Ready                 api-postgresql   90s\n\
             geo    jf_jf_fix_bug_geo_0123456789   False   ExtensionNotAllowed   geo-postgresql   90s\n\
             new    -                              -       -                     -                -\n"
        );
    }

    #[test]
    fn the_status_section_says_why_a_database_is_not_ready() {
        let ready = database("api", Some((true, "Ready", "database is ready")));
        assert_eq!(
            databases_section(&Listing::Listed(vec![ready.clone()])),
            "Databases:\n  \
               NAME   READY   DATABASE                       SECRET\n  \
               api    True    jf_jf_fix_bug_api_0123456789   api-postgresql\n"
        );
        let refused = database(
            "geo",
            Some((
                false,
                "ExtensionNotAllowed",
                "the extension \"postgis\" is not allowed",
            )),
        );
        assert_eq!(
            databases_section(&Listing::Listed(vec![
                ready,
                refused,
                database("new", None)
            ])),
            "Databases:\n  \
               NAME   READY                         DATABASE                       SECRET           MESSAGE\n  \
               api    True                          jf_jf_fix_bug_api_0123456789   api-postgresql\n  \
               geo    False (ExtensionNotAllowed)   jf_jf_fix_bug_geo_0123456789   geo-postgresql   the extension \"postgis\" is not allowed\n  \
               new    -                             jf_jf_fix_bug_new_0123456789   new-postgresql\n"
        );
        assert_eq!(
            databases_section(&Listing::Listed(Vec::new())),
            "Databases:\n  none\n"
        );
        assert_eq!(
            databases_section(&Listing::NotAllowed),
            "Databases:\n  (not allowed to list)\n"
        );
    }

    fn server(name: &str, ready: Option<(bool, &str, &str)>) -> jf_api::Redis {
        let mut server = jf_api::Redis::new(name, jf_api::RedisSpec::default());
        server.status = Some(jf_api::RedisStatus {
            secret_name: Some(format!("{name}-redis")),
            conditions: ready
                .map(|(ready, reason, message)| condition(READY, ready, reason, message, Some(1)))
                .into_iter()
                .collect(),
            ..jf_api::RedisStatus::default()
        });
        server
    }

    #[test]
    fn the_status_section_says_why_a_redis_is_not_ready() {
        let ready = server("cache", Some((true, "Ready", "Redis is ready")));
        assert_eq!(
            redis_section(&redis::Listing::Listed(vec![ready.clone()])),
            "Redis:\n  \
               NAME    READY   VERSION   SECRET\n  \
               cache   True    7.2       cache-redis\n"
        );
        let pulling = server(
            "queue",
            Some((
                false,
                "ImagePullBackOff",
                "pod queue-redis-0 is waiting (ImagePullBackOff)",
            )),
        );
        assert_eq!(
            redis_section(&redis::Listing::Listed(vec![
                ready,
                pulling,
                jf_api::Redis::new("new", jf_api::RedisSpec::default())
            ])),
            "Redis:\n  \
               NAME    READY                      VERSION   SECRET        MESSAGE\n  \
               cache   True                       7.2       cache-redis\n  \
               queue   False (ImagePullBackOff)   7.2       queue-redis   pod queue-redis-0 is waiting (ImagePullBackOff)\n  \
               new     -                          7.2       new-redis\n"
        );
        assert_eq!(
            redis_section(&redis::Listing::Listed(Vec::new())),
            "Redis:\n  none\n"
        );
        assert_eq!(
            redis_section(&redis::Listing::NotAllowed),
            "Redis:\n  (not allowed to list)\n"
        );
    }

    #[test]
    fn prints_config_sorted() {
        let config = BTreeMap::from([
            ("b".to_owned(), "2".to_owned()),
            ("a".to_owned(), "x=1".to_owned()),
        ]);
        assert_eq!(config_lines(&config), "a=x=1\nb=2\n");
    }
}
