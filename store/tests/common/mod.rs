//! Test databases: a temp SQLite file, or a fresh PostgreSQL schema per test.
//!
//! PostgreSQL comes from `DATABASE_URL`. Without it the PostgreSQL tests print why and pass,
//! unless `REQUIRE_SERVICES=1`, when they fail.
#![allow(dead_code)]

use std::future::Future;
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use product_pipeline_store::{Store, StoreOptions};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database that exists for one test.
pub struct TestDb {
    pub store: Store,
    /// Connection options the store was opened with (to open more stores on the same data).
    pub url: String,
    pub options: StoreOptions,
    pg_admin: Option<(DatabaseConnection, String)>,
    _dir: Option<tempfile::TempDir>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name no other test run uses at the same time.
pub fn unique_name(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// `DATABASE_URL`, or `None` after printing why the test is skipped; panics instead when
/// `REQUIRE_SERVICES=1`.
pub fn database_url() -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("REQUIRE_SERVICES=1 but DATABASE_URL is not set");
            }
            // Straight to stderr: the test harness captures eprintln! of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "skipping PostgreSQL test: DATABASE_URL is not set (REQUIRE_SERVICES=1 fails instead)"
            );
            None
        }
    }
}

/// Creates a fresh schema on the PostgreSQL server; returns the admin connection and its name.
pub async fn create_pg_schema(url: &str) -> (DatabaseConnection, String) {
    let admin = Database::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to DATABASE_URL: {e}"));
    let schema = unique_name("store_test");
    admin
        .execute_unprepared(&format!("CREATE SCHEMA \"{schema}\""))
        .await
        .unwrap();
    (admin, schema)
}

/// Drops a schema made by [`create_pg_schema`].
pub async fn drop_pg_schema(admin: DatabaseConnection, schema: &str) {
    if let Err(e) = admin
        .execute_unprepared(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
    {
        eprintln!("could not drop schema {schema}: {e}");
    }
    let _ = admin.close().await;
}

impl TestDb {
    /// A migrated store on `backend`; `None` when the backend is not available (skipped).
    pub async fn new(backend: Backend) -> Option<TestDb> {
        let mut options = StoreOptions {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
            ..StoreOptions::default()
        };
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}/store.db", dir.path().display());
                let store = Store::connect(&url, options.clone()).await.unwrap();
                Some(TestDb {
                    store,
                    url,
                    options,
                    pg_admin: None,
                    _dir: Some(dir),
                })
            }
            Backend::Postgres => {
                let url = database_url()?;
                let (admin, schema) = create_pg_schema(&url).await;
                options.schema = Some(schema.clone());
                let store = Store::connect(&url, options.clone()).await.unwrap();
                Some(TestDb {
                    store,
                    url,
                    options,
                    pg_admin: Some((admin, schema)),
                    _dir: None,
                })
            }
        }
    }

    /// Closes the store and drops the PostgreSQL schema.
    pub async fn finish(self) {
        let _ = self.store.close().await;
        if let Some((admin, schema)) = self.pg_admin {
            drop_pg_schema(admin, &schema).await;
        }
    }
}

/// Runs `test` on a fresh database of `backend`, cleaning up even when it panics.
pub async fn run<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(TestCtx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let ctx = TestCtx {
        store: db.store.clone(),
        backend,
        url: db.url.clone(),
        options: db.options.clone(),
    };
    let outcome = tokio::spawn(test(ctx)).await;
    db.finish().await;
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("test task failed: {e}"),
        }
    }
}

/// What a test gets.
#[derive(Clone)]
pub struct TestCtx {
    pub store: Store,
    pub backend: Backend,
    pub url: String,
    pub options: StoreOptions,
}
