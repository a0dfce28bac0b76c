//! [`Store`]: connecting, options and migrations.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mq_core::domain::RepoError;
use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DatabaseTransaction, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use tokio::sync::{Mutex, MutexGuard};

use crate::dialect::Dialect;
use crate::error::repo_err;
use crate::migration::Migrator;

/// A write (a row and whatever belongs to it, such as its outbox row) on the transaction it is
/// given; see [`Store::in_transaction`].
pub(crate) type Insert<'t, T> = Pin<Box<dyn Future<Output = Result<T, RepoError>> + Send + 't>>;

/// Connection settings for [`Store::connect`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Most connections in the pool (default 10).
    pub max_connections: u32,
    /// Connections kept open when idle (default 0).
    pub min_connections: u32,
    /// Time to open one connection (default 5 s).
    pub connect_timeout: Duration,
    /// Time to wait for a free pooled connection, and on SQLite for the write lock, before the
    /// call fails with [`RepoError::Unavailable`] (default 5 s).
    pub acquire_timeout: Duration,
    /// PostgreSQL only: the schema to work in (`search_path`), created when missing. Default:
    /// the server's default (`public`).
    pub schema: Option<String>,
    /// Apply pending migrations in [`Store::connect`] (default `true`).
    pub run_migrations: bool,
    /// Log every statement through `tracing` (default `false`).
    pub log_statements: bool,
    /// Ping each connection when it is taken from the pool (default `true`), so a connection
    /// broken by a server restart is replaced instead of failing one call with
    /// [`RepoError::Unavailable`]. Costs one round trip per call (see BENCHMARKS.md).
    pub test_before_acquire: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            min_connections: 0,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
            schema: None,
            run_migrations: true,
            log_statements: false,
            test_before_acquire: true,
        }
    }
}

/// The database: implements [`crate::UserRepo`], [`crate::ProductRepo`] and
/// [`crate::OutboxRepo`]. Cheap to clone; clones share one connection pool.
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) db: DatabaseConnection,
    pub(crate) dialect: Dialect,
    /// SQLite only: one writer at a time inside this process. SQLite admits one writer anyway;
    /// queueing here instead of in SQLite's busy handler (which sleeps in steps of up to
    /// 100 ms) keeps concurrent writers from stalling each other.
    writer: Option<Arc<Mutex<()>>>,
    /// How long to wait for the writer slot before giving up with `Unavailable`.
    write_timeout: Duration,
    /// When (Unix seconds) the store, all clones together, next purges expired idempotency
    /// keys; 0 at first, so the first idempotent create purges.
    pub(crate) next_key_purge: Arc<AtomicI64>,
}

impl Store {
    /// Connects to `url` (`postgres://…` or `sqlite://path`), then applies pending migrations
    /// unless [`StoreOptions::run_migrations`] is off.
    ///
    /// For SQLite the file (and its directory) is created when missing, and the connection uses
    /// WAL, `synchronous = NORMAL`, foreign keys on and a busy timeout of
    /// [`StoreOptions::acquire_timeout`]. An in-memory SQLite database (`sqlite::memory:`) is
    /// one database per pooled connection, so use a file.
    ///
    /// Fails with [`RepoError::Unavailable`] when the server cannot be reached.
    pub async fn connect(url: &str, options: StoreOptions) -> Result<Store, RepoError> {
        let mut opt = ConnectOptions::new(url.to_owned());
        opt.max_connections(options.max_connections.max(1))
            .min_connections(options.min_connections)
            .connect_timeout(options.connect_timeout)
            .acquire_timeout(options.acquire_timeout)
            .sqlx_logging(options.log_statements)
            .test_before_acquire(options.test_before_acquire);
        crate::dialect::configure(&mut opt, url, &options);
        let _first_start = crate::dialect::Dialect::lock_sqlite_start(url)
            .await
            .map_err(repo_err)?;
        let db = Database::connect(opt).await.map_err(repo_err)?;
        let mut store = Store::new(db)?;
        store.write_timeout = options.acquire_timeout;
        if let Some(schema) = &options.schema {
            store
                .dialect
                .ensure_schema(&store.db, schema)
                .await
                .map_err(repo_err)?;
        }
        if options.run_migrations {
            migrate(&store.db).await?;
        }
        Ok(store)
    }

    /// Wraps a connection opened elsewhere. Does not migrate; see [`migrate`].
    pub fn new(db: DatabaseConnection) -> Result<Store, RepoError> {
        let dialect = Dialect::of(&db).map_err(repo_err)?;
        let writer = dialect.single_writer().then(|| Arc::new(Mutex::new(())));
        Ok(Store {
            db,
            dialect,
            writer,
            write_timeout: StoreOptions::default().acquire_timeout,
            next_key_purge: Arc::new(AtomicI64::new(0)),
        })
    }

    /// Waits for this process's turn to write (SQLite); `None` on PostgreSQL.
    pub(crate) async fn write_turn(&self) -> Result<Option<MutexGuard<'_, ()>>, RepoError> {
        let Some(writer) = &self.writer else {
            return Ok(None);
        };
        match tokio::time::timeout(self.write_timeout, writer.lock()).await {
            Ok(guard) => Ok(Some(guard)),
            Err(_) => Err(RepoError::Unavailable(format!(
                "no SQLite write slot within {:?}",
                self.write_timeout
            ))),
        }
    }

    /// Runs `write` in one transaction, in this store's write turn: committed when it succeeds,
    /// rolled back explicitly when it fails, so that on SQLite the write lock is gone before
    /// the turn is (a dropped transaction would roll back later, keeping the next writer
    /// waiting).
    pub(crate) async fn in_transaction<T, F>(&self, write: F) -> Result<T, RepoError>
    where
        F: FnOnce(&DatabaseTransaction) -> Insert<'_, T>,
    {
        let _turn = self.write_turn().await?;
        let txn = self.db.begin().await.map_err(repo_err)?;
        match write(&txn).await {
            Ok(value) => {
                txn.commit().await.map_err(repo_err)?;
                Ok(value)
            }
            Err(e) => {
                let _ = txn.rollback().await;
                Err(e)
            }
        }
    }

    /// The underlying sea-orm connection.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Closes the pool shared by all clones; later calls fail with [`RepoError::Unavailable`].
    pub async fn close(&self) -> Result<(), RepoError> {
        self.db.clone().close().await.map_err(repo_err)
    }
}

/// Applies the pending migrations. On PostgreSQL they run in one transaction under an advisory
/// lock per schema, so several processes may start at once.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), RepoError> {
    let dialect = Dialect::of(db).map_err(repo_err)?;
    match dialect {
        Dialect::Postgres => {
            let txn = db.begin().await.map_err(repo_err)?;
            dialect.lock_for_migration(&txn).await.map_err(repo_err)?;
            Migrator::up(&txn, None).await.map_err(repo_err)?;
            txn.commit().await.map_err(repo_err)
        }
        Dialect::Sqlite => Migrator::up(db, None).await.map_err(repo_err),
    }
}

/// The current time, truncated to microseconds (what both databases keep).
pub(crate) fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}
