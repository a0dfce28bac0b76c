//! The media-store test suite (feature `testkit`): public test functions that every store must
//! pass, the way object_store's `integration.rs` serves every backend. Call [`all`] from a test
//! with the store you configured, or single functions from your own tests:
//!
//! ```no_run
//! # async fn run() {
//! let media = product_pipeline_imaging::media::MediaStore::from_url("memory://").unwrap();
//! product_pipeline_imaging::media::suite::all(&media).await;
//! # }
//! ```
//!
//! Each function works under product ids of its own (random, far above real ones), so the
//! suite can run concurrently against a shared bucket; a failure panics with what differed.

use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use object_store::path::Path;
use object_store::{GetOptions, GetRange};

use super::{image_key, MediaError, MediaStore};
use crate::OutputFormat;

/// Every test of the suite, one after the other.
pub async fn all(media: &MediaStore) {
    check_answers(media).await;
    put_then_get(media).await;
    overwrite_same_key(media).await;
    put_once_keeps_what_is_there(media).await;
    delete_is_idempotent(media).await;
    list_only_the_products_keys(media).await;
    missing_key_is_not_found(media).await;
    ranged_get(media).await;
    retain_deletes_what_is_not_kept(media).await;
    concurrent_writers_of_one_key(media).await;
}

/// A product id no other test (or run) uses: random high bits, a per-process counter below.
pub fn unique_product_id() -> i64 {
    static NEXT: AtomicI64 = AtomicI64::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64 & 0x3f_ffff)
        ^ i64::from(std::process::id());
    (1 << 50) + (seed << 20) + NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Reads a whole object.
pub async fn read(media: &MediaStore, key: &str) -> Result<Bytes, MediaError> {
    let path = Path::parse(key).expect("a valid key");
    let got = media.get(&path, GetOptions::default()).await?;
    Ok(got.bytes().await.expect("reading the object's body"))
}

/// [`MediaStore::check`] succeeds on a reachable store.
pub async fn check_answers(media: &MediaStore) {
    media
        .check()
        .await
        .unwrap_or_else(|e| panic!("{media}: {e}"));
}

/// An object reads back as written, with its size in the metadata.
pub async fn put_then_get(media: &MediaStore) {
    let id = unique_product_id();
    let data = Bytes::from(vec![7u8; 70_001]);
    let key = image_key(id, 0, 1024, &data, OutputFormat::Jpeg);
    media.put(&key, data.clone()).await.unwrap();
    assert_eq!(read(media, &key).await.unwrap(), data, "{media}: {key}");
    let meta = media.head(&Path::parse(&key).unwrap()).await.unwrap();
    assert_eq!(meta.size, data.len() as u64);
    media.retain_product(id, &[]).await.unwrap();
}

/// Writing a key again replaces the object.
pub async fn overwrite_same_key(media: &MediaStore) {
    let id = unique_product_id();
    let key = image_key(id, 0, 1024, b"first", OutputFormat::Jpeg);
    media.put(&key, Bytes::from_static(b"first")).await.unwrap();
    media
        .put(&key, Bytes::from_static(b"second, longer"))
        .await
        .unwrap();
    assert_eq!(read(media, &key).await.unwrap(), "second, longer");
    assert_eq!(media.list_product(id).await.unwrap(), vec![key]);
    media.retain_product(id, &[]).await.unwrap();
}

/// [`MediaStore::put_once`] writes a key that is not there, and leaves one that is.
pub async fn put_once_keeps_what_is_there(media: &MediaStore) {
    let id = unique_product_id();
    let key = image_key(id, 0, 1024, b"first", OutputFormat::Jpeg);
    assert!(
        media
            .put_once(&key, Bytes::from_static(b"first"))
            .await
            .unwrap(),
        "{media}: {key}"
    );
    assert!(
        !media
            .put_once(&key, Bytes::from_static(b"second"))
            .await
            .unwrap(),
        "{media}: {key} was written again"
    );
    assert_eq!(read(media, &key).await.unwrap(), "first", "{media}: {key}");
    media.retain_product(id, &[]).await.unwrap();
}

/// A deleted object is gone; deleting it again, or a key never written, succeeds.
pub async fn delete_is_idempotent(media: &MediaStore) {
    let id = unique_product_id();
    let key = image_key(id, 1, 1024, b"x", OutputFormat::WebP);
    media.put(&key, Bytes::from_static(b"x")).await.unwrap();
    media.delete(&key).await.unwrap();
    assert!(matches!(
        read(media, &key).await,
        Err(MediaError::NotFound { .. })
    ));
    media.delete(&key).await.unwrap();
    assert!(media.list_product(id).await.unwrap().is_empty());
}

