//! The PostgreSQL controller against the real local cluster and the real PostgreSQL server.

mod support;

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use jf_api::conditions::{self, READY};
use jf_api::naming::database_name;
use jf_api::{PostgreSQL, PostgreSQLSpec};
use jf_testkit::{cluster, eventually, unique_name};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt as _};
use serde_json::json;
use support::{admin, gone};
use tokio_postgres::NoTls;

async fn namespace(client: &Client) -> anyhow::Result<String> {
    let name = unique_name("pg");
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}}))?,
        )
        .await?;
    Ok(name)
}

fn resource(name: &str, extensions: &[&str], template: Option<&str>) -> PostgreSQL {
    PostgreSQL::new(
        name,
        PostgreSQLSpec {
            extensions: extensions
                .iter()
                .map(|extension| (*extension).to_owned())
                .collect(),
            template: template.map(str::to_owned),
            ..PostgreSQLSpec::default()
        },
    )
}

async fn create(client: &Client, namespace: &str, resource: PostgreSQL) -> anyhow::Result<()> {
    Api::<PostgreSQL>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &resource)
        .await?;
    Ok(())
}

/// Waits until the resource's Ready condition has `reason` at its current generation.
async fn with_reason(client: &Client, namespace: &str, name: &str, reason: &str) -> PostgreSQL {
    let api: Api<PostgreSQL> = Api::namespaced(client.clone(), namespace);
    eventually(&format!("postgresql {name} to be {reason}"), || async {
        let resource = api.get(name).await?;
        let condition = resource
            .status
            .as_ref()
            .and_then(|status| conditions::find(&status.conditions, READY).cloned());
        ensure!(
            condition
                .as_ref()
                .is_some_and(|condition| condition.reason == reason
                    && condition.observed_generation == resource.metadata.generation),
            "condition: {condition:?}"
        );
        Ok(resource)
    })
    .await
}

async fn ready(client: &Client, namespace: &str, name: &str) -> PostgreSQL {
    with_reason(client, namespace, name, "Ready").await
}

