//! The whole pipeline on the embedded defaults (SQLite, the in-memory broker, local media), as the
//! `pipeline` example runs it: `POST /products` until `GET /products/{id}` says `done`, with the
//! product's images served by a local HTTP server.
//!
//! - `pipeline/post_to_done/1`: one product with one 1600×1200 photo at a time: the latency of
//!   the request, the outbox relay, the broker hop, the download, the compression and the status
//!   update together.
//! - `pipeline/post_to_done/32`: 32 products with one image each, posted at once, until all are
//!   `done`: the throughput of the same path when the worker has work queued.
//!
//! Completion is polled every 2 ms, which bounds the resolution. For runs of thousands of
//! products, real photos or hostile image hosts, use the `loadgen` example.
//!
//! ```text
//! cargo bench --bench pipeline
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::header;
use axum::routing::get;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use product_pipeline::app::{self, Roles, Running};
use product_pipeline::Config;
use serde_json::{json, Value};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

/// A running pipeline and what a client needs to drive it.
struct Pipeline {
    client: reqwest::Client,
    api: String,
    image_url: String,
    user_id: i64,
    shutdown: CancellationToken,
    running: Running,
    _dirs: [tempfile::TempDir; 2],
}

impl Pipeline {
    async fn start() -> Pipeline {
        let image = bytes::Bytes::from(product_pipeline_imaging::test_images::photo_jpeg(
            1600, 1200, 90,
        ));
        let images = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let image_url = format!("http://{}/photo.jpg", images.local_addr().unwrap());
        let router = axum::Router::new().route(
            "/photo.jpg",
            get(move || {
                let image = image.clone();
                async move { ([(header::CONTENT_TYPE, "image/jpeg")], image) }
            }),
        );
        tokio::spawn(async move { axum::serve(images, router).await.unwrap() });

        let (data, media) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut config = <Config as clap::Parser>::try_parse_from(["pipeline"]).unwrap();
        config.database_url = format!("sqlite://{}/pipeline.db", data.path().display());
        config.media_dir = Some(media.path().to_owned());
        config.http_addr = "127.0.0.1:0".parse().unwrap();
        config.allow_private_image_hosts = true;
        let shutdown = CancellationToken::new();
        let running = app::start(&config, Roles::ALL, shutdown.clone())
            .await
            .expect("the pipeline starts on the embedded defaults");
        let api = format!("http://{}", running.http_addr.unwrap());
        let client = reqwest::Client::new();
        let user = create(
            &client,
            &format!("{api}/users"),
            &json!({"name": "Bench", "mobile": "+4915100000000", "latitude": 52.5, "longitude": 13.4}),
        )
        .await;
        Pipeline {
            client,
            api,
            image_url,
            user_id: user["id"].as_i64().expect("a user id"),
            shutdown,
            running,
            _dirs: [data, media],
        }
    }

    async fn post_product(&self) -> i64 {
        let body = json!({
            "user_id": self.user_id,
            "product_name": "Lamp",
            "product_description": "bright",
            "product_images": [self.image_url],
            "product_price": 19.99,
        });
        let product = create(&self.client, &format!("{}/products", self.api), &body).await;
        product["product_id"].as_i64().expect("a product id")
    }

    /// Polls until product `id` is `done`.
    async fn wait_done(&self, id: i64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let product: Value = self
                .client
                .get(format!("{}/products/{id}", self.api))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            match product["status"].as_str() {
                Some("done") => return,
                Some("pending" | "processing") => {}
                other => panic!("product {id} ended {other:?}: {product}"),
            }
            assert!(Instant::now() < deadline, "product {id} not done in 60 s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Posts `n` products at once and waits until all are done.
    async fn round(self: &Arc<Self>, n: usize) {
        let ids = futures::future::join_all((0..n).map(|_| self.post_product())).await;
        futures::future::join_all(ids.into_iter().map(|id| self.wait_done(id))).await;
    }
}

/// POSTs `body` to `url`, expects `201 Created` and returns the created resource.
async fn create(client: &reqwest::Client, url: &str, body: &Value) -> Value {
    let response = client.post(url).json(body).send().await.unwrap();
    assert_eq!(
        response.status(),
        reqwest::StatusCode::CREATED,
        "POST {url}"
    );
    response.json().await.unwrap()
}

fn pipeline(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let pipeline = Arc::new(runtime.block_on(Pipeline::start()));
    let mut group = c.benchmark_group("pipeline/post_to_done");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for n in [1, 32] {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.to_async(&runtime).iter(|| pipeline.round(n));
        });
    }
    group.finish();
    let pipeline = Arc::into_inner(pipeline).expect("the benches are over");
    pipeline.shutdown.cancel();
    runtime.block_on(pipeline.running.wait());
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
