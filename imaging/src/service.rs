//! [`Imaging`]: the one-call service (fetch → compress → store) the worker uses.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use tracing::field::Empty;
use tracing::Instrument;

use crate::budget::{MemoryBudget, Phase};
use crate::compress::{compress, memory_needed, CompressOptions, Compressed, Rendition};
use crate::config::{ImagingConfig, OutputFormat};
use crate::error::ImagingError;
use crate::fetch::allowance::{Allowances, Charged, ImageRef};
use crate::fetch::{Fetched, Fetcher};
use crate::media::{image_key, MediaStore};

/// A stored, compressed image: its primary rendition, and all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredImage {
    /// The primary rendition's key in the media store, e.g.
    /// `products/42/0-1024-1f2e3d4c5b6a7988.jpg`.
    pub key: String,
    /// The primary rendition's width.
    pub width: u32,
    /// The primary rendition's height.
    pub height: u32,
    /// Downloaded bytes.
    pub bytes_in: u64,
    /// Bytes of all renditions.
    pub bytes_out: u64,
    /// Every rendition (the primary one included), largest first.
    pub renditions: Vec<StoredRendition>,
}

/// One stored rendition of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRendition {
    /// Its key in the media store.
    pub key: String,
    /// Its format.
    pub format: OutputFormat,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Size in bytes.
    pub bytes: u64,
}

struct Inner {
    fetcher: Fetcher,
    allowances: Allowances,
    options: Arc<CompressOptions>,
    store: MediaStore,
    cpu: Arc<Semaphore>,
    memory: MemoryBudget,
}

/// Fetches, compresses and stores product images. Cheap to clone (shared state behind an `Arc`).
///
/// Downloads run concurrently on the async runtime; decoding and encoding run on the blocking
/// pool, at most `max_concurrent_jobs` (default: one per core) at a time, so a huge image cannot
/// starve the runtime or the other images. Memory per job is bounded by `max_bytes` for the
/// download and by the decode limits (`max_pixels`, `max_decode_alloc`; JPEGs are decoded at a
/// reduced scale); memory of all jobs together by the `memory_budget`
/// ([`MemoryBudget`]): downloads and decodes wait for their share.
#[derive(Clone)]
pub struct Imaging {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Imaging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imaging")
            .field("media", &self.inner.store)
            .field("options", &self.inner.options)
            .field("jobs", &self.inner.cpu.available_permits())
            .finish()
    }
}

impl Imaging {
    /// Validates `config` and builds the HTTP client; images are stored in `media`.
    pub fn new(config: ImagingConfig, media: MediaStore) -> Result<Imaging, ImagingError> {
        config.validate()?;
        // A budget bounds what the images hold; without this, glibc would keep their freed
        // buffers in its arenas and resident memory would drift above it.
        if config.memory_budget.is_some() && crate::budget::return_freed_buffers_to_the_kernel() {
            tracing::info!(
                "freed blocks of {} MiB and more go back to the kernel at once (memory budget)",
                crate::budget::DIRECT_FROM_KERNEL >> 20
            );
        }
        Ok(Imaging {
            inner: Arc::new(Inner {
                fetcher: Fetcher::new(&config)?,
                allowances: Allowances::new(config.fetch_budget),
                options: Arc::new(CompressOptions::from(&config)),
                store: media,
                cpu: Arc::new(Semaphore::new(config.jobs())),
                memory: config
                    .memory_budget
                    .map_or_else(MemoryBudget::unlimited, MemoryBudget::new),
            }),
        })
    }

    /// The media store images are written to.
    pub fn media(&self) -> &MediaStore {
        &self.inner.store
    }

    /// The fetcher (for callers that only download).
    pub fn fetcher(&self) -> &Fetcher {
        &self.inner.fetcher
    }

