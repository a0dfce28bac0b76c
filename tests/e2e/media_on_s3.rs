//! Media on S3 (SeaweedFS from scripts/s3.sh) with RabbitMQ and PostgreSQL: processes that share
//! nothing but the services, and an S3 outage in the middle of processing.

use std::time::Duration;

use product_pipeline::app::Roles;
use product_pipeline::BrokerKind;
use product_pipeline_imaging::media::MediaStore;
use serde_json::Value;

use crate::proxy::Proxy;
use crate::support::*;

async fn s3_stack() -> Option<Stack> {
    Stack::s3_postgres(BrokerKind::Rabbit, "AMQP_URL").await
}

/// Checks every finished product against the bucket and the API: each recorded key is in the
/// bucket and nothing else is under the product's prefix, and each is served by
/// `GET /media/...` with the bucket's bytes and the caching headers.
async fn assert_in_bucket(media: &MediaStore, base: &str, product: &Value) {
    let id = product["product_id"].as_i64().unwrap();
    assert_eq!(product["status"], "done", "{product}");
    let recorded: Vec<String> = product["compressed_product_images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key.as_str().unwrap().to_owned())
        .collect();
    let urls = product["compressed_product_image_urls"].as_array().unwrap();
    assert_eq!(urls.len(), recorded.len(), "{product}");
    for (key, url) in recorded.iter().zip(urls) {
        assert_eq!(url.as_str().unwrap(), format!("/media/{key}"));
        let path = product_pipeline_imaging::object_store::path::Path::parse(key).unwrap();
        let stored = media
            .get(&path, Default::default())
            .await
            .unwrap_or_else(|e| panic!("{key} is recorded but not in the bucket: {e}"))
            .bytes()
            .await
            .unwrap();
        let served = client()
            .get(format!("{base}/media/{key}"))
            .send()
            .await
            .unwrap();
        assert_eq!(served.status().as_u16(), 200, "{key}");
        let headers = served.headers();
        assert_eq!(headers["content-type"], "image/jpeg");
        assert_eq!(
            headers["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert_eq!(headers["content-length"], stored.len().to_string().as_str());
        let etag = headers["etag"].to_str().unwrap().to_owned();
        assert_eq!(served.bytes().await.unwrap(), stored, "{key}");
        let revalidated = client()
            .get(format!("{base}/media/{key}"))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(revalidated.status().as_u16(), 304, "{key}");
    }
    assert_eq!(
        media.list_product(id).await.unwrap(),
        recorded_keys(product),
        "exactly the recorded objects under products/{id}/"
    );
}

/// The API and two workers as separate processes, each in an empty working directory of its
/// own: every product ends `done`, the bucket holds exactly the recorded objects, and the API
/// serves them from the bucket; no process writes a file locally.
pub async fn separate_processes_share_the_bucket() {
    let Some(stack) = s3_stack().await else {
        return;
    };
    let images = ImageServer::start().await;
    let mut api = Process::start(&stack, "api", &[]);
    let base = api.api_base().await;
    let workers = [
        Process::start(&stack, "worker", &[]),
        Process::start(&stack, "worker", &[]),
    ];
    let app = App::at(&base);
    let user = create_user(&app).await;
    let mut ids = Vec::new();
    for p in 0..8u32 {
        let urls: Vec<String> = (0..3u32)
            .map(|i| images.image(600 + p * 37, 400 + i * 91, &format!("p{p}i{i}")))
            .collect();
        ids.push(create_product(&app, user, &urls).await);
    }
    for id in ids {
        let product = wait_final(&app, id, PROCESSING).await;
        assert_in_bucket(&stack.media, &base, &product).await;
    }
    for process in workers.iter().chain([&api]) {
        assert!(process.files().is_empty(), "{:?}", process.files());
    }
}

/// The S3 endpoint cut for ~10 s while products are being processed: afterwards every product
/// is `done`, everything recorded is in the bucket and nothing else, nothing was dead-lettered.
pub async fn an_s3_outage_loses_nothing() {
    let Some(stack) = s3_stack().await else {
        return;
    };
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL (scripts/s3.sh env)");
    let target = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("a host:port endpoint");
    let proxy = Proxy::start(target).await;
    let proxied = MediaStore::from_url_opts(
        stack.config.media_url.as_ref().unwrap(),
        &[("aws_endpoint", &format!("http://{}", proxy.addr))],
    )
    .unwrap();
    let images = ImageServer::start().await;
    let (publisher, subscriber) = stack.broker().await;
    let app = stack
        .start_on(
            &stack.config,
            Roles::ALL,
            publisher.clone(),
            subscriber.clone(),
            proxied,
        )
        .await;
    let user = create_user(&app).await;

    proxy.down();
    let mut ids = Vec::new();
    for p in 0..6u32 {
        // Slow sources, so that some uploads start during the outage and some after.
        let urls = vec![
            images.slow(200 * u64::from(p), 700 + p * 41, 500),
            images.image(500, 300 + p * 29, &format!("o{p}")),
        ];
        ids.push(create_product(&app, user, &urls).await);
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    proxy.up().await;

    for id in &ids {
        let product = wait_final(&app, *id, PROCESSING).await;
        let base = app.base.clone().unwrap();
        assert_in_bucket(&stack.media, &base, &product).await;
    }
    let scrape = Scrape::of(&app).await;
    assert_eq!(
        // Other tests of this process share the recorder: count this stack's topic only.
        scrape.count(
            "messages_dead_lettered_total",
            &[("topic", &stack.config.products_topic())]
        ),
        0.0,
        "nothing dead-lettered"
    );
    app.stop().await;
}
