//! PostgreSQL resources (a database with `uuid-ossp`, its role and Secret) in Environment
//! namespaces: created one at a time and many at once, from just before the create request
//! to Ready; deleted while clients hold connections to the database; and the connections the
//! operator holds on the server, sampled from `pg_stat_activity` all along.
//!
//! The Environments come first and are not timed: PostgreSQL resources are only served in
//! an Environment's namespace.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use jf_api::{PostgreSQL, PostgreSQLSpec};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt as _;
use kube::api::Api;
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

use super::{
    BATCH_LABEL, Bench, create_all, delete_all, latencies, namespaces, ready_environments,
};
use crate::progress;
use crate::report::{ConnectionsFigure, Latency, Target};
use crate::scenarios::environments::describe_p50;
use crate::scenarios::requests::{Snapshot, sql_window};
use crate::tracker::{Tracker, Until};

/// The name of every PostgreSQL resource (one per namespace).
const NAME: &str = "db";

/// How often the operator's connections are counted.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// Target: PostgreSQL ready (role + database + extension).
fn ready_target() -> Target {
    Target::percentiles("p50 < 250 ms, p99 < 2 s", 250.0, 2000.0)
}

/// Target: delete with 20 open connections.
fn delete_target() -> Target {
    Target {
        max_ms: Some(5000.0),
        all: true,
        ..Target::percentiles("< 5 s", f64::INFINITY, f64::INFINITY)
    }
}

/// Target: PostgreSQL connections held by the operator.
const CONNECTIONS_TARGET: i64 = 4;

pub async fn run(bench: &mut Bench<'_>) -> anyhow::Result<()> {
    let singles = bench.settings.repeat;
    let many = bench.settings.databases;
    progress::step(&format!(
        "PostgreSQL: {} Environments for the databases (not timed)",
        singles + many
    ));
    let batch = bench.batch("pgenv");
    let (environments, names, _, missing) =
        ready_environments(bench, &batch, singles + many, "Environments Ready").await?;
    ensure!(
        missing == 0,
        "{missing} Environments for the databases were not Ready"
    );
    let namespaces = namespaces(&environments, &names);
    ensure!(
        namespaces.len() == singles + many,
        "only {} of the Environments report their namespace",
        namespaces.len()
    );
    bench.settle().await?;
    let sampler = Sampler::start(bench.stack.cluster.postgres_admin_url()).await?;

    let mut ready = (Vec::new(), 0);
    let mut deleted = (Vec::new(), 0);
    for (round, namespace) in namespaces[..singles].iter().enumerate() {
        progress::step(&format!(
            "PostgreSQL: 1 created alone, then deleted with {} connections open (round {} of {singles})",
            bench.settings.connections,
            round + 1
        ));
        let pg_batch = bench.batch(&format!("pg1-{}", round + 1));
        let (tracker, samples, missing) =
            ready_databases(bench, &pg_batch, &namespaces[round..=round]).await?;
        ready.0.extend(samples);
        ready.1 += missing;
        let (samples, missing) = delete_with_connections(bench, &tracker, namespace).await?;
        deleted.0.extend(samples);
        deleted.1 += missing;
    }
    bench.report.latencies.push(
        Latency::new("PostgreSQL create→Ready", 1, singles, &ready.0, ready.1)
            .with_target(Some(ready_target())),
    );
    bench.report.latencies.push(
        Latency::new(
            &format!(
                "PostgreSQL delete→gone, {} connections open",
                bench.settings.connections
            ),
            1,
            singles,
            &deleted.0,
            deleted.1,
        )
        .with_target(Some(delete_target())),
    );

    progress::step(&format!("PostgreSQL: {many} created at once"));
    let pg_batch = bench.batch(&format!("pg{many}"));
    let before = Snapshot::take(bench).await?;
    let (tracker, samples, missing) =
        ready_databases(bench, &pg_batch, &namespaces[singles..]).await?;
    let after = Snapshot::take(bench).await?;
    bench.report.sql.push(sql_window(
        &format!("PostgreSQL, {many} created at once (until all Ready)"),
        &before,
        &after,
        bench,
    )?);
    progress::info(&format!(
        "{} of {many} Ready{}",
        samples.len(),
        describe_p50(&samples)
    ));
    bench.report.latencies.push(
        // The target is for one database; a batch is shown against the floor only.
        Latency::new("PostgreSQL create→Ready", many, 1, &samples, missing),
    );
    let keys: Vec<String> = namespaces[singles..]
        .iter()
        .map(|namespace| format!("{namespace}/{NAME}"))
        .collect();
    let client = bench.stack.client.clone();
    let starts = delete_all(
        |namespace| Api::<PostgreSQL>::namespaced(client.clone(), namespace.unwrap_or_default()),
        &keys,
        bench.settings.concurrency,
    )
    .await?;
    let gone = tracker
        .wait(&keys, Until::Gone, bench.batch_timeout(), "PostgreSQL gone")
        .await;
    let (samples, missing) = latencies(&starts, &gone);
    progress::info(&format!(
        "{} of {many} gone{}",
        samples.len(),
        describe_p50(&samples)
    ));
    bench.report.latencies.push(Latency::new(
        "PostgreSQL delete→gone",
        many,
        1,
        &samples,
        missing,
    ));

    let Sampled {
        max,
        max_by_database,
        count,
    } = sampler.stop().await?;
    bench.report.postgres_connections = Some(ConnectionsFigure {
        max,
        max_by_database,
        samples: count,
        interval_ms: SAMPLE_EVERY.as_millis() as u64,
        target: CONNECTIONS_TARGET,
        met: max <= CONNECTIONS_TARGET,
    });
    Ok(())
}

