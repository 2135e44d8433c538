//! Every figure of a run, as `report.json` and as the tables printed at the end, with each
//! figure checked against the performance targets.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::stats::{self, Summary};

/// A whole run.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub date: String,
    pub git: Option<Git>,
    pub machine: Machine,
    pub versions: BTreeMap<String, String>,
    pub settings: serde_json::Value,
    /// Latencies of the operator's work and of `jf deploy`.
    pub latencies: Vec<Latency>,
    /// The same writes made by a bare client, no operator involved, per batch size.
    pub floor: Vec<Latency>,
    pub requests: Vec<RequestWindow>,
    pub sql: Vec<SqlWindow>,
    pub memory: Vec<MemoryFigure>,
    pub postgres_connections: Option<ConnectionsFigure>,
    pub scale: Option<ScaleFigure>,
    pub relists: Vec<RelistFigure>,
    pub deploys: Vec<DeployRun>,
    pub targets: Vec<TargetCheck>,
    /// Performance targets this benchmark does not measure, and why.
    pub not_measured: Vec<String>,
    /// What else a reader should know about the figures.
    pub notes: Vec<String>,
    pub phases: Vec<Phase>,
    pub cluster_start_seconds: f64,
    pub build_seconds: Option<f64>,
    pub run_seconds: f64,
    pub errors: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Git {
    pub commit: String,
    /// Whether the work tree had changes not committed.
    pub dirty: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_bytes: u64,
    pub kernel: String,
}

#[derive(Debug, Serialize)]
pub struct Phase {
    pub name: String,
    pub seconds: f64,
}

/// A performance target for a latency row.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub text: String,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Every object must get there within the batch's time limit.
    pub all: bool,
}

impl Target {
    pub fn percentiles(text: &str, p50_ms: f64, p99_ms: f64) -> Self {
        Self {
            text: text.to_owned(),
            p50_ms: Some(p50_ms),
            p99_ms: Some(p99_ms),
            max_ms: None,
            all: false,
        }
    }

    fn met(&self, latency: &Latency) -> Option<bool> {
        let summary = latency.summary.as_ref()?;
        let under = |limit: Option<f64>, value: f64| limit.is_none_or(|limit| value < limit);
        Some(
            (!self.all || latency.missing == 0)
                && under(self.p50_ms, summary.p50_ms)
                && under(self.p99_ms, summary.p99_ms)
                && under(self.max_ms, summary.max_ms),
        )
    }
}

/// The latencies of one scenario at one batch size.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub scenario: String,
    /// How many were started at once.
    pub batch: usize,
    /// How many batches ran one after another.
    pub rounds: usize,
    pub summary: Option<Summary>,
    /// How many did not get there within the time limit (not in the percentiles).
    pub missing: usize,
    pub floor_p50_ms: Option<f64>,
    pub ratio_to_floor: Option<f64>,
    pub target: Option<Target>,
    pub met: Option<bool>,
    /// Of the floor: the longest a whole batch took, from its first write to its last (with
    /// `--concurrency` environments in flight). No operator can make every environment of a
    /// batch Ready sooner, as it makes the same writes and more.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all_done_ms: Option<f64>,
    /// Every sample, sorted, in milliseconds.
    pub samples_ms: Vec<f64>,
}

impl Latency {
    pub fn new(
        scenario: &str,
        batch: usize,
        rounds: usize,
        samples: &[Duration],
        missing: usize,
    ) -> Self {
        let mut samples_ms: Vec<f64> = samples
            .iter()
            .map(|sample| stats::millis(*sample))
            .collect();
        samples_ms.sort_by(f64::total_cmp);
        Self {
            scenario: scenario.to_owned(),
            batch,
            rounds,
            summary: stats::summarize(samples),
            missing,
            floor_p50_ms: None,
            ratio_to_floor: None,
            target: None,
            met: None,
            all_done_ms: None,
            samples_ms,
        }
    }

    pub fn with_all_done(mut self, all_done: Duration) -> Self {
        self.all_done_ms = Some(stats::millis(all_done));
        self
    }

    pub fn with_target(mut self, target: Option<Target>) -> Self {
        self.met = target.as_ref().and_then(|target| target.met(&self));
        self.target = target;
        self
    }

