//! The media-store suite (`product_pipeline_imaging::media::suite`) against every store this build has: a local
//! directory, memory, and S3 when `MEDIA_TEST_S3_URL` names a bucket (scripts/s3.sh starts a
//! SeaweedFS server for it; `REQUIRE_SERVICES=1` turns a missing one into a failure).

use product_pipeline_imaging::media::{suite, MediaStore};

#[tokio::test]
async fn local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let media = MediaStore::local(dir.path().join("media")).unwrap();
    suite::all(&media).await;
    // No temporary files are left behind by the writes.
    let leftovers: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|name| name.contains('#') || name.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn in_memory() {
    suite::all(&MediaStore::in_memory()).await;
}

#[cfg(feature = "s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3() {
    let Some(media) = s3_store() else { return };
    suite::all(&media).await;
}

/// A bucket that does not exist fails the start-up check with a permanent error that says
/// what to check.
#[cfg(feature = "s3")]
#[tokio::test]
async fn s3_missing_bucket_is_permanent() {
    if s3_store().is_none() {
        return;
    }
    let media = MediaStore::from_url("s3://no-such-bucket-for-the-suite/x").unwrap();
    let error = media.check().await.unwrap_err();
    assert!(!error.is_transient(), "{error}");
    assert!(
        matches!(
            error,
            product_pipeline_imaging::media::MediaError::Store { .. }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("MEDIA_URL"), "{error}");
}

#[cfg(feature = "s3")]
fn s3_store() -> Option<MediaStore> {
    let url = testsupport::service_var("MEDIA_TEST_S3_URL", "scripts/s3.sh env prints it")?;
    Some(MediaStore::from_url(&url).expect("MEDIA_TEST_S3_URL"))
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}
