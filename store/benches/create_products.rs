//! Products created per second, each with its outbox row, on SQLite and PostgreSQL, with one
//! connection (sequential) and with a pool of 8 (8 concurrent writers). On PostgreSQL the run
//! ends with `pgbench` executing the same two-insert transaction on the same server.
//!
//! ```text
//! DATABASE_URL=postgres://root@127.0.0.1:5432/test cargo bench -p product-pipeline-store --bench create_products
//! ```
//!
//! Without `DATABASE_URL` only SQLite is measured. `STORE_BENCH_NO_PING=1` turns off
//! [`StoreOptions::test_before_acquire`]. See BENCHMARKS.md.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mq_core::domain::{NewProduct, NewUser, ProductRepo, UserRepo};
use product_pipeline_store::{Store, StoreOptions};
use testsupport::pg::PgSchema;

/// Concurrent writers in the pooled case.
const POOL: usize = 8;

/// Products and nanoseconds per (backend, mode), over every measured iteration.
static TOTALS: Mutex<Vec<(String, u64, u64)>> = Mutex::new(Vec::new());

fn product(user_id: i64) -> NewProduct {
    NewProduct {
        user_id,
        product_name: "bench product".into(),
        product_description: Some("made by the criterion bench".into()),
        product_images: vec!["https://example.com/a.jpg".into()],
        product_price: "12.34".parse().unwrap(),
    }
}

async fn open(url: &str, schema: Option<&str>, connections: u32) -> (Store, i64) {
    let options = StoreOptions {
        max_connections: connections,
        min_connections: connections,
        acquire_timeout: Duration::from_secs(30),
        schema: schema.map(str::to_owned),
        // STORE_BENCH_NO_PING=1: skip the ping on each pool checkout.
        test_before_acquire: std::env::var("STORE_BENCH_NO_PING").as_deref() != Ok("1"),
        ..StoreOptions::default()
    };
    let store = Store::connect(url, options).await.expect("connect");
    static MOBILE: AtomicU64 = AtomicU64::new(0);
    let mobile = format!(
        "+1{}{:03}",
        std::process::id(),
        MOBILE.fetch_add(1, Ordering::Relaxed)
    );
    let user = store
        .create_user(NewUser {
            name: "bench".into(),
            mobile,
            latitude: 0.0,
            longitude: 0.0,
        })
        .await
        .expect("user");
    (store, user.id)
}

/// Creates `n` products with `writers` concurrent tasks; returns the elapsed time.
async fn create(store: &Store, user_id: i64, n: u64, writers: usize) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            let share = n / writers as u64 + u64::from((w as u64) < n % writers as u64);
            tokio::spawn(async move {
                for _ in 0..share {
                    store
                        .create_product(product(user_id), BTreeMap::new())
                        .await
                        .expect("create_product");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

fn record(label: &str, n: u64, elapsed: Duration) {
    let mut totals = TOTALS.lock().unwrap();
    match totals.iter_mut().find(|(l, _, _)| l == label) {
        Some(entry) => {
            entry.1 += n;
            entry.2 += elapsed.as_nanos() as u64;
        }
        None => totals.push((label.to_owned(), n, elapsed.as_nanos() as u64)),
    }
}

fn bench_backend(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    url: &str,
    schema: Option<&str>,
) {
    let mut group = c.benchmark_group(format!("create_product/{name}"));
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(10));
    for (mode, connections, writers) in [("single", 1, 1), ("pool8", POOL as u32, POOL)] {
        let (store, user_id) = rt.block_on(open(url, schema, connections));
        let label = format!("{name} {mode}");
        group.bench_function(mode, |b| {
            b.to_async(rt).iter_custom(|iters| {
                let (store, label) = (store.clone(), label.clone());
                async move {
                    let elapsed = create(&store, user_id, iters, writers).await;
                    record(&label, iters, elapsed);
                    elapsed
                }
            })
        });
        rt.block_on(store.close()).unwrap();
    }
    group.finish();
}

/// Runs benches/pgbench.sh on `schema`; returns (clients, tps) pairs.
fn pgbench(url: &str, schema: &str, user_id: i64) -> Result<Vec<(u32, f64)>, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/pgbench.sh");
    let out = std::process::Command::new("bash")
        .args([script, url, schema, &user_id.to_string(), "10"])
        .output()
        .map_err(|e| format!("cannot run {script}: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let clients = parts.next()?.strip_prefix("clients=")?.parse().ok()?;
            let tps = parts.next()?.strip_prefix("tps=")?.parse().ok()?;
            Some((clients, tps))
        })
        .collect())
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}/bench.db", dir.path().display());
    bench_backend(c, &rt, "sqlite", &sqlite_url, None);

    let mut reference = Vec::new();
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            let schema = rt.block_on(PgSchema::create(&url, "store_bench"));
            bench_backend(c, &rt, "postgres", &url, Some(schema.name()));
            let (store, user_id) = rt.block_on(open(&url, Some(schema.name()), 1));
            rt.block_on(store.close()).unwrap();
            match pgbench(&url, schema.name(), user_id) {
                Ok(r) => reference = r,
                Err(e) => {
                    eprintln!("pgbench failed or is missing (Debian: postgresql-contrib): {e}")
                }
            }
            rt.block_on(schema.drop_now());
        }
        _ => eprintln!("DATABASE_URL not set: PostgreSQL and pgbench skipped"),
    }

    println!("\nproducts created per second (all measured iterations, warm-up included):");
    for (label, n, nanos) in TOTALS.lock().unwrap().iter() {
        let rate = *n as f64 / (*nanos as f64 / 1e9);
        let versus = reference
            .iter()
            .find(|(clients, _)| {
                label.starts_with("postgres")
                    && *clients == if label.ends_with("single") { 1 } else { 8 }
            })
            .map(|(_, tps)| format!("  ({:.0}% of pgbench's {tps:.0} tps)", 100.0 * rate / tps))
            .unwrap_or_default();
        println!("  {label:<16} {rate:>9.0} /s{versus}");
    }
    for (clients, tps) in &reference {
        println!("  pgbench -c {clients:<7} {tps:>9.0} tps");
    }
}

criterion_group!(store_benches, benches);
criterion_main!(store_benches);
