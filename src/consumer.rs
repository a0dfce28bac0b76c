//! The image consumer: the worker-runtime [`Handler`] for the product events
//! (`products.created`, `products.updated`, `products.deleted`).
//!
//! Every event names a product and the version it announces, and the consumer acts on the row
//! as it is, not on the event:
//! - the row is gone (deleted): every stored object of the product is deleted;
//! - the row is at another version: the event is stale (a later one is coming or came) and is
//!   acked without processing;
//! - the row has a final status: nothing to process (a redelivery, or a change that kept the
//!   images);
//! - in both cases, when the row is final, what it does not name is deleted, so garbage that a
//!   crash after recording or a superseded attempt's late write left goes with the next event;
//! - otherwise it marks the product `processing`, fetches and compresses all its images
//!   concurrently, and records keys, status and image errors, with the `products.processed`
//!   event, only while the row is still at the version it read. Then it deletes what earlier
//!   versions or attempts stored and this result no longer references, and only then returns
//!   `Ok` (so the worker acks).
//!
//! So whatever order competing workers see the events in, and however often, the row ends with
//! the latest version's result and the store with its objects only (none after a delete). A
//! result refused because the version moved on (or the row went) is garbage: the worker deletes
//! what no row references once the row is final or gone; while a newer version is still being
//! processed it leaves that to the newer version's worker, which may reuse the same objects.
//! Keys are deterministic (they hash the bytes), and the media store writes a key only when it is
//! not there yet, so images whose bytes did not change are not written again.
//!
//! One window stays open: a cleanup that read the row just before a newer version started can
//! delete an object that the newer version then finds present and reuses. It needs a change to
//! land within the milliseconds between a cleanup's read and its deletes; reprocessing the
//! product repairs it.
//!
//! Failure handling: an undecodable payload is permanent (dead-lettered); a database outage, or a
//! media store that fails a cleanup, is transient (retried). An image that fails permanently (404, not an image,
//! too large) is recorded in `image_errors`; one that fails transiently (timeout, 5xx) makes the
//! whole message retry, until the last attempt, where it is recorded like a permanent failure.
//! A media-store failure is never the image's fault and never recorded: the message retries,
//! and after its last attempt it is dead-lettered with the store's reason, the product left
//! unfinished for a redrive once the store is fixed. A message delivered more often than
//! `max_attempts` has killed the workers that took it before (they never settled it): it is not
//! processed again but recorded failed and dead-lettered with that reason, so one poisonous
//! product cannot cycle through the fleet. (The RabbitMQ backend counts deliveries; Kafka
//! cannot, as a new consumer starts the count again.)

use std::sync::Arc;

use async_trait::async_trait;
use mq_core::domain::{
    ImageError, ImageRendition, ProcessingResult, Product, ProductEvent, ProductRepo, Recorded,
    RepoError,
};
use mq_core::worker::{Attempt, Handler};
use mq_core::{Error, Message};
use tracing::{info, warn};

/// Why one image could not be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFailure {
    /// Whether a later attempt may succeed.
    pub transient: bool,
    /// The media store failed, not the image: the product is not finished with an error.
    pub media_store: bool,
    /// What went wrong, for humans (recorded in `image_errors`).
    pub reason: String,
}

/// One image, stored: its primary rendition's key and every rendition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessedImage {
    /// The primary rendition's key (what `compressed_product_images` records).
    pub key: String,
    /// Every rendition, the primary one included.
    pub renditions: Vec<ImageRendition>,
}

/// An image stored as its primary rendition alone, under `key`.
impl From<&str> for ProcessedImage {
    fn from(key: &str) -> Self {
        ProcessedImage {
            key: key.to_owned(),
            renditions: Vec::new(),
        }
    }
}

