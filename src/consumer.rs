//! The image consumer: the worker-runtime [`Handler`] for `products.created`.
//!
//! For each message it loads the product, marks it `processing`, fetches and compresses all its
//! images concurrently, records keys, status and image errors in one statement, deletes what an
//! earlier attempt stored and this result no longer references, and only then returns `Ok` (so
//! the worker acks). It is idempotent: a product that already has a final status is skipped, and
//! keys are deterministic, so a redelivered message overwrites the same objects and never
//! duplicates array entries.
//!
//! Failure handling: an undecodable payload or a missing product is permanent (dead-lettered); a
//! database outage is transient (retried). An image that fails permanently (404, not an image,
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
use mq_core::domain::{ImageError, ProcessingResult, ProductCreated, ProductRepo, RepoError};
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

/// Fetches, compresses and stores one image; keeps a product's stored objects in line with
/// its recorded result.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait ImageProcessor: Send + Sync {
    /// Processes image `index` of product `product_id`; returns its key in the media store,
    /// once the object is completely written.
    async fn process(&self, product_id: i64, index: u32, url: &str)
        -> Result<String, ImageFailure>;

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
    ) -> Result<String, ImageFailure> {
        product_pipeline_imaging::Imaging::process(self, product_id, index, url)
            .await
            .map(|stored| stored.key)
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

/// The `products.created` handler; see the [module docs](self).
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
        let ProductCreated { product_id } = message.decode().map_err(|error| {
            Error::permanent(format!("payload is not a products.created event: {error}"))
        })?;
        let product = self
            .products
            .mark_processing(product_id)
            .await
            .map_err(repo_error)?
            .ok_or_else(|| Error::permanent(format!("product {product_id} does not exist")))?;
        if product.status.is_final() {
            info!(product_id, status = %product.status, "already processed; skipping");
            return Ok(());
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
        let mut errors = Vec::new();
        for (index, (url, outcome)) in product.product_images.iter().zip(outcomes).enumerate() {
            match outcome {
                Ok(path) => compressed.push(path),
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
        let result = ProcessingResult::new(compressed, errors);
        self.products
            .record_result(product_id, &result)
            .await
            .map_err(repo_error)?;
        info!(product_id, status = %result.status, "product processed");
        self.delete_superseded(product_id, &result.compressed_product_images)
            .await;
        Ok(())
    }
}

impl ImageConsumer {
    /// A delivery numbered above `max_attempts`: in-process retries stop at `max_attempts`, so
    /// earlier deliveries never ended, and the workers handling them died (killed for lack of
    /// memory, say). Processing it again would likely kill this one too, and the next: records
    /// every image as failed with the reason, and returns the permanent error that dead-letters
    /// the message with it (or, when recording fails, that error, so the message is retried).
    async fn give_up_after_crashes(
        &self,
        product: &mq_core::domain::Product,
        attempt: u32,
    ) -> Error {
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
        match self
            .products
            .record_result(product.product_id, &ProcessingResult::new(vec![], errors))
            .await
        {
            Ok(()) => Error::permanent(reason),
            Err(error) => repo_error(error),
        }
    }

    /// Deletes what an earlier attempt stored with other bytes, now that the row names the new
    /// keys. Only while the row still names exactly `keys`: if a concurrent attempt on the same
    /// product recorded since, its keys are the live ones and its own cleanup runs. (An attempt
    /// that records after this check can still find an object deleted; per-product versions
    /// close that window.) A failure leaves garbage, not a missing object, so it is logged and
    /// counted rather than retried: a retry would skip the finished product anyway.
    async fn delete_superseded(&self, product_id: i64, keys: &[String]) {
        match self.products.get_product(product_id).await {
            Ok(Some(row)) if row.compressed_product_images == keys => {}
            Ok(_) => {
                info!(
                    product_id,
                    "recorded again meanwhile; leaving the cleanup to that attempt"
                );
                return;
            }
            Err(error) => {
                metrics::counter!("media_cleanup_failures_total").increment(1);
                warn!(product_id, %error, "could not re-read the product; superseded media kept");
                return;
            }
        }
        match self.images.retain(product_id, keys).await {
            Ok(0) => {}
            Ok(deleted) => info!(product_id, deleted, "superseded media deleted"),
            Err(failure) => {
                metrics::counter!("media_cleanup_failures_total").increment(1);
                warn!(product_id, reason = %failure.reason, "could not delete superseded media");
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
            status,
            image_errors: vec![],
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
        Message::json(&ProductCreated { product_id: id }).unwrap()
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
                _ => Ok(format!("products/{id}/{index}-abc.jpg")),
            });
        images.expect_retain().returning(|_, _| Ok(0));
        images
    }

    #[tokio::test]
    async fn records_paths_in_order_and_errors() {
        let mut repo = MockProductRepo::new();
        repo.expect_mark_processing()
            .returning(|_| Ok(Some(product(ProductStatus::Processing, 3))));
        repo.expect_record_result()
            .withf(|id, result| {
                *id == 9
                    && result.status == ProductStatus::Partial
                    && result.compressed_product_images
                        == ["products/9/0-abc.jpg", "products/9/2-abc.jpg"]
                    && result.image_errors.len() == 1
                    && result.image_errors[0].index == 1
            })
            .times(1)
            .returning(|_, _| Ok(()));
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
            .returning(|_| Ok(Some(product(ProductStatus::Processing, 2))));
        repo.expect_record_result()
            .withf(|id, result| {
                *id == 9
                    && result.status == ProductStatus::Failed
                    && result.compressed_product_images.is_empty()
                    && result.image_errors.len() == 2
                    && result.image_errors[1].reason.contains("delivered 6 times")
            })
            .times(1)
            .returning(|_, _| Ok(()));
        let mut images = MockImageProcessor::new();
        images.expect_process().never();
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
            .returning(|_| Ok(Some(product(ProductStatus::Processing, 2))));
        let flag = recorded.clone();
        repo.expect_record_result().times(1).returning(move |_, _| {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        });
        reads_back(&mut repo, &["products/9/0-new.jpg", "products/9/1-new.jpg"]);
        let mut images = MockImageProcessor::new();
        images
            .expect_process()
            .returning(|id, index, _| Ok(format!("products/{id}/{index}-new.jpg")));
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

    /// A media store that refuses a write is never recorded as the image's failure, not even on
    /// the last attempt: the message fails (and is dead-lettered after its attempts).
    #[tokio::test]
    async fn a_media_store_failure_is_never_recorded() {
        let mut repo = MockProductRepo::new();
        repo.expect_mark_processing()
            .returning(|_| Ok(Some(product(ProductStatus::Processing, 2))));
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
            .returning(|_| Ok(Some(product(ProductStatus::Processing, 1))));
        repo.expect_record_result()
            .times(1)
            .returning(|_, _| Ok(()));
        reads_back(&mut repo, row_keys);
        let mut images = MockImageProcessor::new();
        images
            .expect_process()
            .returning(|id, index, _| Ok(format!("products/{id}/{index}-new.jpg")));
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

    /// A cleanup that fails does not fail the message: the result is recorded.
    #[tokio::test]
    async fn a_failed_cleanup_still_acks() {
        let (repo, mut images) = one_new_image(&["products/9/0-new.jpg"]);
        images.expect_retain().times(1).returning(|_, _| {
            Err(ImageFailure {
                transient: true,
                media_store: true,
                reason: "store down".into(),
            })
        });
        let consumer = ImageConsumer::new(Arc::new(repo), Arc::new(images));
        consumer
            .handle(&created(9), Attempt::new(1, 5))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_finished_product_is_skipped() {
        let mut repo = MockProductRepo::new();
        repo.expect_mark_processing()
            .returning(|_| Ok(Some(product(ProductStatus::Done, 2))));
        repo.expect_record_result().never();
        let mut images = MockImageProcessor::new();
        images.expect_process().never();
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
            .returning(|_| Ok(Some(product(ProductStatus::Processing, 2))));
        repo.expect_record_result()
            .withf(|_, result| {
                result.status == ProductStatus::Partial
                    && result.image_errors[0].reason == "HTTP 404 (gave up after 3 attempts)"
            })
            .times(1)
            .returning(|_, _| Ok(()));
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
    async fn bad_payloads_and_missing_products_are_permanent() {
        let mut repo = MockProductRepo::new();
        repo.expect_mark_processing().returning(|_| Ok(None));
        let consumer = ImageConsumer::new(Arc::new(repo), Arc::new(MockImageProcessor::new()));
        assert!(!consumer
            .handle(&Message::new("garbage"), Attempt::new(1, 5))
            .await
            .unwrap_err()
            .is_transient());
        assert!(!consumer
            .handle(&created(404), Attempt::new(1, 5))
            .await
            .unwrap_err()
            .is_transient());
    }

    #[tokio::test]
    async fn a_database_outage_is_transient() {
        let mut repo = MockProductRepo::new();
        repo.expect_mark_processing()
            .returning(|_| Err(RepoError::Unavailable("connection refused".into())));
        let consumer = ImageConsumer::new(Arc::new(repo), Arc::new(MockImageProcessor::new()));
        assert!(consumer
            .handle(&created(1), Attempt::new(1, 5))
            .await
            .unwrap_err()
            .is_transient());
    }
}
