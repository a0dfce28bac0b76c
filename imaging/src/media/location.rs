//! `MEDIA_URL` → an object store: which backend, where, and with which client settings.
//!
//! | `MEDIA_URL` | store | feature |
//! |---|---|---|
//! | `./media`, `/var/media` (a plain path) or `file:///var/media` | local directory | always |
//! | `memory://` | in-process memory (tests, one-process demos) | always |
//! | `s3://bucket/prefix` | Amazon S3 or any S3-compatible service | `s3` |
//! | `gs://bucket/prefix` | Google Cloud Storage | `gcs` |
//! | `az://container/prefix` | Azure Blob Storage | `azure` |
//!
//! Cloud stores take endpoint, region and credentials from the provider's standard environment
//! variables (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_ALLOW_HTTP` for a plain-HTTP endpoint; `GOOGLE_SERVICE_ACCOUNT`; `AZURE_STORAGE_*`),
//! exactly as object_store's `from_env` builders read them.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
use std::time::Duration;

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;

use super::error::MediaError;

/// Where the media store lives, parsed from a `MEDIA_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaLocation {
    /// A local directory (created when missing).
    Local(PathBuf),
    /// In-process memory: gone when the process ends, invisible to other processes.
    Memory,
    /// A bucket of a cloud store, with an optional key prefix.
    Cloud {
        /// `s3`, `gs` or `az`.
        scheme: CloudScheme,
        /// The bucket or container.
        bucket: String,
        /// Key prefix inside the bucket, without leading or trailing `/`; may be empty.
        prefix: String,
    },
}

/// The cloud stores a [`MediaLocation`] can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloudScheme {
    /// Amazon S3 and S3-compatible services (`s3://`, `s3a://`; feature `s3`).
    S3,
    /// Google Cloud Storage (`gs://`; feature `gcs`).
    Gcs,
    /// Azure Blob Storage (`az://`, `azure://`, `abfs://`, `abfss://`; feature `azure`).
    Azure,
}

impl CloudScheme {
    fn name(self) -> &'static str {
        match self {
            CloudScheme::S3 => "s3",
            CloudScheme::Gcs => "gs",
            CloudScheme::Azure => "az",
        }
    }

    fn feature(self) -> &'static str {
        match self {
            CloudScheme::S3 => "s3",
            CloudScheme::Gcs => "gcs",
            CloudScheme::Azure => "azure",
        }
    }
}