    /// Fetches `url`, compresses it into every rendition and stores them as image `index` of
    /// product `product_id`. Returns their keys in the media store. What is written is complete
    /// before this returns; on failure, renditions written before it are left for the caller's
    /// clean-up ([`MediaStore::retain_product`]), and a retry that makes the same bytes writes
    /// nothing new.
    ///
    /// Each call makes one download attempt. The attempts of one image (the same product, index
    /// and URL) share its fetch budget (`fetch_budget`): a call that fails transiently is
    /// charged the time it took, and the one that uses up the rest fails with the permanent
    /// [`ImagingError::FetchBudgetSpent`], as does every later call for that image (without a
    /// request), so the caller stops retrying it.
    ///
    /// Recorded through the [`metrics`] facade (a no-op until the application installs a
    /// recorder): `image_fetch_duration_seconds`, `image_compress_duration_seconds` and
    /// `media_put_duration_seconds` (histograms), `image_bytes_in_total` and
    /// `image_bytes_out_total`, and `image_failures_total` labelled by `reason`
    /// ([`ImagingError::kind`]).
    pub async fn process(
        &self,
        product_id: i64,
        index: u32,
        url: &str,
    ) -> Result<StoredImage, ImagingError> {
        // One span per image with a child per step (fetch, compress, store): under the worker's
        // span, this is the image's part of the product's trace.
        let span = tracing::info_span!(
            "image",
            product_id,
            index,
            url.full = %redacted(url),
            otel.status_code = Empty,
            otel.status_description = Empty,
            error.type = Empty,
        );
        let processed = self
            .fetch_and_store(product_id, index, url)
            .instrument(span.clone())
            .await;
        if let Err(error) = &processed {
            metrics::counter!("image_failures_total", "reason" => error.kind()).increment(1);
            span.record("otel.status_code", "ERROR");
            span.record("otel.status_description", error.to_string());
            span.record("error.type", error.kind());
        }
        processed
    }

    async fn fetch_and_store(
        &self,
        product_id: i64,
        index: u32,
        url: &str,
    ) -> Result<StoredImage, ImagingError> {
        let started = Instant::now();
        let (fetched, download) = self
            .fetch(product_id, index, url)
            .instrument(tracing::info_span!("fetch image"))
            .await?;
        metrics::histogram!("image_fetch_duration_seconds").record(started.elapsed());
        let bytes_in = fetched.bytes.len() as u64;
        metrics::counter!("image_bytes_in_total").increment(bytes_in);
        let options = self.inner.options.clone();
        // From the header only; the decode waits here for memory before it takes a CPU permit.
        let needed = memory_needed(&fetched.bytes, &options)?;
        let decode = self.inner.memory.reserve(Phase::Decode, needed).await?;
        let image_span = tracing::Span::current();
        let compressed = self
            .run_cpu(move || {
                // Started here, so that the wait for a CPU permit is not part of it.
                let span = tracing::info_span!(
                    parent: &image_span,
                    "compress image",
                    width = Empty,
                    height = Empty,
                    renditions = Empty,
                );
                let _entered = span.enter();
                // Both reservations end with this job, when the source and pixels are freed.
                let _memory = (download, decode);
                // Timed on the blocking thread, so waiting for a CPU permit is not counted.
                let started = Instant::now();
                let compressed = compress(&fetched.bytes, &options)?;
                metrics::histogram!("image_compress_duration_seconds").record(started.elapsed());
                span.record("width", compressed.primary().width);
                span.record("height", compressed.primary().height);
                span.record("renditions", compressed.renditions.len());
                Ok(compressed)
            })
            .await?;
        let Compressed {
            renditions,
            primary,
            ..
        } = compressed;
        let renditions = futures::future::try_join_all(
            renditions
                .into_iter()
                .map(|rendition| self.store_rendition(product_id, index, rendition)),
        )
        .instrument(tracing::info_span!("store image"))
        .await?;
        let bytes_out = renditions.iter().map(|r| r.bytes).sum();
        let primary = &renditions[primary];
        tracing::debug!(
            product_id,
            index,
            url,
            key = %primary.key,
            bytes_in,
            bytes_out,
            renditions = renditions.len(),
            "image stored"
        );
        Ok(StoredImage {
            key: primary.key.clone(),
            width: primary.width,
            height: primary.height,
            bytes_in,
            bytes_out,
            renditions,
        })
    }

