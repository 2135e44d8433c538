//! A small pool of connections to the shared server: at most `max` open at once, idle ones
//! included; admin-database connections reused, connections to a resource's own database
//! opened for one task. A connection counts as closed once the server has closed it, not
//! when the operator lets go of it: see [`Stream`].

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

use super::Error;

/// The longest a closing connection is waited for before its place is given to another: the
/// server closes its end at once, unless it is in trouble.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

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
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, driver).await;
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
        config.connect_timeout(Duration::from_secs(5));
        if config.get_application_name().is_none() {
            config.application_name("jango-fett-operator");
        }
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
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, driver).await;
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
        let stream = Stream::connect(config).await.map_err(Error::Connect)?;
        let (client, connection) = config
            .connect_raw(stream, NoTls)
            .await
            .map_err(Error::Unavailable)?;
        let driver = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "a PostgreSQL connection ended");
            }
        });
        Ok((client, driver))
    }
}

/// The socket of a connection. Its shutdown, once the connection is done with, waits for the
/// server to close its end: PostgreSQL ends the session (and takes it out of
/// `pg_stat_activity`) before it closes the socket, so a connection's place in the pool is
/// given to another only once the server no longer counts it.
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// Connects to the first host and port of `config`, within its connect timeout.
    async fn connect(config: &Config) -> io::Result<Self> {
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let connect = async {
            let host = match config.get_hosts().first() {
                Some(Host::Unix(directory)) => {
                    let path = directory.join(format!(".s.PGSQL.{port}"));
                    return Ok(Self::Unix(UnixStream::connect(path).await?));
                }
                Some(Host::Tcp(host)) => host.as_str(),
                None => "localhost",
            };
            let stream = TcpStream::connect((host, port)).await?;
            stream.set_nodelay(true)?;
            Ok(Self::Tcp(stream))
        };
        match config.get_connect_timeout() {
            Some(timeout) => tokio::time::timeout(*timeout, connect)
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))?,
            None => connect.await,
        }
    }

    fn inner(self: Pin<&mut Self>) -> Pin<&mut (dyn AsyncReadWrite + Unpin)> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream),
            Self::Unix(stream) => Pin::new(stream),
        }
    }
}

trait AsyncReadWrite: AsyncRead + AsyncWrite {}
impl<T: AsyncRead + AsyncWrite> AsyncReadWrite for T {}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.inner().poll_read(context, buffer)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.inner().poll_write(context, buffer)
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner().poll_flush(context)
    }

    /// Closes the operator's end, then reads until the server has closed its own.
    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut stream = self.inner();
        std::task::ready!(stream.as_mut().poll_shutdown(context))?;
        let mut scratch = [0_u8; 512];
        loop {
            let mut buffer = ReadBuf::new(&mut scratch);
            std::task::ready!(stream.as_mut().poll_read(context, &mut buffer))?;
            if buffer.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
        }
    }
}
