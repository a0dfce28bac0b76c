//! The media store: where compressed images live, over the [`object_store`] crate.
//!
//! One [`MediaStore`] serves every backend object_store has: a local directory (the default,
//! `./media`), memory, and behind cargo features S3 and S3-compatible services (`s3`), Google
//! Cloud Storage (`gcs`) and Azure (`azure`). Workers write through it and the API reads through
//! it, so processes on different machines share one store and nothing assumes a shared
//! filesystem.
//!
//! Guarantees the pipeline builds on:
//!
//! - **Complete before recorded**: [`MediaStore::put`] returns once the object is whole and
//!   durable (an S3 `PUT` is atomic; a local file is written to a temporary name, renamed into
//!   place and then synced), so a key a product row records always names a complete object.
//! - **Deterministic keys** ([`image_key`]): the same bytes for the same image get the same key,
//!   so a re-run overwrites instead of adding; different bytes get a new key, and
//!   [`MediaStore::retain_product`] deletes what the recorded result no longer references.
//! - **Classified errors** ([`MediaError::is_transient`]): an outage is transient; a missing
//!   bucket or refused credentials are permanent and say to check `MEDIA_URL`.
//!
//! ```
//! # async fn run() -> Result<(), product_pipeline_imaging::media::MediaError> {
//! use product_pipeline_imaging::media::{image_key, MediaStore};
//! use product_pipeline_imaging::OutputFormat;
//!
//! let media = MediaStore::from_url("memory://")?;
//! media.check().await?;
//! let key = image_key(7, 0, 1024, b"jpeg bytes", OutputFormat::Jpeg);
//! media.put(&key, bytes::Bytes::from_static(b"jpeg bytes")).await?;
//! assert_eq!(media.list_product(7).await?, vec![key.clone()]);
//! media.retain_product(7, &[]).await?;
//! assert!(media.list_product(7).await?.is_empty());
//! # Ok(()) }
//! ```

mod error;
mod key;
mod location;
#[cfg(feature = "testkit")]
pub mod outage;
#[cfg(feature = "testkit")]
pub mod suite;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, GetOptions, GetResult, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode,
    PutOptions, PutPayload,
};

pub use error::MediaError;
pub use key::{
    content_type, image_key, product_prefix, served_key, HASH_LEN, MAX_KEY_LEN, PRODUCTS_PREFIX,
};
pub use location::{CloudScheme, MediaLocation};

/// `Cache-Control` of every stored object: keys are content-hashed, so an object never changes.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The media store; cheap to clone. See the [module docs](self).
#[derive(Clone)]
pub struct MediaStore {
    store: Arc<dyn ObjectStore>,
    /// For messages and logs, without credentials, e.g. `s3://images/media`.
    name: Arc<str>,
    /// A local store's directory: its files are synced after writing, and it cannot keep
    /// object attributes.
    local_dir: Option<PathBuf>,
}

impl std::fmt::Debug for MediaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("MediaStore").field(&self.name).finish()
    }
}

impl std::fmt::Display for MediaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl MediaStore {
    /// The store a `MEDIA_URL` names: a plain path, `file:///abs/path`, `memory://`,
    /// `s3://bucket/prefix` (feature `s3`), `gs://...` (`gcs`) or `az://...` (`azure`).
    /// A local directory is created when missing; a cloud store is not contacted yet
    /// (see [`MediaStore::check`]).
    pub fn from_url(url: &str) -> Result<MediaStore, MediaError> {
        MediaStore::at(&url.parse()?)
    }

    /// Like [`MediaStore::from_url`], with cloud client options that take precedence over the
    /// environment: object_store's configuration keys, e.g. `("aws_endpoint",
    /// "http://127.0.0.1:9000")` or `("aws_region", "eu-central-1")`. Local and memory stores
    /// ignore them.
    pub fn from_url_opts(url: &str, options: &[(&str, &str)]) -> Result<MediaStore, MediaError> {
        MediaStore::build(&url.parse()?, options)
    }

    /// The store at a parsed [`MediaLocation`].
    pub fn at(location: &MediaLocation) -> Result<MediaStore, MediaError> {
        MediaStore::build(location, &[])
    }

