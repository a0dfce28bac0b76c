//! `PATCH /products/{id}`, `DELETE /products/{id}`, `POST /products/{id}/reprocess`: the writes
//! that change a product after it was created (see DESIGN.md "Lifecycle").

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use mq_core::domain::{Created, Product, ProductChange, RepoError};
use serde_json::Map;

use super::products::ProductView;
use super::{
    idempotency, mark_replayed, message_headers, parse_id, validate, versions, ApiError, AppState,
    JsonObject,
};

/// Changes any of a product's name, description, price and images. New images (or changed
/// ones) send the product back to `pending` and have it processed again.
#[utoipa::path(
    patch,
    path = "/products/{id}",
    tag = "products",
    request_body = super::schema::ProductPatchRequest,
    params(
        ("id" = i64, Path, description = "Product id", minimum = 1),
        super::schema::IfMatchHeader,
        super::schema::IdempotencyHeader,
    ),
    responses(
        (status = 200, description = "The product as changed (unchanged when no field differed)", body = ProductView,
            headers(("ETag" = String, description = "The new version's tag"))),
        (status = 404, description = "No such product", body = super::schema::ErrorBody),
        (status = 412, description = "`If-Match` names a version that is no longer current", body = super::schema::ErrorBody),
        super::schema::CreateErrors,
    ),
    security((), ("bearer" = [])),
)]
pub(super) async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "product")?;
    let route = versions::with_precondition(format!("PATCH /products/{id}"), &headers);
    let key = idempotency::from_request(&headers, &route, &body, state.idempotency_ttl)?;
    let patch = validate::product_patch(&body)?;
    let outcome = change(&state, id, ProductChange::Update(patch), &headers, key).await?;
    Ok(with_product(StatusCode::OK, outcome, &state))
}

/// Processes a product's images again (e.g. after the sources changed at the same URLs).
#[utoipa::path(
    post,
    path = "/products/{id}/reprocess",
    tag = "products",
    params(
        ("id" = i64, Path, description = "Product id", minimum = 1),
        super::schema::IfMatchHeader,
        super::schema::IdempotencyHeader,
    ),
    responses(
        (status = 202, description = "Back to `pending` under a new version; watch `status`", body = ProductView,
            headers(("ETag" = String, description = "The new version's tag"))),
        (status = 404, description = "No such product", body = super::schema::ErrorBody),
        (status = 412, description = "`If-Match` names a version that is no longer current", body = super::schema::ErrorBody),
        super::schema::ChangeErrors,
    ),
    security((), ("bearer" = [])),
)]
pub(super) async fn reprocess(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "product")?;
    let route = versions::with_precondition(format!("POST /products/{id}/reprocess"), &headers);
    let key = idempotency::from_request(&headers, &route, &Map::new(), state.idempotency_ttl)?;
    let outcome = change(&state, id, ProductChange::Reprocess, &headers, key).await?;
    Ok(with_product(StatusCode::ACCEPTED, outcome, &state))
}

/// Deletes a product; its stored images are deleted by the image worker.
#[utoipa::path(
    delete,
    path = "/products/{id}",
    tag = "products",
    params(
        ("id" = i64, Path, description = "Product id", minimum = 1),
        super::schema::IfMatchHeader,
        super::schema::IdempotencyHeader,
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such product", body = super::schema::ErrorBody),
        (status = 412, description = "`If-Match` names a version that is no longer current", body = super::schema::ErrorBody),
        super::schema::ChangeErrors,
    ),
    security((), ("bearer" = [])),
)]
pub(super) async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "product")?;
    let route = versions::with_precondition(format!("DELETE /products/{id}"), &headers);
    let key = idempotency::from_request(&headers, &route, &Map::new(), state.idempotency_ttl)?;
    let outcome = change(&state, id, ProductChange::Delete, &headers, key).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    mark_replayed(&mut response, outcome.is_replay());
    Ok(response)
}

/// Runs `change` on product `id` under the request's `If-Match` and `Idempotency-Key`, and
/// wakes the outbox relay for the row it wrote.
async fn change(
    state: &AppState,
    id: i64,
    change: ProductChange,
    headers: &HeaderMap,
    key: Option<mq_core::domain::IdempotencyKey>,
) -> Result<Created<Product>, ApiError> {
    let if_version = match versions::if_match(headers)? {
        None => None,
        Some(versions) if versions.len() == 1 => Some(versions[0]),
        // Several tags: the one of the current version, if listed. The repository checks it
        // again in the write's transaction, so a change in between is still a 412.
        Some(versions) => {
            let current = state
                .products
                .get_product(id)
                .await?
                .ok_or_else(versions::precondition_failed)?;
            Some(
                versions
                    .iter()
                    .copied()
                    .find(|&version| version == current.version)
                    .ok_or_else(versions::precondition_failed)?,
            )
        }
    };
    let outcome = state
        .products
        .change_product(id, change, if_version, message_headers(headers), key)
        .await
        .map_err(|error| match error {
            // RFC 9110 §13.1.1: If-Match on a resource that does not exist is false.
            RepoError::NotFound { .. } if if_version.is_some() => versions::precondition_failed(),
            other => other.into(),
        })?;
    if !outcome.is_replay() {
        state.outbox_wakeup.notify_one();
    }
    Ok(outcome)
}

/// `status` with the product's view and its `ETag`.
fn with_product(status: StatusCode, outcome: Created<Product>, state: &AppState) -> Response {
    let replayed = outcome.is_replay();
    let product = outcome.into_inner();
    let tag = versions::etag_header(&product);
    let mut response = (
        status,
        tag,
        Json(ProductView::new(product, &state.media_links)),
    )
        .into_response();
    mark_replayed(&mut response, replayed);
    response
}
