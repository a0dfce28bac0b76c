//! The HTTP API: an embeddable axum [`Router`] over the repository and broker traits.
//!
//! Serve it with [`crate::server::serve`], which bounds what clients can hold (header timeout,
//! connection caps) and hands each request its peer address, which the write rate limit keys on:
//!
//! ```no_run
//! # async fn example(state: product_pipeline::api::AppState) -> std::io::Result<()> {
//! use std::time::Duration;
//! use product_pipeline::server::{self, ConnectionLimits};
//!
//! let app = product_pipeline::api::router(state);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let limits = ConnectionLimits::for_descriptors(server::descriptor_limit());
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! server::serve(listener, app, limits, shutdown, Duration::from_secs(30)).await;
//! # Ok(()) }
//! ```
//!
//! Nested in an app of your own and served by `axum::serve`, use
//! `into_make_service_with_connect_info::<SocketAddr>()`: without the peer address every client
//! shares one write bucket.

mod auth;
mod body;
mod error;
mod front;
mod health;
mod http_metrics;
pub mod idempotency;
mod limits;
mod media;
mod openapi;
mod product_changes;
mod products;
mod schema;
mod trace;
mod users;
pub mod validate;
mod versions;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use mq_core::domain::{Created, ProductRepo, UserRepo};
use mq_core::Publisher;
use serde::Serialize;
use tokio::sync::Notify;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use auth::ApiToken;
pub use body::JsonObject;
pub use error::{ApiError, FieldError};
pub use front::Front;
pub use limits::{TrustedProxies, WriteRate};
pub use media::MediaLinks;
pub use openapi::openapi;
pub use trace::message_headers;

use crate::prometheus::MetricsEndpoint;
use product_pipeline_imaging::media::MediaStore;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Users.
    pub users: Arc<dyn UserRepo>,
    /// Products (and their outbox rows).
    pub products: Arc<dyn ProductRepo>,
    /// The broker, checked by `GET /readyz`; `None` for an API that does not publish itself.
    pub publisher: Option<Arc<dyn Publisher>>,
    /// Woken after every committed product so the outbox relay publishes at once.
    pub outbox_wakeup: Arc<Notify>,
    /// Where compressed images live (`GET /media/...`).
    pub media: MediaStore,
    /// Where clients fetch them from (`compressed_product_image_urls`).
    pub media_links: MediaLinks,
    /// Limits of the HTTP layer.
    pub limits: HttpLimits,
    /// When set, requests that may change something need `Authorization: Bearer <token>`.
    pub api_token: Option<ApiToken>,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_ttl: Duration,
    /// `GET /metrics`; `None` answers 404.
    pub metrics: Option<MetricsEndpoint>,
}

impl AppState {
    /// A state with the defaults for everything but the repositories and the media store: no
    /// publisher to check, a wake-up nobody listens to, links to this API's `/media/`, default
    /// limits, no token, keys kept for a day and no metrics.
    pub fn new(
        users: Arc<dyn UserRepo>,
        products: Arc<dyn ProductRepo>,
        media: MediaStore,
    ) -> Self {
        Self {
            users,
            products,
            publisher: None,
            outbox_wakeup: Arc::new(Notify::new()),
            media,
            media_links: MediaLinks::default(),
            limits: HttpLimits::default(),
            api_token: None,
            idempotency_ttl: DEFAULT_IDEMPOTENCY_TTL,
            metrics: None,
        }
    }
}

/// How long an `Idempotency-Key` is remembered unless configured otherwise: a day, as long as
/// clients typically keep retrying.
pub const DEFAULT_IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Limits of the HTTP layer (those of connections are in [`crate::server`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest request body in bytes (413 above it).
    pub body_bytes: usize,
    /// Longest time a request may take (408 after it).
    pub request_timeout: Duration,
    /// Most API requests handled at once; more get 503 with `Retry-After` at once. `/healthz`,
    /// `/readyz` and `/metrics` are not counted and always answer.
    pub max_in_flight: usize,
    /// Writes per client address; `None`: unlimited.
    pub write_rate: Option<WriteRate>,
    /// Proxies whose `X-Forwarded-For` names the client (for the write rate).
    pub trusted_proxies: TrustedProxies,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            body_bytes: 256 * 1024,
            request_timeout: Duration::from_secs(30),
            max_in_flight: 512,
            write_rate: None,
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

/// The API's routes (see DESIGN.md "HTTP API" and `GET /openapi.json`) with body limit,
/// timeout, request tracing, HTTP metrics and, when a token is set, bearer authentication of
/// writes.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/users", post(users::create).get(users::list))
        .route(
            "/users/{id}",
            get(users::get).patch(users::update).delete(users::delete),
        )
        .route("/products", post(products::create).get(products::list))
        .route(
            "/products/{id}",
            get(products::get)
                .patch(product_changes::update)
                .delete(product_changes::delete),
        )
        .route("/products/{id}/reprocess", post(product_changes::reprocess))
        .route("/openapi.json", get(openapi::serve))
        .route("/media/{*key}", get(media::serve));
    let api = limits::shed_load(api, state.limits.max_in_flight);
    with_layers(operations_routes().merge(api), state)
}

/// Only `GET /healthz`, `GET /readyz` and `GET /metrics`, with the same layers as [`router`]: what
/// a worker process serves (`METRICS_ADDR`), so that it can be probed and scraped too.
pub fn operations_router(state: AppState) -> Router {
    with_layers(operations_routes(), state)
}

fn operations_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(http_metrics::metrics))
}

/// Error-format fallbacks, body limit, timeout, authentication of writes, write rate limits,
/// tracing and metrics.
fn with_layers(routes: Router<AppState>, state: AppState) -> Router {
    let limits = state.limits.clone();
    routes
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        .layer(DefaultBodyLimit::max(limits.body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token_for_writes,
        ))
        .layer(middleware::from_fn_with_state(
            limits
                .write_rate
                .map(|rate| limits::WriteLimiter::new(rate, limits.trusted_proxies.clone())),
            limits::limit_writes,
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(trace::server_span)
                .on_response(trace::record_response),
        )
        // Outermost, so that 401, 408 and 413 answers are counted too.
        .layer(middleware::from_fn(http_metrics::record))
        .with_state(state)
}

/// `201 Created` with `Location` and the row; a replayed idempotent request also gets
/// `Idempotent-Replayed: true`.
fn created<T: Serialize>(outcome: Created<T>, location: impl FnOnce(&T) -> String) -> Response {
    let replayed = outcome.is_replay();
    let row = outcome.into_inner();
    let mut response = (
        StatusCode::CREATED,
        [(header::LOCATION, location(&row))],
        Json(row),
    )
        .into_response();
    mark_replayed(&mut response, replayed);
    response
}

/// Sets `Idempotent-Replayed: true` on the response to a replayed idempotent request.
fn mark_replayed(response: &mut Response, replayed: bool) {
    if replayed {
        response.headers_mut().insert(
            idempotency::IDEMPOTENT_REPLAYED,
            header::HeaderValue::from_static("true"),
        );
    }
}

/// Parses a path id; anything but a positive integer is a 400.
fn parse_id(raw: &str, what: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_id",
            format!("{what} ids are positive integers, not `{raw}`"),
        )
    })
}

#[cfg(test)]
mod tests;