/// Fetches, compresses and stores one image; keeps a product's stored objects in line with
/// its recorded result.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait ImageProcessor: Send + Sync {
    /// Processes image `index` of product `product_id`; returns its keys in the media store,
    /// once every object is completely written.
    async fn process(
        &self,
        product_id: i64,
        index: u32,
        url: &str,
    ) -> Result<ProcessedImage, ImageFailure>;

    /// Deletes every stored object of `product_id` that `keep` does not name; returns how many.
    async fn retain(&self, product_id: i64, keep: &[String]) -> Result<usize, ImageFailure>;
}

#[async_trait]
impl ImageProcessor for product_pipeline_imaging::Imaging {
    async fn process(
        &self,
        product_id: i64,
        index: u32,
        url: &str,
    ) -> Result<ProcessedImage, ImageFailure> {
        product_pipeline_imaging::Imaging::process(self, product_id, index, url)
            .await
            .map(|stored| ProcessedImage {
                key: stored.key,
                renditions: stored
                    .renditions
                    .into_iter()
                    .map(|rendition| ImageRendition {
                        index,
                        width: rendition.width,
                        height: rendition.height,
                        format: rendition.format.name().to_owned(),
                        bytes: rendition.bytes,
                        path: rendition.key,
                        url: None,
                    })
                    .collect(),
            })
            .map_err(|error| ImageFailure {
                transient: error.is_transient(),
                media_store: matches!(error, product_pipeline_imaging::ImagingError::Storage(_)),
                reason: error.to_string(),
            })
    }

    async fn retain(&self, product_id: i64, keep: &[String]) -> Result<usize, ImageFailure> {
        self.media()
            .retain_product(product_id, keep)
            .await
            .map_err(|error| ImageFailure {
                transient: error.is_transient(),
                media_store: true,
                reason: error.to_string(),
            })
    }
}

/// The product events' handler; see the [module docs](self). Clones share the repository and
/// the image processor.
#[derive(Clone)]
pub struct ImageConsumer {
    products: Arc<dyn ProductRepo>,
    images: Arc<dyn ImageProcessor>,
}

impl ImageConsumer {
    /// A consumer of products in `products` whose images `images` processes. Transient image
    /// failures are retried until the worker's last attempt, then recorded as errors.
    pub fn new(products: Arc<dyn ProductRepo>, images: Arc<dyn ImageProcessor>) -> Self {
        Self { products, images }
    }
}

fn repo_error(error: RepoError) -> Error {
    if error.is_transient() {
        Error::transient(error)
    } else {
        Error::permanent(error)
    }
}

#[async_trait]
impl Handler for ImageConsumer {
    async fn handle(&self, message: &Message, attempt: Attempt) -> mq_core::Result<()> {
        let event: ProductEvent = message.decode().map_err(|error| {
            Error::permanent(format!("payload is not a product event: {error}"))
        })?;
        let product_id = event.product_id;
        let Some(product) = self
            .products
            .mark_processing(product_id, event.version)
            .await
            .map_err(repo_error)?
        else {
            info!(product_id, "product deleted; deleting its media");
            return self.purge(product_id).await;
        };
        if let Some(version) = event.version.filter(|&v| v != product.version) {
            info!(
                product_id,
                event_version = version,
                version = product.version,
                "stale event; skipping"
            );
            return self.tidy_if_final(&product).await;
        }
        if product.status.is_final() {
            info!(product_id, status = %product.status, "already processed; skipping");
            return self.tidy_if_final(&product).await;
        }
        if attempt.number() > attempt.max() {
            return Err(self.give_up_after_crashes(&product, attempt.number()).await);
        }

        let last_attempt = attempt.is_last();
        let outcomes = futures::future::join_all(
            product
                .product_images
                .iter()
                .enumerate()
                .map(|(index, url)| self.images.process(product_id, index as u32, url)),
        )
        .await;

        let mut compressed = Vec::new();
        let mut renditions = Vec::new();
        let mut errors = Vec::new();
        for (index, (url, outcome)) in product.product_images.iter().zip(outcomes).enumerate() {
            match outcome {
                Ok(image) => {
                    compressed.push(image.key);
                    renditions.extend(image.renditions);
                }
                Err(failure) if failure.media_store => {
                    warn!(product_id, index, reason = %failure.reason, "media store failure; retrying the product");
                    return Err(Error::transient(format!(
                        "image {index}: {}",
                        failure.reason
                    )));
                }
                Err(failure) if failure.transient && !last_attempt => {
                    warn!(product_id, index, reason = %failure.reason, "transient image failure; retrying the product");
                    return Err(Error::transient(format!(
                        "image {index} ({url}): {}",
                        failure.reason
                    )));
                }
                Err(failure) => errors.push(ImageError {
                    index: index as u32,
                    url: url.clone(),
                    reason: if failure.transient {
                        format!(
                            "{} (gave up after {} attempts)",
                            failure.reason,
                            attempt.number()
                        )
                    } else {
                        failure.reason
                    },
                }),
            }
        }
        let result = ProcessingResult::new(compressed, errors).with_renditions(renditions);
        let recorded = self
            .products
            .record_result(product_id, product.version, &result)
            .await
            .map_err(repo_error)?;
        if recorded == Recorded::Superseded {
            info!(
                product_id,
                version = product.version,
                "the product changed while its images were processed; result discarded"
            );
            return self.discard_superseded(product_id).await;
        }
        info!(product_id, version = product.version, status = %result.status, "product processed");
        self.delete_superseded(product_id, &result.stored_keys())
            .await
    }
}

