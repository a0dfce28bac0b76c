//! The HTTP API: an embeddable axum [`Router`] over the repository and broker traits.
//!
//! ```no_run
//! # async fn example(state: product_pipeline::api::AppState) -> std::io::Result<()> {
//! let app = product_pipeline::api::router(state);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await
//! # }
//! ```

mod body;
mod error;
mod health;
mod products;
mod trace;
mod users;
pub mod validate;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use mq_core::domain::{ProductRepo, UserRepo};
use mq_core::Publisher;
use tokio::sync::Notify;
use tower_http::services::ServeDir;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use body::JsonObject;
pub use error::{ApiError, FieldError};
pub use trace::traceparent;

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
    pub media_dir: PathBuf,
    /// Limits of the HTTP layer.
    pub limits: HttpLimits,
}

/// Limits of the HTTP layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest request body in bytes (413 above it).
    pub body_bytes: usize,
    /// Longest time a request may take (408 after it).
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            body_bytes: 256 * 1024,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// The API's routes (see DESIGN.md "HTTP API") with body limit, timeout and request tracing.
pub fn router(state: AppState) -> Router {
    let media = ServeDir::new(&state.media_dir);
    let limits = state.limits.clone();
    Router::new()
        .route("/users", post(users::create))
        .route("/users/{id}", get(users::get))
        .route("/products", post(products::create).get(products::list))
        .route("/products/{id}", get(products::get))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .nest_service("/media", media)
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
        .layer(TraceLayer::new_for_http())
        .with_state(state)
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
