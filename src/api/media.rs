//! `GET /media/{key}`: compressed images, streamed from whichever media store is configured.
//!
//! Keys are content-hashed, so an object never changes: answers carry
//! `Cache-Control: public, max-age=31536000, immutable` and an `ETag` taken from the key itself
//! (the same on every API replica and every backend), `If-None-Match` is answered `304` without
//! asking the store, and a single `Range` is answered `206`. A key that is not a name the worker
//! writes (traversal, encoded separators, backslashes, over-long) is a `404` before the store
//! is touched.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use http_range_header::{EndPosition, StartPosition, SyntacticallyCorrectRange};
use product_pipeline_imaging::media::{content_type, served_key, MediaError, IMMUTABLE};
use product_pipeline_imaging::object_store::path::Path;
use product_pipeline_imaging::object_store::{GetOptions, GetRange};

use super::{ApiError, AppState};

/// The route's prefix; keys follow it.
pub(super) const PREFIX: &str = "/media/";

/// Streams one stored image; see the [module docs](self).
pub(super) async fn serve(
    State(state): State<AppState>,
    uri: Uri,
    request: HeaderMap,
) -> Result<Response, ApiError> {
    // The raw, still percent-encoded path: `%2F` must not become a separator.
    let raw = uri.path().strip_prefix(PREFIX).unwrap_or_default();
    let key = served_key(raw).ok_or_else(not_found)?;
    let etag = etag(&key);
    if if_none_match(&request, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, cache_headers(&etag)).into_response());
    }

    let range = match request.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(value) => match requested_range(&state, &key, value).await? {
            Requested::Whole => None,
            Requested::Part(range) => Some(range),
            Requested::Unsatisfiable(size) => {
                return Ok((
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [(header::CONTENT_RANGE, format!("bytes */{size}"))],
                )
                    .into_response())
            }
        },
        None => None,
    };
    let options = GetOptions {
        range: range.clone().map(GetRange::Bounded),
        ..GetOptions::default()
    };
    let object = state.media.get(&key, options).await.map_err(media_error)?;
    let size = object.meta.size;
    let served = object.range.clone();

    let mut response = Response::new(Body::from_stream(object.into_stream().map_err(|error| {
        tracing::warn!(%error, "media stream broke off");
        error
    })));
    let headers = response.headers_mut();
    headers.extend(cache_headers(&etag));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(key.as_ref())),
    );
    headers.insert(header::CONTENT_LENGTH, (served.end - served.start).into());
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if range.is_some() {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        let content_range = format!("bytes {}-{}/{size}", served.start, served.end - 1);
        response.headers_mut().insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&content_range).expect("digits and punctuation"),
        );
    }
    Ok(response)
}

fn not_found() -> ApiError {
    ApiError::not_found("image")
}

/// `"<index>-<rendition>-<hash>"` from `products/<id>/<index>-<rendition>-<hash>.<ext>`: the key
/// names the bytes.
fn etag(key: &Path) -> HeaderValue {
    let name = key.filename().unwrap_or_default();
    let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    HeaderValue::from_str(&format!("\"{stem}\"")).expect("served keys are ASCII")
}

fn cache_headers(etag: &HeaderValue) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::ETAG, etag.clone());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    headers
}

/// Whether `If-None-Match` lists `etag` (weak comparison, as RFC 9110 asks for it) or `*`.
fn if_none_match(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let ours = etag.to_str().unwrap_or_default();
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == ours)
}

enum Requested {
    /// No usable single range: serve everything (RFC 9110 lets a server ignore `Range`).
    Whole,
    /// The half-open byte range to serve.
    Part(std::ops::Range<u64>),
    /// The range starts past the end of an object of this size.
    Unsatisfiable(u64),
}

/// Resolves a `Range` header against the object's size (one `HEAD`; range requests are rare).
async fn requested_range(state: &AppState, key: &Path, value: &str) -> Result<Requested, ApiError> {
    let Ok(parsed) = http_range_header::parse_range_header(value) else {
        return Ok(Requested::Whole);
    };
    let [range] = parsed.ranges.as_slice() else {
        return Ok(Requested::Whole);
    };
    let size = state.media.head(key).await.map_err(media_error)?.size;
    Ok(resolve(range, size))
}

/// One syntactically valid range against an object of `size` bytes (RFC 9110 §14.1.2): a suffix
/// longer than the object is the whole object, an end past it is clipped, a start at or past it
/// (or any range of an empty object) is unsatisfiable.
fn resolve(range: &SyntacticallyCorrectRange, size: u64) -> Requested {
    let last = size.saturating_sub(1);
    let (start, end) = match (range.start, range.end) {
        (StartPosition::FromLast(suffix), _) => (size.saturating_sub(suffix), last),
        (StartPosition::Index(start), EndPosition::LastByte) => (start, last),
        (StartPosition::Index(start), EndPosition::Index(end)) if end < start => {
            return Requested::Whole
        }
        (StartPosition::Index(start), EndPosition::Index(end)) => (start, end.min(last)),
    };
    if size == 0 || start >= size {
        Requested::Unsatisfiable(size)
    } else {
        Requested::Part(start..end + 1)
    }
}

