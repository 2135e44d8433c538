//! The shared PostgreSQL server goes away and comes back: resources say so, then recover by
//! themselves. Alone in its test binary, since it stops the server every test uses.

mod support;

use anyhow::ensure;
use jf_api::conditions::{self, READY};
use jf_api::{PostgreSQL, PostgreSQLSpec};
use jf_testkit::{cluster, eventually, eventually_within, unique_name};
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;
use support::admin;

async fn reason(client: &Client, namespace: &str, name: &str) -> anyhow::Result<(String, String)> {
    let resource = Api::<PostgreSQL>::namespaced(client.clone(), namespace)
        .get(name)
        .await?;
    let condition = resource
        .status
        .as_ref()
        .and_then(|status| conditions::find(&status.conditions, READY).cloned())
        .ok_or_else(|| anyhow::anyhow!("no Ready condition yet"))?;
    Ok((condition.reason, condition.message))
}

#[tokio::test]
async fn resources_recover_when_the_server_comes_back() -> anyhow::Result<()> {
    let client = admin().await;
    let cluster = cluster().await;
    let namespace = unique_name("pg-outage");
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": namespace}}))?,
        )
        .await?;
    let resources: Api<PostgreSQL> = Api::namespaced(client.clone(), &namespace);
    resources
        .create(
            &PostParams::default(),
            &PostgreSQL::new("before", PostgreSQLSpec::default()),
        )
        .await?;
    eventually("the first database to be ready", || async {
        let (reason, message) = reason(&client, &namespace, "before").await?;
        ensure!(reason == "Ready", "{reason}: {message}");
        Ok(())
    })
    .await;

    cluster.stop_postgres().await?;
    let outcome = async {
        resources
            .create(
                &PostParams::default(),
                &PostgreSQL::new("during", PostgreSQLSpec::default()),
            )
            .await?;
        eventually("the new resource to report the outage", || async {
            let (reason, message) = reason(&client, &namespace, "during").await?;
            ensure!(reason == "ServerUnavailable", "{reason}: {message}");
            ensure!(
                message.contains("cannot be reached") && message.contains("retrying"),
                "{message}"
            );
            Ok(())
        })
        .await;
        anyhow::Ok(())
    }
    .await;
    cluster.start_postgres().await?;
    outcome?;

    // Backoff is bounded: recovery comes within a minute without anyone's help, for the
    // resource made during the outage and for one that a reconciliation during it may have
    // marked ServerUnavailable.
    for name in ["during", "before"] {
        eventually_within(
            std::time::Duration::from_secs(90),
            &format!("the resource {name} to recover"),
            || async {
                let (reason, message) = reason(&client, &namespace, name).await?;
                ensure!(reason == "Ready", "{reason}: {message}");
                Ok(())
            },
        )
        .await;
    }
    Ok(())
}
