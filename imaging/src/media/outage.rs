//! [`OutageStore`] (feature `testkit`): an in-memory object store that tests take down, to
//! check what a media-store outage does to the code above it.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use product_pipeline_imaging::media::outage::OutageStore;
//! use product_pipeline_imaging::media::MediaStore;
//!
//! let store = Arc::new(OutageStore::default());
//! let media = MediaStore::from_object_store(store.clone(), "outage");
//! store.fail_writes(true);
//! let error = media.put("products/1/0-ab.jpg", "x".into()).await.unwrap_err();
//! assert!(error.is_transient(), "an outage is worth a later attempt: {error}");
//! store.fail_writes(false);
//! media.put("products/1/0-ab.jpg", "x".into()).await.unwrap();
//! # }
//! ```

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// An in-memory object store whose writes (puts, copies, deletes) and reads (gets, listings)
/// can each be made to fail as in an outage: with a `Generic` error, which
/// [`MediaError`](super::MediaError) classifies as transient.
#[derive(Debug, Default)]
pub struct OutageStore {
    inner: InMemory,
    writes_down: AtomicBool,
    reads_down: AtomicBool,
}

impl OutageStore {
    /// Makes every write fail while `down`.
    pub fn fail_writes(&self, down: bool) {
        self.writes_down.store(down, Ordering::SeqCst);
    }

    /// Makes every read and listing fail while `down`.
    pub fn fail_reads(&self, down: bool) {
        self.reads_down.store(down, Ordering::SeqCst);
    }

    fn check(switch: &AtomicBool) -> Result<()> {
        if switch.load(Ordering::SeqCst) {
            return Err(object_store::Error::Generic {
                store: "OutageStore",
                source: "media store unreachable (test outage)".into(),
            });
        }
        Ok(())
    }
}

impl std::fmt::Display for OutageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OutageStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for OutageStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        Self::check(&self.writes_down)?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        Self::check(&self.writes_down)?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        Self::check(&self.reads_down)?;
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        match Self::check(&self.writes_down) {
            Ok(()) => self.inner.delete_stream(locations),
            Err(error) => Box::pin(futures::stream::once(async { Err(error) })),
        }
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        match Self::check(&self.reads_down) {
            Ok(()) => self.inner.list(prefix),
            Err(error) => Box::pin(futures::stream::once(async { Err(error) })),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        Self::check(&self.reads_down)?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        Self::check(&self.writes_down)?;
        self.inner.copy_opts(from, to, options).await
    }
}