impl ImageConsumer {
    /// A delivery numbered above `max_attempts`: in-process retries stop at `max_attempts`, so
    /// earlier deliveries never ended, and the workers handling them died (killed for lack of
    /// memory, say). Processing it again would likely kill this one too, and the next: records
    /// every image as failed with the reason, and returns the permanent error that dead-letters
    /// the message with it (or, when recording fails, that error, so the message is retried).
    async fn give_up_after_crashes(&self, product: &Product, attempt: u32) -> Error {
        let reason = format!(
            "not processed: delivered {attempt} times, and each earlier time the worker handling \
             it stopped before finishing (e.g. killed for lack of memory)"
        );
        warn!(product_id = product.product_id, attempt, "{reason}");
        let errors = product
            .product_images
            .iter()
            .enumerate()
            .map(|(index, url)| ImageError {
                index: index as u32,
                url: url.clone(),
                reason: reason.clone(),
            })
            .collect();
        let recorded = self
            .products
            .record_result(
                product.product_id,
                product.version,
                &ProcessingResult::new(vec![], errors),
            )
            .await;
        match recorded {
            Ok(Recorded::Applied | Recorded::Unchanged) => {
                // Recorded without images: whatever earlier versions stored goes.
                match self.tidy(product.product_id, &[]).await {
                    Ok(()) => Error::permanent(reason),
                    Err(error) => error,
                }
            }
            // The product changed or went meanwhile: not poisonous after all.
            Ok(Recorded::Superseded) => match self.discard_superseded(product.product_id).await {
                Ok(()) => Error::permanent(format!("{reason}; superseded meanwhile")),
                Err(error) => error,
            },
            Err(error) => repo_error(error),
        }
    }

    /// Deletes every stored object of a product whose row is gone. A media store that fails is
    /// a transient error: the message retries (and is dead-lettered after its attempts, to be
    /// redriven once the store is back), because a deleted product must leave no files.
    async fn purge(&self, product_id: i64) -> mq_core::Result<()> {
        match self.images.retain(product_id, &[]).await {
            Ok(0) => Ok(()),
            Ok(deleted) => {
                info!(product_id, deleted, "media of the deleted product deleted");
                Ok(())
            }
            Err(failure) => {
                warn!(product_id, reason = %failure.reason, "could not delete the media of a deleted product; retrying");
                Err(Error::transient(format!(
                    "deleting the media of deleted product {product_id}: {}",
                    failure.reason
                )))
            }
        }
    }

