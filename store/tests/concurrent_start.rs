//! Many processes starting at once on a fresh database (what `docker compose up` or a rolling
//! deployment does): every store opens, and the migrations run exactly once. Each round opens
//! `STORES` stores at the same moment; the race is timing-dependent, so it repeats.

mod common;

use std::time::Duration;

use common::*;
use product_pipeline_store::{Store, StoreOptions};
use sea_orm::{ConnectionTrait, Statement};

const STORES: usize = 8;
const ROUNDS: usize = 12;
/// The migrations this crate ships (`seaql_migrations` rows after a first start).
fn migrations() -> i64 {
    use sea_orm_migration::MigratorTrait;
    product_pipeline_store::migration::Migrator::migrations().len() as i64
}

fn options(schema: Option<String>) -> StoreOptions {
    StoreOptions {
        max_connections: 2,
        acquire_timeout: Duration::from_secs(30),
        schema,
        ..StoreOptions::default()
    }
}

/// Opens `STORES` stores at once; panics with every error if any failed.
async fn open_all(url: &str, schema: Option<String>) -> Vec<Store> {
    let opened = futures::future::join_all(
        (0..STORES).map(|_| Store::connect(url, options(schema.clone()))),
    )
    .await;
    let errors: Vec<String> = opened
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    assert!(
        errors.is_empty(),
        "concurrent first starts failed: {errors:?}"
    );
    opened.into_iter().map(Result::unwrap).collect()
}

async fn migrations_recorded(store: &Store, table: &str) -> i64 {
    let row = store
        .connection()
        .query_one(Statement::from_string(
            store.connection().get_database_backend(),
            format!("SELECT COUNT(*) AS n FROM {table}"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_starts_on_a_fresh_postgres_schema() {
    let Some(url) = database_url() else { return };
    for _ in 0..ROUNDS {
        // Not created beforehand: the stores create it.
        let schema = PgSchema::named(&url, "first_start");
        let stores = open_all(&url, Some(schema.name().to_owned())).await;
        let table = format!("\"{}\".seaql_migrations", schema.name());
        assert_eq!(migrations_recorded(&stores[0], &table).await, migrations());
        for store in &stores {
            store.close().await.unwrap();
        }
        schema.drop_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_starts_on_a_fresh_sqlite_file() {
    for _ in 0..ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/data/first.db", dir.path().display());
        let stores = open_all(&url, None).await;
        assert_eq!(
            migrations_recorded(&stores[0], "seaql_migrations").await,
            migrations()
        );
        for store in &stores {
            store.close().await.unwrap();
        }
    }
}
