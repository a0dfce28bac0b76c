//! Optional bearer-token protection of the write routes (`API_TOKEN`).

use std::fmt;
use std::str::FromStr;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};

/// The token clients must send as `Authorization: Bearer <token>` on write requests.
///
/// Only a SHA-256 digest of the token is kept, and requests are checked by comparing digests in
/// constant time: neither the length nor a prefix of the token leaks through response timing, and
/// `Debug` (hence any log line) shows nothing of it.
///
/// ```
/// use product_pipeline::api::ApiToken;
///
/// let token: ApiToken = "s3cret-token-0123456789".parse().unwrap();
/// assert!(token.matches("s3cret-token-0123456789"));
/// assert!(!token.matches("s3cret-token"));
/// assert_eq!(format!("{token:?}"), "ApiToken(<redacted>)");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    digest: [u8; 32],
}

impl ApiToken {
    /// `true` when `candidate` is the token.
    pub fn matches(&self, candidate: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        self.digest.ct_eq(&digest).into()
    }
}

impl FromStr for ApiToken {
    type Err = String;

    /// At least 16 visible ASCII characters, so that the token fits in a header and cannot be
    /// guessed quickly.
    fn from_str(token: &str) -> Result<Self, Self::Err> {
        if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the API token must be at least 16 visible ASCII characters".into());
        }
        Ok(Self {
            digest: Sha256::digest(token.as_bytes()).into(),
        })
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

/// Middleware: with a token configured, every request that may change something (any method but
/// `GET`, `HEAD` and `OPTIONS`) needs it, whichever route it is for; otherwise 401.
pub(super) async fn require_token_for_writes(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = &state.api_token else {
        return next.run(request).await;
    };
    if request.method().is_safe() || bearer(request.headers()).is_some_and(|t| token.matches(t)) {
        return next.run(request).await;
    }
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "write requests need `Authorization: Bearer <API_TOKEN>`",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}
