//! End to end: `jf db url|reset|list` and the databases in `jf status`, the `jf` binary against
//! the real local cluster, the real operator binary and the real PostgreSQL server.

mod support;

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use jf_api::conditions::{self, READY};
use jf_api::naming::database_name;
use jf_api::{Environment, PostgreSQL, PostgreSQLSpec};
use jf_testkit::{eventually, unique_name};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt as _};
use serde_json::{Value, json};
use support::{admin, admin_kubeconfig, jf, jf_fails, jf_ok, kubeconfig_as};
use tokio_postgres::NoTls;

/// Creates an environment with `jf create env` (and `arguments`) and returns its namespace.
async fn environment(client: &Client, name: &str, arguments: &[&str]) -> anyhow::Result<String> {
    let kubeconfig = admin_kubeconfig().await;
    let mut create = vec!["create", "env", name];
    create.extend_from_slice(arguments);
    jf_ok(kubeconfig, &create).await;
    Api::<Environment>::all(client.clone())
        .get(name)
        .await?
        .status
        .and_then(|status| status.namespace)
        .context("the environment reports its namespace")
}

fn postgresql(name: &str, extensions: &[&str], template: Option<&str>) -> PostgreSQL {
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

/// Creates the PostgreSQL resource and waits until its Ready condition has `reason` at its
/// current generation.
async fn create_database(
    client: &Client,
    namespace: &str,
    resource: PostgreSQL,
    reason: &str,
) -> anyhow::Result<PostgreSQL> {
    let api: Api<PostgreSQL> = Api::namespaced(client.clone(), namespace);
    let name = resource.name_any();
    api.create(&PostParams::default(), &resource).await?;
    Ok(
        eventually(&format!("postgresql {name} to be {reason}"), || async {
            let resource = api.get(&name).await?;
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
        .await,
    )
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// The server's admin, in `database`.
async fn admin_sql(database: &str) -> anyhow::Result<tokio_postgres::Client> {
    let mut config: tokio_postgres::Config =
        jf_testkit::cluster().await.postgres_admin_url().parse()?;
    config.dbname(database);
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// What `jf db url` prints: one line, the URL.
async fn url(environment: &str, name: &str) -> anyhow::Result<String> {
    let out = jf_ok(admin_kubeconfig().await, &["db", "url", environment, name]).await;
    let url = out.strip_suffix('\n').context("a line")?;
    ensure!(!url.contains('\n'), "one line only: {out}");
    Ok(url.to_owned())
}

async fn secret_uri(client: &Client, namespace: &str, name: &str) -> anyhow::Result<String> {
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get(&format!("{name}-postgresql"))
        .await?;
    let uri = secret
        .data
        .unwrap_or_default()
        .remove("uri")
        .context("a uri")?;
    Ok(String::from_utf8(uri.0)?)
}

async fn delete_environment(name: &str) {
    assert_eq!(
        jf_ok(admin_kubeconfig().await, &["delete", "env", name]).await,
        format!("Deleted environment \"{name}\"\n")
    );
}

#[tokio::test]
async fn url_gives_a_working_database_and_reset_makes_it_fresh() -> anyhow::Result<()> {
    let kubeconfig = admin_kubeconfig().await;
    let client = admin().await;
    let env = unique_name("db");
    let namespace = environment(&client, &env, &[]).await?;
    create_database(
        &client,
        &namespace,
        postgresql("api", &["uuid"], None),
        "Ready",
    )
    .await?;
    let database = database_name(&namespace, "api");

    // Status lists it.
    let summary = jf_ok(kubeconfig, &["status", &env]).await;
    ensure!(summary.contains("\nDatabases:\n"), "{summary}");
    let row = summary
        .lines()
        .find(|line| line.starts_with("  api "))
        .with_context(|| format!("no row for api:\n{summary}"))?;
    ensure!(
        row.split_whitespace().collect::<Vec<_>>() == ["api", "True", &database, "api-postgresql"],
        "{row}"
    );
    // The object's shape is the Environment's, as before.
    let object: Value =
        serde_json::from_str(&jf_ok(kubeconfig, &["status", &env, "-o", "json"]).await)?;
    assert_eq!(object["kind"], json!("Environment"));

    // List, as a table and as objects.
    let table = jf_ok(kubeconfig, &["db", "list", &env]).await;
    let mut lines = table.lines();
    ensure!(
        lines
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            == ["NAME", "DATABASE", "READY", "REASON", "SECRET", "AGE"],
        "{table}"
    );
    let cells: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    ensure!(
        cells[..5] == ["api", database.as_str(), "True", "Ready", "api-postgresql"],
        "{table}"
    );
    let listed: Value =
        serde_json::from_str(&jf_ok(kubeconfig, &["db", "list", &env, "-o", "json"]).await)?;
    assert_eq!(listed[0]["kind"], json!("PostgreSQL"));
    assert_eq!(listed[0]["metadata"]["name"], json!("api"));
    assert_eq!(listed[0]["metadata"]["managedFields"], Value::Null);
    let yaml = jf_ok(kubeconfig, &["db", "ls", &env, "-o", "yaml"]).await;
    ensure!(yaml.contains(&format!("database: {database}\n")), "{yaml}");

    // The URL is the Secret's, and it works: tables, rows, the extension.
    let url = url(&env, "api").await?;
    assert_eq!(url, secret_uri(&client, &namespace, "api").await?);
    let app = connect(&url).await?;
    app.batch_execute("CREATE TABLE t (id uuid DEFAULT uuid_generate_v4())")
        .await?;
    app.execute("INSERT INTO t DEFAULT VALUES", &[]).await?;
    let count: i64 = app.query_one("SELECT count(*) FROM t", &[]).await?.get(0);
    assert_eq!(count, 1);

    // Reset: a fresh database, with its extension, behind the same URL; the open connection
    // was closed.
    assert_eq!(
        jf_ok(kubeconfig, &["db", "reset", &env, "api"]).await,
        "Reset database \"api\"\n"
    );
    ensure!(
        app.simple_query("SELECT 1").await.is_err(),
        "the connection from before the reset is still open"
    );
    assert_eq!(self::url(&env, "api").await?, url);
    let app = connect(&url).await?;
    let gone: bool = app
        .query_one("SELECT to_regclass('public.t') IS NULL", &[])
        .await?
        .get(0);
    ensure!(gone, "the table survived the reset");
    app.batch_execute("SELECT uuid_generate_v4()").await?;
    let resource = Api::<PostgreSQL>::namespaced(client.clone(), &namespace)
        .get("api")
        .await?;
    let status = resource.status.clone().unwrap_or_default();
    assert_eq!(status.reset, resource.spec.reset);

    // Without waiting: it says it asked, and the operator does it.
    assert_eq!(
        jf_ok(kubeconfig, &["db", "reset", &env, "api", "--no-wait"]).await,
        "Resetting database \"api\"\n"
    );
    let api: Api<PostgreSQL> = Api::namespaced(client.clone(), &namespace);
    let asked = api.get("api").await?.spec.reset;
    ensure!(asked != status.reset, "no new reset was asked for");
    eventually("the second reset", || async {
        let resource = api.get("api").await?;
        let status = resource.status.unwrap_or_default();
        ensure!(status.reset == asked, "{:?}", status.reset);
        ensure!(conditions::is_ready(
            &status.conditions,
            resource.metadata.generation
        ));
        Ok(())
    })
    .await;

    // What is not there.
    let stderr = jf_fails(kubeconfig, &["db", "url", &env, "missing"]).await;
    assert_eq!(
        stderr,
        format!(
            "error: database \"missing\" not found in environment \"{env}\"\n\
             hint: run `jf db list {env}` to see the environment's databases\n"
        )
    );
    let stderr = jf_fails(kubeconfig, &["db", "reset", &env, "missing"]).await;
    ensure!(
        stderr.contains("error: database \"missing\" not found"),
        "{stderr}"
    );
    let other = unique_name("nowhere");
    let stderr = jf_fails(kubeconfig, &["db", "url", &other, "api"]).await;
    assert_eq!(
        stderr,
        format!(
            "error: environment \"{other}\" not found\nhint: run `jf list` to see your environments\n"
        )
    );

    delete_environment(&env).await;
    Ok(())
}

#[tokio::test]
async fn a_refused_database_has_no_url_and_its_reset_stops_at_the_reason() -> anyhow::Result<()> {
    let kubeconfig = admin_kubeconfig().await;
    let client = admin().await;
    let env = unique_name("refused");
    let namespace = environment(&client, &env, &[]).await?;
    create_database(
        &client,
        &namespace,
        postgresql("geo", &["postgis"], None),
        "ExtensionNotAllowed",
    )
    .await?;

    let stderr = jf_fails(kubeconfig, &["db", "url", &env, "geo"]).await;
    ensure!(
        stderr.starts_with(
            "error: database \"geo\" is not ready: the extension \"postgis\" is not allowed"
        ),
        "{stderr}"
    );
    ensure!(stderr.contains("(ExtensionNotAllowed)\n"), "{stderr}");
    ensure!(
        stderr.contains("hint: ask your platform team to allow the extension"),
        "{stderr}"
    );

    let summary = jf_ok(kubeconfig, &["status", &env]).await;
    let row = summary
        .lines()
        .find(|line| line.starts_with("  geo "))
        .with_context(|| format!("no row for geo:\n{summary}"))?;
    ensure!(
        row.contains("False (ExtensionNotAllowed)") && row.contains("is not allowed"),
        "{row}"
    );

    let started = Instant::now();
    let stderr = jf_fails(kubeconfig, &["db", "reset", &env, "geo"]).await;
    ensure!(
        started.elapsed() < Duration::from_secs(60),
        "waited for the timeout"
    );
    ensure!(
        stderr.starts_with("error: database \"geo\" failed: "),
        "{stderr}"
    );
    ensure!(stderr.contains("(ExtensionNotAllowed)\n"), "{stderr}");

    delete_environment(&env).await;
    Ok(())
}

/// Makes the template database `name` with two rows, as a platform team would.
async fn seed_template(name: &str) -> anyhow::Result<()> {
    admin_sql("postgres")
        .await?
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    let seed = admin_sql(name).await?;
    seed.batch_execute(
        "CREATE TABLE cities (name text); INSERT INTO cities VALUES ('Lagos'), ('Lima')",
    )
    .await?;
    // A database with open connections cannot be cloned.
    drop(seed);
    eventually("the seed's connection to close", || async {
        let open: i64 = admin_sql("postgres")
            .await?
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                &[&name],
            )
            .await?
            .get(0);
        ensure!(open == 0, "{open} open connections");
        Ok(())
    })
    .await;
    admin_sql("postgres")
        .await?
        .batch_execute(&format!("ALTER DATABASE {name} IS_TEMPLATE true"))
        .await?;
    Ok(())
}

async fn cities(url: &str) -> anyhow::Result<Vec<String>> {
    let rows = connect(url)
        .await?
        .query("SELECT name FROM cities ORDER BY name", &[])
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

#[tokio::test]
async fn a_reset_brings_back_the_templates_rows() -> anyhow::Result<()> {
    let kubeconfig = admin_kubeconfig().await;
    let client = admin().await;
    let template = unique_name("seed").replace('-', "_");
    let env = unique_name("seeded");
    let namespace = environment(&client, &env, &[]).await?;

    // Asked for before the template exists: refused, with what to do.
    create_database(
        &client,
        &namespace,
        postgresql("seeded", &[], Some(&template)),
        "TemplateNotFound",
    )
    .await?;
    let stderr = jf_fails(kubeconfig, &["db", "url", &env, "seeded"]).await;
    ensure!(stderr.contains("(TemplateNotFound)\n"), "{stderr}");
    ensure!(
        stderr.contains("hint: ask your platform team for the template database"),
        "{stderr}"
    );

    // Once it exists, a reset is what makes the operator look again: the refusal from
    // before does not end the wait.
    seed_template(&template).await?;
    let reset = format!("Reset database \"seeded\" from template \"{template}\"\n");
    assert_eq!(
        jf_ok(kubeconfig, &["db", "reset", &env, "seeded"]).await,
        reset
    );
    let url = url(&env, "seeded").await?;
    assert_eq!(cities(&url).await?, ["Lagos", "Lima"]);

    connect(&url)
        .await?
        .batch_execute("INSERT INTO cities VALUES ('Quito')")
        .await?;
    assert_eq!(cities(&url).await?, ["Lagos", "Lima", "Quito"]);
    assert_eq!(
        jf_ok(kubeconfig, &["db", "reset", &env, "seeded"]).await,
        reset
    );
    assert_eq!(cities(&url).await?, ["Lagos", "Lima"]);

    delete_environment(&env).await;
    let admin_sql = admin_sql("postgres").await?;
    // One statement each: DROP DATABASE cannot run in a transaction.
    for statement in [
        format!("ALTER DATABASE {template} IS_TEMPLATE false"),
        format!("DROP DATABASE {template}"),
    ] {
        admin_sql.batch_execute(&statement).await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_user_uses_the_databases_of_their_environment() -> anyhow::Result<()> {
    let admin_kubeconfig = admin_kubeconfig().await;
    let client = admin().await;
    let alice = unique_name("alice");
    let eve = unique_name("eve");
    let env = unique_name("shared");
    let namespace = environment(&client, &env, &["--user", &alice]).await?;
    create_database(&client, &namespace, postgresql("api", &[], None), "Ready").await?;

    // Alice, a user of the environment, through her role in its namespace.
    let kubeconfig = kubeconfig_as(admin_kubeconfig, &alice)?;
    eventually("alice to see the environment's databases", || async {
        let output = jf(&kubeconfig, &["status", &env]).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        ensure!(
            output.status.success() && stdout.lines().any(|line| line.starts_with("  api ")),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    })
    .await;
    let url = jf_ok(&kubeconfig, &["db", "url", &env, "api"]).await;
    connect(url.trim_end()).await?;
    assert_eq!(
        jf_ok(&kubeconfig, &["db", "reset", &env, "api"]).await,
        "Reset database \"api\"\n"
    );

    // Eve may read the Environment and nothing in its namespace.
    let role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": format!("jf-test-{eve}")},
        "rules": [{
            "apiGroups": ["jango-fett.dev"],
            "resources": ["environments"],
            "resourceNames": [env],
            "verbs": ["get"],
        }],
    }))?;
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("jf-test-{eve}")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("jf-test-{eve}")},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": eve}],
    }))?;
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    roles.create(&PostParams::default(), &role).await?;
    bindings.create(&PostParams::default(), &binding).await?;
    let eve_kubeconfig = kubeconfig_as(admin_kubeconfig, &eve)?;
    let summary = eventually("eve to read the environment", || async {
        let output = jf(&eve_kubeconfig, &["status", &env]).await;
        ensure!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    })
    .await;
    ensure!(
        summary.ends_with("Databases:\n  (not allowed to list)\nRedis:\n  (not allowed to list)\n"),
        "{summary}"
    );
    let stderr = jf_fails(&eve_kubeconfig, &["db", "url", &env, "api"]).await;
    ensure!(
        stderr.starts_with(&format!(
            "error: failed to read database \"api\" of environment \"{env}\": "
        )),
        "{stderr}"
    );
    ensure!(
        stderr.contains(&format!(
            "hint: only the users of environment \"{env}\" may use its databases"
        )),
        "{stderr}"
    );

    for path in [&kubeconfig, &eve_kubeconfig] {
        let _ = std::fs::remove_file(path);
    }
    bindings
        .delete(&format!("jf-test-{eve}"), &DeleteParams::default())
        .await?;
    roles
        .delete(&format!("jf-test-{eve}"), &DeleteParams::default())
        .await?;
    delete_environment(&env).await;
    Ok(())
}