    /// After a refused result: deletes the objects no row references, once nobody else will.
    /// The row gone: everything goes. The row final (a newer version was recorded, perhaps
    /// before this worker's objects were written, so its own cleanup missed them): what it does
    /// not name goes. The row not final: the worker of its version is at work, may reuse these
    /// very objects, and cleans up after it records.
    async fn discard_superseded(&self, product_id: i64) -> mq_core::Result<()> {
        match self.products.get_product(product_id).await {
            Ok(None) => self.purge(product_id).await,
            Ok(Some(row)) => self.tidy_if_final(&row).await,
            Err(error) => Err(repo_error(error)),
        }
    }

    /// Deletes what an earlier version or attempt stored with other bytes, now that the row
    /// names the new keys: only while the row is final and names exactly `keys` (a change of the
    /// product's own fields meanwhile keeps both); if its images changed since, the newer
    /// version's worker cleans up after it.
    async fn delete_superseded(&self, product_id: i64, keys: &[String]) -> mq_core::Result<()> {
        match self.products.get_product(product_id).await {
            Ok(Some(row)) if row.status.is_final() && row.stored_keys() == keys => {
                self.tidy(product_id, keys).await
            }
            Ok(_) => {
                info!(
                    product_id,
                    "the product's images changed meanwhile; leaving the cleanup to the newer version"
                );
                Ok(())
            }
            Err(error) => Err(repo_error(error)),
        }
    }

    /// On an event that needs no processing (stale, or a redelivery of a finished product):
    /// deletes what the final row does not name. So garbage that a crash after recording, or a
    /// late write of a superseded attempt, left behind goes with the next event of the product.
    async fn tidy_if_final(&self, row: &Product) -> mq_core::Result<()> {
        if row.status.is_final() {
            self.tidy(row.product_id, &row.stored_keys()).await
        } else {
            Ok(())
        }
    }

