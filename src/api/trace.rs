//! W3C trace context for messages: the request's `traceparent` travels through the outbox and the
//! broker into the consumer's span.

use axum::http::HeaderMap;

/// The request's `traceparent` if it sent a valid one, else a new one for this request.
pub fn traceparent(headers: &HeaderMap) -> String {
    headers
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
        .filter(|value| is_valid(value))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            format!(
                "00-{:032x}-{:016x}-01",
                fastrand::u128(1..),
                fastrand::u64(1..)
            )
        })
}

fn is_valid(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    parts.len() == 4
        && hex(parts[0], 2)
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
        && parts[1] != "0".repeat(32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_valid_header_and_replaces_junk() {
        let valid = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", valid.parse().unwrap());
        assert_eq!(traceparent(&headers), valid);
        headers.insert("traceparent", "junk".parse().unwrap());
        let generated = traceparent(&headers);
        assert!(is_valid(&generated), "{generated}");
        assert!(is_valid(&traceparent(&HeaderMap::new())));
    }
}
