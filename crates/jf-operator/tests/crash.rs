//! Crash safety: the `jango-fett-operator` binary is killed with SIGKILL at random moments while
//! Environments with a PostgreSQL and a Redis are created and deleted, then started again; at
//! the end a last operator deletes every Environment and nothing may be left behind: no
//! database or role on the PostgreSQL server, no namespace, Secret or RBAC, nothing stuck
//! Terminating. Before that, everything that survived the kills must have recovered: Ready,
//! with credentials that work.
//!
//! `JF_CRASH_ROUNDS` sets the number of kills (30 by default, and at least 30 when `CI` is
//! set); `JF_CRASH_SEED` replays the random choices of a run, whose seed is printed (the
//! timing of the cluster still varies). Each operator's log is kept in a directory that is
//! removed when the test passes, unless `JF_CRASH_KEEP_LOGS` is set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail, ensure};
use futures::StreamExt as _;
use jf_api::conditions::{self, READY};
use jf_api::naming::{self, DEFAULT_NAMESPACE_PREFIX, ENVIRONMENT_LABEL};
use jf_api::{Environment, EnvironmentSpec, PostgreSQL, PostgreSQLSpec, Redis, RedisSpec};
use jf_operator::postgres::sql;
use jf_testkit::{LocalCluster, cluster, eventually_within, unique_name};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, ResourceExt as _};
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

/// Kills per run unless `JF_CRASH_ROUNDS` says otherwise, and the fewest under CI.
const ROUNDS: u64 = 30;

/// The longest an operator runs after the test's actions before it is killed.
const MAX_RUN: Duration = Duration::from_millis(1500);

/// At most this many of the test's Environments live at once, to keep the machine responsive.
const MAX_LIVE_ENVIRONMENTS: usize = 6;

/// The PostgreSQL and Redis of each Environment.
const DATABASE: &str = "db";
const CACHE: &str = "cache";

