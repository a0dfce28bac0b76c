//! `GET /healthz` (the process runs) and `GET /readyz` (its database and broker answer).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::{ApiError, AppState};

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "Alive", body = super::schema::Status)),
)]
pub(super) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: the database and the broker answer within 2 s.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = super::schema::Status, example = json!({"status": "ready"})),
        (status = 503, description = "Not ready; `details` names the database and/or the broker", body = super::schema::ErrorBody),
    ),
)]
pub(super) async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let database = tokio::time::timeout(CHECK_TIMEOUT, state.products.ping()).await;
    let database = match database {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("no answer within 2 s".to_owned()),
    };
    let broker = match &state.publisher {
        None => Ok(()),
        Some(publisher) => match tokio::time::timeout(CHECK_TIMEOUT, publisher.health()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("no answer within 2 s".to_owned()),
        },
    };
    let mut details = Vec::new();
    if let Err(reason) = &database {
        details.push(super::FieldError::new("database", reason.clone()));
    }
    if let Err(reason) = &broker {
        details.push(super::FieldError::new("broker", reason.clone()));
    }
    if details.is_empty() {
        Ok(Json(json!({"status": "ready"})))
    } else {
        Err(ApiError {
            details,
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "not ready; see details",
            )
        })
    }
}