impl std::fmt::Display for MediaLocation {
    /// The location without credentials, for logs and error messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MediaLocation::Local(dir) => write!(f, "file://{}", dir.display()),
            MediaLocation::Memory => f.write_str("memory://"),
            MediaLocation::Cloud {
                scheme,
                bucket,
                prefix,
            } => {
                write!(f, "{}://{bucket}", scheme.name())?;
                if !prefix.is_empty() {
                    write!(f, "/{prefix}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::str::FromStr for MediaLocation {
    type Err = MediaError;

    /// Parses a plain path, `file://`, `memory://`, `s3://`, `gs://` or `az://` URL.
    ///
    /// ```
    /// use product_pipeline_imaging::media::MediaLocation;
    /// let s3: MediaLocation = "s3://shop-images/media".parse().unwrap();
    /// assert_eq!(s3.to_string(), "s3://shop-images/media");
    /// assert!("ftp://host/x".parse::<MediaLocation>().is_err());
    /// ```
    fn from_str(raw: &str) -> Result<MediaLocation, MediaError> {
        let invalid = |reason: String| MediaError::InvalidUrl {
            url: raw.to_owned(),
            reason,
        };
        if raw.trim().is_empty() {
            return Err(invalid(
                "is empty; use a path, file://, memory:// or s3://".into(),
            ));
        }
        if !raw.contains("://") {
            return Ok(MediaLocation::Local(PathBuf::from(raw)));
        }
        let url = url::Url::parse(raw).map_err(|e| invalid(format!("not a URL ({e})")))?;
        let cloud = match url.scheme() {
            "file" => {
                if url
                    .host_str()
                    .is_some_and(|h| !h.is_empty() && h != "localhost")
                {
                    return Err(invalid(
                        "a file:// URL names a local path (file:///abs/path), not a host".into(),
                    ));
                }
                let path = url
                    .to_file_path()
                    .map_err(|()| invalid("is not an absolute file path".into()))?;
                return Ok(MediaLocation::Local(path));
            }
            "memory" => return Ok(MediaLocation::Memory),
            "s3" | "s3a" => CloudScheme::S3,
            "gs" => CloudScheme::Gcs,
            "az" | "azure" | "abfs" | "abfss" => CloudScheme::Azure,
            other => {
                return Err(invalid(format!(
                "unknown scheme `{other}`; use a path, file://, memory://, s3://, gs:// or az://"
            )))
            }
        };
        let bucket = url.host_str().filter(|b| !b.is_empty()).ok_or_else(|| {
            invalid(format!(
                "names no bucket; use {}://BUCKET/PREFIX",
                cloud.name()
            ))
        })?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "must not carry credentials; set them in the provider's environment variables"
                    .into(),
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("must not have a query or fragment".into()));
        }
        let prefix = url.path().trim_matches('/');
        // Taken as it is, so that keys under a CDN's MEDIA_PUBLIC_URL match the bucket's: no
        // percent-encoding, spaces or empty segments to be re-encoded on the way.
        let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/');
        if !prefix.bytes().all(plain) || prefix.contains("//") {
            return Err(invalid(
                "the key prefix may hold only letters, digits, `-`, `_`, `.` and `/`".into(),
            ));
        }
        Ok(MediaLocation::Cloud {
            scheme: cloud,
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}

/// Timeouts and retries of the cloud clients: object_store retries 5xx, 429, timeouts and
/// refused connections itself for up to `RETRY_TIMEOUT`, which rides out a store restart;
/// longer outages surface as a transient error and the message is retried later instead of
/// holding a worker slot.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
const RETRY_TIMEOUT: Duration = Duration::from_secs(20);
/// High enough that `RETRY_TIMEOUT` is what ends the retries: object_store draws each backoff
/// at random between 100 ms and the doubled previous one, so ten retries can pass in a second.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
const MAX_RETRIES: usize = 100;

/// Sets our timeouts on a cloud builder unless the environment already set them, keeping every
/// other client option (`AWS_ALLOW_HTTP`, proxies, ...) that `from_env` read.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
macro_rules! with_timeouts {
    ($builder:expr, $key:path) => {{
        use object_store::ClientConfigKey;
        let mut builder = $builder;
        for (key, value) in [
            (ClientConfigKey::ConnectTimeout, CONNECT_TIMEOUT),
            (ClientConfigKey::Timeout, REQUEST_TIMEOUT),
        ] {
            let key = $key(key);
            if builder.get_config_value(&key).is_none() {
                builder = builder.with_config(key, format!("{}s", value.as_secs()));
            }
        }
        builder
    }};
}

#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn retry_config() -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: MAX_RETRIES,
        retry_timeout: RETRY_TIMEOUT,
        ..object_store::RetryConfig::default()
    }
}

impl MediaLocation {
    /// Builds the object store (creating a local directory when missing), with cloud client
    /// options (object_store's config keys, e.g. `aws_endpoint`) that take precedence over the
    /// environment. Whether the store is reachable is checked separately, by
    /// [`MediaStore::check`](super::MediaStore::check).
    pub(crate) fn build(
        &self,
        options: &[(&str, &str)],
    ) -> Result<Arc<dyn ObjectStore>, MediaError> {
        let failed = |reason: String| MediaError::InvalidUrl {
            url: self.to_string(),
            reason,
        };
        match self {
            MediaLocation::Local(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
                let store = LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| failed(format!("cannot open {}: {e}", dir.display())))?;
                Ok(Arc::new(store))
            }
            MediaLocation::Memory => Ok(Arc::new(InMemory::new())),
            MediaLocation::Cloud {
                scheme,
                bucket,
                prefix,
            } => {
                let store = cloud_store(*scheme, bucket, options).map_err(failed)?;
                Ok(if prefix.is_empty() {
                    store
                } else {
                    Arc::new(PrefixStore::new(store, prefix.as_str()))
                })
            }
        }
    }

    /// The directory of a local store, whose files are synced after each write.
    pub(crate) fn local_dir(&self) -> Option<&FsPath> {
        match self {
            MediaLocation::Local(dir) => Some(dir),
            _ => None,
        }
    }
}

/// Applies `options` (object_store config keys) on top of what `from_env` read.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
macro_rules! with_options {
    ($builder:expr, $key:ty, $options:expr) => {{
        let mut builder = $builder;
        for (key, value) in $options {
            let key: $key = key
                .parse()
                .map_err(|e| format!("unknown client option `{key}`: {e}"))?;
            builder = builder.with_config(key, *value);
        }
        builder
    }};
}

#[allow(unused_variables)]
fn cloud_store(
    scheme: CloudScheme,
    bucket: &str,
    options: &[(&str, &str)],
) -> Result<Arc<dyn ObjectStore>, String> {
    match scheme {
        #[cfg(feature = "s3")]
        CloudScheme::S3 => with_timeouts!(
            with_options!(
                object_store::aws::AmazonS3Builder::from_env(),
                object_store::aws::AmazonS3ConfigKey,
                options
            ),
            object_store::aws::AmazonS3ConfigKey::Client
        )
        .with_bucket_name(bucket)
        .with_retry(retry_config())
        .build()
        .map(configured)
        .map_err(configure_failed),
        #[cfg(feature = "gcs")]
        CloudScheme::Gcs => with_timeouts!(
            with_options!(
                object_store::gcp::GoogleCloudStorageBuilder::from_env(),
                object_store::gcp::GoogleConfigKey,
                options
            ),
            object_store::gcp::GoogleConfigKey::Client
        )
        .with_bucket_name(bucket)
        .with_retry(retry_config())
        .build()
        .map(configured)
        .map_err(configure_failed),
        #[cfg(feature = "azure")]
        CloudScheme::Azure => with_timeouts!(
            with_options!(
                object_store::azure::MicrosoftAzureBuilder::from_env(),
                object_store::azure::AzureConfigKey,
                options
            ),
            object_store::azure::AzureConfigKey::Client
        )
        .with_container_name(bucket)
        .with_retry(retry_config())
        .build()
        .map(configured)
        .map_err(configure_failed),
        #[allow(unreachable_patterns)]
        _ => Err(format!(
            "{}:// media needs the `{}` cargo feature (cargo run --features {} ...)",
            scheme.name(),
            scheme.feature(),
            scheme.feature()
        )),
    }
}

#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn configured(store: impl ObjectStore) -> Arc<dyn ObjectStore> {
    Arc::new(store)
}