/// How long the last operator may take to bring back what the kills interrupted, and to
/// delete everything.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(120);
const DELETION_TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_moments_the_operator_leaves_nothing_behind() -> anyhow::Result<()> {
    let cluster = cluster().await;
    let client = cluster.client().await?;
    jf_testkit::install_crds(&client).await?;

    let seed = match std::env::var("JF_CRASH_SEED") {
        Ok(seed) => seed.parse().context("JF_CRASH_SEED is not a number")?,
        Err(_) => clock_seed(),
    };
    let rounds = rounds()?;
    let run_name = unique_name("crash");
    let logs = tempfile::Builder::new()
        .prefix("jf-crash-")
        .tempdir()?
        .keep();
    println!(
        "crash test {run_name}: {rounds} kills, JF_CRASH_SEED={seed}, logs in {}",
        logs.display()
    );
    let started = Instant::now();
    let mut random = Random::new(seed);
    let run = Arc::new(Mutex::new(Run::default()));
    let provisioner = tokio::spawn(provision(client.clone(), run.clone(), run_name.clone()));
    let mut tasks = Vec::new();

    for round in 1..=rounds {
        let log = logs.join(format!("operator-{round:03}.log"));
        let mut operator = OperatorProcess::start(cluster, log.clone())?;
        let spawned = Instant::now();
        // Now and then the operator dies while it is still starting.
        let early = random.percent(15);
        if !early {
            operator.running().await?;
        }
        let mut done = Vec::new();
        for _ in 0..=random.below(2) {
            done.push(act(&client, &mut random, &run, &run_name, &mut tasks).await?);
        }
        let pause = if early {
            random.below(600)
        } else {
            random.below(as_millis(MAX_RUN) + 1)
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
        if let Some(status) = operator.child.try_wait()? {
            lock(&run).problems.push(format!(
                "round {round}: the operator exited by itself ({status}); see {}",
                log.display()
            ));
        }
        operator.kill()?;
        println!(
            "round {round:3}: {}; killed {} ms after it started{}",
            done.join(", "),
            spawned.elapsed().as_millis(),
            if early { ", before it ran" } else { "" }
        );
        // Sometimes the world changes while no operator runs.
        if random.percent(25) {
            let action = act(&client, &mut random, &run, &run_name, &mut tasks).await?;
            println!("           while down: {action}");
        }
    }
    let killed_in = started.elapsed();

    // The last operator finishes what the kills interrupted...
    let log = logs.join("operator-last.log");
    let mut operator = OperatorProcess::start(cluster, log.clone())?;
    operator.running().await?;
    eventually_within(
        RECOVERY_TIMEOUT,
        "every new environment's namespace, to create its PostgreSQL and Redis",
        || async {
            let awaiting: Vec<String> = lock(&run).awaiting.keys().cloned().collect();
            ensure!(awaiting.is_empty(), "still awaited: {awaiting:?}");
            Ok(())
        },
    )
    .await;
    for task in tasks {
        task.await??;
    }
    let recovered = Instant::now();
    eventually_within(
        RECOVERY_TIMEOUT,
        "what the test kept to be ready and what it deleted to be gone",
        || recovered_state(&client, &run, &run_name),
    )
    .await;
    println!(
        "recovered in {} ms after the last start",
        recovered.elapsed().as_millis()
    );

    // ...then deletes everything, and nothing may be left.
    let environments: Api<Environment> = Api::all(client.clone());
    let (names, live) = {
        let run = lock(&run);
        let names: Vec<String> = run.environments.keys().cloned().collect();
        (names, run.live_environments().len())
    };
    for name in &names {
        ignore_not_found(environments.delete(name, &DeleteParams::default()).await)?;
    }
    let deleting = Instant::now();
    let mut left = leftovers(&client, &run_name).await?;
    while !left.is_empty() && deleting.elapsed() < DELETION_TIMEOUT {
        tokio::time::sleep(Duration::from_millis(250)).await;
        left = leftovers(&client, &run_name).await?;
    }
    println!(
        "deleted the {live} remaining environments in {} ms",
        deleting.elapsed().as_millis()
    );
    let mut problems = std::mem::take(&mut lock(&run).problems);
    if !left.is_empty() {
        problems.push(format!(
            "left after {DELETION_TIMEOUT:?} of deletion:\n  {}",
            left.join("\n  ")
        ));
    }
    problems.extend(orphans_on_the_server(cluster, &run, &run_name).await?);
    problems.extend(panics(&logs)?);
    if let Some(status) = operator.child.try_wait()? {
        problems.push(format!(
            "the last operator exited by itself ({status}); see {}",
            log.display()
        ));
    }
    operator.kill()?;
    provisioner.abort();

    let summary = lock(&run).summary();
    println!(
        "{summary}; {rounds} kills in {} s, all in {} s",
        killed_in.as_secs(),
        started.elapsed().as_secs()
    );
    if !problems.is_empty() {
        let evidence = evidence(&logs, &problems, &run_name)?;
        panic!(
            "after {rounds} kills (JF_CRASH_SEED={seed}; operator logs in {}):\n{}\n\nlog lines about them:\n{evidence}",
            logs.display(),
            problems.join("\n"),
        );
    }
    if std::env::var_os("JF_CRASH_KEEP_LOGS").is_none() {
        std::fs::remove_dir_all(&logs)?;
    }
    Ok(())
}

/// `JF_CRASH_ROUNDS`, or [`ROUNDS`]; never fewer than that under CI.
fn rounds() -> anyhow::Result<u64> {
    let asked = match std::env::var("JF_CRASH_ROUNDS") {
        Ok(rounds) => rounds.parse().context("JF_CRASH_ROUNDS is not a number")?,
        Err(_) => ROUNDS,
    };
    Ok(if std::env::var_os("CI").is_some() {
        asked.max(ROUNDS)
    } else {
        asked
    })
}

fn clock_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    // The low bits vary the most; the process id separates runs started together.
    (nanos as u64) ^ (u64::from(std::process::id()) << 40)
}

fn as_millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// xorshift64*: enough to vary the moments of the kills, and replayable from its seed.
struct Random(u64);

impl Random {
    fn new(seed: u64) -> Self {
        // Any seed but one gives a non-zero state; zero would stay zero.
        Self((seed ^ 0x9e37_79b9_7f4a_7c15).max(1))
    }

