//! `POST /products`, `GET /products/{id}`, `GET /products`.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use mq_core::headers;

use super::{parse_id, traceparent, validate, ApiError, AppState, JsonObject};

pub(super) async fn create(
    State(state): State<AppState>,
    request_headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<impl IntoResponse, ApiError> {
    let new_product = validate::new_product(&body)?;
    let message_headers = BTreeMap::from([(
        headers::TRACEPARENT.to_owned(),
        traceparent(&request_headers),
    )]);
    let product = state
        .products
        .create_product(new_product, message_headers)
        .await?;
    // The outbox row is committed: let the relay publish it now rather than at its next poll.
    state.outbox_wakeup.notify_one();
    let location = format!("/products/{}", product.product_id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(product),
    ))
}

pub(super) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id, "product")?;
    match state.products.get_product(id).await? {
        Some(product) => Ok(Json(product)),
        None => Err(ApiError::not_found(format!("product {id}"))),
    }
}

pub(super) async fn list(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let filter = validate::product_filter(&query)?;
    Ok(Json(state.products.list_products(&filter).await?))
}
