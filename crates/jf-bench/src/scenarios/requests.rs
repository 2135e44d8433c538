//! API requests and SQL statements per reconciliation, counted on a quiet cluster: for a new
//! Environment (its first reconciliation and those its own writes cause), for a reconciliation
//! with nothing to change (forced by an annotation), and the same for a PostgreSQL resource.
//!
//! Two sources, side by side: the kube-apiserver's own `apiserver_request_total` (every
//! client: the controller manager's reactions to a new namespace and the nodes' leases show
//! too; the benchmark's own requests are taken out), and the operator's client, which logs
//! each request inside the span of the reconciliation that made it (`kube_client=debug`), so
//! requests are attributed to the operator and to one reconciliation. SQL statements come
//! from the operator's statement histogram and from PostgreSQL's log (`log_statement=all`).

use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::Path;

use anyhow::{Context as _, ensure};
use jf_api::{Environment, PostgreSQL, PostgreSQLSpec};
use kube::ResourceExt as _;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::{BATCH_LABEL, Bench, environment};
use crate::metrics::{self, Samples, difference};
use crate::progress;
use crate::report::{ReconcileRequests, RequestWindow, SqlWindow};
use crate::tracker::{Tracker, Until};

/// The annotation whose change forces a reconciliation with nothing to do.
const TOUCH_ANNOTATION: &str = "bench.jango-fett.dev/touched";

pub async fn run(bench: &mut Bench<'_>) -> anyhow::Result<()> {
    progress::step("API requests and SQL statements per reconciliation, on a quiet cluster");
    bench.settle().await?;
    let client = bench.stack.client.clone();
    let batch = bench.batch("requests");
    let name = format!("{batch}-00001");
    let environments: Api<Environment> = Api::all(client.clone());
    let tracker = Tracker::start(environments.clone(), &format!("{BATCH_LABEL}={batch}")).await?;
    let only_environment = [("environment", name.as_str())];

    let before = Snapshot::take(bench).await?;
    environments
        .create(&PostParams::default(), &environment(&name, &batch))
        .await
        .context("failed to create the Environment")?;
    let ready = tracker
        .wait(
            std::slice::from_ref(&name),
            Until::Ready,
            bench.batch_timeout(),
            "Environment Ready",
        )
        .await;
    ensure!(
        !ready.is_empty(),
        "the Environment {name} did not become Ready"
    );
    bench.settle().await?;
    let after = Snapshot::take(bench).await?;
    let counted = window(
        ("first Environment reconcile", "env first"),
        &before,
        &after,
        &only_environment,
    )?;
    report(bench, counted, &["CREATE environments"]);

    let before = Snapshot::take(bench).await?;
    touch(&environments, &name).await?;
    wait_for_reconcile(bench, &before, "Environment").await?;
    let after = Snapshot::take(bench).await?;
    let counted = window(
        ("no-op Environment reconcile", "env no-op"),
        &before,
        &after,
        &only_environment,
    )?;
    report(bench, counted, &["PATCH environments"]);

    let namespace = tracker
        .seen(&name)
        .object
        .and_then(|environment| environment.status.clone()?.namespace)
        .context("the Environment does not report its namespace")?;
    databases(bench, &batch, &namespace).await
}

