//! A small pool of connections to the shared server: at most `max` open at once, idle ones
//! included; admin-database connections reused, connections to a resource's own database
//! opened for one task.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, Config, NoTls};

use super::Error;

#[derive(Debug)]
pub struct Pool {
    config: Config,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Idle>>,
}

/// An idle admin-database connection, and the task that drives it (done once it is closed).
struct Idle {
    client: Client,
    driver: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Idle {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Idle")
    }
}

/// A connection, returned to the pool (or closed) when dropped.
pub struct Connection<'a> {
    client: Option<(Client, tokio::task::JoinHandle<()>)>,
    pool: &'a Pool,
    reuse: bool,
    permit: Option<OwnedSemaphorePermit>,
}

impl std::ops::Deref for Connection<'_> {
    type Target = Client;

    fn deref(&self) -> &Client {
        // Present until dropped.
        &self.client.as_ref().unwrap_or_else(|| unreachable!()).0
    }
}

impl Drop for Connection<'_> {
    fn drop(&mut self) {
        let Some((client, driver)) = self.client.take() else {
            return;
        };
        if self.reuse
            && !client.is_closed()
            && let Ok(mut idle) = self.pool.idle.lock()
        {
            idle.push(Idle { client, driver });
            return;
        }
        // Closed: its place is free once the connection has ended, not before.
        drop(client);
        let permit = self.permit.take();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(1), driver).await;
                drop(permit);
            });
        }
    }
}

impl Pool {
    /// A pool for the server at `url` (the admin's connection URL), of at most `max`
    /// connections.
    pub fn new(url: &str, max: usize) -> Result<Self, Error> {
        let mut config: Config = url.parse().map_err(|_| Error::InvalidUrl)?;
        config
            .connect_timeout(Duration::from_secs(5))
            .application_name("jango-fett-operator");
        Ok(Self {
            config,
            permits: Arc::new(Semaphore::new(max.max(1))),
            idle: Mutex::default(),
        })
    }

    /// The host and port in the admin URL.
    pub fn address(&self) -> (String, u16) {
        let host = self
            .config
            .get_hosts()
            .first()
            .map(|host| match host {
                tokio_postgres::config::Host::Tcp(host) => host.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".to_owned());
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        (host, port)
    }

    /// A connection to the admin's database.
    pub async fn get(&self) -> Result<Connection<'_>, Error> {
        let permit = self.permit().await?;
        let reused = self.idle.lock().ok().and_then(|mut idle| {
            while let Some(Idle { client, driver }) = idle.pop() {
                if !client.is_closed() {
                    return Some((client, driver));
                }
            }
            None
        });
        let client = match reused {
            Some(client) => client,
            None => self.connect(&self.config).await?,
        };
        Ok(Connection {
            client: Some(client),
            pool: self,
            reuse: true,
            permit: Some(permit),
        })
    }

    /// A connection to `database`, closed when dropped.
    pub async fn get_in(&self, database: &str) -> Result<Connection<'_>, Error> {
        let permit = self.permit().await?;
        // Idle connections count towards the limit too: one makes way for this one, closed
        // before this one opens.
        let evicted = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        if let Some(Idle { client, driver }) = evicted {
            drop(client);
            let _ = tokio::time::timeout(Duration::from_secs(1), driver).await;
        }
        let mut config = self.config.clone();
        config.dbname(database);
        let client = self.connect(&config).await?;
        Ok(Connection {
            client: Some(client),
            pool: self,
            reuse: false,
            permit: Some(permit),
        })
    }

    async fn permit(&self) -> Result<OwnedSemaphorePermit, Error> {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Closed)
    }

    async fn connect(
        &self,
        config: &Config,
    ) -> Result<(Client, tokio::task::JoinHandle<()>), Error> {
        let (client, connection) = config.connect(NoTls).await.map_err(Error::Unavailable)?;
        let driver = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "a PostgreSQL connection ended");
            }
        });
        Ok((client, driver))
    }
}
