//! Products' `ETag`s and the conditional requests they answer (`If-None-Match` on reads,
//! `If-Match` on writes).
//!
//! A product's entity tag is `"<version>-<status>"`. The version alone would not do for reads:
//! the worker records a product's result without changing its version (a change of the
//! product's own fields does), and a client polling with `If-None-Match` must see `done` when it
//! comes. Within one version and status the representation does not change: a version's first
//! final result is its result, and `processing` is not marked twice.
//!
//! Writes compare the version part only: `If-Match` guards against overwriting someone else's
//! change, and the worker finishing meanwhile is not one.

use axum::http::header::{ETAG, IF_MATCH, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use mq_core::domain::Product;

use super::ApiError;

/// The entity tag of `product`, quoted, as the `ETag` header carries it.
pub(super) fn etag(product: &Product) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{}-{}\"", product.version, product.status))
        .expect("digits, a dash and a status name are a valid header value")
}

/// `ETag: <etag(product)>`, for a response about `product`.
pub(super) fn etag_header(product: &Product) -> [(axum::http::HeaderName, HeaderValue); 1] {
    [(ETAG, etag(product))]
}

/// `true` when the request's `If-None-Match` names `product`'s current tag (or is `*`): the
/// client's copy is current, answer 304. Weak comparison, as RFC 9110 asks for this header.
pub(super) fn not_modified(headers: &HeaderMap, product: &Product) -> bool {
    let current = etag(product);
    let current = opaque(current.to_str().unwrap_or_default());
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || opaque(tag) == current)
}

/// The versions the request's `If-Match` accepts: `None` when it has none (or `*`: any
/// version of an existing product), else the versions of the tags it lists. A tag that is not
/// one of ours can never match: 412, as for a stale one.
pub(super) fn if_match(headers: &HeaderMap) -> Result<Option<Vec<i64>>, ApiError> {
    let mut versions = Vec::new();
    let mut any = false;
    for value in headers.get_all(IF_MATCH) {
        let value = value.to_str().map_err(|_| precondition_failed())?;
        for tag in value
            .split(',')
            .map(str::trim)
            .filter(|tag| !tag.is_empty())
        {
            if tag == "*" {
                any = true;
                continue;
            }
            // Strong comparison: a weak tag never matches.
            let version = tag
                .strip_prefix('"')
                .and_then(|tag| tag.strip_suffix('"'))
                .and_then(|tag| tag.split('-').next())
                .and_then(|version| version.parse::<i64>().ok())
                .ok_or_else(precondition_failed)?;
            versions.push(version);
        }
    }
    Ok(if any || versions.is_empty() {
        None
    } else {
        Some(versions)
    })
}

/// `route` with the request's `If-Match` values, for the idempotency fingerprint: a retry that
/// states another precondition is another request.
pub(super) fn with_precondition(route: String, headers: &HeaderMap) -> String {
    let tags: Vec<&str> = headers
        .get_all(IF_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    if tags.is_empty() {
        route
    } else {
        format!("{route} if-match {}", tags.join(","))
    }
}

/// The answer to an `If-Match` that cannot hold.
pub(super) fn precondition_failed() -> ApiError {
    ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
        "If-Match names no current version of this product; GET it again for its ETag",
    )
}

/// A tag without its weakness indicator.
fn opaque(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

#[cfg(test)]
mod tests {
    use mq_core::domain::ProductStatus;

    use super::*;

    fn product(version: i64, status: ProductStatus) -> Product {
        Product {
            product_id: 1,
            user_id: 1,
            product_name: "n".into(),
            product_description: None,
            product_images: vec![],
            product_price: "1".parse().unwrap(),
            compressed_product_images: vec![],
            image_renditions: vec![],
            status,
            image_errors: vec![],
            version,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        }
    }

    fn headers(name: axum::http::HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn the_tag_changes_with_the_version_and_the_status() {
        let pending = etag(&product(3, ProductStatus::Pending));
        assert_eq!(pending, "\"3-pending\"");
        assert_ne!(pending, etag(&product(3, ProductStatus::Done)));
        assert_ne!(pending, etag(&product(4, ProductStatus::Pending)));
    }

    #[test]
    fn if_none_match_compares_weakly_and_takes_lists_and_stars() {
        let done = product(3, ProductStatus::Done);
        for matching in ["\"3-done\"", "W/\"3-done\"", "\"1-x\", \"3-done\"", "*"] {
            assert!(
                not_modified(&headers(IF_NONE_MATCH, matching), &done),
                "{matching}"
            );
        }
        for stale in ["\"3-pending\"", "\"2-done\"", "3-done"] {
            assert!(
                !not_modified(&headers(IF_NONE_MATCH, stale), &done),
                "{stale}"
            );
        }
        assert!(!not_modified(&HeaderMap::new(), &done));
    }

    #[test]
    fn if_match_yields_versions() {
        assert_eq!(if_match(&HeaderMap::new()).unwrap(), None);
        assert_eq!(if_match(&headers(IF_MATCH, "*")).unwrap(), None);
        assert_eq!(
            if_match(&headers(IF_MATCH, "\"3-done\"")).unwrap(),
            Some(vec![3])
        );
        assert_eq!(
            if_match(&headers(IF_MATCH, "\"3-done\", \"5-pending\"")).unwrap(),
            Some(vec![3, 5])
        );
        for bad in ["W/\"3-done\"", "3", "\"x\""] {
            let error = if_match(&headers(IF_MATCH, bad)).unwrap_err();
            assert_eq!(error.status, StatusCode::PRECONDITION_FAILED, "{bad}");
        }
    }
}