    /// How many samples of how many batches: `1 ×5`, `100`.
    pub fn size(&self) -> String {
        if self.rounds > 1 {
            format!("{} ×{}", self.batch, self.rounds)
        } else {
            self.batch.to_string()
        }
    }
}

/// API requests in one window, by `VERB resource`.
#[derive(Debug, Default, Serialize)]
pub struct RequestWindow {
    pub name: String,
    /// The name in the table's header.
    pub short: String,
    /// From the kube-apiserver's `apiserver_request_total`: every client, the benchmark's own
    /// requests taken out.
    pub apiserver: BTreeMap<String, f64>,
    /// The benchmark's own requests in the window, taken out of `apiserver`.
    pub benchmark: BTreeMap<String, f64>,
    /// The operator's requests in the window, from its client's log.
    pub operator: BTreeMap<String, u64>,
    /// The operator's requests per reconciliation of the object, in order.
    pub reconciles: Vec<ReconcileRequests>,
    /// `jango_fett_api_writes_total`'s change (the operator's own count, Events excluded).
    pub operator_writes_metric: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct ReconcileRequests {
    /// The writes the operator logged for this reconciliation (Events excluded).
    pub writes_logged: Option<u64>,
    pub requests: BTreeMap<String, u64>,
}

impl ReconcileRequests {
    pub fn writes(&self) -> u64 {
        count(&self.requests, true)
    }

    pub fn reads(&self) -> u64 {
        count(&self.requests, false)
    }
}

/// Requests that write (`true`) or read (`false`), of requests keyed `VERB resource`.
pub fn count<N: Copy + std::iter::Sum<N>>(requests: &BTreeMap<String, N>, writes: bool) -> N {
    requests
        .iter()
        .filter(|(key, _)| is_write(key) == writes)
        .map(|(_, count)| *count)
        .sum()
}

/// Whether a `VERB resource` key is a write.
pub fn is_write(key: &str) -> bool {
    let verb = key.split_whitespace().next().unwrap_or_default();
    matches!(
        verb,
        "CREATE" | "UPDATE" | "PATCH" | "APPLY" | "DELETE" | "DELETECOLLECTION"
    )
}

/// SQL statements in one window.
#[derive(Debug, Default, Serialize)]
pub struct SqlWindow {
    pub name: String,
    /// `jango_fett_sql_statement_duration_seconds_count`'s change, by kind of statement.
    pub operator_metric: BTreeMap<String, f64>,
    /// The time those statements took, in seconds (`…_sum`'s change), by kind.
    pub operator_seconds: BTreeMap<String, f64>,
    /// How long the window lasted, in seconds.
    pub window_seconds: f64,
    /// Statements of the superuser (the operator) in PostgreSQL's log
    /// (`log_statement=all`), by their first words.
    pub server_log: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
pub struct MemoryFigure {
    pub name: String,
    pub environments: usize,
    pub rss_mb: f64,
    pub peak_mb: f64,
    pub target_mb: Option<f64>,
    pub met: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct ConnectionsFigure {
    /// The most connections the operator held at once, sampled from `pg_stat_activity`.
    pub max: i64,
    /// The connections by database when there were the most.
    pub max_by_database: BTreeMap<String, i64>,
    pub samples: usize,
    pub interval_ms: u64,
    pub target: i64,
    pub met: bool,
}

impl ConnectionsFigure {
    /// Where the connections went: the admin database, and the resources' own databases.
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        let mut others = (0, 0);
        for (database, count) in &self.max_by_database {
            if database == "postgres" || database.is_empty() {
                parts.push(format!(
                    "{count} to {}",
                    if database.is_empty() {
                        "no database"
                    } else {
                        database
                    }
                ));
            } else {
                others.0 += count;
                others.1 += 1;
            }
        }
        if others.1 > 0 {
            parts.push(format!(
                "{} to {} resources' own databases",
                others.0, others.1
            ));
        }
        parts.join(", ")
    }
}

#[derive(Debug, Serialize)]
pub struct ScaleFigure {
    pub wanted: usize,
    pub created: usize,
    pub ready: usize,
    pub seconds: f64,
    pub ready_per_second: f64,
}

#[derive(Debug, Serialize)]
pub struct RelistFigure {
    pub environments: usize,
    /// From the start of the new operator until it had reconciled every Environment and
    /// settled.
    pub seconds_to_settle: f64,
    pub reconciles: f64,
    pub writes: f64,
    pub peak_mb: f64,
    pub rss_after_mb: f64,
}

#[derive(Debug, Serialize)]
pub struct DeployRun {
    pub environment: String,
    pub seconds: f64,
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// One performance target.
#[derive(Debug, Serialize)]
pub struct TargetCheck {
    pub measure: String,
    pub target: String,
    pub figure: String,
    pub met: Option<bool>,
}

impl Report {
    /// Fills in each latency's floor (same batch size) and its ratio to it.
    pub fn compare_to_floor(&mut self) {
        let floors: BTreeMap<usize, f64> = self
            .floor
            .iter()
            .filter_map(|floor| Some((floor.batch, floor.summary.as_ref()?.p50_ms)))
            .collect();
        for latency in &mut self.latencies {
            latency.floor_p50_ms = floors.get(&latency.batch).copied();
            latency.ratio_to_floor = match (&latency.summary, latency.floor_p50_ms) {
                (Some(summary), Some(floor)) if floor > 0.0 => Some(summary.p50_ms / floor),
                _ => None,
            };
        }
        // A batch whose floor alone takes longer than its target allows: no operator can meet
        // it on this machine, and the figure says how far the API server is from it.
        for latency in &self.latencies {
            let (Some(target_p99), Some(all_done)) = (
                latency.target.as_ref().and_then(|target| target.p99_ms),
                self.floor
                    .iter()
                    .find(|floor| floor.batch == latency.batch)
                    .and_then(|floor| floor.all_done_ms),
            ) else {
                continue;
            };
            if latency.batch > 1 && all_done > target_p99 {
                self.notes.push(format!(
                    "{} {}: the floor alone took {:.1} s for the whole batch, beyond the target's p99 of {:.1} s; on this machine the API server cannot make {} environments in that time, operator or not",
                    latency.scenario,
                    latency.batch,
                    all_done / 1000.0,
                    target_p99 / 1000.0,
                    latency.batch
                ));
            }
        }
    }

