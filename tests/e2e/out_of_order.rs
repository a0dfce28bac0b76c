//! Out-of-order safety: the image consumer given a product's `created`, `updated` and `deleted`
//! events in adversarial orders, redelivered, by competing workers while the product keeps
//! changing, always ends with the latest version's result and files only, or with no file after
//! a delete. Runs on the stack's database with its media store; the images are written by a
//! stand-in processor that can hold a worker inside its processing, so that a change lands
//! exactly there.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use mq_core::domain::{
    NewProduct, NewUser, ProductChange, ProductEvent, ProductPatch, ProductRepo, ProductStatus,
    UserRepo,
};
use mq_core::worker::{Attempt, Handler};
use mq_core::Message;
use product_pipeline::consumer::{ImageConsumer, ImageFailure, ImageProcessor, ProcessedImage};
use product_pipeline::imaging::media::MediaStore;
use product_pipeline::store::Store;
use tokio::sync::Notify;

use crate::support::Stack;

/// Stores each image as `products/<id>/<index>-<hash of the URL>.jpg` (the URL's bytes as
/// content); can hold the next call until released.
struct StandIn {
    media: MediaStore,
    hold_next: AtomicBool,
    held: Notify,
    release: Notify,
}

impl StandIn {
    fn new(media: MediaStore) -> Arc<Self> {
        Arc::new(Self {
            media,
            hold_next: AtomicBool::new(false),
            held: Notify::new(),
            release: Notify::new(),
        })
    }

    fn key(product_id: i64, index: u32, url: &str) -> String {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        url.hash(&mut hasher);
        format!("products/{product_id}/{index}-{:016x}.jpg", hasher.finish())
    }
}

#[async_trait]
impl ImageProcessor for StandIn {
    async fn process(
        &self,
        product_id: i64,
        index: u32,
        url: &str,
    ) -> Result<ProcessedImage, ImageFailure> {
        if self.hold_next.swap(false, Ordering::SeqCst) {
            self.held.notify_one();
            self.release.notified().await;
        }
        let key = Self::key(product_id, index, url);
        self.media
            .put_once(&key, bytes::Bytes::copy_from_slice(url.as_bytes()))
            .await
            .map_err(|error| ImageFailure {
                transient: true,
                media_store: true,
                reason: error.to_string(),
            })?;
        Ok(key.as_str().into())
    }

    async fn retain(&self, product_id: i64, keep: &[String]) -> Result<usize, ImageFailure> {
        self.media
            .retain_product(product_id, keep)
            .await
            .map_err(|error| ImageFailure {
                transient: true,
                media_store: true,
                reason: error.to_string(),
            })
    }
}

struct Fixture {
    store: Store,
    images: Arc<StandIn>,
    consumer: ImageConsumer,
    media: MediaStore,
    user: i64,
}

impl Fixture {
    async fn new(stack: &Stack) -> Self {
        let store = product_pipeline::app::open_store(&stack.config)
            .await
            .expect("open the store");
        let mobile = format!("+49{:010}", fastrand::u64(..10_000_000_000));
        let user = store
            .create_user(NewUser {
                name: "Orders".into(),
                mobile,
                latitude: 0.0,
                longitude: 0.0,
            })
            .await
            .unwrap()
            .id;
        let images = StandIn::new(stack.media.clone());
        let consumer = ImageConsumer::new(Arc::new(store.clone()), images.clone());
        Self {
            store,
            images,
            consumer,
            media: stack.media.clone(),
            user,
        }
    }

    /// A new product with one image; its `created` event.
    async fn create(&self, url: &str) -> (i64, Message) {
        let product = self
            .store
            .create_product(
                NewProduct {
                    user_id: self.user,
                    product_name: "order".into(),
                    product_description: None,
                    product_images: vec![url.to_owned()],
                    product_price: "1.00".parse().unwrap(),
                },
                Default::default(),
            )
            .await
            .unwrap();
        (product.product_id, event(product.product_id, 1))
    }

    /// Replaces the product's image (or deletes it); the event of the new version.
    async fn change(&self, id: i64, change: ProductChange) -> Message {
        let changed = self
            .store
            .change_product(id, change, None, Default::default(), None)
            .await
            .unwrap()
            .into_inner();
        event(id, changed.version)
    }

    /// Handles `message` as a worker does: a transient failure is retried (a cleanup of one
    /// delivery may delete an object another is writing, which fails that write as transient;
    /// the retry writes it again), a permanent one fails the test.
    async fn deliver(&self, message: &Message) {
        for number in 1..=3 {
            match self.consumer.handle(message, Attempt::new(number, 3)).await {
                Ok(()) => return,
                Err(error) if error.is_transient() && number < 3 => {
                    eprintln!("attempt {number}: {error}; retrying");
                }
                Err(error) => panic!("{error}"),
            }
        }
    }

