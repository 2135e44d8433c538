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
    idle: Mutex<Vec<Client>>,
}

/// A connection, returned to the pool (or closed) when dropped.
pub struct Connection<'a> {
    client: Option<Client>,
    pool: &'a Pool,
    reuse: bool,
    _permit: OwnedSemaphorePermit,
}

impl std::ops::Deref for Connection<'_> {
    type Target = Client;

    fn deref(&self) -> &Client {
        // Present until dropped.
        self.client.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Connection<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
            && self.reuse
            && !client.is_closed()
            && let Ok(mut idle) = self.pool.idle.lock()
        {
            idle.push(client);
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
            while let Some(client) = idle.pop() {
                if !client.is_closed() {
                    return Some(client);
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
            _permit: permit,
        })
    }

    /// A connection to `database`, closed when dropped.
    pub async fn get_in(&self, database: &str) -> Result<Connection<'_>, Error> {
        let permit = self.permit().await?;
        // Idle connections count towards the limit too: one makes way for this one.
        if let Ok(mut idle) = self.idle.lock() {
            idle.pop();
        }
        let mut config = self.config.clone();
        config.dbname(database);
        let client = self.connect(&config).await?;
        Ok(Connection {
            client: Some(client),
            pool: self,
            reuse: false,
            _permit: permit,
        })
    }

    async fn permit(&self) -> Result<OwnedSemaphorePermit, Error> {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Closed)
    }

    async fn connect(&self, config: &Config) -> Result<Client, Error> {
        let (client, connection) = config.connect(NoTls).await.map_err(Error::Unavailable)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "a PostgreSQL connection ended");
            }
        });
        Ok(client)
    }
}