/// A PostgreSQL resource's first reconciliation (and those it causes), then one with nothing
/// to do: API requests and SQL statements.
async fn databases(bench: &mut Bench<'_>, batch: &str, namespace: &str) -> anyhow::Result<()> {
    let databases: Api<PostgreSQL> = Api::namespaced(bench.stack.client.clone(), namespace);
    let tracker = Tracker::start(databases.clone(), &format!("{BATCH_LABEL}={batch}")).await?;
    let name = "db";
    let key = format!("{namespace}/{name}");
    let only_database = [("namespace", namespace), ("postgresql", name)];
    let mut resource = PostgreSQL::new(
        name,
        PostgreSQLSpec {
            extensions: vec!["uuid".to_owned()],
            ..PostgreSQLSpec::default()
        },
    );
    resource
        .labels_mut()
        .insert(BATCH_LABEL.to_owned(), batch.to_owned());

    let before = Snapshot::take(bench).await?;
    databases
        .create(&PostParams::default(), &resource)
        .await
        .context("failed to create the PostgreSQL resource")?;
    let ready = tracker
        .wait(
            std::slice::from_ref(&key),
            Until::Ready,
            bench.batch_timeout(),
            "PostgreSQL Ready",
        )
        .await;
    ensure!(
        !ready.is_empty(),
        "the PostgreSQL resource {key} did not become Ready"
    );
    bench.settle().await?;
    let after = Snapshot::take(bench).await?;
    let request_window = window(
        ("first PostgreSQL reconcile", "pg first"),
        &before,
        &after,
        &only_database,
    )?;
    report(bench, request_window, &["CREATE postgresqls"]);
    bench
        .report
        .sql
        .push(sql_window("PostgreSQL create", &before, &after, bench)?);

    let before = Snapshot::take(bench).await?;
    touch(&databases, name).await?;
    wait_for_reconcile(bench, &before, "PostgreSQL").await?;
    let after = Snapshot::take(bench).await?;
    let request_window = window(
        ("no-op PostgreSQL reconcile", "pg no-op"),
        &before,
        &after,
        &only_database,
    )?;
    report(bench, request_window, &["PATCH postgresqls"]);
    bench.report.sql.push(sql_window(
        "no-op PostgreSQL reconcile",
        &before,
        &after,
        bench,
    )?);
    Ok(())
}

/// Changes an annotation: the operator reconciles, and has nothing to write.
async fn touch<K>(api: &Api<K>, name: &str) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let stamp = k8s_openapi::jiff::Timestamp::now().to_string();
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {TOUCH_ANNOTATION: stamp}}})),
    )
    .await
    .with_context(|| format!("failed to annotate {name}"))?;
    Ok(())
}

/// Waits for the reconciliation the last change caused, then until the operator is idle.
async fn wait_for_reconcile(
    bench: &Bench<'_>,
    before: &Snapshot,
    kind: &str,
) -> anyhow::Result<()> {
    let done = before
        .operator
        .sum("jango_fett_reconciles_total", &[("kind", kind)]);
    bench
        .operator()?
        .wait_for_reconciles(kind, done + 1.0, bench.batch_timeout())
        .await?;
    bench.settle().await
}

/// Adds a window to the report, with the benchmark's own requests taken out of the API
/// server's counts.
fn report(bench: &mut Bench<'_>, mut window: RequestWindow, own: &[&str]) {
    for key in own {
        if let Some(count) = window.apiserver.get_mut(*key) {
            *count -= 1.0;
            window.benchmark.insert((*key).to_owned(), 1.0);
            if *count <= 0.0 {
                window.apiserver.remove(*key);
            }
        }
    }
    progress::info(&format!(
        "{}: the API server counted {:.0} writes and {:.0} reads; the operator made {} writes and {} reads in {} reconciliation(s)",
        window.name,
        crate::report::count(&window.apiserver, true) + 0.0,
        crate::report::count(&window.apiserver, false) + 0.0,
        crate::report::count(&window.operator, true),
        crate::report::count(&window.operator, false),
        window.reconciles.len()
    ));
    bench.report.requests.push(window);
}

/// What the counters and logs say at one moment.
pub struct Snapshot {
    at: std::time::Instant,
    apiserver: BTreeMap<Vec<String>, f64>,
    operator: Samples,
    operator_log: std::path::PathBuf,
    operator_log_offset: u64,
    postgres_log: std::path::PathBuf,
    postgres_log_offset: u64,
}

impl Snapshot {
    pub async fn take(bench: &Bench<'_>) -> anyhow::Result<Self> {
        let operator = bench.operator()?;
        let apiserver = metrics::apiserver(&bench.stack.client).await?.by(
            "apiserver_request_total",
            &["verb", "resource", "subresource"],
        );
        let postgres_log = bench.stack.cluster.postgres_log();
        Ok(Self {
            at: std::time::Instant::now(),
            apiserver,
            operator: operator.metrics().await?,
            operator_log_offset: length(&operator.log)?,
            operator_log: operator.log.clone(),
            postgres_log_offset: length(&postgres_log)?,
            postgres_log,
        })
    }
}

fn length(path: &Path) -> anyhow::Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("failed to read {}", path.display()))?
        .len())
}