    /// The performance targets, each with this run's figure.
    pub fn check_targets(&mut self) {
        let mut checks = Vec::new();
        for latency in self
            .latencies
            .iter()
            .filter(|latency| latency.target.is_some())
        {
            let (Some(target), Some(summary)) = (&latency.target, &latency.summary) else {
                checks.push(TargetCheck {
                    measure: format!("{} ({})", latency.scenario, latency.size()),
                    target: latency
                        .target
                        .as_ref()
                        .map(|target| target.text.clone())
                        .unwrap_or_default(),
                    figure: "no sample".to_owned(),
                    met: Some(false),
                });
                continue;
            };
            let missing = if latency.missing > 0 {
                format!(", {} not ready in time", latency.missing)
            } else {
                String::new()
            };
            checks.push(TargetCheck {
                measure: format!("{} ({})", latency.scenario, latency.size()),
                target: target.text.clone(),
                figure: format!(
                    "p50 {}, p99 {}, max {}{missing}",
                    milliseconds(summary.p50_ms),
                    milliseconds(summary.p99_ms),
                    milliseconds(summary.max_ms)
                ),
                met: latency.met,
            });
        }
        checks.extend(self.request_checks());
        for memory in &self.memory {
            if let Some(target) = memory.target_mb {
                checks.push(TargetCheck {
                    measure: format!("operator memory, {}", memory.name),
                    target: format!("< {target} MB RSS"),
                    figure: format!(
                        "{:.1} MB RSS (peak {:.1} MB)",
                        memory.rss_mb, memory.peak_mb
                    ),
                    met: memory.met,
                });
            }
        }
        if let Some(connections) = &self.postgres_connections {
            checks.push(TargetCheck {
                measure: "PostgreSQL connections held by the operator".to_owned(),
                target: format!("≤ {}", connections.target),
                figure: format!("at most {} ({})", connections.max, connections.describe()),
                met: Some(connections.met),
            });
        }
        self.targets = checks;
    }