    fn build(location: &MediaLocation, options: &[(&str, &str)]) -> Result<MediaStore, MediaError> {
        let store = location.build(options)?;
        let local_dir = location.local_dir().map(|dir| {
            // Absolute, so that the synced paths do not depend on a later change of directory.
            std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned())
        });
        Ok(MediaStore {
            store,
            name: location.to_string().into(),
            local_dir,
        })
    }

    /// A local directory (created when missing): the default, `./media`.
    pub fn local(dir: impl Into<PathBuf>) -> Result<MediaStore, MediaError> {
        MediaStore::at(&MediaLocation::Local(dir.into()))
    }

    /// A store in this process's memory.
    pub fn in_memory() -> MediaStore {
        MediaStore::at(&MediaLocation::Memory).expect("an in-memory store always builds")
    }

    /// Any object store you built yourself (say, with your own credentials provider, or wrapped
    /// in object_store's `ThrottledStore` for tests); `name` is what messages call it.
    pub fn from_object_store(store: Arc<dyn ObjectStore>, name: impl Into<String>) -> MediaStore {
        MediaStore {
            store,
            name: name.into().into(),
            local_dir: None,
        }
    }

    /// The underlying object store.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Checks that the store answers by listing the `products/` folder: a missing bucket,
    /// refused credentials or an unreachable endpoint fail here, at start, instead of at the
    /// first image.
    pub async fn check(&self) -> Result<(), MediaError> {
        self.store
            .list_with_delimiter(Some(&Path::from(PRODUCTS_PREFIX)))
            .await
            .map(drop)
            .map_err(|e| self.error(PRODUCTS_PREFIX, e))
    }

    /// Stores `data` under `key`, replacing what was there. Returns once the object is
    /// complete and durable; readers never see a partial object.
    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), MediaError> {
        self.write(key, data, PutMode::Overwrite).await.map(drop)
    }

    /// Stores `data` under `key` unless an object is there already, and says whether it wrote.
    /// For keys that name their content ([`image_key`] hashes the bytes) the object there holds
    /// these bytes, so an image processed again is not written again. The check and the write
    /// are one conditional request where the store has them (`If-None-Match: *` on S3 and GCS, a
    /// no-clobber rename on local disk).
    pub async fn put_once(&self, key: &str, data: Bytes) -> Result<bool, MediaError> {
        self.write(key, data, PutMode::Create).await
    }

    /// Writes `data` under `key` in `mode`; `false` when `PutMode::Create` found the key taken.
    async fn write(&self, key: &str, data: Bytes, mode: PutMode) -> Result<bool, MediaError> {
        let started = Instant::now();
        let path = Path::parse(key).map_err(|e| self.error(key, e.into()))?;
        let mut options = PutOptions::from(mode.clone());
        if self.local_dir.is_none() {
            // Served as they are by a bucket or CDN (`MEDIA_PUBLIC_URL`); a local directory
            // cannot keep attributes, and the API sets these headers itself.
            options.attributes = Attributes::from_iter([
                (Attribute::ContentType, content_type(key)),
                (Attribute::CacheControl, IMMUTABLE),
            ]);
        }
        let payload = PutPayload::from_bytes(data);
        let written = match self.store.put_opts(&path, payload.clone(), options).await {
            Ok(_) => Ok(()),
            // A store that keeps no attributes (a `LocalFileSystem` given to
            // `from_object_store`): the API sets those headers itself.
            Err(object_store::Error::NotImplemented { .. }) => self
                .store
                .put_opts(&path, payload, PutOptions::from(mode))
                .await
                .map(drop),
            Err(e) => Err(e),
        };
        match written {
            Ok(()) => {}
            Err(object_store::Error::AlreadyExists { .. }) => return Ok(false),
            Err(e) => return Err(self.error(key, e)),
        }
        if let Some(dir) = &self.local_dir {
            sync_local(dir.join(key))
                .await
                .map_err(|e| self.error(key, e))?;
        }
        metrics::histogram!("media_put_duration_seconds").record(started.elapsed());
        Ok(true)
    }

    /// Reads an object (or part of it, with [`GetOptions::range`]); the result streams.
    pub async fn get(&self, key: &Path, options: GetOptions) -> Result<GetResult, MediaError> {
        self.store
            .get_opts(key, options)
            .await
            .map_err(|e| MediaError::from_read(&self.name, key.as_ref(), e))
    }

    /// Size, modification time and ETag of an object.
    pub async fn head(&self, key: &Path) -> Result<ObjectMeta, MediaError> {
        self.store
            .head(key)
            .await
            .map_err(|e| MediaError::from_read(&self.name, key.as_ref(), e))
    }

    /// Deletes an object; deleting one that is not there is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), MediaError> {
        let path = Path::parse(key).map_err(|e| self.error(key, e.into()))?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(key, e)),
        }
    }

    /// Every key under `products/<product_id>/`, sorted.
    pub async fn list_product(&self, product_id: i64) -> Result<Vec<String>, MediaError> {
        let prefix = product_prefix(product_id);
        let mut keys: Vec<String> = self
            .store
            .list(Some(&Path::from(prefix.as_str())))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .map_err(|e| self.error(&prefix, e))?;
        keys.sort();
        Ok(keys)
    }

    /// Deletes every object of product `product_id` that `keep` does not name (what an earlier
    /// run wrote and the recorded result superseded); returns how many it deleted. With an
    /// empty `keep`, the product leaves no objects.
    pub async fn retain_product(
        &self,
        product_id: i64,
        keep: &[String],
    ) -> Result<usize, MediaError> {
        let mut deleted = 0;
        for key in self.list_product(product_id).await? {
            if !keep.contains(&key) {
                self.delete(&key).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    fn error(&self, key: &str, source: object_store::Error) -> MediaError {
        MediaError::from_store(&self.name, key, source)
    }
}

/// object_store's local store renames a complete temporary file into place but does not sync;
/// syncing the file and its directory makes the write survive a power loss too.
async fn sync_local(file: PathBuf) -> Result<(), object_store::Error> {
    tokio::task::spawn_blocking(move || {
        std::fs::File::open(&file)?.sync_all()?;
        if let Some(dir) = file.parent() {
            // Best effort: not every platform can sync a directory.
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
        Ok::<_, std::io::Error>(())
    })
    .await
    .map_err(|e| object_store::Error::JoinError { source: e })?
    .map_err(|e| object_store::Error::Generic {
        store: "LocalFileSystem",
        source: Box::new(e),
    })
}
