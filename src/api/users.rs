//! `POST /users`, `GET /users/{id}`, `GET /users`, `PATCH /users/{id}`, `DELETE /users/{id}`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use mq_core::domain::Created;

use super::{created, idempotency, parse_id, validate, ApiError, AppState, JsonObject};

/// Creates a user.
#[utoipa::path(
    post,
    path = "/users",
    tag = "users",
    request_body = super::schema::NewUserRequest,
    params(
        super::schema::IdempotencyHeader,
    ),
    responses(
        (status = 201, description = "Created", body = mq_core::domain::User,
            headers(("Location" = String, description = "`/users/{id}`"),
                    ("Idempotent-Replayed" = Option<bool>, description = "`true` when an earlier request with the same key created the user"))),
        (status = 409, description = "The mobile number is taken", body = super::schema::ErrorBody),
        super::schema::CreateErrors,
    ),
    security((), ("bearer" = [])),
)]
pub(super) async fn create(
    State(state): State<AppState>,
    request_headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let key = idempotency::from_request(
        &request_headers,
        "POST /users",
        &body,
        state.idempotency_ttl,
    )?;
    let new_user = validate::new_user(&body)?;
    let outcome = match key {
        None => Created::New(state.users.create_user(new_user).await?),
        Some(key) => state.users.create_user_idempotent(new_user, &key).await?,
    };
    Ok(created(outcome, |user| format!("/users/{}", user.id)))
}

/// One user.
#[utoipa::path(
    get,
    path = "/users/{id}",
    tag = "users",
    params(("id" = i64, Path, description = "User id", minimum = 1)),
    responses(
        (status = 200, description = "The user", body = mq_core::domain::User),
        (status = 400, description = "The id is not a positive integer", body = super::schema::ErrorBody),
        (status = 404, description = "No such user", body = super::schema::ErrorBody),
        (status = 503, description = "Database unavailable; retry later", body = super::schema::ErrorBody),
    ),
)]
pub(super) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id, "user")?;
    match state.users.get_user(id).await? {
        Some(user) => Ok(Json(user)),
        None => Err(ApiError::not_found(format!("user {id}"))),
    }
}

/// A page of users, ordered by id; follow `next` for the following page.
#[utoipa::path(
    get,
    path = "/users",
    tag = "users",
    params(super::schema::ListUsersQuery),
    responses(
        (status = 200, description = "One page", body = mq_core::domain::Page<mq_core::domain::User>),
        (status = 422, description = "Invalid query parameters (all listed)", body = super::schema::ErrorBody),
        (status = 503, description = "Database unavailable; retry later", body = super::schema::ErrorBody),
    ),
)]
pub(super) async fn list(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let filter = validate::user_filter(&query)?;
    Ok(Json(state.users.list_users(&filter).await?))
}

/// Changes any of a user's name, mobile, latitude and longitude.
#[utoipa::path(
    patch,
    path = "/users/{id}",
    tag = "users",
    request_body = super::schema::UserPatchRequest,
    params(("id" = i64, Path, description = "User id", minimum = 1)),
    responses(
        (status = 200, description = "The user as changed", body = mq_core::domain::User),
        (status = 404, description = "No such user", body = super::schema::ErrorBody),
        (status = 409, description = "The mobile number is taken", body = super::schema::ErrorBody),
        super::schema::CreateErrors,
    ),
    security((), ("bearer" = [])),
)]
pub(super) async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id, "user")?;
    let patch = validate::user_patch(&body)?;
    Ok(Json(state.users.update_user(id, patch).await?))
}

/// Deletes a user who has no products.
#[utoipa::path(
    delete,
    path = "/users/{id}",
    tag = "users",
    params(("id" = i64, Path, description = "User id", minimum = 1)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such user", body = super::schema::ErrorBody),
        (status = 409, description = "The user still has products", body = super::schema::ErrorBody),
        super::schema::ChangeErrors,
    ),
    security((), ("bearer" = [])),
)]
pub(super) async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, "user")?;
    state.users.delete_user(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