/// The Secret's value of `key`.
async fn secret_value(
    client: &Client,
    namespace: &str,
    name: &str,
    key: &str,
) -> anyhow::Result<String> {
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get(&format!("{name}-postgresql"))
        .await?;
    let value = secret
        .data
        .unwrap_or_default()
        .remove(key)
        .context("no such key")?;
    Ok(String::from_utf8(value.0)?)
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn admin_sql() -> anyhow::Result<tokio_postgres::Client> {
    connect(cluster().await.postgres_admin_url()).await
}

/// Whether the server has the role and the database.
async fn on_server(database: &str) -> anyhow::Result<(bool, bool)> {
    let admin = admin_sql().await?;
    let row = admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1), EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
            &[&database],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

#[tokio::test]
async fn credentials_connect_and_own_their_database() -> anyhow::Result<()> {
    let client = admin().await;
    let namespace = namespace(&client).await?;
    create(
        &client,
        &namespace,
        resource("api", &["uuid", "citext"], None),
    )
    .await?;
    let resource = ready(&client, &namespace, "api").await;
    let status = resource.status.unwrap_or_default();
    let database = database_name(&namespace, "api");
    assert_eq!(status.database.as_deref(), Some(database.as_str()));
    assert_eq!(status.secret_name.as_deref(), Some("api-postgresql"));
    assert_eq!(status.extensions, ["citext", "uuid-ossp"]);

    let url = secret_value(&client, &namespace, "api", "DATABASE_URL").await?;
    assert_eq!(url, secret_value(&client, &namespace, "api", "uri").await?);
    assert_eq!(
        secret_value(&client, &namespace, "api", "type").await?,
        "postgresql"
    );
    assert_eq!(
        secret_value(&client, &namespace, "api", "database").await?,
        database
    );
    let password = secret_value(&client, &namespace, "api", "password").await?;
    assert!(password.len() >= 22, "at least 128 bits");

    let app = connect(&url).await?;
    app.batch_execute(
        "CREATE TABLE orders (id uuid PRIMARY KEY DEFAULT uuid_generate_v4(), note citext)",
    )
    .await?;
    app.execute("INSERT INTO orders (note) VALUES ($1)", &[&"first"])
        .await?;
    let row = app
        .query_one("SELECT count(*), current_user FROM orders", &[])
        .await?;
    assert_eq!(row.get::<_, i64>(0), 1);
    assert_eq!(row.get::<_, String>(1), database);

    // The role has no more rights than it needs.
    let role = admin_sql()
        .await?
        .query_one(
            "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = $1",
            &[&database],
        )
        .await?;
    assert_eq!(
        (
            role.get::<_, bool>(0),
            role.get::<_, bool>(1),
            role.get::<_, bool>(2)
        ),
        (false, false, false)
    );
    Ok(())
}

#[tokio::test]
async fn one_resources_credentials_cannot_open_anothers_database() -> anyhow::Result<()> {
    let client = admin().await;
    let (a, b) = (namespace(&client).await?, namespace(&client).await?);
    create(&client, &a, resource("db", &[], None)).await?;
    create(&client, &b, resource("db", &[], None)).await?;
    ready(&client, &a, "db").await;
    ready(&client, &b, "db").await;
    let url_a = secret_value(&client, &a, "db", "uri").await?;
    let password_a = secret_value(&client, &a, "db", "password").await?;
    let (host, port) = (
        secret_value(&client, &a, "db", "host").await?,
        secret_value(&client, &a, "db", "port").await?,
    );
    let database_b = database_name(&b, "db");
    let crossing = format!(
        "postgresql://{}:{password_a}@{host}:{port}/{database_b}",
        database_name(&a, "db")
    );
    let error = match tokio_postgres::connect(&crossing, NoTls).await {
        Ok(_) => anyhow::bail!("A's credentials opened B's database"),
        Err(error) => error,
    };
    let message = error
        .as_db_error()
        .map(|error| error.message().to_owned())
        .unwrap_or_default();
    assert!(
        message.contains("permission denied for database"),
        "{error}"
    );
    connect(&url_a)
        .await
        .context("A's credentials open A's database")?;
    Ok(())
}

#[tokio::test]
async fn a_template_is_cloned_with_its_rows_and_only_a_template() -> anyhow::Result<()> {
    let client = admin().await;
    let namespace = namespace(&client).await?;
    let template = unique_name("seed").replace('-', "_");
    {
        let admin = admin_sql().await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {template}"))
            .await?;
        let (seed, connection) = tokio_postgres::connect(
            &format!(
                "{}/{template}",
                cluster()
                    .await
                    .postgres_admin_url()
                    .trim_end_matches("/postgres")
            ),
            NoTls,
        )
        .await?;
        let connection = tokio::spawn(connection);
        seed.batch_execute(
            "CREATE TABLE cities (name text); INSERT INTO cities VALUES ('Lagos'), ('Lima')",
        )
        .await?;
        drop(seed);
        let _ = connection.await;
        admin
            .batch_execute(&format!("ALTER DATABASE {template} IS_TEMPLATE true"))
            .await?;
    }
    create(
        &client,
        &namespace,
        resource("seeded", &[], Some(&template)),
    )
    .await?;
    ready(&client, &namespace, "seeded").await;
    let app = connect(&secret_value(&client, &namespace, "seeded", "uri").await?).await?;
    let rows = app
        .query("SELECT name FROM cities ORDER BY name", &[])
        .await?;
    let names: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(names, ["Lagos", "Lima"]);
    // The clone's tables are the application's own, so it can migrate them.
    app.batch_execute("ALTER TABLE cities ADD COLUMN country text")
        .await?;

    // `postgres` exists but is no template: refused, and nothing is made on the server.
    create(
        &client,
        &namespace,
        resource("not-template", &[], Some("postgres")),
    )
    .await?;
    let refused = with_reason(&client, &namespace, "not-template", "NotATemplate").await;
    let message = conditions::find(&refused.status.unwrap_or_default().conditions, READY)
        .map(|condition| condition.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("\"postgres\" is not a template"),
        "{message}"
    );
    assert_eq!(
        on_server(&database_name(&namespace, "not-template")).await?,
        (false, false)
    );
    Ok(())
}

#[tokio::test]
async fn deleting_drops_the_database_even_with_open_connections() -> anyhow::Result<()> {
    let client = admin().await;
    let namespace = namespace(&client).await?;
    create(&client, &namespace, resource("busy", &[], None)).await?;
    ready(&client, &namespace, "busy").await;
    let url = secret_value(&client, &namespace, "busy", "uri").await?;
    let mut open = Vec::new();
    for _ in 0..20 {
        open.push(connect(&url).await?);
    }
    let api: Api<PostgreSQL> = Api::namespaced(client.clone(), &namespace);
    let started = Instant::now();
    api.delete("busy", &DeleteParams::default()).await?;
    gone("the busy PostgreSQL resource", || api.get("busy")).await;
    println!(
        "deleted with 20 open connections in {:?}",
        started.elapsed()
    );
    assert_eq!(
        on_server(&database_name(&namespace, "busy")).await?,
        (false, false)
    );
    assert!(
        open[0].simple_query("SELECT 1").await.is_err(),
        "the connections were terminated"
    );
    Ok(())
}

#[tokio::test]
async fn deleting_after_the_database_was_dropped_by_hand_completes() -> anyhow::Result<()> {
    let client = admin().await;
    let namespace = namespace(&client).await?;
    create(&client, &namespace, resource("dropped", &[], None)).await?;
    ready(&client, &namespace, "dropped").await;
    let database = database_name(&namespace, "dropped");
    admin_sql()
        .await?
        .batch_execute(&format!("DROP DATABASE {database} WITH (FORCE)"))
        .await?;
    let api: Api<PostgreSQL> = Api::namespaced(client.clone(), &namespace);
    api.delete("dropped", &DeleteParams::default()).await?;
    gone("the dropped PostgreSQL resource", || api.get("dropped")).await;
    assert_eq!(on_server(&database).await?, (false, false));
    Ok(())
}

#[tokio::test]
async fn a_database_dropped_by_hand_is_made_again_with_an_event() -> anyhow::Result<()> {
    let client = admin().await;
    let namespace = namespace(&client).await?;
    create(&client, &namespace, resource("drift", &["pgcrypto"], None)).await?;
    ready(&client, &namespace, "drift").await;
    let database = database_name(&namespace, "drift");
    admin_sql()
        .await?
        .batch_execute(&format!("DROP DATABASE {database} WITH (FORCE)"))
        .await?;
    let url = secret_value(&client, &namespace, "drift", "uri").await?;
    eventually("the database to be back", || async {
        let app = connect(&url).await?;
        app.query_one("SELECT gen_random_uuid()", &[]).await?;
        Ok(())
    })
    .await;
    eventually("a Recreated event", || async {
        let reasons = support::event_reasons(&client, "drift").await?;
        ensure!(
            reasons.iter().any(|reason| reason == "Recreated"),
            "{reasons:?}"
        );
        Ok(())
    })
    .await;
    Ok(())
}

#[tokio::test]
async fn what_is_not_ours_is_refused_and_left_untouched() -> anyhow::Result<()> {
    let client = admin().await;
    let namespace = namespace(&client).await?;
    let admin = admin_sql().await?;
    // A database of the same name, made by someone else.
    let database = database_name(&namespace, "squatted");
    admin
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await?;
    create(&client, &namespace, resource("squatted", &[], None)).await?;
    let refused = with_reason(&client, &namespace, "squatted", "DatabaseConflict").await;
    assert!(refused.status.is_some());
    let owner: String = admin
        .query_one(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1",
            &[&database],
        )
        .await?
        .get(0);
    assert_eq!(owner, "postgres", "the database is untouched");

    // A role of the same name, made by someone else.
    let role = database_name(&namespace, "impostor");
    admin
        .batch_execute(&format!("CREATE ROLE {role} LOGIN PASSWORD 'theirs'"))
        .await?;
    create(&client, &namespace, resource("impostor", &[], None)).await?;
    with_reason(&client, &namespace, "impostor", "RoleConflict").await;
    assert_eq!(
        on_server(&role).await?,
        (true, false),
        "no database for a role that is not ours"
    );

    // Deleting the resources leaves both in place.
    let api: Api<PostgreSQL> = Api::namespaced(client.clone(), &namespace);
    for name in ["squatted", "impostor"] {
        api.delete(name, &DeleteParams::default()).await?;
        gone(name, || api.get(name)).await;
    }
    assert_eq!(on_server(&database).await?, (false, true));
    assert_eq!(on_server(&role).await?, (true, false));
    admin
        .batch_execute(&format!("DROP DATABASE {database}"))
        .await?;
    admin.batch_execute(&format!("DROP ROLE {role}")).await?;
    Ok(())
}

#[tokio::test]
async fn a_secret_written_before_a_crash_gives_the_role_its_password() -> anyhow::Result<()> {
    let client = admin().await;
    let namespace = namespace(&client).await?;
    // As the operator leaves it when it stops between writing the Secret and CREATE ROLE.
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {
            "name": "early-postgresql",
            "labels": {"app.kubernetes.io/managed-by": "jango-fett", "jango-fett.dev/postgresql": "early"}
        },
        "type": "servicebinding.io/postgresql",
        "stringData": {"password": "pre-crash-password-0123456789abcdef"}
    }))?;
    Api::<Secret>::namespaced(client.clone(), &namespace)
        .create(&PostParams::default(), &secret)
        .await?;
    create(&client, &namespace, resource("early", &[], None)).await?;
    ready(&client, &namespace, "early").await;
    assert_eq!(
        secret_value(&client, &namespace, "early", "password").await?,
        "pre-crash-password-0123456789abcdef",
        "the password is never regenerated"
    );
    let url = secret_value(&client, &namespace, "early", "uri").await?;
    assert!(url.contains(":pre-crash-password-0123456789abcdef@"));
    connect(&url)
        .await
        .context("the role accepts the Secret's password")?;

    // A Secret of that name that is someone else's is refused, untouched.
    let theirs: Secret = serde_json::from_value(json!({
        "metadata": {"name": "taken-postgresql"},
        "stringData": {"password": "theirs"}
    }))?;
    Api::<Secret>::namespaced(client.clone(), &namespace)
        .create(&PostParams::default(), &theirs)
        .await?;
    create(&client, &namespace, resource("taken", &[], None)).await?;
    with_reason(&client, &namespace, "taken", "SecretConflict").await;
    assert_eq!(
        on_server(&database_name(&namespace, "taken")).await?,
        (false, false)
    );
    Ok(())
}