    /// API writes per first and per no-op Environment reconciliation: ≤ 7 / 0.
    fn request_checks(&self) -> Vec<TargetCheck> {
        let mut checks = Vec::new();
        for (window, limit) in [
            ("first Environment reconcile", 7u64),
            ("no-op Environment reconcile", 0u64),
        ] {
            let Some(found) = self.requests.iter().find(|found| found.name == window) else {
                continue;
            };
            let Some(first) = found.reconciles.first() else {
                checks.push(TargetCheck {
                    measure: format!("API writes, {window}"),
                    target: format!("≤ {limit}"),
                    figure: "no reconciliation seen in the operator's log".to_owned(),
                    met: None,
                });
                continue;
            };
            let writes = first.writes();
            let events = first
                .requests
                .iter()
                .filter(|(key, _)| is_write(key) && key.ends_with(" events"))
                .map(|(_, count)| *count)
                .sum::<u64>();
            let later: Vec<String> = found.reconciles[1..]
                .iter()
                .map(|reconcile| reconcile.writes().to_string())
                .collect();
            let later = if later.is_empty() {
                String::new()
            } else {
                format!("; the reconciliations it caused wrote {}", later.join(", "))
            };
            checks.push(TargetCheck {
                measure: format!("API writes, {window}"),
                target: format!("≤ {limit}"),
                figure: format!("{writes} ({events} of them Events){later}"),
                met: Some(writes <= limit),
            });
        }
        checks
    }

    /// Every table, as printed at the end of a run.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nLatencies (ms); ratio = p50 / floor p50 of the same batch size"
        );
        out.push_str(&self.latency_table());
        if !self.floor.is_empty() {
            let _ = writeln!(
                out,
                "\nFloor: a bare client's writes per environment (namespace; RoleBinding, ConfigMap, NetworkPolicy at once; status), no operator"
            );
            out.push_str(&floor_table(&self.floor));
        }
        if !self.requests.is_empty() {
            let _ = writeln!(out, "\nAPI requests");
            out.push_str(&self.requests_table());
        }
        if !self.sql.is_empty() {
            let _ = writeln!(out, "\nSQL statements");
            out.push_str(&self.sql_lines());
        }
        let _ = writeln!(out, "\nMemory and scale");
        out.push_str(&self.memory_lines());
        let _ = writeln!(out, "\nTargets");
        out.push_str(&self.targets_table());
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        for error in &self.errors {
            let _ = writeln!(out, "error: {error}");
        }
        out
    }

    fn latency_table(&self) -> String {
        let headers = [
            "scenario",
            "n",
            "p50",
            "p90",
            "p99",
            "max",
            "floor p50",
            "ratio",
            "target",
            "met",
        ];
        let rows = self
            .latencies
            .iter()
            .map(|latency| {
                let (p50, p90, p99, max) = percentiles(latency.summary.as_ref());
                let mut size = latency.size();
                if latency.missing > 0 {
                    let _ = write!(size, " ({} missing)", latency.missing);
                }
                vec![
                    latency.scenario.clone(),
                    size,
                    p50,
                    p90,
                    p99,
                    max,
                    latency.floor_p50_ms.map_or_else(dash, milliseconds),
                    latency
                        .ratio_to_floor
                        .map_or_else(dash, |ratio| format!("{ratio:.1}×")),
                    latency
                        .target
                        .as_ref()
                        .map_or_else(dash, |target| target.text.clone()),
                    met(latency.met),
                ]
            })
            .collect();
        table(&headers, rows)
    }