/// The text of `path` between two offsets.
fn between(path: &Path, from: u64, to: u64) -> anyhow::Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    file.seek(SeekFrom::Start(from))?;
    let mut text = String::new();
    file.take(to.saturating_sub(from))
        .read_to_string(&mut text)
        .with_context(|| format!("failed to read {}", path.display()))?;
    Ok(text)
}

/// The API requests between two snapshots; the operator's are those of reconciliations whose
/// span has every field of `object`.
fn window(
    (name, short): (&str, &str),
    before: &Snapshot,
    after: &Snapshot,
    object: &[(&str, &str)],
) -> anyhow::Result<RequestWindow> {
    let apiserver = difference(&before.apiserver, &after.apiserver)
        .into_iter()
        .filter_map(|(labels, count)| Some((request_key(&labels)?, count)))
        .collect();
    let log = between(
        &after.operator_log,
        before.operator_log_offset,
        after.operator_log_offset,
    )?;
    let (operator, reconciles) = operator_requests(&log, object);
    let writes = |samples: &Samples| samples.sum("jango_fett_api_writes_total", &[]);
    Ok(RequestWindow {
        name: name.to_owned(),
        short: short.to_owned(),
        apiserver,
        benchmark: BTreeMap::new(),
        operator,
        reconciles,
        operator_writes_metric: writes(&after.operator) - writes(&before.operator),
    })
}

/// `VERB resource[/subresource]` of the API server's labels; none for non-resource requests
/// (`/metrics`, `/readyz`).
fn request_key(labels: &[String]) -> Option<String> {
    let [verb, resource, subresource] = labels else {
        return None;
    };
    if resource.is_empty() {
        return None;
    }
    // The API server labels creates and updates by their HTTP method.
    let verb = match verb.as_str() {
        "POST" => "CREATE",
        "PUT" => "UPDATE",
        verb => verb,
    };
    Some(if subresource.is_empty() {
        format!("{verb} {resource}")
    } else {
        format!("{verb} {resource}/{subresource}")
    })
}

/// The operator's requests in its log (every one, by `VERB resource`) and those made by each
/// reconciliation of the object, in order.
fn operator_requests(
    log: &str,
    object: &[(&str, &str)],
) -> (BTreeMap<String, u64>, Vec<ReconcileRequests>) {
    let mut all = BTreeMap::new();
    let mut reconciles = Vec::new();
    let mut current: Option<ReconcileRequests> = None;
    for line in log.lines() {
        let Ok(line) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let ours = in_reconcile_of(&line, object);
        match line.get("message").and_then(Value::as_str) {
            Some("requesting") => {
                let Some(key) = line.get("span").and_then(|span| {
                    classify(
                        span.get("http.method")?.as_str()?,
                        span.get("http.url")?.as_str()?,
                    )
                }) else {
                    continue;
                };
                *all.entry(key.clone()).or_insert(0) += 1;
                if ours {
                    *current
                        .get_or_insert_with(ReconcileRequests::default)
                        .requests
                        .entry(key)
                        .or_insert(0) += 1;
                }
            }
            Some("reconciled") if ours => {
                let mut finished = current.take().unwrap_or_default();
                finished.writes_logged = line.get("writes").and_then(Value::as_u64);
                reconciles.push(finished);
            }
            _ => {}
        }
    }
    reconciles.extend(current);
    (all, reconciles)
}

/// Whether a log line was written inside the `reconcile` span of the object.
fn in_reconcile_of(line: &Value, object: &[(&str, &str)]) -> bool {
    line.get("spans")
        .and_then(Value::as_array)
        .is_some_and(|spans| {
            spans.iter().any(|span| {
                span.get("name").and_then(Value::as_str) == Some("reconcile")
                    && object
                        .iter()
                        .all(|(key, value)| span.get(*key).and_then(Value::as_str) == Some(*value))
            })
        })
}

