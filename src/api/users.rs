//! `POST /users`, `GET /users/{id}`.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use super::{parse_id, validate, ApiError, AppState, JsonObject};

pub(super) async fn create(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<impl IntoResponse, ApiError> {
    let new_user = validate::new_user(&body)?;
    let user = state.users.create_user(new_user).await?;
    let location = format!("/users/{}", user.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(user),
    ))
}

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