    /// The product has a final status at `version` and exactly `url`'s file, or, with
    /// `version` `None`, no row and no file.
    async fn assert_converged(&self, id: i64, latest: Option<(i64, &str)>, context: &str) {
        let row = self.store.get_product(id).await.unwrap();
        let files = self.media.list_product(id).await.unwrap();
        match latest {
            None => {
                assert_eq!(row, None, "{context}");
                assert!(
                    files.is_empty(),
                    "{context}: a deleted product kept {files:?}"
                );
            }
            Some((version, url)) => {
                let row = row.unwrap_or_else(|| panic!("{context}: the row is gone"));
                assert_eq!(row.version, version, "{context}");
                assert_eq!(row.status, ProductStatus::Done, "{context}");
                let key = StandIn::key(id, 0, url);
                assert_eq!(
                    row.compressed_product_images,
                    vec![key.clone()],
                    "{context}"
                );
                assert_eq!(
                    files,
                    vec![key],
                    "{context}: files of other versions are left"
                );
            }
        }
    }
}

fn event(product_id: i64, version: i64) -> Message {
    Message::json(&ProductEvent {
        product_id,
        version: Some(version),
    })
    .unwrap()
}

fn new_image(url: String) -> ProductChange {
    ProductChange::Update(ProductPatch {
        product_images: Some(vec![url]),
        ..ProductPatch::default()
    })
}

/// See the [module docs](self).
pub async fn events_in_any_order_converge(stack: &Stack) {
    let fixture = Arc::new(Fixture::new(stack).await);
    a_change_lands_while_a_worker_processes(&fixture).await;
    a_delete_lands_while_a_worker_processes(&fixture).await;
    for seed in 0..24 {
        random_schedule(&fixture, seed).await;
    }
}

/// Version 1 is being processed when version 2 comes. Whether version 2 is processed before
/// or after the version 1 worker finishes, version 1's result is refused and its file deleted.
async fn a_change_lands_while_a_worker_processes(fixture: &Arc<Fixture>) {
    for newer_first in [true, false] {
        let (id, created) = fixture.create("http://images.test/held-1.jpg").await;
        fixture.images.hold_next.store(true, Ordering::SeqCst);
        let held = tokio::spawn({
            let fixture = fixture.clone();
            async move { fixture.deliver(&created).await }
        });
        fixture.images.held.notified().await;
        let updated = fixture
            .change(id, new_image("http://images.test/held-2.jpg".into()))
            .await;
        if newer_first {
            fixture.deliver(&updated).await;
        }
        fixture.images.release.notify_one();
        held.await.unwrap();
        if !newer_first {
            fixture.deliver(&updated).await;
        }
        let context =
            format!("a change while version 1 was processed (newer first: {newer_first})");
        let latest = Some((2, "http://images.test/held-2.jpg"));
        fixture.assert_converged(id, latest, &context).await;
        // Redeliveries change nothing.
        fixture.deliver(&event(id, 1)).await;
        fixture.deliver(&updated).await;
        fixture.assert_converged(id, latest, &context).await;
    }
}

/// The product is deleted (and the delete event handled) while version 1 is processed: the
/// worker's file goes too.
async fn a_delete_lands_while_a_worker_processes(fixture: &Arc<Fixture>) {
    let (id, created) = fixture.create("http://images.test/deleted.jpg").await;
    fixture.images.hold_next.store(true, Ordering::SeqCst);
    let held = tokio::spawn({
        let fixture = fixture.clone();
        async move { fixture.deliver(&created).await }
    });
    fixture.images.held.notified().await;
    let deleted = fixture.change(id, ProductChange::Delete).await;
    fixture.deliver(&deleted).await;
    fixture.images.release.notify_one();
    held.await.unwrap();
    fixture
        .assert_converged(id, None, "a delete while version 1 was processed")
        .await;
}

/// Changes and deliveries interleaved by `seed`: each step makes the next change, or hands a
/// pending event (in random order, sometimes keeping it for a redelivery) to a worker that runs
/// alongside the next steps. At the end every pending event is delivered, and the latest one
/// once more.
async fn random_schedule(fixture: &Arc<Fixture>, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let url = |version: i64| format!("http://images.test/s{seed}-v{version}.jpg");
    let (id, created) = fixture.create(&url(1)).await;
    let changes = rng.usize(1..=4);
    let delete = rng.bool();
    let mut pending = vec![created];
    let mut made = 0;
    let mut latest = Some(1);
    let mut workers = Vec::new();
    let mut last_event = pending[0].clone();
    while made < changes || !pending.is_empty() {
        if made < changes && (pending.is_empty() || rng.bool()) {
            made += 1;
            let version = 1 + made as i64;
            let message = if made == changes && delete {
                latest = None;
                fixture.change(id, ProductChange::Delete).await
            } else {
                latest = Some(version);
                fixture.change(id, new_image(url(version))).await
            };
            last_event = message.clone();
            pending.push(message);
        } else {
            let index = rng.usize(..pending.len());
            let message = if rng.u8(..10) < 3 {
                pending[index].clone()
            } else {
                pending.swap_remove(index)
            };
            let fixture = fixture.clone();
            workers.push(tokio::spawn(async move { fixture.deliver(&message).await }));
        }
        if rng.bool() {
            tokio::task::yield_now().await;
        }
    }
    for worker in workers {
        worker.await.unwrap();
    }
    fixture.deliver(&last_event).await;
    let context = format!("seed {seed}: {changes} changes, delete {delete}");
    let expected = latest.map(|version| (version, url(version)));
    fixture
        .assert_converged(
            id,
            expected.as_ref().map(|(v, u)| (*v, u.as_str())),
            &context,
        )
        .await;
}
