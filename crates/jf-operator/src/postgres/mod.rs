//! The shared PostgreSQL server, behind the [`Server`] trait: what the controller reads from
//! it ([`Observed`]) and the statement batches it runs ([`sql`]). The real implementation,
//! [`PgServer`], holds a small pool of admin connections.

pub mod pool;
pub mod scram;
pub mod sql;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub use pool::Pool;
use sql::Batch;

/// Why the server could not do something.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the PostgreSQL admin URL is not a valid connection string")]
    InvalidUrl,
    #[error("the PostgreSQL server cannot be reached")]
    Unavailable(#[source] tokio_postgres::Error),
    #[error("the PostgreSQL server cannot be reached")]
    Connect(#[source] std::io::Error),
    #[error("the connection pool is closed")]
    Closed,
    #[error("{statement}: {message}")]
    Statement {
        /// The statement's first words, never its literals.
        statement: String,
        message: String,
        /// The SQLSTATE code, such as `42501` for insufficient privilege.
        code: Option<String>,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(transparent)]
    InvalidText(#[from] sql::InvalidText),
}

impl Error {
    /// Whether the server (or the network to it) is down, rather than a statement failing.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unavailable(_) | Self::Connect(_) | Self::Closed => true,
            Self::Statement { source, .. } => source.is_closed() || source.as_db_error().is_none(),
            Self::InvalidUrl | Self::InvalidText(_) => false,
        }
    }

    /// Whether another session got in the way: a statement racing one that a previous
    /// operator process sent before it was killed (the database it creates already exists, the
    /// role it drops still owns it), a lock or a serialization conflict. Looking again shortly
    /// settles it.
    pub fn is_contention(&self) -> bool {
        const CONTENTION: [&str; 6] = [
            "42P04", // duplicate_database
            "23505", // unique_violation (pg_database's name index, during CREATE DATABASE)
            "2BP01", // dependent_objects_still_exist
            "55006", // object_in_use
            "40001", // serialization_failure
            "40P01", // deadlock_detected
        ];
        matches!(self, Self::Statement { code: Some(code), .. } if CONTENTION.contains(&code.as_str()))
    }

    fn statement(statement: &str, source: tokio_postgres::Error) -> Self {
        let (message, code) = match source.as_db_error() {
            Some(error) => (
                error.message().to_owned(),
                Some(error.code().code().to_owned()),
            ),
            None => (source.to_string(), None),
        };
        Self::Statement {
            statement: summary(statement),
            message,
            code,
            source,
        }
    }
}

/// A statement's first words, up to its first identifier or literal, so that neither a
/// verifier nor anything else from a statement reaches a log or a condition.
fn summary(statement: &str) -> String {
    statement
        .split_whitespace()
        .take_while(|word| !word.starts_with(['\'', '"', '$']))
        .take(4)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A role as the server has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// Its comment: the ownership marker, if it is ours.
    pub marker: Option<String>,
    pub can_login: bool,
}

/// A database as the server has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    pub owner: String,
    /// Whether PUBLIC may still connect (the default privileges).
    pub public_access: bool,
}

/// What the server says about one resource's role and database, and its template.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub role: Option<Role>,
    pub database: Option<Database>,
    /// `Some(datistemplate)` when the template database exists.
    pub template: Option<bool>,
}

/// The operations the controller needs from the server.
pub trait Server: Send + Sync + 'static {
    /// Reads the role, the database and the template (if one is named).
    fn observe(
        &self,
        role: &str,
        database: &str,
        template: Option<&str>,
    ) -> impl Future<Output = Result<Observed, Error>> + Send;

    /// The role's password verifier; `None` when the role has none or the admin may not
    /// read verifiers.
    fn password(&self, role: &str) -> impl Future<Output = Result<Option<String>, Error>> + Send;

    /// The extensions in `database`.
    fn extensions(&self, database: &str)
    -> impl Future<Output = Result<Vec<String>, Error>> + Send;

    /// Runs `batch` in the admin's database, or in `database`.
    fn execute(
        &self,
        database: Option<&str>,
        batch: &Batch,
    ) -> impl Future<Output = Result<(), Error>> + Send;
}