fn media_error(error: MediaError) -> ApiError {
    match error {
        MediaError::NotFound { .. } => not_found(),
        error if error.is_transient() => {
            tracing::warn!(%error, "media store unavailable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the media store is unavailable; retry later",
            )
        }
        error => {
            tracing::error!(%error, "media store error");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; it has been logged",
            )
        }
    }
}

/// Where clients fetch stored images from: `MEDIA_PUBLIC_URL` (a CDN or the bucket's public
/// URL) when set, else this API's own `/media/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaLinks {
    base: String,
}

impl Default for MediaLinks {
    fn default() -> Self {
        MediaLinks {
            base: PREFIX.to_owned(),
        }
    }
}

impl MediaLinks {
    /// Links under `base`, e.g. `https://cdn.example.com/media` (a trailing `/` is optional).
    pub fn public(base: &url::Url) -> MediaLinks {
        let base = base.as_str();
        MediaLinks {
            base: format!("{}/", base.trim_end_matches('/')),
        }
    }

    /// The URL of a stored key.
    ///
    /// ```
    /// use product_pipeline::api::MediaLinks;
    /// let cdn = MediaLinks::public(&"https://cdn.example.com/m/".parse().unwrap());
    /// assert_eq!(cdn.url("products/1/0-ab.jpg"), "https://cdn.example.com/m/products/1/0-ab.jpg");
    /// assert_eq!(MediaLinks::default().url("products/1/0-ab.jpg"), "/media/products/1/0-ab.jpg");
    /// ```
    pub fn url(&self, key: &str) -> String {
        format!("{}{key}", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_come_from_the_key() {
        let key = Path::parse("products/1/0-0123456789abcdef.jpg").unwrap();
        assert_eq!(etag(&key), "\"0-0123456789abcdef\"");
    }

    #[test]
    fn ranges_resolve_like_rfc_9110() {
        let range = |value: &str| http_range_header::parse_range_header(value).unwrap().ranges[0];
        let part = |value: &str, size: u64| match resolve(&range(value), size) {
            Requested::Part(part) => Some(part),
            Requested::Whole => None,
            Requested::Unsatisfiable(_) => Some(u64::MAX..u64::MAX),
        };
        assert_eq!(part("bytes=0-0", 10), Some(0..1));
        assert_eq!(part("bytes=5-", 10), Some(5..10));
        assert_eq!(part("bytes=5-99", 10), Some(5..10));
        assert_eq!(part("bytes=-3", 10), Some(7..10));
        assert_eq!(
            part("bytes=-30", 10),
            Some(0..10),
            "a long suffix is everything"
        );
        assert_eq!(part("bytes=10-", 10), Some(u64::MAX..u64::MAX));
        assert_eq!(part("bytes=0-", 0), Some(u64::MAX..u64::MAX));
        assert_eq!(part("bytes=-5", 0), Some(u64::MAX..u64::MAX));
    }

    #[test]
    fn if_none_match_lists_and_wildcards() {
        let ours = HeaderValue::from_static("\"0-ab\"");
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static(value));
            headers
        };
        assert!(if_none_match(&with("\"0-ab\""), &ours));
        assert!(if_none_match(&with("\"x\", W/\"0-ab\""), &ours));
        assert!(if_none_match(&with("*"), &ours));
        assert!(!if_none_match(&with("\"0-cd\""), &ours));
        assert!(!if_none_match(&HeaderMap::new(), &ours));
    }
}