    /// Writes one rendition under its content-hashed key; one already there is complete and
    /// is left as it is.
    async fn store_rendition(
        &self,
        product_id: i64,
        index: u32,
        rendition: Rendition,
    ) -> Result<StoredRendition, ImagingError> {
        let key = image_key(
            product_id,
            index,
            rendition.long_side(),
            &rendition.data,
            rendition.format,
        );
        let bytes = rendition.data.len() as u64;
        let written = self
            .inner
            .store
            .put_once(&key, bytes::Bytes::from(rendition.data))
            .instrument(tracing::info_span!("store rendition", key = %key, bytes))
            .await?;
        if written {
            metrics::counter!("image_bytes_out_total").increment(bytes);
        }
        tracing::trace!(%key, bytes, kept_source = rendition.kept_source, written, "rendition stored");
        Ok(StoredRendition {
            key,
            format: rendition.format,
            width: rendition.width,
            height: rendition.height,
            bytes,
        })
    }

    /// One download attempt of image `index`, charged to its fetch budget.
    async fn fetch(
        &self,
        product_id: i64,
        index: u32,
        url: &str,
    ) -> Result<(Fetched, crate::budget::Reservation), ImagingError> {
        let allowances = &self.inner.allowances;
        let image = ImageRef {
            product_id,
            index,
            url: url.to_owned(),
        };
        let spent = |charged: Charged| ImagingError::FetchBudgetSpent {
            budget: allowances.budget(),
            attempts: charged.attempts,
            reason: charged.reason,
        };
        let mut time_left = allowances.left(&image).map_err(spent)?;
        let started_with = time_left;
        match self
            .inner
            .fetcher
            .fetch_within(url, &self.inner.memory, &mut time_left)
            .await
        {
            Err(error) if error.is_transient() => {
                let charged = allowances.charge(image, started_with - time_left, &error);
                if charged.left.is_zero() {
                    return Err(spent(charged));
                }
                Err(error)
            }
            settled => {
                allowances.settle(&image);
                settled
            }
        }
    }

    /// Compresses bytes already in memory (no fetch, no save), on the bounded CPU pool.
    pub async fn compress_bytes(&self, bytes: bytes::Bytes) -> Result<Compressed, ImagingError> {
        let options = self.inner.options.clone();
        self.run_cpu(move || compress(&bytes, &options)).await
    }

    /// Runs `job` on the blocking pool once a CPU permit is free.
    async fn run_cpu<T, F>(&self, job: F) -> Result<T, ImagingError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, ImagingError> + Send + 'static,
    {
        let permit = self.inner.cpu.clone().acquire_owned().await.map_err(|e| {
            ImagingError::Interrupted {
                detail: e.to_string(),
            }
        })?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job()
        })
        .await
        .map_err(|e| ImagingError::Interrupted {
            detail: e.to_string(),
        })?
    }
}

/// `url` without user, password, query and fragment, for spans: presigned URLs carry their
/// signatures in the query. Unparsable URLs are kept as they are (they fail before any request).
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.into()
        }
        Err(_) => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn span_urls_carry_no_credentials_or_signatures() {
        assert_eq!(
            redacted("https://user:secret@cdn.example.com/a/b.jpg?X-Amz-Signature=abc#top"),
            "https://cdn.example.com/a/b.jpg"
        );
        assert_eq!(
            redacted("http://127.0.0.1:8080/img.png"),
            "http://127.0.0.1:8080/img.png"
        );
        assert_eq!(redacted("not a url"), "not a url");
    }
}