#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn configure_failed(error: object_store::Error) -> String {
    format!("cannot configure the client: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<MediaLocation, MediaError> {
        raw.parse()
    }

    #[test]
    fn paths_and_urls() {
        assert_eq!(
            parse("media").unwrap(),
            MediaLocation::Local("media".into())
        );
        assert_eq!(
            parse("file:///var/media").unwrap(),
            MediaLocation::Local("/var/media".into())
        );
        assert_eq!(parse("memory://").unwrap(), MediaLocation::Memory);
        assert_eq!(
            parse("s3://images/shop/media/").unwrap(),
            MediaLocation::Cloud {
                scheme: CloudScheme::S3,
                bucket: "images".into(),
                prefix: "shop/media".into()
            }
        );
        assert_eq!(parse("s3://images").unwrap().to_string(), "s3://images");
        assert_eq!(parse("gs://b/p").unwrap().to_string(), "gs://b/p");
        assert_eq!(parse("az://c").unwrap().to_string(), "az://c");
    }

    #[test]
    fn bad_urls_say_what_to_do() {
        for (raw, expected) in [
            ("", "is empty"),
            ("ftp://host/x", "unknown scheme `ftp`"),
            ("s3:///prefix", "names no bucket"),
            ("s3://key:secret@bucket/p", "credentials"),
            ("file://host/x", "local path"),
            ("http://[::1", "not a URL"),
            ("s3://b/my%20media", "key prefix"),
            ("s3://b/a//b", "key prefix"),
            ("s3://b/p?x=1", "query"),
        ] {
            let error = parse(raw).unwrap_err().to_string();
            assert!(error.contains(expected), "{raw}: {error}");
        }
    }

    #[cfg(not(feature = "gcs"))]
    #[test]
    fn a_scheme_without_its_feature_names_the_feature() {
        let error = parse("gs://bucket")
            .unwrap()
            .build(&[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("`gcs` cargo feature"), "{error}");
    }

    #[test]
    fn a_local_directory_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let media = dir.path().join("a/b");
        MediaLocation::Local(media.clone()).build(&[]).unwrap();
        assert!(media.is_dir());
    }
}
