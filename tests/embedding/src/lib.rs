//! A shop's catalog service that embeds product-pipeline.
//!
//! The pipeline's API is nested under `/pipeline`; next to it the shop serves a route of its own,
//! `GET /shop/products/{id}/card`, a product card for its storefront read through the same
//! [`ProductRepo`] the pipeline uses. Its tests stub the repository with `mq-core`'s mocks.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use mq_core::domain::{ProductRepo, ProductStatus};
use product_pipeline::api::AppState;
use serde::Serialize;

/// What the storefront shows of a product.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Card {
    /// The product's name.
    pub name: String,
    /// Its price with two decimals, as the shop prints it.
    pub price: String,
    /// The first compressed image, served by the nested pipeline; `None` until one is ready.
    pub image: Option<String>,
}

/// The shop's application: its own routes and the pipeline's under `/pipeline`.
pub fn app(pipeline: AppState) -> Router {
    let shop = Router::new()
        .route("/shop/products/{id}/card", get(card))
        .with_state(pipeline.products.clone());
    Router::new()
        .nest("/pipeline", product_pipeline::api::router(pipeline))
        .merge(shop)
}

/// `GET /shop/products/{id}/card`: 404 for a product that does not exist, 503 when the
/// repository fails.
pub async fn card(
    State(products): State<Arc<dyn ProductRepo>>,
    Path(id): Path<i64>,
) -> Result<Json<Card>, StatusCode> {
    let product = products
        .get_product(id)
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?
        .ok_or(StatusCode::NOT_FOUND)?;
    // A partial product has the images that could be processed; the others are in its errors.
    let image = match product.status {
        ProductStatus::Done | ProductStatus::Partial => product
            .compressed_product_images
            .first()
            .map(|key| format!("/pipeline/media/{key}")),
        _ => None,
    };
    Ok(Json(Card {
        name: product.product_name,
        price: format!("{:.2}", product.product_price),
        image,
    }))
}