    fn requests_table(&self) -> String {
        let mut keys: Vec<&String> = self
            .requests
            .iter()
            .flat_map(|window| window.apiserver.keys().chain(window.operator.keys()))
            .collect();
        keys.sort_by_key(|key| {
            (
                !is_write(key),
                key.split_whitespace().nth(1).map(str::to_owned),
                key.to_owned(),
            )
        });
        keys.dedup();
        let mut headers = vec!["request".to_owned()];
        for window in &self.requests {
            headers.push(format!("{}: API server", window.short));
            headers.push("operator".to_owned());
        }
        let mut rows: Vec<Vec<String>> = keys
            .iter()
            .map(|key| {
                let mut row = vec![(*key).clone()];
                for window in &self.requests {
                    row.push(
                        window
                            .apiserver
                            .get(*key)
                            .map_or_else(dash, |count| whole(*count)),
                    );
                    row.push(window.operator.get(*key).map_or_else(dash, u64::to_string));
                }
                row
            })
            .collect();
        for writes in [false, true] {
            let mut row = vec![if writes { "= writes" } else { "= reads" }.to_owned()];
            for window in &self.requests {
                row.push(whole(count(&window.apiserver, writes)));
                row.push(count(&window.operator, writes).to_string());
            }
            rows.push(row);
        }
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        let mut out = table(&headers, rows);
        for window in &self.requests {
            let per: Vec<String> = window
                .reconciles
                .iter()
                .enumerate()
                .map(|(index, reconcile)| {
                    format!(
                        "#{}: {} reads + {} writes (logged writes: {})",
                        index + 1,
                        reconcile.reads(),
                        reconcile.writes(),
                        reconcile
                            .writes_logged
                            .map_or_else(dash, |writes| writes.to_string())
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "{}: {} reconciliation(s) of the object: {}; jango_fett_api_writes_total +{:.0}; the benchmark's own requests taken out: {}",
                window.name,
                window.reconciles.len(),
                if per.is_empty() {
                    "none seen".to_owned()
                } else {
                    per.join("; ")
                },
                window.operator_writes_metric,
                describe_counts(&window.benchmark),
            );
        }
        out
    }

    fn sql_lines(&self) -> String {
        let mut out = String::new();
        for window in &self.sql {
            let metric: f64 = window.operator_metric.values().sum();
            let logged: u64 = window.server_log.values().sum();
            let seconds: f64 = window.operator_seconds.values().sum();
            let time: BTreeMap<String, String> = window
                .operator_seconds
                .iter()
                .map(|(kind, seconds)| (kind.clone(), format!("{:.0} ms", seconds * 1000.0)))
                .collect();
            let _ = writeln!(
                out,
                "{}: {metric:.0} statements by the operator's metric ({}), taking {:.0} ms ({}) of a {:.0} ms window; {logged} in PostgreSQL's log ({})",
                window.name,
                describe_counts(&window.operator_metric),
                seconds * 1000.0,
                describe_counts(&time),
                window.window_seconds * 1000.0,
                describe_counts(&window.server_log),
            );
        }
        out
    }

    fn memory_lines(&self) -> String {
        let mut out = String::new();
        for memory in &self.memory {
            let _ = writeln!(
                out,
                "operator RSS {}: {:.1} MB (peak VmHWM {:.1} MB) with {} Environments; target {} {}",
                memory.name,
                memory.rss_mb,
                memory.peak_mb,
                memory.environments,
                memory
                    .target_mb
                    .map_or_else(dash, |target| format!("< {target} MB")),
                met(memory.met),
            );
        }
        if let Some(scale) = &self.scale {
            let _ = writeln!(
                out,
                "scale: {} of {} Environments created, {} Ready, in {:.0} s ({:.1} Ready/s)",
                scale.created, scale.wanted, scale.ready, scale.seconds, scale.ready_per_second
            );
        }
        for relist in &self.relists {
            let _ = writeln!(
                out,
                "re-list: a new operator over {} Environments settled in {:.1} s after {:.0} reconciliations and {:.0} writes; peak RSS {:.1} MB, {:.1} MB after",
                relist.environments,
                relist.seconds_to_settle,
                relist.reconciles,
                relist.writes,
                relist.peak_mb,
                relist.rss_after_mb
            );
        }
        if let Some(connections) = &self.postgres_connections {
            let _ = writeln!(
                out,
                "PostgreSQL connections held by the operator: at most {} ({}; {} samples every {} ms); target ≤ {} {}",
                connections.max,
                connections.describe(),
                connections.samples,
                connections.interval_ms,
                connections.target,
                met(Some(connections.met))
            );
        }
        let _ = writeln!(
            out,
            "cluster started in {:.1} s; build {}; run {:.0} s",
            self.cluster_start_seconds,
            self.build_seconds.map_or_else(
                || "not timed".to_owned(),
                |seconds| format!("{seconds:.0} s")
            ),
            self.run_seconds
        );
        for phase in &self.phases {
            let _ = writeln!(out, "  {}: {:.0} s", phase.name, phase.seconds);
        }
        out
    }

    fn targets_table(&self) -> String {
        let rows = self
            .targets
            .iter()
            .map(|check| {
                vec![
                    check.measure.clone(),
                    check.target.clone(),
                    check.figure.clone(),
                    met(check.met),
                ]
            })
            .chain(self.not_measured.iter().map(|what| {
                vec![
                    what.clone(),
                    String::new(),
                    "not measured here".to_owned(),
                    dash(),
                ]
            }))
            .collect();
        table(&["measure", "target", "figure", "met"], rows)
    }
}

fn floor_table(floor: &[Latency]) -> String {
    let rows = floor
        .iter()
        .map(|latency| {
            let (p50, p90, p99, max) = percentiles(latency.summary.as_ref());
            let all_done = latency.all_done_ms.map_or_else(dash, milliseconds);
            vec![latency.size(), p50, p90, p99, max, all_done]
        })
        .collect();
    table(&["n", "p50", "p90", "p99", "max", "batch all done"], rows)
}

fn percentiles(summary: Option<&Summary>) -> (String, String, String, String) {
    match summary {
        Some(summary) => (
            milliseconds(summary.p50_ms),
            milliseconds(summary.p90_ms),
            milliseconds(summary.p99_ms),
            milliseconds(summary.max_ms),
        ),
        None => (dash(), dash(), dash(), dash()),
    }
}

fn describe_counts<N: std::fmt::Display>(counts: &BTreeMap<String, N>) -> String {
    if counts.is_empty() {
        return "none".to_owned();
    }
    counts
        .iter()
        .map(|(key, count)| format!("{key} {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Milliseconds with the precision that matters at their size.
pub fn milliseconds(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// A count held as a float, without a sign on zero.
fn whole(value: f64) -> String {
    format!("{:.0}", value + 0.0)
}

fn dash() -> String {
    "-".to_owned()
}

fn met(met: Option<bool>) -> String {
    match met {
        Some(true) => "met".to_owned(),
        Some(false) => "MISSED".to_owned(),
        None => dash(),
    }
}

/// Columns padded to their widest cell, separated by ` | `.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers
        .iter()
        .map(|header| header.chars().count())
        .collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("{}\n", padded.join(" | ").trim_end())
    };
    let mut out = line(headers.iter().map(|header| (*header).to_owned()).collect());
    out.push_str(&line(
        widths.iter().map(|width| "-".repeat(*width)).collect(),
    ));
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_strict_bounds_and_need_every_object_when_asked() {
        let samples: Vec<Duration> = (1..=100).map(|ms| Duration::from_millis(ms * 10)).collect();
        let latency = Latency::new("x", 100, 1, &samples, 0);
        let target = Target::percentiles("p50 < 600 ms, p99 < 1 s", 600.0, 1000.0);
        assert_eq!(target.met(&latency), Some(true));
        let target = Target::percentiles("p50 < 500 ms", 500.0, 5000.0);
        assert_eq!(target.met(&latency), Some(false));
        let all = Target {
            all: true,
            ..Target::percentiles("all", 5000.0, 5000.0)
        };
        let missing = Latency::new("x", 100, 1, &samples, 1);
        assert_eq!(all.met(&missing), Some(false));
        assert_eq!(all.met(&Latency::new("x", 1, 1, &[], 1)), None);
    }

    #[test]
    fn counts_writes_and_reads() {
        let requests = BTreeMap::from([
            ("APPLY namespaces".to_owned(), 1u64),
            ("PATCH environments/status".to_owned(), 1),
            ("CREATE events".to_owned(), 2),
            ("GET namespaces".to_owned(), 3),
            ("LIST configmaps".to_owned(), 4),
        ]);
        assert_eq!(count(&requests, true), 4);
        assert_eq!(count(&requests, false), 7);
    }

    #[test]
    fn tables_align_columns() {
        let text = table(&["a", "bb"], vec![vec!["ccc".to_owned(), "d".to_owned()]]);
        assert_eq!(text, "a   | bb\n--- | --\nccc | d\n");
    }
}
