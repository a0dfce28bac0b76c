//! Criterion: one image upload through [`MediaStore::put`] vs a bare object_store `put` of the
//! same bytes to the same store, alternating in one run. What ours adds: the key check, the
//! `Content-Type`/`Cache-Control` attributes (cloud stores) or the fsync (local), the metric.
//!
//! ```text
//! eval "$(scripts/s3.sh start && scripts/s3.sh env)"
//! cargo bench -p product-pipeline-imaging --features s3 --bench media_put
//! ```
//!
//! Without `MEDIA_TEST_S3_URL` only the local directory and memory stores are measured.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use product_pipeline_imaging::media::{image_key, MediaStore};
use product_pipeline_imaging::object_store::path::Path;
use product_pipeline_imaging::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use product_pipeline_imaging::OutputFormat;

/// A typical compressed image (a 1024 px JPEG at q80 is 100–250 KB).
const IMAGE_BYTES: usize = 150 * 1024;

fn stores() -> Vec<(&'static str, MediaStore)> {
    let dir = std::env::temp_dir().join("imaging-bench-media");
    let mut stores = vec![
        ("memory", MediaStore::in_memory()),
        ("local", MediaStore::local(&dir).unwrap()),
    ];
    if let Ok(url) = std::env::var("MEDIA_TEST_S3_URL") {
        stores.push(("s3", MediaStore::from_url(&format!("{url}/bench")).unwrap()));
    }
    stores
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let data = Bytes::from(
        (0..IMAGE_BYTES)
            .map(|i| (i * 31 % 251) as u8)
            .collect::<Vec<_>>(),
    );
    let key = image_key(1, 0, 1024, &data, OutputFormat::Jpeg);
    let path = Path::parse(&key).unwrap();
    let mut group = c.benchmark_group("put_150k");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Bytes(IMAGE_BYTES as u64));
    for (name, media) in stores() {
        let raw: Arc<dyn ObjectStore> = media.object_store().clone();
        group.bench_with_input(BenchmarkId::new("media_store", name), &data, |b, data| {
            b.to_async(&runtime)
                .iter(|| async { media.put(&key, data.clone()).await.unwrap() })
        });
        group.bench_with_input(
            BenchmarkId::new("bare_object_store", name),
            &data,
            |b, data| {
                b.to_async(&runtime).iter(|| async {
                    raw.put(&path, PutPayload::from_bytes(data.clone()))
                        .await
                        .unwrap()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
