//! Logs (human or JSON, through `tracing`) and Prometheus metrics.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

/// Installs the global log subscriber.
pub fn init_logging(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(filter)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    }
    .map_err(|error| anyhow::anyhow!(error))
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: &'static str,
    pub reason: &'static str,
}

type HistogramFamily = Family<KindLabels, Histogram, fn() -> Histogram>;

/// A reconciliation running; see [`Metrics::in_flight`].
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The operator's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<KindLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    durations: HistogramFamily,
    writes: Family<KindLabels, Counter>,
    sql: HistogramFamily,
    in_flight: Family<KindLabels, Gauge>,
    leader: Gauge,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("jango_fett");
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        registry.register("build_info", "The operator's version", build_info);
        let reconciles = Family::<KindLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciliations run, by kind",
            reconciles.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciliations that failed, by kind and reason",
            errors.clone(),
        );
        let durations: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 15)));
        registry.register(
            "reconcile_duration_seconds",
            "How long reconciliations take, by kind",
            durations.clone(),
        );
        let writes = Family::<KindLabels, Counter>::default();
        registry.register(
            "api_writes",
            "Writes to the Kubernetes API made by reconciliations, by kind",
            writes.clone(),
        );
        let sql: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 15)));
        registry.register(
            "sql_statement_duration_seconds",
            "How long statements to the shared PostgreSQL server take, by kind of statement",
            sql.clone(),
        );
        let in_flight = Family::<KindLabels, Gauge>::default();
        registry.register(
            "reconciles_in_flight",
            "Reconciliations running now, by kind: the part of the work queue being worked on",
            in_flight.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the Lease and runs the controllers",
            leader.clone(),
        );
        Arc::new(Self {
            registry,
            in_flight,
            leader,
            reconciles,
            errors,
            durations,
            writes,
            sql,
        })
    }

    /// Counts a reconciliation as running until the guard is dropped.
    pub fn in_flight(&self, kind: &'static str) -> InFlight {
        let gauge = self.in_flight.get_or_create(&KindLabels { kind }).clone();
        gauge.inc();
        InFlight(gauge)
    }

    /// Whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    pub fn reconciled(&self, kind: &'static str, duration: Duration) {
        self.reconciles.get_or_create(&KindLabels { kind }).inc();
        self.durations
            .get_or_create(&KindLabels { kind })
            .observe(duration.as_secs_f64());
    }

    pub fn failed(&self, kind: &'static str, reason: &'static str) {
        self.errors
            .get_or_create(&ErrorLabels { kind, reason })
            .inc();
    }

    pub fn wrote(&self, kind: &'static str, count: u64) {
        self.writes
            .get_or_create(&KindLabels { kind })
            .inc_by(count);
    }

    pub fn sql_statement(&self, kind: &'static str, duration: Duration) {
        self.sql
            .get_or_create(&KindLabels { kind })
            .observe(duration.as_secs_f64());
    }

    /// The metrics in Prometheus' text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