/// The route over a real (in-memory) store, and over one that fails every call.
#[cfg(test)]
mod route_tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use mq_core::domain::{MockProductRepo, MockUserRepo};
    use product_pipeline_imaging::media::outage::OutageStore;
    use product_pipeline_imaging::media::MediaStore;
    use tower::ServiceExt;

    use super::*;
    use crate::api::router;

    const KEY: &str = "products/1/0-0123456789abcdef.jpg";

    async fn app_with(media: MediaStore) -> axum::Router {
        let state = AppState::new(
            Arc::new(MockUserRepo::new()),
            Arc::new(MockProductRepo::new()),
            media,
        );
        router(state)
    }

    async fn stored() -> (axum::Router, Bytes) {
        let media = MediaStore::in_memory();
        let data: Bytes = (0..=255u8).cycle().take(5000).collect::<Vec<_>>().into();
        media.put(KEY, data.clone()).await.unwrap();
        media
            .put("secret.txt", Bytes::from_static(b"outside the prefix"))
            .await
            .unwrap();
        (app_with(media).await, data)
    }

    async fn get(app: &axum::Router, uri: &str, headers: &[(&str, &str)]) -> Response {
        let mut request = Request::get(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        app.clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn body(response: Response) -> Bytes {
        response.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn serves_the_object_with_cache_headers() {
        let (app, data) = stored().await;
        let response = get(&app, &format!("/media/{KEY}"), &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers().clone();
        assert_eq!(headers[header::CONTENT_TYPE], "image/jpeg");
        assert_eq!(headers[header::CONTENT_LENGTH], "5000");
        assert_eq!(headers[header::ETAG], "\"0-0123456789abcdef\"");
        assert_eq!(headers[header::CACHE_CONTROL], IMMUTABLE);
        assert_eq!(headers[header::ACCEPT_RANGES], "bytes");
        assert_eq!(body(response).await, data);
    }

    #[tokio::test]
    async fn if_none_match_is_304() {
        let (app, _) = stored().await;
        let uri = format!("/media/{KEY}");
        let response = get(&app, &uri, &[("if-none-match", "\"0-0123456789abcdef\"")]).await;
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(response.headers()[header::ETAG], "\"0-0123456789abcdef\"");
        assert!(body(response).await.is_empty());
        let other = get(&app, &uri, &[("if-none-match", "\"something-else\"")]).await;
        assert_eq!(other.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn ranges_are_206_and_416() {
        let (app, data) = stored().await;
        let uri = format!("/media/{KEY}");
        for (range, expected, content_range) in [
            ("bytes=10-19", &data[10..20], "bytes 10-19/5000"),
            ("bytes=4990-", &data[4990..], "bytes 4990-4999/5000"),
            ("bytes=-3", &data[4997..], "bytes 4997-4999/5000"),
            ("bytes=4995-9999", &data[4995..], "bytes 4995-4999/5000"),
            ("bytes=-9999", &data[..], "bytes 0-4999/5000"),
        ] {
            let response = get(&app, &uri, &[("range", range)]).await;
            assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{range}");
            assert_eq!(response.headers()[header::CONTENT_RANGE], content_range);
            assert_eq!(
                response.headers()[header::CONTENT_LENGTH],
                expected.len().to_string().as_str()
            );
            assert_eq!(&body(response).await[..], expected, "{range}");
        }
        let past = get(&app, &uri, &[("range", "bytes=6000-")]).await;
        assert_eq!(past.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(past.headers()[header::CONTENT_RANGE], "bytes */5000");
        // Unparsable or several ranges: the whole object.
        for range in ["pages=1-2", "bytes=0-1,5-6", "bytes=0-10,5-15", "bytes=9-3"] {
            let whole = get(&app, &uri, &[("range", range)]).await;
            assert_eq!(whole.status(), StatusCode::OK, "{range}");
            assert_eq!(body(whole).await, data);
        }
    }

    #[tokio::test]
    async fn a_missing_key_is_404_in_the_error_format() {
        let (app, _) = stored().await;
        let response = get(&app, "/media/products/1/0-ffffffffffffffff.jpg", &[]).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let error: serde_json::Value = serde_json::from_slice(&body(response).await).unwrap();
        assert_eq!(error["error"]["code"], "not_found");
    }

    /// Hostile keys are refused before the store is asked: the store here fails every call
    /// (which would answer 503), and a real one holds a file outside the prefix.
    #[tokio::test]
    async fn hostile_keys_are_404_without_touching_the_store() {
        let (real, _) = stored().await;
        let down = Arc::new(OutageStore::default());
        down.fail_reads(true);
        down.fail_writes(true);
        let failing = app_with(MediaStore::from_object_store(down, "unreachable://")).await;
        let long = format!("/media/products/1/{}.jpg", "a".repeat(600));
        for uri in [
            "/media/secret.txt",
            "/media/products/1/../../secret.txt",
            "/media/products/..%2F..%2Fsecret.txt",
            "/media/products%2F1%2F0-0123456789abcdef.jpg",
            "/media/products/1/%2e%2e/%2e%2e/secret.txt",
            "/media/products/1/..%5C..%5Csecret.txt",
            "/media//etc/passwd",
            "/media/products/1",
            long.as_str(),
        ] {
            for app in [&real, &failing] {
                let response = get(app, uri, &[]).await;
                assert_eq!(response.status(), StatusCode::NOT_FOUND, "{uri}");
            }
        }
        // The failing store is asked for a well-formed key, and says so.
        let response = get(&failing, &format!("/media/{KEY}"), &[]).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
