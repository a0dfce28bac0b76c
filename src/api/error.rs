//! The API's error body: `{"error": {"code", "message", "details": [{"field", "message"}]}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use mq_core::domain::RepoError;
use serde::Serialize;
use utoipa::ToSchema;

/// One failing field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({"field": "product_price", "message": "must be a number ≥ 0 with at most 2 decimals"}))]
pub struct FieldError {
    /// The field, e.g. `product_images[2]`.
    pub field: String,
    /// What is wrong with it and what is accepted.
    pub message: String,
}

impl FieldError {
    /// A failing field.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An error answer of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code, e.g. `validation_failed`.
    pub code: &'static str,
    /// Human-readable summary.
    pub message: String,
    /// The failing fields, for validation errors.
    pub details: Vec<FieldError>,
}

impl ApiError {
    /// An error without field details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// 422 listing every failing field.
    pub fn validation(details: Vec<FieldError>) -> Self {
        Self {
            details,
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "the request has invalid fields; see details",
            )
        }
    }

    /// 404 for a missing resource.
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }
}

/// The body of every error answer.
#[derive(Serialize, ToSchema)]
pub(super) struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"code": "validation_failed", "message": "the request has invalid fields; see details", "details": [{"field": "product_name", "message": "is required"}]}))]
struct ErrorDetail {
    /// Stable machine-readable code: `validation_failed`, `invalid_json`, `invalid_body`, `invalid_id`,
    /// `invalid_idempotency_key`, `idempotency_key_reused`, `unsupported_media_type`,
    /// `payload_too_large`, `unauthorized`, `not_found`, `method_not_allowed`, `conflict`,
    /// `unavailable` or `internal`.
    code: &'static str,
    /// Human-readable summary that says what to do.
    message: String,
    /// The failing fields (validation errors and readiness checks); empty otherwise.
    details: Vec<FieldError>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                details: self.details,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<RepoError> for ApiError {
    fn from(error: RepoError) -> Self {
        match error {
            RepoError::UnknownUser(id) => ApiError::validation(vec![FieldError::new(
                "user_id",
                format!("user {id} does not exist; create it with POST /users first"),
            )]),
            RepoError::DuplicateMobile(mobile) => ApiError {
                details: vec![FieldError::new(
                    "mobile",
                    format!("{mobile} is already registered to another user"),
                )],
                ..ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    "a user with this mobile number already exists",
                )
            },
            RepoError::IdempotencyKeyReused(key) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                format!(
                    "Idempotency-Key `{key}` was already used for a different request; \
                     use a new key for a new request"
                ),
            ),
            RepoError::NotFound { entity, id } => ApiError::not_found(format!("{entity} {id}")),
            mismatch @ RepoError::VersionMismatch { .. } => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                format!("If-Match does not hold: {mismatch}"),
            ),
            has_products @ RepoError::UserHasProducts(_) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", has_products.to_string())
            }
            RepoError::Unavailable(reason) => {
                tracing::warn!(%reason, "database unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the database is unavailable; retry later",
                )
            }
            RepoError::Other(reason) => {
                tracing::error!(%reason, "database error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; it has been logged",
                )
            }
        }
    }
}