/// `VERB resource[/subresource]` of a request, with the verbs the API server counts by. A
/// PATCH with `force=true` is a server-side apply (APPLY): the operator forces every apply,
/// and sends its other patches (finalizers) without it.
fn classify(method: &str, url: &str) -> Option<String> {
    let path_and_query = match url.split_once("://") {
        Some((_, rest)) => &rest[rest.find('/').unwrap_or(rest.len())..],
        None => url,
    };
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segments.as_slice() {
        ["api", _version, rest @ ..] | ["apis", _, _version, rest @ ..] => rest,
        _ => return None,
    };
    let (resource, name, subresource) = match rest {
        ["namespaces", _, resource, tail @ ..] => (*resource, tail.first(), tail.get(1)),
        [resource, tail @ ..] => (*resource, tail.first(), tail.get(1)),
        [] => return None,
    };
    let parameter = |key: &str| {
        query
            .split('&')
            .any(|pair| pair == format!("{key}=true") || pair == format!("{key}=1"))
    };
    let verb = match (method, name.is_some()) {
        ("GET", _) if parameter("watch") => "WATCH",
        ("GET", true) => "GET",
        ("GET", false) => "LIST",
        ("POST", _) => "CREATE",
        ("PUT", _) => "UPDATE",
        ("PATCH", _) if parameter("force") => "APPLY",
        ("PATCH", _) => "PATCH",
        ("DELETE", true) => "DELETE",
        ("DELETE", false) => "DELETECOLLECTION",
        _ => return None,
    };
    Some(match subresource {
        Some(subresource) => format!("{verb} {resource}/{subresource}"),
        None => format!("{verb} {resource}"),
    })
}

/// SQL statements between two snapshots: the operator's histogram, and the superuser's
/// statements in PostgreSQL's log (the operator is the only client connected as it then).
pub fn sql_window(
    name: &str,
    before: &Snapshot,
    after: &Snapshot,
    bench: &Bench<'_>,
) -> anyhow::Result<SqlWindow> {
    let change = |metric: &str| -> BTreeMap<String, f64> {
        difference(
            &before.operator.by(metric, &["kind"]),
            &after.operator.by(metric, &["kind"]),
        )
        .into_iter()
        .map(|(kind, value)| (kind.join(","), value))
        .collect()
    };
    let log = between(
        &after.postgres_log,
        before.postgres_log_offset,
        after.postgres_log_offset,
    )?;
    let superuser = bench
        .stack
        .cluster
        .postgres_admin_url()
        .parse::<tokio_postgres::Config>()
        .ok()
        .and_then(|config| config.get_user().map(str::to_owned))
        .unwrap_or_else(|| "postgres".to_owned());
    Ok(SqlWindow {
        name: name.to_owned(),
        operator_metric: change("jango_fett_sql_statement_duration_seconds_count"),
        operator_seconds: change("jango_fett_sql_statement_duration_seconds_sum"),
        window_seconds: after.at.duration_since(before.at).as_secs_f64(),
        server_log: logged_statements(&log, &superuser),
    })
}

/// The statements of `user` in PostgreSQL's log (prefix `%m [%p] %q%u@%d `), by their first
/// words: `CREATE ROLE`, `SELECT`…
fn logged_statements(log: &str, user: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    let by = format!("] {user}@");
    // The benchmark's own count of connections is not the operator's.
    for line in log
        .lines()
        .filter(|line| line.contains(&by) && !line.contains("pg_stat_activity"))
    {
        let statement = if let Some((_, statement)) = line.split_once(" LOG:  statement: ") {
            statement
        } else if let Some((_, execute)) = line.split_once(" LOG:  execute ") {
            execute
                .split_once(": ")
                .map_or(execute, |(_, statement)| statement)
        } else {
            continue;
        };
        *counts.entry(statement_kind(statement)).or_insert(0) += 1;
    }
    counts
}

