//! The Secret `<name>-postgresql`: the credentials in the servicebinding.io layout, plus
//! `DATABASE_URL`. Its password is generated once, from the OS's random source, and kept
//! for as long as the Secret exists.

use std::collections::BTreeMap;

use jf_api::PostgreSQL;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::{Resource as _, ResourceExt as _};
use rand::distr::Alphanumeric;
use rand::{Rng as _, TryRngCore as _};
use serde_json::json;

use super::plan::Names;
use crate::postgres::sql;

/// The label naming the PostgreSQL resource a Secret belongs to.
pub const POSTGRESQL_LABEL: &str = "jango-fett.dev/postgresql";

/// A new password: 32 characters from 62, about 190 bits, from the OS's random source.
pub fn new_password() -> String {
    rand::rngs::OsRng
        .unwrap_err()
        .sample_iter(Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// Where applications reach the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

/// The Secret for `resource` with `password`.
pub fn build(
    resource: &PostgreSQL,
    names: &Names,
    password: &str,
    endpoint: &Endpoint,
) -> Option<Secret> {
    let owner = resource.controller_owner_ref(&())?;
    let database = &names.database;
    let uri = format!(
        "postgresql://{}{}:{}/{database}",
        sql::url_credentials(names.role(), password),
        endpoint.host,
        endpoint.port
    );
    let data: BTreeMap<&str, String> = BTreeMap::from([
        ("type", "postgresql".to_owned()),
        ("provider", "jango-fett".to_owned()),
        ("host", endpoint.host.clone()),
        ("port", endpoint.port.to_string()),
        ("database", database.clone()),
        ("username", names.role().to_owned()),
        ("password", password.to_owned()),
        ("uri", uri.clone()),
        ("DATABASE_URL", uri),
    ]);
    let data: BTreeMap<String, ByteString> = data
        .into_iter()
        .map(|(key, value)| (key.to_owned(), ByteString(value.into_bytes())))
        .collect();
    serde_json::from_value(json!({
        "metadata": {
            "name": names.secret,
            "namespace": resource.namespace(),
            "labels": {
                jf_api::MANAGED_BY_LABEL: jf_api::MANAGED_BY,
                POSTGRESQL_LABEL: resource.name_any(),
            },
            "ownerReferences": [owner],
        },
        "type": "servicebinding.io/postgresql",
        "data": data,
    }))
    .ok()
}

/// The password of an existing Secret, if it is ours: owned by `resource`, or made by Jango
/// Fett for it before its owner reference could be set. Any other Secret of that name is
/// someone else's.
pub fn our_password(secret: &Secret, resource: &PostgreSQL) -> Result<String, String> {
    let uid = resource.uid().unwrap_or_default();
    let owners = secret.owner_references();
    let made_for_it = owners.is_empty()
        && secret
            .labels()
            .get(jf_api::MANAGED_BY_LABEL)
            .map(String::as_str)
            == Some(jf_api::MANAGED_BY)
        && secret.labels().get(POSTGRESQL_LABEL) == Some(&resource.name_any());
    if !(owners.iter().any(|owner| owner.uid == uid) || made_for_it) {
        return Err(format!(
            "a Secret {} already exists and was not made for this resource; it is left untouched",
            secret.name_any()
        ));
    }
    secret
        .data
        .as_ref()
        .and_then(|data| data.get("password"))
        .and_then(|password| String::from_utf8(password.0.clone()).ok())
        .filter(|password| !password.is_empty())
        .ok_or_else(|| format!("the Secret {} has no password", secret.name_any()))
}

#[cfg(test)]
mod tests {
    use jf_api::PostgreSQLSpec;

    use super::*;

    fn resource() -> PostgreSQL {
        let mut resource = PostgreSQL::new("api", PostgreSQLSpec::default());
        resource.metadata.namespace = Some("jf-fix-bug".to_owned());
        resource.metadata.uid = Some("uid-1".to_owned());
        resource
    }

    fn text(secret: &Secret, key: &str) -> String {
        String::from_utf8(secret.data.as_ref().expect("data")[key].0.clone()).expect("utf-8")
    }

    #[test]
    fn passwords_are_long_and_different() {
        let (first, second) = (new_password(), new_password());
        assert_eq!(first.len(), 32);
        assert!(first.bytes().all(|byte| byte.is_ascii_alphanumeric()));
        assert_ne!(first, second);
    }

    #[test]
    fn servicebinding_layout_and_database_url() {
        let resource = resource();
        let names = Names::new("jf-fix-bug", "api");
        let endpoint = Endpoint {
            host: "db.example".to_owned(),
            port: 5433,
        };
        let secret = build(&resource, &names, "pw", &endpoint).expect("builds");
        assert_eq!(secret.metadata.name.as_deref(), Some("api-postgresql"));
        assert_eq!(
            secret.type_.as_deref(),
            Some("servicebinding.io/postgresql")
        );
        assert_eq!(secret.owner_references()[0].uid, "uid-1");
        let keys: Vec<&str> = secret
            .data
            .as_ref()
            .expect("data")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "DATABASE_URL",
                "database",
                "host",
                "password",
                "port",
                "provider",
                "type",
                "uri",
                "username"
            ]
        );
        let url = format!("postgresql://{0}:pw@db.example:5433/{0}", names.database);
        assert_eq!(text(&secret, "uri"), url);
        assert_eq!(text(&secret, "DATABASE_URL"), url);
        assert_eq!(text(&secret, "type"), "postgresql");
        assert_eq!(text(&secret, "username"), names.database);
        assert_eq!(our_password(&secret, &resource), Ok("pw".to_owned()));
    }

    #[test]
    fn someone_elses_secret_is_refused() {
        let resource = resource();
        let names = Names::new("jf-fix-bug", "api");
        let endpoint = Endpoint {
            host: "h".to_owned(),
            port: 1,
        };
        let mut secret = build(&resource, &names, "pw", &endpoint).expect("builds");
        secret.metadata.owner_references = None;
        // Made by us before the owner reference: still ours.
        assert!(our_password(&secret, &resource).is_ok());
        secret.metadata.labels = None;
        assert!(our_password(&secret, &resource).is_err());
    }
}
