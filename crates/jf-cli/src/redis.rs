//! The Redis servers of an environment: the Redis resources in its namespace. An environment's
//! users reach them through their role in the namespace (the operator's ClusterRoles aggregate
//! into admin, edit and view), and read their credentials from the Secret `<name>-redis`.

use jf_api::naming;
use jf_api::{Environment, Redis};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt as _};

use crate::api_error::ApiError;
use crate::databases::namespace_of;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to list the Redis servers of environment \"{environment}\"")]
    List {
        environment: String,
        #[source]
        source: ApiError,
    },
}

impl Error {
    /// What the user can do about it, if anything.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::List {
                environment,
                source,
            } if source.is_forbidden() => Some(format!(
                "only the users of environment \"{environment}\" may see its Redis servers; \
                 ask one of them to run `jf users add {environment} YOUR-USER-NAME`"
            )),
            Self::List { .. } => None,
        }
    }
}

/// The Redis resources of `namespace`.
pub fn api(client: &Client, namespace: &str) -> Api<Redis> {
    Api::namespaced(client.clone(), namespace)
}

/// The Redis servers of `environment`, in `namespace`, by name.
pub async fn list_in(
    client: &Client,
    environment: &str,
    namespace: &str,
) -> Result<Vec<Redis>, Error> {
    let mut servers = api(client, namespace)
        .list(&ListParams::default())
        .await
        .map_err(|error| Error::List {
            environment: environment.to_owned(),
            source: error.into(),
        })?
        .items;
    servers.sort_by_key(|server| server.name_any());
    Ok(servers)
}

/// The Redis servers of an environment as `jf status` shows them.
#[derive(Debug, Clone, PartialEq)]
pub enum Listing {
    Listed(Vec<Redis>),
    /// The caller may read the Environment but not list in its namespace.
    NotAllowed,
}

/// The Redis servers of `environment` for `jf status`: a refusal to list is part of the
/// answer, not an error.
pub async fn listing(client: &Client, environment: &Environment) -> Result<Listing, Error> {
    match list_in(client, &environment.name_any(), &namespace_of(environment)).await {
        Ok(servers) => Ok(Listing::Listed(servers)),
        Err(Error::List { source, .. }) if source.is_forbidden() => Ok(Listing::NotAllowed),
        Err(error) => Err(error),
    }
}

/// The Secret with the server's password and URL: the one its status names, or
/// `<name>-redis`.
pub fn secret_name(server: &Redis) -> String {
    server
        .status
        .as_ref()
        .and_then(|status| status.secret_name.clone())
        .filter(|secret| !secret.is_empty())
        .unwrap_or_else(|| naming::redis(&server.name_any()))
}

#[cfg(test)]
mod tests {
    use jf_api::{RedisSpec, RedisStatus};

    use super::*;

    #[test]
    fn the_secret_is_the_one_the_status_names() {
        let mut server = Redis::new("cache", RedisSpec::default());
        assert_eq!(secret_name(&server), "cache-redis");
        server.status = Some(RedisStatus {
            secret_name: Some("other".to_owned()),
            ..RedisStatus::default()
        });
        assert_eq!(secret_name(&server), "other");
    }
}