/// The real server.
#[derive(Debug)]
pub struct PgServer {
    pool: Pool,
    statements: AtomicU64,
    metrics: Option<std::sync::Arc<crate::telemetry::Metrics>>,
}

impl PgServer {
    pub fn new(pool: Pool, metrics: Option<std::sync::Arc<crate::telemetry::Metrics>>) -> Self {
        Self {
            pool,
            statements: AtomicU64::new(0),
            metrics,
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Statements sent so far.
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    fn count(&self, kind: &'static str, started: Instant) {
        self.statements.fetch_add(1, Ordering::Relaxed);
        if let Some(metrics) = &self.metrics {
            metrics.sql_statement(kind, started.elapsed());
        }
    }
}

impl Server for PgServer {
    async fn observe(
        &self,
        role: &str,
        database: &str,
        template: Option<&str>,
    ) -> Result<Observed, Error> {
        let connection = self.pool.get().await?;
        let started = Instant::now();
        let row = connection
            .query_one(sql::OBSERVE, &[&role, &database, &template.unwrap_or("")])
            .await
            .map_err(|error| Error::statement("SELECT observe", error))?;
        self.count("observe", started);
        let role_exists: bool = row.get("role_exists");
        let owner: Option<String> = row.get("database_owner");
        Ok(Observed {
            role: role_exists.then(|| Role {
                marker: row.get("role_marker"),
                can_login: row
                    .get::<_, Option<bool>>("role_can_login")
                    .unwrap_or(false),
            }),
            database: owner.map(|owner| Database {
                owner,
                public_access: row.get::<_, Option<bool>>("public_access").unwrap_or(true),
            }),
            template: template.and_then(|_| row.get("template")),
        })
    }

    async fn password(&self, role: &str) -> Result<Option<String>, Error> {
        let connection = self.pool.get().await?;
        let started = Instant::now();
        let result = connection.query_opt(sql::PASSWORD, &[&role]).await;
        self.count("password", started);
        match result {
            Ok(row) => Ok(row.and_then(|row| row.get(0))),
            Err(error)
                if error.code()
                    == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) =>
            {
                Ok(None)
            }
            Err(error) => Err(Error::statement(sql::PASSWORD, error)),
        }
    }

    async fn extensions(&self, database: &str) -> Result<Vec<String>, Error> {
        let connection = self.pool.get_in(database).await?;
        let started = Instant::now();
        let rows = connection
            .query(sql::EXTENSIONS, &[])
            .await
            .map_err(|error| Error::statement(sql::EXTENSIONS, error))?;
        self.count("extensions", started);
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    async fn execute(&self, database: Option<&str>, batch: &Batch) -> Result<(), Error> {
        let connection = match database {
            Some(database) => self.pool.get_in(database).await?,
            None => self.pool.get().await?,
        };
        let started = Instant::now();
        if batch.transaction {
            connection
                .batch_execute("BEGIN")
                .await
                .map_err(|error| Error::statement("BEGIN", error))?;
        }
        for statement in &batch.statements {
            if let Err(error) = connection.batch_execute(statement).await {
                if batch.transaction {
                    let _ = connection.batch_execute("ROLLBACK").await;
                }
                return Err(Error::statement(statement, error));
            }
            self.count("execute", started);
        }
        if batch.transaction {
            connection
                .batch_execute("COMMIT")
                .await
                .map_err(|error| Error::statement("COMMIT", error))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_summaries_never_carry_literals() {
        assert_eq!(
            summary("CREATE ROLE \"jf_x\" LOGIN PASSWORD 'SCRAM-SHA-256$secret'"),
            "CREATE ROLE"
        );
        assert_eq!(
            summary("DROP DATABASE IF EXISTS \"jf_x\" WITH (FORCE)"),
            "DROP DATABASE IF EXISTS"
        );
        assert_eq!(
            summary("SELECT extname FROM pg_extension"),
            "SELECT extname FROM pg_extension"
        );
    }
}
