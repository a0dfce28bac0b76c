//! Test databases: a temp SQLite file, or a fresh PostgreSQL schema per test.
//!
//! PostgreSQL comes from `DATABASE_URL`. Without it the PostgreSQL tests print why and pass,
//! unless `REQUIRE_SERVICES=1`, when they fail.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use product_pipeline_store::{Store, StoreOptions};
pub use testsupport::pg::PgSchema;

pub mod fixtures;

/// One test function per name, run on SQLite and on PostgreSQL (`mod sqlite`, `mod postgres`).
#[allow(unused_macros)] // Not every test binary uses it.
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    crate::common::run(crate::common::Backend::Sqlite, crate::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    crate::common::run(crate::common::Backend::Postgres, crate::$name).await;
                }
            )*
        }
    };
}

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
    pg_schema: Option<PgSchema>,
    _dir: Option<tempfile::TempDir>,
}

/// `DATABASE_URL`, or `None` after printing why the test is skipped; panics instead when
/// `REQUIRE_SERVICES=1`.
pub fn database_url() -> Option<String> {
    testsupport::service_var("DATABASE_URL", "e.g. postgres://root@127.0.0.1:5432/test")
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
                    pg_schema: None,
                    _dir: Some(dir),
                })
            }
            Backend::Postgres => {
                let url = database_url()?;
                let schema = PgSchema::create(&url, "store_test").await;
                options.schema = Some(schema.name().to_owned());
                let store = Store::connect(&url, options.clone()).await.unwrap();
                Some(TestDb {
                    store,
                    url,
                    options,
                    pg_schema: Some(schema),
                    _dir: None,
                })
            }
        }
    }

    /// Closes the store and drops the PostgreSQL schema.
    pub async fn finish(self) {
        let _ = self.store.close().await;
        if let Some(schema) = self.pg_schema {
            schema.drop_now().await;
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
