//! The parts a process is built from, opened from the [`Config`]: the database, the media store,
//! the image pipeline's settings and the state the HTTP endpoints share.

use std::sync::Arc;
use std::time::Duration;

use mq_core::Publisher;
use product_pipeline_imaging::media::MediaStore;
use tracing::info;

use crate::api::{AppState, HttpLimits, MediaLinks};
use crate::config::Config;
use crate::prometheus::{self, MetricsEndpoint};
use crate::startup::StartupError;

/// Opens the database (running migrations).
pub async fn open_store(config: &Config) -> Result<product_pipeline_store::Store, StartupError> {
    let url = config.database_url.as_str();
    let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
    if postgres && !cfg!(feature = "postgres") {
        return Err(StartupError::Config {
            setting: "DATABASE_URL",
            reason:
                "PostgreSQL needs the `postgres` cargo feature (cargo run --features postgres ...)"
                    .into(),
        });
    }
    if !postgres && !url.starts_with("sqlite:") {
        return Err(StartupError::Config {
            setting: "DATABASE_URL",
            reason: format!("`{url}` is neither a sqlite:// nor a postgres:// URL"),
        });
    }
    let options = product_pipeline_store::StoreOptions {
        max_connections: config.database_max_connections,
        schema: config.database_schema.clone(),
        ..product_pipeline_store::StoreOptions::default()
    };
    Ok(product_pipeline_store::Store::connect(url, options).await?)
}

/// Opens the media store `MEDIA_URL` (or `MEDIA_DIR`) names and checks that it answers, so a
/// bad URL, a missing feature, a missing bucket or refused credentials fail at start.
pub async fn open_media(config: &Config) -> Result<MediaStore, StartupError> {
    let setting = config.media_setting();
    let failed = |source| StartupError::Media { setting, source };
    let location = config
        .media_location()
        .map_err(|(setting, reason)| StartupError::Config { setting, reason })?;
    let media = MediaStore::at(&location).map_err(failed)?;
    media.check().await.map_err(failed)?;
    info!(%media, "media store");
    Ok(media)
}

/// The image pipeline settings from the configuration.
pub fn imaging_config(config: &Config) -> product_pipeline_imaging::ImagingConfig {
    product_pipeline_imaging::ImagingConfig {
        max_bytes: config.max_image_bytes,
        fetch_budget: Duration::from_secs(config.image_fetch_budget),
        min_transfer_rate: config.image_fetch_min_rate,
        transfer_grace: Duration::from_secs(config.image_fetch_grace),
        allow_private_hosts: config.allow_private_image_hosts,
        target_size: config.image_size,
        renditions: config.image_renditions.clone(),
        formats: config.image_formats.clone(),
        jpeg_quality: config.jpeg_quality,
        webp_quality: config.webp_quality,
        avif_quality: config.avif_quality,
        avif_speed: config.avif_speed,
        jpeg_progressive: config.jpeg_progressive,
        memory_budget: (config.worker_memory_budget > 0).then_some(config.worker_memory_budget),
        ..product_pipeline_imaging::ImagingConfig::default()
    }
}

/// An image-pipeline error at start; a setting at fault is named as [`Config`] names it.
pub(crate) fn imaging_error(error: product_pipeline_imaging::ImagingError) -> StartupError {
    match error {
        product_pipeline_imaging::ImagingError::Config { setting, reason } => {
            StartupError::Config {
                setting: match setting {
                    "memory_budget" => "WORKER_MEMORY_BUDGET",
                    "max_bytes" => "MAX_IMAGE_BYTES",
                    "fetch_budget" => "IMAGE_FETCH_BUDGET",
                    "transfer_grace" => "IMAGE_FETCH_GRACE",
                    "target_size" => "IMAGE_SIZE",
                    "renditions" => "IMAGE_RENDITIONS",
                    "formats" => "IMAGE_FORMATS",
                    "jpeg_quality" => "JPEG_QUALITY",
                    "webp_quality" => "WEBP_QUALITY",
                    "avif_quality" => "AVIF_QUALITY",
                    "avif_speed" => "AVIF_SPEED",
                    other => other,
                },
                reason,
            }
        }
        other => other.into(),
    }
}

/// What the HTTP endpoints share. Installs the Prometheus recorder, so a process that serves no
/// endpoint keeps no metrics.
pub(super) fn app_state(
    config: &Config,
    store: &product_pipeline_store::Store,
    publisher: &Arc<dyn Publisher>,
    media: &MediaStore,
) -> Result<AppState, StartupError> {
    Ok(AppState {
        publisher: Some(publisher.clone()),
        media_links: config
            .media_public_url
            .as_ref()
            .map_or_else(MediaLinks::default, MediaLinks::public),
        limits: HttpLimits {
            body_bytes: config.http_body_limit as usize,
            request_timeout: config.request_timeout(),
            max_in_flight: config.http_max_in_flight as usize,
            write_rate: config.rate_limit_writes,
            trusted_proxies: config.trusted_proxies.clone(),
        },
        api_token: config.api_token.clone(),
        idempotency_ttl: config.idempotency_ttl(),
        metrics: Some(MetricsEndpoint::new(
            prometheus::install()?,
            Arc::new(store.clone()),
        )),
        ..AppState::new(
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            media.clone(),
        )
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn config(args: &[&str]) -> Config {
        let mut all = vec!["x"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).unwrap()
    }

    #[tokio::test]
    async fn a_media_store_that_cannot_be_used_fails_at_start_naming_the_setting() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let not_a_dir = file.path().join("media");
        for (args, setting, expected) in [
            (
                vec!["--media-url", "ftp://host/x"],
                "MEDIA_URL",
                "unknown scheme",
            ),
            (
                vec!["--media-url", "s3:///x"],
                "MEDIA_URL",
                "names no bucket",
            ),
            (
                vec!["--media-dir", not_a_dir.to_str().unwrap()],
                "MEDIA_DIR",
                "cannot create",
            ),
        ] {
            let error = open_media(&config(&args)).await.unwrap_err().to_string();
            assert!(
                error.starts_with(setting) && error.contains(expected),
                "{args:?}: {error}"
            );
        }
        open_media(&config(&["--media-url", "memory://"]))
            .await
            .expect("memory:// always opens");
    }

    /// A bucket that does not exist fails at start, not at the first image.
    #[cfg(feature = "s3")]
    #[tokio::test]
    async fn a_missing_bucket_fails_at_start() {
        if testsupport::service_var("MEDIA_TEST_S3_URL", "scripts/s3.sh env prints it").is_none() {
            return;
        }
        let error = open_media(&config(&["--media-url", "s3://no-such-bucket-here/x"]))
            .await
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("MEDIA_URL"), "{error}");
    }
}
