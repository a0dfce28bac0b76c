//! `Idempotency-Key` on the create routes: a retried request returns the original response and
//! creates nothing new.
//!
//! The key, a fingerprint of the request and the created row are stored by the repository in the
//! transaction that creates the row (see [`mq_core::domain::IdempotencyKey`]), so a crash cannot
//! separate them.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, StatusCode};
use mq_core::domain::IdempotencyKey;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::ApiError;

/// The request header clients set to make a create safe to retry.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The response header set to `true` on a replayed response.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Longest accepted key.
const MAX_KEY_LEN: usize = 255;

/// The request's idempotency key, if it sent one, fingerprinted by `route` and `body`.
///
/// A key must be 1 to 255 visible ASCII characters (a UUID is a good choice); anything else is a
/// 400, so a client never believes a request is protected when it is not.
pub(super) fn from_request(
    headers: &HeaderMap,
    route: &str,
    body: &Map<String, Value>,
    ttl: Duration,
) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(value) = headers.get(&IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|key| {
            (1..=MAX_KEY_LEN).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters, e.g. a UUID",
            )
        })?;
    Ok(Some(IdempotencyKey {
        key: key.to_owned(),
        fingerprint: fingerprint(route, body),
        ttl,
    }))
}

/// SHA-256 (hex) of the route and the body in canonical form: object keys sorted, no
/// insignificant whitespace. Two bodies that differ only in key order or spacing are the same
/// request.
fn fingerprint(route: &str, body: &Map<String, Value>) -> String {
    let mut canonical = Vec::with_capacity(256);
    canonical.extend_from_slice(route.as_bytes());
    canonical.push(b'\n');
    write_object(&mut canonical, body);
    let digest = Sha256::digest(&canonical);
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn write_canonical(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Object(map) => write_object(out, map),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(out, item);
            }
            out.push(b']');
        }
        scalar => write_scalar(out, scalar),
    }
}

fn write_object(out: &mut Vec<u8>, map: &Map<String, Value>) {
    // Sorted explicitly: serde_json keeps insertion order when a dependency enables its
    // `preserve_order` feature.
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_unstable_by_key(|(key, _)| *key);
    out.push(b'{');
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, key).expect("a string serializes into memory");
        out.push(b':');
        write_canonical(out, value);
    }
    out.push(b'}');
}

fn write_scalar(out: &mut Vec<u8>, value: &Value) {
    serde_json::to_writer(out, value).expect("a JSON value serializes into memory");
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use serde_json::json;

    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn key_order_and_spacing_do_not_change_the_fingerprint() {
        let a: Map<String, Value> =
            serde_json::from_str(r#"{"a": 1, "b": {"x": [1, 2], "y": null}}"#).unwrap();
        let b: Map<String, Value> =
            serde_json::from_str(r#"{"b":{"y":null,"x":[1,2]},"a":1}"#).unwrap();
        assert_eq!(fingerprint("POST /x", &a), fingerprint("POST /x", &b));
    }

    #[test]
    fn route_values_and_array_order_change_the_fingerprint() {
        let body = object(json!({"a": [1, 2]}));
        let base = fingerprint("POST /x", &body);
        assert_ne!(base, fingerprint("POST /y", &body));
        assert_ne!(base, fingerprint("POST /x", &object(json!({"a": [2, 1]}))));
        assert_ne!(
            base,
            fingerprint("POST /x", &object(json!({"a": [1, 2], "b": 0})))
        );
        assert_ne!(base, fingerprint("POST /x", &object(json!({"a": "[1,2]"}))));
    }

    #[test]
    fn keys_must_be_visible_ascii_of_bounded_length() {
        let ttl = Duration::from_secs(60);
        let body = Map::new();
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(IDEMPOTENCY_KEY, HeaderValue::from_str(value).unwrap());
            from_request(&headers, "POST /x", &body, ttl)
        };
        assert_eq!(
            from_request(&HeaderMap::new(), "POST /x", &body, ttl),
            Ok(None)
        );
        let key = with("0b8c0d1e-5d0b-4a8e-9f3a-1f2e3d4c5b6a")
            .unwrap()
            .unwrap();
        assert_eq!(key.key, "0b8c0d1e-5d0b-4a8e-9f3a-1f2e3d4c5b6a");
        assert_eq!(key.ttl, ttl);
        for bad in ["", "has space", &"k".repeat(256)] {
            let error = with(bad).unwrap_err();
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{bad:?}");
            assert_eq!(error.code, "invalid_idempotency_key");
        }
        assert!(with(&"k".repeat(255)).is_ok());
    }
}