/// The first word of a statement, and the second too for DDL (`CREATE DATABASE`).
fn statement_kind(statement: &str) -> String {
    let mut words = statement.split_whitespace().map(str::to_uppercase);
    let first = words.next().unwrap_or_default();
    match (first.as_str(), words.next()) {
        ("CREATE" | "ALTER" | "DROP" | "COMMENT" | "GRANT" | "REVOKE", Some(second)) => {
            format!("{first} {}", second.trim_end_matches(';'))
        }
        _ => first.trim_end_matches(';').to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_requests_as_the_api_server_counts_them() {
        let base = "https://127.0.0.1:6443";
        let cases = [
            ("GET", "/api/v1/namespaces/jf-a", "GET namespaces"),
            (
                "GET",
                "/api/v1/namespaces?labelSelector=x",
                "LIST namespaces",
            ),
            (
                "GET",
                "/api/v1/configmaps?watch=true&resourceVersion=1",
                "WATCH configmaps",
            ),
            (
                "PATCH",
                "/apis/rbac.authorization.k8s.io/v1/namespaces/jf-a/rolebindings/jf-users?&fieldManager=m&force=true",
                "APPLY rolebindings",
            ),
            (
                "PATCH",
                "/apis/jango-fett.dev/v1alpha1/environments/a/status?&force=true&fieldManager=m",
                "APPLY environments/status",
            ),
            (
                "PATCH",
                "/apis/jango-fett.dev/v1alpha1/environments/a?&fieldManager=m",
                "PATCH environments",
            ),
            (
                "POST",
                "/apis/events.k8s.io/v1/namespaces/default/events",
                "CREATE events",
            ),
            ("DELETE", "/api/v1/namespaces/jf-a", "DELETE namespaces"),
            (
                "PUT",
                "/apis/coordination.k8s.io/v1/namespaces/s/leases/l",
                "UPDATE leases",
            ),
        ];
        for (method, path, expected) in cases {
            assert_eq!(
                classify(method, &format!("{base}{path}")).as_deref(),
                Some(expected),
                "{method} {path}"
            );
        }
        assert_eq!(classify("GET", "/version"), None);
    }

    #[test]
    fn attributes_requests_to_reconciliations() {
        let log = [
            json!({"message": "reconciling", "spans": [{"name": "reconcile", "environment": "a"}]}),
            json!({"message": "requesting", "span": {"http.method": "PATCH", "http.url": "/api/v1/namespaces/jf-a?force=true"}, "spans": [{"name": "reconcile", "environment": "a"}, {"name": "HTTP"}]}),
            json!({"message": "requesting", "span": {"http.method": "PATCH", "http.url": "/api/v1/namespaces/jf-b?force=true"}, "spans": [{"name": "reconcile", "environment": "b"}, {"name": "HTTP"}]}),
            json!({"message": "requesting", "span": {"http.method": "GET", "http.url": "/api/v1/namespaces/jf-a"}, "spans": [{"name": "reconcile", "environment": "a"}, {"name": "HTTP"}]}),
            json!({"message": "reconciled", "writes": 1, "spans": [{"name": "reconcile", "environment": "a"}]}),
            json!({"message": "requesting", "span": {"http.method": "PUT", "http.url": "/apis/coordination.k8s.io/v1/namespaces/s/leases/l"}, "spans": [{"name": "HTTP"}]}),
            json!({"message": "reconciled", "writes": 0, "spans": [{"name": "reconcile", "environment": "a"}]}),
        ]
        .map(|line| line.to_string())
        .join("\n");
        let (all, reconciles) = operator_requests(&log, &[("environment", "a")]);
        assert_eq!(all.values().sum::<u64>(), 4);
        assert_eq!(reconciles.len(), 2);
        assert_eq!(reconciles[0].writes(), 1);
        assert_eq!(reconciles[0].reads(), 1);
        assert_eq!(reconciles[0].writes_logged, Some(1));
        assert_eq!(reconciles[1].requests.len(), 0);
    }

    #[test]
    fn counts_the_superusers_statements_by_kind() {
        let log = "\
2026-01-01 00:00:00.000 UTC [1] postgres@postgres LOG:  statement: SELECT 1
2026-01-01 00:00:00.000 UTC [1] postgres@postgres LOG:  execute s0: SELECT datname FROM pg_database
2026-01-01 00:00:00.000 UTC [1] postgres@postgres LOG:  statement: CREATE ROLE \"x\" LOGIN
2026-01-01 00:00:00.000 UTC [1] postgres@postgres DETAIL:  parameters: $1 = 'x'
2026-01-01 00:00:00.000 UTC [2] app@db LOG:  statement: SELECT 1
";
        let counts = logged_statements(log, "postgres");
        assert_eq!(counts.get("SELECT"), Some(&2));
        assert_eq!(counts.get("CREATE ROLE"), Some(&1));
        assert_eq!(counts.values().sum::<u64>(), 3);
    }
}