/// Listing a product returns its keys, sorted, and not those of a product whose id starts with
/// the same digits.
pub async fn list_only_the_products_keys(media: &MediaStore) {
    let id = unique_product_id();
    // `products/<id>0` shares the text prefix `products/<id>` but is another product.
    let neighbour = id * 10;
    let mut keys: Vec<String> = (0..3)
        .map(|index| image_key(id, index, 1024, &[index as u8], OutputFormat::Jpeg))
        .collect();
    for key in &keys {
        media.put(key, Bytes::from_static(b"image")).await.unwrap();
    }
    let other = image_key(neighbour, 0, 1024, b"n", OutputFormat::Jpeg);
    media.put(&other, Bytes::from_static(b"n")).await.unwrap();
    keys.sort();
    assert_eq!(media.list_product(id).await.unwrap(), keys, "{media}");
    assert_eq!(media.list_product(neighbour).await.unwrap(), vec![other]);
    media.retain_product(id, &[]).await.unwrap();
    media.retain_product(neighbour, &[]).await.unwrap();
}

/// Reading a key never written is [`MediaError::NotFound`], not an outage.
pub async fn missing_key_is_not_found(media: &MediaStore) {
    let key = image_key(unique_product_id(), 0, 1024, b"never", OutputFormat::Jpeg);
    match read(media, &key).await {
        Err(error @ MediaError::NotFound { .. }) => assert!(!error.is_transient()),
        other => panic!("{media}: expected NotFound for {key}, got {other:?}"),
    }
    let path = Path::parse(&key).unwrap();
    assert!(matches!(
        media.head(&path).await,
        Err(MediaError::NotFound { .. })
    ));
}

/// Byte ranges read the right bytes.
pub async fn ranged_get(media: &MediaStore) {
    let id = unique_product_id();
    let data: Bytes = (0..=255u8).cycle().take(10_000).collect::<Vec<_>>().into();
    let key = image_key(id, 0, 1024, &data, OutputFormat::Jpeg);
    media.put(&key, data.clone()).await.unwrap();
    let path = Path::parse(&key).unwrap();
    for (range, expected) in [
        (GetRange::Bounded(100..200), &data[100..200]),
        (GetRange::Offset(9_990), &data[9_990..]),
        (GetRange::Suffix(5), &data[9_995..]),
    ] {
        let options = GetOptions {
            range: Some(range.clone()),
            ..GetOptions::default()
        };
        let got = media.get(&path, options).await.unwrap();
        assert_eq!(got.meta.size, data.len() as u64);
        assert_eq!(
            &got.bytes().await.unwrap()[..],
            expected,
            "{media}: {range}"
        );
    }
    media.retain_product(id, &[]).await.unwrap();
}

/// [`MediaStore::retain_product`] deletes exactly the objects not kept.
pub async fn retain_deletes_what_is_not_kept(media: &MediaStore) {
    let id = unique_product_id();
    let old = image_key(id, 0, 1024, b"old", OutputFormat::Jpeg);
    let new = image_key(id, 0, 1024, b"new", OutputFormat::Jpeg);
    let other = image_key(id, 1, 1024, b"other", OutputFormat::Jpeg);
    for key in [&old, &new, &other] {
        media.put(key, Bytes::from_static(b"data")).await.unwrap();
    }
    let keep = vec![new.clone(), other.clone()];
    assert_eq!(media.retain_product(id, &keep).await.unwrap(), 1);
    let mut expected = keep.clone();
    expected.sort();
    assert_eq!(media.list_product(id).await.unwrap(), expected);
    assert_eq!(media.retain_product(id, &keep).await.unwrap(), 0);
    media.retain_product(id, &[]).await.unwrap();
    assert!(media.list_product(id).await.unwrap().is_empty());
}

/// Writers racing on one key leave one of their objects, whole: never a mix or a torn write.
pub async fn concurrent_writers_of_one_key(media: &MediaStore) {
    let id = unique_product_id();
    let key = image_key(id, 0, 1024, b"contended", OutputFormat::Jpeg);
    let payloads: Vec<Bytes> = (0..8u8)
        .map(|i| Bytes::from(vec![i; 64 * 1024 + usize::from(i) * 1000]))
        .collect();
    let writes = payloads.iter().map(|data| media.put(&key, data.clone()));
    for written in futures::future::join_all(writes).await {
        written.unwrap_or_else(|e| panic!("{media}: concurrent put: {e}"));
    }
    let stored = read(media, &key).await.unwrap();
    assert!(
        payloads.contains(&stored),
        "{media}: the object is none of the written payloads ({} bytes)",
        stored.len()
    );
    assert_eq!(media.list_product(id).await.unwrap(), vec![key]);
    media.retain_product(id, &[]).await.unwrap();
}