    /// Deletes the objects of `product_id` that `keep` does not name. A failure is transient:
    /// the message retries, and its redelivery, finding the product finished, tidies again.
    async fn tidy(&self, product_id: i64, keep: &[String]) -> mq_core::Result<()> {
        match self.images.retain(product_id, keep).await {
            Ok(0) => Ok(()),
            Ok(deleted) => {
                info!(product_id, deleted, "superseded media deleted");
                Ok(())
            }
            Err(failure) => {
                metrics::counter!("media_cleanup_failures_total").increment(1);
                warn!(product_id, reason = %failure.reason, "could not delete superseded media; retrying");
                Err(Error::transient(format!(
                    "deleting superseded media of product {product_id}: {}",
                    failure.reason
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use mq_core::domain::{MockProductRepo, Product, ProductStatus};

    use super::*;

    fn product(status: ProductStatus, images: usize) -> Product {
        Product {
            product_id: 9,
            user_id: 1,
            product_name: "lamp".into(),
            product_description: None,
            product_images: (0..images)
                .map(|i| format!("http://127.0.0.1/{i}.jpg"))
                .collect(),
            product_price: "1.50".parse().unwrap(),
            compressed_product_images: vec![],
            image_renditions: vec![],
            status,
            image_errors: vec![],
            version: 1,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        }
    }

    /// The row as read back after recording: it names `keys`.
    fn reads_back(repo: &mut MockProductRepo, keys: &'static [&'static str]) {
        repo.expect_get_product().returning(move |_| {
            let mut row = product(ProductStatus::Done, keys.len());
            row.compressed_product_images = keys.iter().map(|k| k.to_string()).collect();
            Ok(Some(row))
        });
    }

    fn created(id: i64) -> Message {
        Message::json(&ProductEvent {
            product_id: id,
            version: Some(1),
        })
        .unwrap()
    }

    fn images(fail_index: Option<(u32, bool)>) -> MockImageProcessor {
        let mut images = MockImageProcessor::new();
        images
            .expect_process()
            .returning(move |id, index, _| match fail_index {
                Some((bad, transient)) if bad == index => Err(ImageFailure {
                    transient,
                    media_store: false,
                    reason: "HTTP 404".into(),
                }),
                _ => Ok(format!("products/{id}/{index}-abc.jpg").as_str().into()),
            });
        images.expect_retain().returning(|_, _| Ok(0));
        images
    }

    #[tokio::test]
    async fn records_paths_in_order_and_errors() {
        let mut repo = MockProductRepo::new();
        repo.expect_mark_processing()
            .returning(|_, _| Ok(Some(product(ProductStatus::Processing, 3))));
        repo.expect_record_result()
            .withf(|id, version, result| {
                *version == 1
                    && *id == 9
                    && result.status == ProductStatus::Partial
                    && result.compressed_product_images
                        == ["products/9/0-abc.jpg", "products/9/2-abc.jpg"]
                    && result.image_errors.len() == 1
                    && result.image_errors[0].index == 1
            })
            .times(1)
            .returning(|_, _, _| Ok(Recorded::Applied));
        reads_back(&mut repo, &["products/9/0-abc.jpg", "products/9/2-abc.jpg"]);
        let consumer = ImageConsumer::new(Arc::new(repo), Arc::new(images(Some((1, false)))));
        consumer
            .handle(&created(9), Attempt::new(1, 5))
            .await
            .unwrap();
    }

    /// A message delivered more often than the worker retries (its earlier workers died on it)
    /// is not processed again: every image is recorded failed with the reason, and the error is
    /// permanent, so the message is dead-lettered instead of killing the next worker.
    #[tokio::test]
    async fn a_message_that_keeps_killing_workers_is_given_up() {
        let mut repo = MockProductRepo::new();
        repo.expect_mark_processing()
            .returning(|_, _| Ok(Some(product(ProductStatus::Processing, 2))));
        repo.expect_record_result()
            .withf(|id, version, result| {
                *version == 1
                    && *id == 9
                    && result.status == ProductStatus::Failed
                    && result.compressed_product_images.is_empty()
                    && result.image_errors.len() == 2
                    && result.image_errors[1].reason.contains("delivered 6 times")
            })
            .times(1)
            .returning(|_, _, _| Ok(Recorded::Applied));
        let mut images = MockImageProcessor::new();
        images.expect_process().never();
        // Recorded without images: nothing stored for the product stays.
        images
            .expect_retain()
            .withf(|id, keep| *id == 9 && keep.is_empty())
            .times(1)
            .returning(|_, _| Ok(0));
        let consumer = ImageConsumer::new(Arc::new(repo), Arc::new(images));
        let error = consumer
            .handle(&created(9), Attempt::new(6, 5))
            .await
            .unwrap_err();
        assert!(!error.is_transient(), "{error}");
        assert!(error.to_string().contains("killed"), "{error}");
    }

    /// Superseded objects are deleted only after the result is recorded, and with exactly the
    /// recorded keys kept.
    #[tokio::test]
    async fn superseded_media_is_deleted_after_the_result_is_recorded() {
        let recorded = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut repo = MockProductRepo::new();
        repo.expect_mark_processing()
            .returning(|_, _| Ok(Some(product(ProductStatus::Processing, 2))));
        let flag = recorded.clone();
        repo.expect_record_result()
            .times(1)
            .returning(move |_, _, _| {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(Recorded::Applied)
            });
        reads_back(&mut repo, &["products/9/0-new.jpg", "products/9/1-new.jpg"]);
        let mut images = MockImageProcessor::new();
        images
            .expect_process()
            .returning(|id, index, _| Ok(format!("products/{id}/{index}-new.jpg").as_str().into()));
        let flag = recorded.clone();
        images
            .expect_retain()
            .withf(move |id, keep| {
                flag.load(std::sync::atomic::Ordering::SeqCst)
                    && *id == 9
                    && keep == ["products/9/0-new.jpg", "products/9/1-new.jpg"]
            })
            .times(1)
            .returning(|_, _| Ok(1));
        let consumer = ImageConsumer::new(Arc::new(repo), Arc::new(images));
        consumer
            .handle(&created(9), Attempt::new(1, 5))
            .await
            .unwrap();
    }

    /// An image's renditions in two sizes and formats, the primary one first.
    fn renditions_of(index: u32) -> Vec<ImageRendition> {
        [
            (1024, "jpeg", "jpg"),
            (1024, "webp", "webp"),
            (320, "jpeg", "jpg"),
        ]
        .into_iter()
        .map(|(side, format, ext)| ImageRendition {
            index,
            width: side,
            height: side * 3 / 4,
            format: format.into(),
            bytes: 100,
            path: format!("products/9/{index}-{side}-h.{ext}"),
            url: None,
        })
        .collect()
    }

    /// Every rendition is recorded with the product, and the cleanup after recording keeps all
    /// of them, not only the primary ones.
    #[tokio::test]
    async fn every_rendition_is_recorded_and_kept() {
        let mut repo = MockProductRepo::new();
        repo.expect_mark_processing()
            .returning(|_, _| Ok(Some(product(ProductStatus::Processing, 2))));
        let all: Vec<ImageRendition> = renditions_of(0)
            .into_iter()
            .chain(renditions_of(1))
            .collect();
        let expected = all.clone();
        repo.expect_record_result()
            .withf(move |_, _, result| {
                result.compressed_product_images
                    == ["products/9/0-1024-h.jpg", "products/9/1-1024-h.jpg"]
                    && result.image_renditions == expected
            })
            .times(1)
            .returning(|_, _, _| Ok(Recorded::Applied));
        let row_renditions = all.clone();
        repo.expect_get_product().returning(move |_| {
            let mut row = product(ProductStatus::Done, 2);
            row.compressed_product_images = vec![
                "products/9/0-1024-h.jpg".into(),
                "products/9/1-1024-h.jpg".into(),
            ];
            row.image_renditions = row_renditions.clone();
            Ok(Some(row))
        });
        let mut images = MockImageProcessor::new();
        images.expect_process().returning(|_, index, _| {
            Ok(ProcessedImage {
                key: format!("products/9/{index}-1024-h.jpg"),
                renditions: renditions_of(index),
            })
        });
        images
            .expect_retain()
            .withf(|id, keep| {
                let mut keep = keep.to_vec();
                keep.sort();
                *id == 9 && keep.len() == 6 && keep.contains(&"products/9/1-320-h.jpg".to_owned())
            })
            .times(1)
            .returning(|_, _| Ok(0));
        let consumer = ImageConsumer::new(Arc::new(repo), Arc::new(images));
        consumer
            .handle(&created(9), Attempt::new(1, 5))
            .await
            .unwrap();
    }

    /// A media store that refuses a write is never recorded as the image's failure, not even on
    /// the last attempt: the message fails (and is dead-lettered after its attempts).
    #[tokio::test]
    async fn a_media_store_failure_is_never_recorded() {
        let mut repo = MockProductRepo::new();
        repo.expect_mark_processing()
            .returning(|_, _| Ok(Some(product(ProductStatus::Processing, 2))));
        repo.expect_record_result().never();
        let mut images = MockImageProcessor::new();
        images
            .expect_process()
            .returning(|_, index, _| match index {
                0 => Ok("products/9/0-abc.jpg".into()),
                _ => Err(ImageFailure {
                    transient: false,
                    media_store: true,
                    reason: "access denied; check MEDIA_URL".into(),
                }),
            });
        images.expect_retain().never();
        let consumer = ImageConsumer::new(Arc::new(repo), Arc::new(images));
        for attempt in 1..=3 {
            let error = consumer
                .handle(&created(9), Attempt::new(attempt, 3))
                .await
                .unwrap_err();
            assert!(error.to_string().contains("access denied"), "{error}");
        }
    }

    /// A one-image product whose image is stored as `products/9/0-new.jpg`, recorded once, and
    /// read back naming `row_keys`.
    fn one_new_image(row_keys: &'static [&'static str]) -> (MockProductRepo, MockImageProcessor) {
        let mut repo = MockProductRepo::new();
        repo.expect_mark_processing()
            .returning(|_, _| Ok(Some(product(ProductStatus::Processing, 1))));
        repo.expect_record_result()
            .times(1)
            .returning(|_, _, _| Ok(Recorded::Applied));
        reads_back(&mut repo, row_keys);
        let mut images = MockImageProcessor::new();
        images
            .expect_process()
            .returning(|id, index, _| Ok(format!("products/{id}/{index}-new.jpg").as_str().into()));
        (repo, images)
    }

    /// When another attempt recorded other keys meanwhile, this one deletes nothing: those keys
    /// are the live ones.
    #[tokio::test]
    async fn no_cleanup_when_the_row_moved_on() {
        let (repo, mut images) = one_new_image(&["products/9/0-other.jpg"]);
        images.expect_retain().never();
        let consumer = ImageConsumer::new(Arc::new(repo), Arc::new(images));
        consumer
            .handle(&created(9), Attempt::new(1, 5))
            .await
            .unwrap();
    }

    /// A cleanup that fails after the result is recorded fails the message transiently: its
    /// redelivery finds the product finished and tidies again.
    #[tokio::test]
    async fn a_failed_cleanup_is_retried() {
        let (repo, mut images) = one_new_image(&["products/9/0-new.jpg"]);
        images.expect_retain().times(1).returning(|_, _| {
            Err(ImageFailure {
                transient: true,
                media_store: true,
                reason: "store down".into(),
            })
        });
        let consumer = ImageConsumer::new(Arc::new(repo), Arc::new(images));
        let error = consumer
            .handle(&created(9), Attempt::new(1, 5))
            .await
            .unwrap_err();
        assert!(error.is_transient(), "{error}");
    }

    /// A redelivery of a finished product processes nothing, and deletes what the row does not
    /// name (garbage of a crash after recording, or of a superseded attempt's late write).
    #[tokio::test]
    async fn a_finished_product_is_skipped_and_tidied() {
        let mut repo = MockProductRepo::new();
        repo.expect_mark_processing()
            .returning(|_, _| Ok(Some(product(ProductStatus::Done, 2))));
        repo.expect_record_result().never();
        let mut images = MockImageProcessor::new();
        images.expect_process().never();
        images
            .expect_retain()
            .withf(|id, keep| *id == 9 && keep.is_empty())
            .times(1)
            .returning(|_, _| Ok(1));
        let consumer = ImageConsumer::new(Arc::new(repo), Arc::new(images));
        consumer
            .handle(&created(9), Attempt::new(2, 5))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn transient_image_failures_retry_until_the_last_attempt() {
        let mut repo = MockProductRepo::new();
        repo.expect_mark_processing()
            .returning(|_, _| Ok(Some(product(ProductStatus::Processing, 2))));
        repo.expect_record_result()
            .withf(|_, _, result| {
                result.status == ProductStatus::Partial
                    && result.image_errors[0].reason == "HTTP 404 (gave up after 3 attempts)"
            })
            .times(1)
            .returning(|_, _, _| Ok(Recorded::Applied));
        reads_back(&mut repo, &["products/9/1-abc.jpg"]);
        let consumer = ImageConsumer::new(Arc::new(repo), Arc::new(images(Some((0, true)))));
        let error = consumer
            .handle(&created(9), Attempt::new(1, 3))
            .await
            .unwrap_err();
        assert!(error.is_transient());
        consumer
            .handle(&created(9), Attempt::new(3, 3))
            .await
            .expect("recorded on the last attempt");
    }

    #[tokio::test]
    async fn a_bad_payload_is_permanent() {
        let consumer = ImageConsumer::new(
            Arc::new(MockProductRepo::new()),
            Arc::new(MockImageProcessor::new()),
        );
        assert!(!consumer
            .handle(&Message::new("garbage"), Attempt::new(1, 5))
            .await
            .unwrap_err()
            .is_transient());
    }

    /// An event of a product that is gone deletes every object of it; a media store that fails
    /// makes the message retry, since a deleted product must leave no files.
    #[tokio::test]
    async fn an_event_of_a_deleted_product_deletes_its_media() {
        let mut repo = MockProductRepo::new();
        repo.expect_mark_processing().returning(|_, _| Ok(None));
        let mut images = MockImageProcessor::new();
        images.expect_process().never();
        let mut failing = true;
        images
            .expect_retain()
            .withf(|id, keep| *id == 9 && keep.is_empty())
            .times(2)
            .returning(move |_, _| {
                if std::mem::take(&mut failing) {
                    Err(ImageFailure {
                        transient: true,
                        media_store: true,
                        reason: "store down".into(),
                    })
                } else {
                    Ok(2)
                }
            });
        let consumer = ImageConsumer::new(Arc::new(repo), Arc::new(images));
        let error = consumer
            .handle(&created(9), Attempt::new(1, 5))
            .await
            .unwrap_err();
        assert!(error.is_transient(), "{error}");
        consumer
            .handle(&created(9), Attempt::new(2, 5))
            .await
            .unwrap();
    }

    /// An event whose version is not the row's is acked without work.
    #[tokio::test]
    async fn a_stale_event_is_skipped() {
        let mut repo = MockProductRepo::new();
        repo.expect_mark_processing()
            .withf(|id, version| *id == 9 && *version == Some(1))
            .returning(|_, _| {
                let mut row = product(ProductStatus::Pending, 1);
                row.version = 2;
                Ok(Some(row))
            });
        repo.expect_record_result().never();
        let mut images = MockImageProcessor::new();
        images.expect_process().never();
        images.expect_retain().never();
        let consumer = ImageConsumer::new(Arc::new(repo), Arc::new(images));
        consumer
            .handle(&created(9), Attempt::new(1, 5))
            .await
            .unwrap();
    }

    /// A result refused because the product changed meanwhile: while the newer version is
    /// pending nothing is deleted (its worker may reuse the objects); once the row is final,
    /// what it does not name is deleted; once it is gone, everything is.
    #[tokio::test]
    async fn a_superseded_result_is_cleaned_up_only_when_safe() {
        for (row, keep) in [
            (Some((ProductStatus::Pending, None)), None),
            (
                Some((ProductStatus::Done, Some("products/9/0-newer.jpg"))),
                Some(vec!["products/9/0-newer.jpg".to_owned()]),
            ),
            (None, Some(vec![])),
        ] {
            let mut repo = MockProductRepo::new();
            repo.expect_mark_processing()
                .returning(|_, _| Ok(Some(product(ProductStatus::Processing, 1))));
            repo.expect_record_result()
                .times(1)
                .returning(|_, _, _| Ok(Recorded::Superseded));
            repo.expect_get_product().returning(move |_| {
                Ok(row.map(|(status, key)| {
                    let mut row = product(status, 1);
                    row.version = 2;
                    row.compressed_product_images = key.into_iter().map(Into::into).collect();
                    row
                }))
            });
            let mut images = MockImageProcessor::new();
            images.expect_process().returning(|id, index, _| {
                Ok(format!("products/{id}/{index}-new.jpg").as_str().into())
            });
            match keep.clone() {
                None => {
                    images.expect_retain().never();
                }
                Some(keep) => {
                    images
                        .expect_retain()
                        .withf(move |id, kept| *id == 9 && kept == keep.as_slice())
                        .times(1)
                        .returning(|_, _| Ok(1));
                }
            }
            let consumer = ImageConsumer::new(Arc::new(repo), Arc::new(images));
            consumer
                .handle(&created(9), Attempt::new(1, 5))
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn a_database_outage_is_transient() {
        let mut repo = MockProductRepo::new();
        repo.expect_mark_processing()
            .returning(|_, _| Err(RepoError::Unavailable("connection refused".into())));
        let consumer = ImageConsumer::new(Arc::new(repo), Arc::new(MockImageProcessor::new()));
        assert!(consumer
            .handle(&created(1), Attempt::new(1, 5))
            .await
            .unwrap_err()
            .is_transient());
    }
}