#[tokio::test]
async fn extensions_off_the_allowlist_are_refused_before_any_sql() -> anyhow::Result<()> {
    let client = admin().await;
    let namespace = namespace(&client).await?;
    create(&client, &namespace, resource("py", &["plpython3u"], None)).await?;
    let refused = with_reason(&client, &namespace, "py", "ExtensionNotAllowed").await;
    let message = conditions::find(&refused.status.unwrap_or_default().conditions, READY)
        .map(|condition| condition.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("\"plpython3u\" is not allowed"),
        "{message}"
    );
    assert_eq!(
        on_server(&database_name(&namespace, "py")).await?,
        (false, false)
    );

    // Fixing the spec lifts it.
    Api::<PostgreSQL>::namespaced(client.clone(), &namespace)
        .patch(
            "py",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"extensions": ["pg_trgm"]}})),
        )
        .await?;
    ready(&client, &namespace, "py").await;
    Ok(())
}

#[tokio::test]
async fn a_reconcile_with_nothing_to_change_writes_nothing() -> anyhow::Result<()> {
    let client = admin().await;
    let mut reconciled = support::operator().await.databases();
    let namespace = namespace(&client).await?;
    create(&client, &namespace, resource("quiet", &["uuid"], None)).await?;
    ready(&client, &namespace, "quiet").await;
    let api: Api<PostgreSQL> = Api::namespaced(client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let mut next = async || -> anyhow::Result<u64> {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let event = reconciled.recv().await?;
                if event.namespace == namespace && event.name == "quiet" && event.ok {
                    return anyhow::Ok(event.writes);
                }
            }
        })
        .await?
    };
    while next().await? > 0 {}
    let before = (
        api.get("quiet").await?.resource_version(),
        secrets.get("quiet-postgresql").await?.resource_version(),
    );
    api.patch(
        "quiet",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"test/poke": "1"}}})),
    )
    .await?;
    assert_eq!(next().await?, 0);
    let after_status = api.get("quiet").await?;
    assert_eq!(
        secrets.get("quiet-postgresql").await?.resource_version(),
        before.1
    );
    assert!(
        after_status.resource_version() != before.0,
        "only the poke changed the resource"
    );
    Ok(())
}

