//! Media keys: how stored objects are named, and which names a client may ask for.
//!
//! Keys are built from numbers and a content hash only, never from an image URL:
//! `products/<product_id>/<index>-<rendition>-<16 hex digits of SHA-256>.<ext>`, where the
//! rendition is its longest side in pixels. Because the name changes
//! whenever the bytes do, an object under a key never changes, which is what lets
//! `GET /media/{key}` answer `Cache-Control: immutable` and a re-run detect what it superseded.
//!
//! [`served_key`] is the gate in front of the store for keys that arrive from outside: it
//! accepts only names this crate could have written, so a request can never reach an object
//! outside the `products/` prefix, whatever the backend does with `..` or `%2F`.

use object_store::path::Path;
use sha2::{Digest, Sha256};

use crate::config::OutputFormat;

/// Length of the content hash in keys (hex digits of SHA-256).
pub const HASH_LEN: usize = 16;

/// Longest key [`served_key`] accepts, in bytes; ours are well under 100.
pub const MAX_KEY_LEN: usize = 512;

/// The folder every product's objects live under.
pub const PRODUCTS_PREFIX: &str = "products";

/// `products/<product_id>/<index>-<long_side>-<hash>.<ext>` for `data`, the rendition of image
/// `index` whose longest side is `long_side` pixels.
///
/// ```
/// use product_pipeline_imaging::{media::image_key, OutputFormat};
/// let key = image_key(42, 3, 1024, b"jpeg bytes", OutputFormat::Jpeg);
/// assert!(key.starts_with("products/42/3-1024-") && key.ends_with(".jpg"));
/// assert_eq!(key, image_key(42, 3, 1024, b"jpeg bytes", OutputFormat::Jpeg));
/// ```
pub fn image_key(
    product_id: i64,
    index: u32,
    long_side: u32,
    data: &[u8],
    format: OutputFormat,
) -> String {
    let digest = Sha256::digest(data);
    let hex: String = digest
        .iter()
        .take(HASH_LEN / 2)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "{}/{index}-{long_side}-{hex}.{}",
        product_prefix(product_id),
        format.extension()
    )
}

/// `products/<product_id>`: the folder holding every object of one product.
pub fn product_prefix(product_id: i64) -> String {
    format!("{PRODUCTS_PREFIX}/{product_id}")
}

/// The store path of a key that a client sent (raw, still percent-encoded), or `None` when it
/// is not a name this crate writes: empty or over [`MAX_KEY_LEN`], outside `products/`, with an
/// empty segment, a segment starting with `.` (so no `..`), or any byte other than ASCII
/// letters, digits, `-`, `_`, `.` and `/` (so no `%2F`, `\`, spaces or control characters).
///
/// ```
/// use product_pipeline_imaging::media::served_key;
/// assert!(served_key("products/1/0-3f2a9c0d1e2f3a4b.jpg").is_some());
/// assert!(served_key("products/1/../../etc/passwd").is_none());
/// assert!(served_key("products%2F1%2F0.jpg").is_none());
/// assert!(served_key("/etc/passwd").is_none());
/// ```
pub fn served_key(raw: &str) -> Option<Path> {
    if raw.is_empty() || raw.len() > MAX_KEY_LEN {
        return None;
    }
    let mut segments = raw.split('/');
    if segments.next() != Some(PRODUCTS_PREFIX) {
        return None;
    }
    let mut rest = 0;
    for segment in segments {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
        if segment.is_empty() || segment.starts_with('.') || !segment.bytes().all(allowed) {
            return None;
        }
        rest += 1;
    }
    // A folder (`products/1`) is not an object.
    if rest < 2 {
        return None;
    }
    Path::parse(raw).ok()
}

/// The `Content-Type` of a stored object, from its extension (we write only these).
pub fn content_type(key: &str) -> &'static str {
    match key.rsplit_once('.').map(|(_, ext)| ext) {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("png") => "image/png",
        Some("avif") => "image/avif",
        Some("gif") => "image/gif",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_deterministic_and_hash_the_content() {
        let a = image_key(42, 3, 320, b"hello", OutputFormat::Jpeg);
        assert_eq!(a, image_key(42, 3, 320, b"hello", OutputFormat::Jpeg));
        assert_eq!(
            a.len(),
            "products/42/3-320-".len() + HASH_LEN + ".jpg".len()
        );
        assert_ne!(a, image_key(42, 3, 320, b"other", OutputFormat::Jpeg));
        assert_ne!(a, image_key(42, 3, 1024, b"hello", OutputFormat::Jpeg));
        assert!(image_key(42, 3, 320, b"hello", OutputFormat::WebP).ends_with(".webp"));
        assert!(served_key(&a).is_some(), "{a} is servable");
    }

    #[test]
    fn hostile_keys_are_refused() {
        let long = format!("products/1/{}.jpg", "a".repeat(MAX_KEY_LEN));
        for raw in [
            "",
            "products",
            "products/",
            "products/1",
            "products/1/",
            "products//0.jpg",
            "products/1/../../../etc/passwd",
            "products/1/..",
            "products/./1/0.jpg",
            "products/1/.hidden",
            "/products/1/0.jpg",
            "/etc/passwd",
            "etc/passwd",
            "products%2F1%2F0.jpg",
            "products/1%2F..%2F..%2F0.jpg",
            "products/1/0.jpg%00",
            "products\\1\\0.jpg",
            "products/1/0 .jpg",
            "products/1/0\n.jpg",
            "products/1/é.jpg",
            "other/1/0.jpg",
            long.as_str(),
        ] {
            assert!(served_key(raw).is_none(), "{raw:?} must be refused");
        }
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type("products/1/0-ab.jpg"), "image/jpeg");
        assert_eq!(content_type("products/1/0-ab.webp"), "image/webp");
        assert_eq!(content_type("products/1/0-ab"), "application/octet-stream");
    }
}
