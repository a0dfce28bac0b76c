//! [`Front`]: what a process serves on its HTTP address from the moment it binds it, before its
//! database and broker are reachable.
//!
//! Orchestrators probe a starting process: `GET /healthz` must answer (the process is alive and
//! should not be restarted), `GET /readyz` must not (it cannot do its work yet, so no traffic should
//! be routed to it). So the listener is bound first and served by a `Front`; while start-up waits,
//! `/healthz` answers 200, `/readyz` answers 503 naming what is awaited and why, and every other
//! request gets 503 with `Retry-After`. Once start-up hands it the real router
//! ([`Front::open`]), every request goes there.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use axum::{routing::get, Router};
//! use product_pipeline::api::Front;
//! use tower::ServiceExt;
//!
//! let front = Front::new();
//! front.waiting_for("database", "connection refused");
//! let request = |path: &str| axum::http::Request::get(path).body(axum::body::Body::empty()).unwrap();
//!
//! let ready = front.router().oneshot(request("/readyz")).await.unwrap();
//! assert_eq!(ready.status(), 503);
//!
//! front.open(Router::new().route("/readyz", get(|| async { "ready" })));
//! let ready = front.router().oneshot(request("/readyz")).await.unwrap();
//! assert_eq!(ready.status(), 200);
//! # }
//! ```

use std::sync::{Arc, OnceLock};

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use parking_lot::Mutex;
use tower::ServiceExt;

use super::{ApiError, FieldError};

/// The HTTP front of a starting process; cheap to clone, every clone is the same front.
#[derive(Clone, Default)]
pub struct Front {
    /// The real router, once start-up has finished.
    app: Arc<OnceLock<Router>>,
    /// What start-up waits for now: (dependency, last error).
    waiting: Arc<Mutex<Option<(&'static str, String)>>>,
}

impl Front {
    /// A front that is starting and waits for nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that start-up waits for `dependency` (e.g. `"database"`) because of `reason`;
    /// `GET /readyz` reports it.
    pub fn waiting_for(&self, dependency: &'static str, reason: impl Into<String>) {
        *self.waiting.lock() = Some((dependency, reason.into()));
    }

    /// Start-up waits for nothing any more (the dependency answered).
    pub fn done_waiting(&self) {
        *self.waiting.lock() = None;
    }

    /// Hands every request from now on to `app`. Only the first call has an effect.
    pub fn open(&self, app: Router) {
        let _ = self.app.set(app);
    }

    /// The router to serve: the starting answers until [`Front::open`], then `app`.
    pub fn router(&self) -> Router {
        let front = self.clone();
        Router::new().fallback(move |request: Request| {
            let front = front.clone();
            async move {
                match front.app.get() {
                    // A `Router`'s error type is `Infallible`.
                    Some(app) => app.clone().oneshot(request).await.into_response(),
                    None => front.starting(&request),
                }
            }
        })
    }

    fn starting(&self, request: &Request) -> Response {
        let path = request.uri().path();
        if path == "/healthz" {
            return axum::Json(serde_json::json!({"status": "ok"})).into_response();
        }
        let mut error = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting",
            "the service is starting; try again shortly",
        );
        if path == "/readyz" {
            if let Some((dependency, reason)) = self.waiting.lock().clone() {
                error
                    .details
                    .push(FieldError::new(dependency, format!("waiting: {reason}")));
            }
        }
        ([(header::RETRY_AFTER, "1")], error).into_response()
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;

    use super::*;

    async fn call(front: &Front, path: &str) -> (StatusCode, String) {
        let request = Request::get(path).body(Body::empty()).unwrap();
        let response = front.router().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn while_starting_only_healthz_answers() {
        let front = Front::new();
        front.waiting_for("database", "connection refused (os error 111)");
        assert_eq!(call(&front, "/healthz").await.0, StatusCode::OK);
        let (status, body) = call(&front, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("\"field\":\"database\""), "{body}");
        assert!(body.contains("connection refused"), "{body}");
        let (status, body) = call(&front, "/products").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("\"code\":\"starting\""), "{body}");
    }

    #[tokio::test]
    async fn once_open_every_request_goes_to_the_app() {
        let front = Front::new();
        let served = front.router();
        front.done_waiting();
        front.open(
            Router::new()
                .route("/healthz", get(|| async { "app healthz" }))
                .route("/readyz", get(|| async { "app readyz" })),
        );
        // A router taken before `open` switches too: it is what the listener serves.
        let request = Request::get("/readyz").body(Body::empty()).unwrap();
        let response = served.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(call(&front, "/healthz").await.1, "app healthz");
        assert_eq!(call(&front, "/nowhere").await.0, StatusCode::NOT_FOUND);
    }
}