#[tokio::test]
async fn the_password_is_in_no_log_event_or_status() -> anyhow::Result<()> {
    let client = admin().await;
    let namespace = namespace(&client).await?;
    create(&client, &namespace, resource("secretive", &["uuid"], None)).await?;
    ready(&client, &namespace, "secretive").await;
    let password = secret_value(&client, &namespace, "secretive", "password").await?;
    connect(&secret_value(&client, &namespace, "secretive", "uri").await?).await?;
    let database = database_name(&namespace, "secretive");

    let server_log = std::fs::read_to_string(cluster().await.postgres_log())?;
    assert!(
        server_log
            .lines()
            .any(|line| line.contains(&format!("CREATE ROLE \"{database}\""))),
        "the server logs every statement (log_statement=all)"
    );
    assert!(
        !server_log.contains(&password),
        "the password is in the PostgreSQL log"
    );
    let operator_log = std::fs::read_to_string(&support::operator().await.log)?;
    assert!(
        !operator_log.contains(&password),
        "the password is in the operator's log"
    );
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(client.clone(), &namespace);
    let events = serde_json::to_string(&events.list(&Default::default()).await?)?;
    assert!(events.contains("Created database"), "{events}");
    assert!(!events.contains(&password), "the password is in an Event");
    let resource = Api::<PostgreSQL>::namespaced(client.clone(), &namespace)
        .get("secretive")
        .await?;
    assert!(
        !serde_json::to_string(&resource)?.contains(&password),
        "the password is in the resource"
    );
    Ok(())
}