/// Creates one PostgreSQL resource in each of `namespaces` at once and waits until they are
/// Ready.
async fn ready_databases(
    bench: &Bench<'_>,
    batch: &str,
    namespaces: &[String],
) -> anyhow::Result<(Tracker<PostgreSQL>, Vec<Duration>, usize)> {
    let client = bench.stack.client.clone();
    let tracker = Tracker::start(
        Api::<PostgreSQL>::all(client.clone()),
        &format!("{BATCH_LABEL}={batch}"),
    )
    .await?;
    let objects = namespaces
        .iter()
        .map(|namespace| {
            let mut resource = PostgreSQL::new(
                NAME,
                PostgreSQLSpec {
                    extensions: vec!["uuid".to_owned()],
                    ..PostgreSQLSpec::default()
                },
            );
            resource.metadata.namespace = Some(namespace.clone());
            resource
                .labels_mut()
                .insert(BATCH_LABEL.to_owned(), batch.to_owned());
            resource
        })
        .collect();
    let starts = create_all(
        |resource: &PostgreSQL| {
            Api::namespaced(client.clone(), &resource.namespace().unwrap_or_default())
        },
        objects,
        bench.settings.concurrency,
    )
    .await?;
    let keys: Vec<String> = starts.keys().cloned().collect();
    let ready = tracker
        .wait(
            &keys,
            Until::Ready,
            bench.batch_timeout(),
            "PostgreSQL Ready",
        )
        .await;
    let (samples, missing) = latencies(&starts, &ready);
    Ok((tracker, samples, missing))
}

/// Opens connections with the resource's credentials, then deletes it and times until it is
/// gone. Checks that the connections were ended.
async fn delete_with_connections(
    bench: &Bench<'_>,
    tracker: &Tracker<PostgreSQL>,
    namespace: &str,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let client = bench.stack.client.clone();
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get(&jf_api::naming::postgresql_secret(NAME))
        .await
        .context("failed to read the database's Secret")?;
    let uri = secret
        .data
        .unwrap_or_default()
        .remove("uri")
        .context("the database's Secret has no uri")?;
    let uri = String::from_utf8(uri.0).context("the database's uri is not UTF-8")?;
    let mut open = Vec::new();
    for _ in 0..bench.settings.connections {
        open.push(connect(&uri).await?);
    }
    let key = format!("{namespace}/{NAME}");
    let starts = delete_all(
        |_| Api::<PostgreSQL>::namespaced(client.clone(), namespace),
        std::slice::from_ref(&key),
        1,
    )
    .await?;
    let gone = tracker
        .wait(
            std::slice::from_ref(&key),
            Until::Gone,
            bench.batch_timeout(),
            "PostgreSQL gone",
        )
        .await;
    let result = latencies(&starts, &gone);
    let mut ended = 0;
    for (client, connection) in open {
        if client.simple_query("SELECT 1").await.is_err() {
            ended += 1;
        }
        connection.abort();
    }
    progress::info(&format!(
        "deleted in {}; {ended} of {} connections were ended",
        result.0.first().map_or_else(
            || "(not gone in time)".to_owned(),
            |latency| format!("{latency:.2?}")
        ),
        bench.settings.connections
    ));
    Ok(result)
}

type Connection = (tokio_postgres::Client, JoinHandle<()>);

async fn connect(url: &str) -> anyhow::Result<Connection> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .context("failed to connect with the database's credentials")?;
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    client
        .simple_query("SELECT 1")
        .await
        .context("a connection with the database's credentials failed to query")?;
    Ok((client, task))
}

/// What the sampler saw.
struct Sampled {
    max: i64,
    max_by_database: BTreeMap<String, i64>,
    count: usize,
}

/// Counts the superuser's connections other than its own on the server, over and over: the
/// operator is the only other client that connects as the superuser.
struct Sampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<Sampled>>,
}

impl Sampler {
    async fn start(admin_url: &str) -> anyhow::Result<Self> {
        let (client, connection) = connect(admin_url).await?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut max = 0;
            let mut max_by_database = BTreeMap::new();
            let mut count = 0;
            let mut interval = tokio::time::interval(SAMPLE_EVERY);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = interval.tick() => {
                        let rows = client
                            .query(
                                "SELECT coalesce(datname, ''), count(*) FROM pg_stat_activity \
                                 WHERE backend_type = 'client backend' \
                                 AND usename = current_user AND pid <> pg_backend_pid() \
                                 AND application_name = 'jango-fett-operator' \
                                 GROUP BY 1",
                                &[],
                            )
                            .await
                            .context("failed to count the operator's connections")?;
                        let by_database: BTreeMap<String, i64> = rows
                            .iter()
                            .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1)))
                            .collect();
                        let total = by_database.values().sum();
                        if total > max {
                            max = total;
                            max_by_database = by_database;
                        }
                        count += 1;
                    }
                }
            }
            drop(client);
            connection.abort();
            Ok(Sampled {
                max,
                max_by_database,
                count,
            })
        });
        Ok(Self { stop, task })
    }

    /// The most connections seen at once, and how many samples were taken.
    async fn stop(self) -> anyhow::Result<Sampled> {
        let _ = self.stop.send(());
        self.task.await.context("the connection sampler panicked")?
    }
}