    fn next(&mut self) -> u64 {
        let mut state = self.0;
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        self.0 = state;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..bound`.
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> Option<T> {
        let index = usize::try_from(self.below(items.len() as u64)).ok()?;
        items.get(index).cloned()
    }
}

/// One start of the operator binary, killed if the test ends before it is.
struct OperatorProcess {
    child: Child,
    log: PathBuf,
}

impl OperatorProcess {
    fn start(cluster: &LocalCluster, log: PathBuf) -> anyhow::Result<Self> {
        let file = std::fs::File::create(&log)
            .with_context(|| format!("failed to create {}", log.display()))?;
        let child = Command::new(env!("CARGO_BIN_EXE_jango-fett-operator"))
            .args(["--http-address", "127.0.0.1:0", "--log-format", "json"])
            .args(["--leader-election=false", "--log", "info,jf_operator=debug"])
            .env("KUBECONFIG", cluster.kubeconfig())
            .env("JF_POSTGRES_ADMIN_URL", cluster.postgres_admin_url())
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .context("failed to start the operator")?;
        Ok(Self { child, log })
    }

    /// Waits until the operator runs its controllers.
    async fn running(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if log.contains("leader election is off") {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the operator exited ({status}) before it ran; see {}",
                    self.log.display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the operator did not run within 60 s; see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: no shutdown, no cleanup, whatever it was doing.
    fn kill(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_none() {
            self.child.kill()?;
        }
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What the test made, shared with the tasks that create resources as namespaces appear.
#[derive(Default)]
struct Run {
    /// Every Environment created, and whether the test has deleted it since.
    environments: BTreeMap<String, bool>,
    /// Environments whose namespace is awaited, to create their PostgreSQL (with the extension
    /// `uuid` when `true`) and Redis in it.
    awaiting: BTreeMap<String, bool>,
    databases: Vec<Database>,
    redis: u64,
    /// Actions taken, by kind.
    actions: BTreeMap<&'static str, u64>,
    /// What went wrong on the way, reported at the end.
    problems: Vec<String>,
}

/// A PostgreSQL resource the test created.
#[derive(Debug, Clone)]
struct Database {
    namespace: String,
    name: String,
    uid: String,
    uuid: bool,
    deleted: bool,
}

impl Run {
    fn live_environments(&self) -> Vec<String> {
        self.environments
            .iter()
            .filter(|(_, deleted)| !**deleted)
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn live_databases(&self) -> Vec<Database> {
        let live = self.live_environments();
        self.databases
            .iter()
            .filter(|database| {
                !database.deleted
                    && live
                        .iter()
                        .any(|environment| namespace_of(environment) == database.namespace)
            })
            .cloned()
            .collect()
    }

    fn summary(&self) -> String {
        let deleted = self
            .environments
            .values()
            .filter(|deleted| **deleted)
            .count();
        format!(
            "{} environments ({deleted} deleted during the kills), {} PostgreSQL, {} Redis; actions {:?}",
            self.environments.len(),
            self.databases.len(),
            self.redis,
            self.actions
        )
    }
}

fn lock(run: &Mutex<Run>) -> std::sync::MutexGuard<'_, Run> {
    run.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn namespace_of(environment: &str) -> String {
    naming::namespace(DEFAULT_NAMESPACE_PREFIX, environment)
}

/// The namespaces of this run's Environments start with this.
fn namespace_prefix(run_name: &str) -> String {
    namespace_of(&format!("{run_name}-"))
}

/// The databases and roles of this run's PostgreSQL resources start with this, and those of
/// no other run (`run_name` is unique).
fn database_prefix(run_name: &str) -> String {
    format!("jf_{}", namespace_prefix(run_name).replace('-', "_"))
}

/// Takes one random action through the API and says what it did.
async fn act(
    client: &Client,
    random: &mut Random,
    run: &Arc<Mutex<Run>>,
    run_name: &str,
    tasks: &mut Vec<JoinHandle<anyhow::Result<()>>>,
) -> anyhow::Result<String> {
    let (live, databases) = {
        let run = lock(run);
        (run.live_environments(), run.live_databases())
    };
    let can_create = live.len() < MAX_LIVE_ENVIRONMENTS;
    let choice = random.below(10);
    let kind = match choice {
        0..=4 if can_create => "create environment",
        5..=7 if !live.is_empty() => "delete environment",
        8..=9 if !databases.is_empty() => "delete postgresql",
        _ if can_create => "create environment",
        _ => "delete environment",
    };
    *lock(run).actions.entry(kind).or_default() += 1;
    match kind {
        "create environment" => {
            let name = {
                let mut run = lock(run);
                let name = format!("{run_name}-{}", run.environments.len());
                run.environments.insert(name.clone(), false);
                // Awaited before it exists, so that its namespace cannot be missed.
                run.awaiting.insert(name.clone(), random.percent(50));
                name
            };
            Api::<Environment>::all(client.clone())
                .create(
                    &PostParams::default(),
                    &Environment::new(&name, EnvironmentSpec::default()),
                )
                .await
                .with_context(|| format!("failed to create environment {name}"))?;
            Ok(format!("created {name}"))
        }
        "delete environment" => {
            let Some(name) = random.pick(&live) else {
                return Ok("nothing to delete".to_owned());
            };
            {
                let mut run = lock(run);
                run.environments.insert(name.clone(), true);
                run.awaiting.remove(&name);
            }
            ignore_not_found(
                Api::<Environment>::all(client.clone())
                    .delete(&name, &DeleteParams::default())
                    .await,
            )
            .with_context(|| format!("failed to delete environment {name}"))?;
            Ok(format!("deleted {name}"))
        }
        _ => {
            let Some(database) = random.pick(&databases) else {
                return Ok("nothing to delete".to_owned());
            };
            if let Some(recorded) = lock(run)
                .databases
                .iter_mut()
                .find(|recorded| recorded.uid == database.uid)
            {
                recorded.deleted = true;
            }
            ignore_not_found(
                Api::<PostgreSQL>::namespaced(client.clone(), &database.namespace)
                    .delete(&database.name, &DeleteParams::default())
                    .await,
            )
            .with_context(|| format!("failed to delete postgresql {}", database.name))?;
            // Made again under the same name: the old one's role, database and Secret must
            // not stand in the way (nor be taken over).
            let again = random.percent(50);
            if again {
                tasks.push(tokio::spawn(recreate(
                    client.clone(),
                    run.clone(),
                    database.clone(),
                )));
            }
            Ok(format!(
                "deleted postgresql in {}{}",
                database.namespace,
                if again { " (to make it again)" } else { "" }
            ))
        }
    }
}

fn postgresql(uuid: bool) -> PostgreSQL {
    PostgreSQL::new(
        DATABASE,
        PostgreSQLSpec {
            extensions: if uuid {
                vec!["uuid".to_owned()]
            } else {
                vec![]
            },
            ..PostgreSQLSpec::default()
        },
    )
}

/// Creates the PostgreSQL and the Redis of each Environment as soon as its namespace appears.
async fn provision(client: Client, run: Arc<Mutex<Run>>, run_name: String) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut appearing = watcher(
        namespaces,
        watcher::Config::default().labels(ENVIRONMENT_LABEL),
    )
    .default_backoff()
    .applied_objects()
    .boxed();
    let prefix = namespace_prefix(&run_name);
    while let Some(namespace) = appearing.next().await {
        let Ok(namespace) = namespace else { continue };
        let name = namespace.name_any();
        if !name.starts_with(&prefix) || namespace.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(environment) = namespace.labels().get(ENVIRONMENT_LABEL) else {
            continue;
        };
        let Some(uuid) = lock(&run).awaiting.remove(environment) else {
            continue;
        };
        let created = Api::<PostgreSQL>::namespaced(client.clone(), &name)
            .create(&PostParams::default(), &postgresql(uuid))
            .await;
        record_database(&run, &name, uuid, created);
        let created = Api::<Redis>::namespaced(client.clone(), &name)
            .create(
                &PostParams::default(),
                &Redis::new(CACHE, RedisSpec::default()),
            )
            .await;
        let mut recorded = lock(&run);
        match created {
            Ok(_) => recorded.redis += 1,
            // The namespace is already going away with its Environment.
            Err(error) if is_gone(&error) => {}
            Err(error) => recorded
                .problems
                .push(format!("failed to create the Redis in {name}: {error}")),
        }
    }
}

fn record_database(
    run: &Mutex<Run>,
    namespace: &str,
    uuid: bool,
    created: Result<PostgreSQL, kube::Error>,
) {
    let mut run = lock(run);
    match created {
        Ok(created) => run.databases.push(Database {
            namespace: namespace.to_owned(),
            name: created.name_any(),
            uid: created.uid().unwrap_or_default(),
            uuid,
            deleted: false,
        }),
        Err(error) if is_gone(&error) => {}
        Err(error) => run.problems.push(format!(
            "failed to create the PostgreSQL in {namespace}: {error}"
        )),
    }
}

/// Makes `database` again once its deletion is done (which needs a running operator).
async fn recreate(client: Client, run: Arc<Mutex<Run>>, database: Database) -> anyhow::Result<()> {
    let api: Api<PostgreSQL> = Api::namespaced(client, &database.namespace);
    let deadline = Instant::now() + DELETION_TIMEOUT;
    loop {
        match api.get_opt(&database.name).await? {
            None => break,
            Some(_) if Instant::now() > deadline => {
                lock(&run).problems.push(format!(
                    "postgresql {}/{} was not deleted within {DELETION_TIMEOUT:?}",
                    database.namespace, database.name
                ));
                return Ok(());
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let created = api
        .create(&PostParams::default(), &postgresql(database.uuid))
        .await;
    record_database(&run, &database.namespace, database.uuid, created);
    Ok(())
}

fn is_gone(error: &kube::Error) -> bool {
    // 403: the namespace is terminating; 404: it is gone.
    matches!(error, kube::Error::Api(status) if status.code == 403 || status.code == 404)
}

fn ignore_not_found<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error),
    }
}

fn ready_message(conditions: &[Condition], generation: Option<i64>) -> Option<String> {
    if conditions::is_ready(conditions, generation) {
        return None;
    }
    Some(
        conditions::find(conditions, READY)
            .map(|condition| format!("{}: {}", condition.reason, condition.message))
            .unwrap_or_else(|| "no Ready condition".to_owned()),
    )
}

/// Ok when the run has converged: every Environment, PostgreSQL and Redis the test did not
/// delete is Ready, each PostgreSQL's Secret opens its database (with its extension) and each
/// Redis's configuration has its Secret's password, and everything the test deleted is gone;
/// otherwise what is not there yet.
async fn recovered_state(client: &Client, run: &Mutex<Run>, run_name: &str) -> anyhow::Result<()> {
    let mut waiting = Vec::new();
    let (live, deleted): (Vec<String>, Vec<String>) = {
        let run = lock(run);
        (
            run.live_environments(),
            run.environments
                .iter()
                .filter(|(_, deleted)| **deleted)
                .map(|(name, _)| name.clone())
                .collect(),
        )
    };
    let environments: Api<Environment> = Api::all(client.clone());
    for name in &live {
        let environment = environments.get(name).await?;
        let status = environment.status.clone().unwrap_or_default();
        if let Some(why) = ready_message(&status.conditions, environment.metadata.generation) {
            waiting.push(format!("environment {name}: {why}"));
        }
    }
    for name in &deleted {
        if let Some(environment) = environments.get_opt(name).await? {
            let phase = environment.status.and_then(|status| status.phase);
            waiting.push(format!(
                "environment {name}: deleted, still there ({phase:?})"
            ));
        }
    }
    let live_namespaces: Vec<String> = live.iter().map(|name| namespace_of(name)).collect();
    let prefix = namespace_prefix(run_name);
    let ours = |namespace: Option<String>| namespace.is_some_and(|name| name.starts_with(&prefix));
    for resource in Api::<PostgreSQL>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|resource| ours(resource.namespace()))
    {
        let namespace = resource.namespace().unwrap_or_default();
        let name = format!("postgresql {namespace}/{}", resource.name_any());
        if !live_namespaces.contains(&namespace) {
            waiting.push(format!("{name}: its environment is deleted, still there"));
            continue;
        }
        if resource.metadata.deletion_timestamp.is_some() {
            waiting.push(format!("{name}: still being deleted"));
            continue;
        }
        let status = resource.status.clone().unwrap_or_default();
        if let Some(why) = ready_message(&status.conditions, resource.metadata.generation) {
            waiting.push(format!("{name}: {why}"));
            continue;
        }
        if let Err(error) = log_in(client, &resource).await {
            waiting.push(format!("{name}: its Secret does not work: {error:#}"));
        }
    }
    for resource in Api::<Redis>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|resource| ours(resource.namespace()))
    {
        let namespace = resource.namespace().unwrap_or_default();
        let name = format!("redis {namespace}/{}", resource.name_any());
        if !live_namespaces.contains(&namespace) {
            waiting.push(format!("{name}: its environment is deleted, still there"));
            continue;
        }
        let status = resource.status.clone().unwrap_or_default();
        if let Some(why) = ready_message(&status.conditions, resource.metadata.generation) {
            waiting.push(format!("{name}: {why}"));
            continue;
        }
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
        let password = value(
            &secrets.get(&naming::redis(&resource.name_any())).await?,
            "password",
        )?;
        let config = value(
            &secrets
                .get(&naming::redis_config(&resource.name_any()))
                .await?,
            "redis.conf",
        )?;
        if !config.contains(&password) {
            waiting.push(format!(
                "{name}: its configuration has not its Secret's password"
            ));
        }
    }
    ensure!(waiting.is_empty(), "\n  {}", waiting.join("\n  "));
    Ok(())
}

fn value(secret: &Secret, key: &str) -> anyhow::Result<String> {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .with_context(|| format!("the Secret {} has no {key}", secret.name_any()))?;
    Ok(String::from_utf8(bytes.0.clone())?)
}

/// Logs in with the resource's Secret and checks the extensions it asks for.
async fn log_in(client: &Client, resource: &PostgreSQL) -> anyhow::Result<()> {
    let namespace = resource.namespace().unwrap_or_default();
    let secret = Api::<Secret>::namespaced(client.clone(), &namespace)
        .get(&naming::postgresql_secret(&resource.name_any()))
        .await?;
    let (sql_client, connection) = tokio_postgres::Config::new()
        .host(value(&secret, "host")?)
        .port(value(&secret, "port")?.parse()?)
        .user(value(&secret, "username")?)
        .password(value(&secret, "password")?)
        .dbname(value(&secret, "database")?)
        .connect(NoTls)
        .await?;
    let connection = tokio::spawn(connection);
    let rows = sql_client
        .query("SELECT extname FROM pg_extension", &[])
        .await?;
    drop(sql_client);
    let _ = connection.await;
    let present: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    if !resource.spec.extensions.is_empty() {
        ensure!(
            present.iter().any(|extension| extension == "uuid-ossp"),
            "no uuid-ossp among {present:?}"
        );
    }
    Ok(())
}

/// Everything of the run still in the cluster, described.
async fn leftovers(client: &Client, run_name: &str) -> anyhow::Result<Vec<String>> {
    let mut left = Vec::new();
    let prefix = namespace_prefix(run_name);
    let ours = |namespace: Option<String>| namespace.is_some_and(|name| name.starts_with(&prefix));
    for environment in Api::<Environment>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|environment| environment.name_any().starts_with(&format!("{run_name}-")))
    {
        let status = environment.status.clone().unwrap_or_default();
        left.push(format!(
            "environment {} (deleting since {:?}, finalizers {:?}, phase {:?}, Ready: {:?})",
            environment.name_any(),
            environment
                .metadata
                .deletion_timestamp
                .as_ref()
                .map(|time| time.0.to_string()),
            environment.finalizers(),
            status.phase,
            conditions::find(&status.conditions, READY).map(|condition| &condition.message),
        ));
    }
    for namespace in Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|namespace| namespace.name_any().starts_with(&prefix))
    {
        let status = namespace.status.clone().unwrap_or_default();
        let why: Vec<String> = status
            .conditions
            .unwrap_or_default()
            .into_iter()
            .filter(|condition| condition.status == "True")
            .map(|condition| condition.message.unwrap_or(condition.type_))
            .collect();
        left.push(format!(
            "namespace {} ({:?}{})",
            namespace.name_any(),
            status.phase,
            if why.is_empty() {
                String::new()
            } else {
                format!(": {}", why.join("; "))
            }
        ));
    }
    for resource in Api::<PostgreSQL>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|resource| ours(resource.namespace()))
    {
        let status = resource.status.clone().unwrap_or_default();
        left.push(format!(
            "postgresql {}/{} (uid {}, finalizers {:?}, Ready: {:?})",
            resource.namespace().unwrap_or_default(),
            resource.name_any(),
            resource.uid().unwrap_or_default(),
            resource.finalizers(),
            conditions::find(&status.conditions, READY)
                .map(|condition| format!("{}: {}", condition.reason, condition.message)),
        ));
    }
    for secret in Api::<Secret>::all(client.clone())
        .list_metadata(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|secret| ours(secret.namespace()))
    {
        left.push(format!(
            "secret {}/{}",
            secret.namespace().unwrap_or_default(),
            secret.name_any()
        ));
    }
    let role_prefix = naming::environment_cluster_role(&format!("{run_name}-"));
    for role in Api::<ClusterRole>::all(client.clone())
        .list_metadata(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|role| role.name_any().starts_with(&role_prefix))
    {
        left.push(format!("clusterrole {}", role.name_any()));
    }
    for binding in Api::<ClusterRoleBinding>::all(client.clone())
        .list_metadata(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|binding| binding.name_any().starts_with(&role_prefix))
    {
        left.push(format!("clusterrolebinding {}", binding.name_any()));
    }
    Ok(left)
}

/// The databases and roles of the run still on the server: by name, and by the ownership
/// marker of any PostgreSQL resource the run made.
async fn orphans_on_the_server(
    cluster: &LocalCluster,
    run: &Mutex<Run>,
    run_name: &str,
) -> anyhow::Result<Vec<String>> {
    let prefix = database_prefix(run_name);
    let (markers, names): (Vec<String>, Vec<String>) = lock(run)
        .databases
        .iter()
        .map(|database| {
            (
                sql::marker(&database.uid),
                naming::database_name(&database.namespace, &database.name),
            )
        })
        .unzip();
    for name in &names {
        ensure!(
            name.starts_with(&prefix),
            "the database {name} does not start with {prefix}: the check would miss it"
        );
    }
    let (admin, connection) = tokio_postgres::connect(cluster.postgres_admin_url(), NoTls).await?;
    let connection = tokio::spawn(connection);
    let rows = admin
        .query(
            "SELECT 'database ' || datname || coalesce(' (' || shobj_description(oid, 'pg_database') || ')', '')
               FROM pg_database
              WHERE starts_with(datname, $1)
                 OR split_part(shobj_description(oid, 'pg_database'), ' ', 1) = ANY($2)
             UNION ALL
             SELECT 'role ' || rolname || coalesce(' (' || shobj_description(oid, 'pg_authid') || ')', '')
               FROM pg_roles
              WHERE starts_with(rolname, $1) OR shobj_description(oid, 'pg_authid') = ANY($2)",
            &[&prefix, &markers],
        )
        .await?;
    drop(admin);
    let _ = connection.await;
    Ok(rows
        .iter()
        .map(|row| {
            format!(
                "orphaned on the PostgreSQL server: {}",
                row.get::<_, String>(0)
            )
        })
        .collect())
}

/// Every panic in the operators' logs.
fn panics(logs: &Path) -> anyhow::Result<Vec<String>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(logs)? {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path)?;
        found.extend(
            text.lines()
                .filter(|line| line.contains("panicked"))
                .map(|line| format!("panic in {}: {line}", path.display())),
        );
    }
    Ok(found)
}

/// The operators' log lines that name an environment, namespace or database of a problem.
fn evidence(logs: &Path, problems: &[String], run_name: &str) -> anyhow::Result<String> {
    let database_prefix = database_prefix(run_name);
    let words: Vec<&str> = problems
        .iter()
        .flat_map(|problem| problem.split([' ', '(', ')', '/', ',', ':', '"']))
        .filter(|word| word.contains(run_name) || word.starts_with(&database_prefix))
        .collect();
    let mut files: Vec<PathBuf> = std::fs::read_dir(logs)?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    let mut lines = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path)?;
        let file = path.file_name().unwrap_or_default().to_string_lossy();
        lines.extend(
            text.lines()
                .filter(|line| words.iter().any(|word| line.contains(word)))
                .map(|line| format!("{file}: {line}")),
        );
    }
    let skipped = lines.len().saturating_sub(200);
    let mut text = lines.split_off(skipped).join("\n");
    if skipped > 0 {
        text = format!("({skipped} earlier lines left out)\n{text}");
    }
    Ok(text)
}