#[tokio::test]
async fn retain_keeps_the_database_and_its_role() -> anyhow::Result<()> {
    let client = admin().await;
    let namespace = namespace(&client).await?;
    let mut kept = resource("kept", &[], None);
    kept.spec.deletion_policy = jf_api::DeletionPolicy::Retain;
    create(&client, &namespace, kept).await?;
    ready(&client, &namespace, "kept").await;
    let api: Api<PostgreSQL> = Api::namespaced(client.clone(), &namespace);
    api.delete("kept", &DeleteParams::default()).await?;
    gone("the retained PostgreSQL resource", || api.get("kept")).await;
    let database = database_name(&namespace, "kept");
    assert_eq!(on_server(&database).await?, (true, true));
    let admin = admin_sql().await?;
    admin
        .batch_execute(&format!("DROP DATABASE {database}"))
        .await?;
    admin
        .batch_execute(&format!("DROP ROLE {database}"))
        .await?;
    Ok(())
}

/// Connections to the admin database and to a resource's own, taken and given back by many
/// tasks at once (idle ones closed to make way for others), while the server's own count of
/// them is sampled: it never exceeds the pool's bound.
#[tokio::test]
async fn the_pool_never_holds_more_connections_than_its_bound() -> anyhow::Result<()> {
    const BOUND: usize = 2;
    let cluster = cluster().await;
    let admin = admin_sql().await?;
    let database = unique_name("pool").replace('-', "_");
    admin
        .batch_execute(&format!("CREATE DATABASE \"{database}\""))
        .await?;
    let application = unique_name("jf-pool-test");
    let url = format!(
        "{}?application_name={application}",
        cluster.postgres_admin_url()
    );
    let pool = std::sync::Arc::new(jf_operator::postgres::Pool::new(&url, BOUND)?);

    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        let application = application.clone();
        let admin = admin_sql().await?;
        tokio::spawn(async move {
            let mut most = 0_i64;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                let row = admin
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                        &[&application],
                    )
                    .await?;
                most = most.max(row.get::<_, i64>(0));
            }
            anyhow::Ok(most)
        })
    };
    let workers = (0..8).map(|worker| {
        let pool = pool.clone();
        let database = database.clone();
        tokio::spawn(async move {
            for round in 0..15 {
                let connection = if (worker + round) % 2 == 0 {
                    pool.get().await?
                } else {
                    pool.get_in(&database).await?
                };
                connection.batch_execute("SELECT 1").await?;
            }
            anyhow::Ok(())
        })
    });
    for worker in futures::future::join_all(workers).await {
        worker??;
    }
    drop(pool);
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let most = sampler.await??;
    ensure!(most >= 1, "the sampler never saw the pool's connections");
    ensure!(
        most <= BOUND as i64,
        "the server counted {most} connections of a pool of at most {BOUND}"
    );
    eventually("the test database to be dropped", || async {
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
            ))
            .await?;
        anyhow::Ok(())
    })
    .await;
    Ok(())
}
