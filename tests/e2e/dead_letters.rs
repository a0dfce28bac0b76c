//! Dead letters through the whole pipeline: products whose messages were dead-lettered because
//! the media store was down stay unfinished, and once the store is back a redrive
//! (`mq_core::dead_letters::redrive`, what `admin dlq redrive` runs) gets them processed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use mq_core::dead_letters::{self, ReadOptions};
use product_pipeline::app::Roles;
use product_pipeline_imaging::media::MediaStore;
use product_pipeline_imaging::object_store::memory::InMemory;
use product_pipeline_imaging::object_store::path::Path;
use product_pipeline_imaging::object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result as StoreResult,
};

use crate::support::*;

/// An in-memory object store whose writes fail, as in an outage, while it is switched off.
#[derive(Debug, Default)]
struct OutageStore {
    inner: InMemory,
    down: AtomicBool,
}

impl std::fmt::Display for OutageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OutageStore({})", self.inner)
    }
}

impl OutageStore {
    fn writable(&self) -> StoreResult<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(product_pipeline_imaging::object_store::Error::Generic {
                store: "OutageStore",
                source: "media store unreachable (test outage)".into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for OutageStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> StoreResult<PutResult> {
        self.writable()?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> StoreResult<Box<dyn MultipartUpload>> {
        self.writable()?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> StoreResult<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, StoreResult<Path>>,
    ) -> BoxStream<'static, StoreResult<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, StoreResult<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> StoreResult<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> StoreResult<()> {
        self.writable()?;
        self.inner.copy_opts(from, to, options).await
    }
}

pub async fn products_dead_lettered_by_a_media_outage_are_redriven(stack: &Stack) {
    let store = Arc::new(OutageStore::default());
    store.down.store(true, Ordering::SeqCst);
    let media = MediaStore::from_object_store(store.clone(), "outage");
    let images = ImageServer::start().await;
    let mut config = stack.config.clone();
    config.worker_max_attempts = 2;
    let (publisher, subscriber) = stack.broker().await;
    let app = stack
        .start_on(
            &config,
            Roles::ALL,
            publisher.clone(),
            subscriber.clone(),
            media.clone(),
        )
        .await;
    let user = create_user(&app).await;
    let ids = [
        create_product(
            &app,
            user,
            &[
                images.image(640, 480, "dlq-a0"),
                images.image(480, 640, "dlq-a1"),
            ],
        )
        .await,
        create_product(&app, user, &[images.image(500, 500, "dlq-b0")]).await,
    ];

    let topic = config.products_topic();
    let on_topic = [("topic", topic.as_str())];
    let deadline = tokio::time::Instant::now() + PROCESSING;
    while Scrape::of(&app)
        .await
        .count("messages_dead_lettered_total", &on_topic)
        < 2.0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the products were never dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The store's outage is not the images' fault: nothing is recorded, nothing is stored.
    for id in ids {
        let (_, product) = get_json(&app, &format!("/products/{id}")).await;
        assert_eq!(product["status"], "processing", "{product}");
        assert!(media.list_product(id).await.unwrap().is_empty());
    }

    store.down.store(false, Ordering::SeqCst);
    let options = ReadOptions {
        limit: 10,
        ..ReadOptions::default()
    };
    let letters = dead_letters::list(subscriber.as_ref(), &topic, &options)
        .await
        .expect("list the dead letters");
    assert_eq!(letters.len(), 2, "{letters:?}");
    for letter in &letters {
        let reason = letter.reason.as_deref().unwrap_or_default();
        assert!(reason.contains("test outage"), "{reason}");
    }
    let redriven = dead_letters::redrive(subscriber.as_ref(), publisher.as_ref(), &topic, &options)
        .await
        .expect("redrive the dead letters");
    assert_eq!(redriven, 2);

    for id in ids {
        let product = wait_final(&app, id, PROCESSING).await;
        assert_eq!(product["status"], "done", "{product}");
        let mut recorded: Vec<String> =
            serde_json::from_value(product["compressed_product_images"].clone()).unwrap();
        recorded.sort();
        let mut stored = media.list_product(id).await.unwrap();
        stored.sort();
        assert_eq!(stored, recorded);
    }
    let left = dead_letters::list(
        subscriber.as_ref(),
        &topic,
        &ReadOptions {
            first_wait: Duration::from_secs(2),
            ..options
        },
    )
    .await
    .unwrap();
    assert!(left.is_empty(), "{left:?}");
    app.stop().await;
}
