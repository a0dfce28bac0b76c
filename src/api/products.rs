//! `POST /products`, `GET /products/{id}`, `GET /products`; the changes are in
//! [`super::product_changes`].

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use mq_core::domain::{Created, Page, Product};
use serde::Serialize;
use utoipa::ToSchema;

use super::{
    created, idempotency, message_headers, parse_id, validate, versions, ApiError, AppState,
    JsonObject, MediaLinks,
};

/// A product as the API shows it: the stored row plus where to fetch its compressed images.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductView {
    #[serde(flatten)]
    product: Product,
    /// URLs of `compressed_product_images`, entry for entry: under `MEDIA_PUBLIC_URL` when the
    /// server sets it, else this API's `/media/` (a path on this host).
    #[schema(example = json!(["https://cdn.example.com/media/products/1/0-1024-3f2a9c0d1e2f3a4b.jpg"]))]
    compressed_product_image_urls: Vec<String>,
}

impl ProductView {
    /// The view of `product`, with its image URLs under `links`.
    pub(super) fn new(mut product: Product, links: &MediaLinks) -> Self {
        for rendition in &mut product.image_renditions {
            rendition.url = Some(links.url(&rendition.path));
        }
        let compressed_product_image_urls = product
            .compressed_product_images
            .iter()
            .map(|key| links.url(key))
            .collect();
        Self {
            product,
            compressed_product_image_urls,
        }
    }
}

/// Stores a product; its images are processed asynchronously (watch `status`).
#[utoipa::path(
    post,
    path = "/products",
    tag = "products",
    request_body = super::schema::NewProductRequest,
    params(
        super::schema::IdempotencyHeader,
        ("traceparent" = Option<String>, Header, description = "W3C trace context, carried to the image worker"),
    ),
    responses(
        (status = 201, description = "Stored with status `pending`", body = ProductView,
            headers(("Location" = String, description = "`/products/{id}`"),
                    ("Idempotent-Replayed" = Option<bool>, description = "`true` when an earlier request with the same key created the product"))),
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
        "POST /products",
        &body,
        state.idempotency_ttl,
    )?;
    let new_product = validate::new_product(&body)?;
    let message_headers = message_headers(&request_headers);
    let products = &state.products;
    let outcome = match key {
        None => Created::New(
            products
                .create_product(new_product, message_headers)
                .await?,
        ),
        Some(key) => {
            products
                .create_product_idempotent(new_product, message_headers, &key)
                .await?
        }
    };
    if !outcome.is_replay() {
        // The outbox row is committed: let the relay publish it now rather than at its next poll.
        state.outbox_wakeup.notify_one();
    }
    let outcome = outcome.map(|product| ProductView::new(product, &state.media_links));
    Ok(created(outcome, |view| {
        format!("/products/{}", view.product.product_id)
    }))
}

/// One product, with its processing status and compressed images.
#[utoipa::path(
    get,
    path = "/products/{id}",
    tag = "products",
    params(
        ("id" = i64, Path, description = "Product id", minimum = 1),
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` of an earlier answer: 304 while it is current"),
    ),
    responses(
        (status = 200, description = "The product", body = ProductView,
            headers(("ETag" = String, description = "Changes with the version and the status"))),
        (status = 304, description = "`If-None-Match` names the current `ETag`",
            headers(("ETag" = String, description = "The current tag"))),
        (status = 400, description = "The id is not a positive integer", body = super::schema::ErrorBody),
        (status = 404, description = "No such product", body = super::schema::ErrorBody),
        (status = 503, description = "Database unavailable; retry later", body = super::schema::ErrorBody),
    ),
)]
pub(super) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "product")?;
    let product = state
        .products
        .get_product(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("product {id}")))?;
    let tag = versions::etag_header(&product);
    if versions::not_modified(&headers, &product) {
        return Ok((axum::http::StatusCode::NOT_MODIFIED, tag).into_response());
    }
    Ok((tag, Json(ProductView::new(product, &state.media_links))).into_response())
}

/// A page of products, filtered; follow `next` for the following page.
#[utoipa::path(
    get,
    path = "/products",
    tag = "products",
    params(super::schema::ListProductsQuery),
    responses(
        (status = 200, description = "One page", body = mq_core::domain::Page<ProductView>),
        (status = 422, description = "Invalid query parameters (all listed)", body = super::schema::ErrorBody),
        (status = 503, description = "Database unavailable; retry later", body = super::schema::ErrorBody),
    ),
)]
pub(super) async fn list(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let filter = validate::product_filter(&query)?;
    let page = state.products.list_products(&filter).await?;
    Ok(Json(Page {
        items: page
            .items
            .into_iter()
            .map(|product| ProductView::new(product, &state.media_links))
            .collect(),
        next: page.next,
    }))
}
