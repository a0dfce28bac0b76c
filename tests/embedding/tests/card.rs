//! The shop's own handler and the nested pipeline routes, over mocked repositories: what a user
//! of product-pipeline writes to unit-test code that sits next to it.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use mq_core::domain::{
    DateTime, MockProductRepo, MockUserRepo, Product, ProductStatus, RepoError, Utc,
};
use product_pipeline::api::AppState;
use product_pipeline::imaging::media::MediaStore;
use serde_json::{json, Value};
use tower::ServiceExt;

/// A key of the shape the pipeline's workers write.
const KEY: &str = "products/7/0-3f2a9c0d4e5b6a71.jpg";

fn lamp(id: i64, status: ProductStatus, compressed: &[&str]) -> Product {
    let at: DateTime<Utc> = "2026-12-01T10:00:00Z".parse().unwrap();
    Product {
        product_id: id,
        user_id: 1,
        product_name: "Desk lamp".into(),
        product_description: None,
        product_images: vec!["https://images.example.com/lamp.jpg".into()],
        product_price: "49.9".parse().unwrap(),
        compressed_product_images: compressed.iter().map(|key| key.to_string()).collect(),
        image_renditions: Vec::new(),
        status,
        image_errors: Vec::new(),
        version: 1,
        created_at: at,
        updated_at: at,
    }
}

/// A repository that answers `get_product(7)` (once per call expected) with `status`.
fn product_seven(status: ProductStatus, compressed: &'static [&'static str]) -> MockProductRepo {
    let mut products = MockProductRepo::new();
    products
        .expect_get_product()
        .withf(|id| *id == 7)
        .returning(move |id| Ok(Some(lamp(id, status, compressed))));
    products
}

fn app_with_media(products: MockProductRepo, media: MediaStore) -> axum::Router {
    let state = AppState::new(Arc::new(MockUserRepo::new()), Arc::new(products), media);
    shop_catalog::app(state)
}

fn app(products: MockProductRepo) -> axum::Router {
    app_with_media(products, MediaStore::in_memory())
}

async fn get_bytes(app: axum::Router, uri: &str) -> (StatusCode, Vec<u8>) {
    let response = app
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, bytes.to_vec())
}

async fn get(app: axum::Router, uri: &str) -> (StatusCode, Value) {
    let (status, bytes) = get_bytes(app, uri).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn the_card_links_an_image_the_nested_pipeline_serves() {
    let media = MediaStore::in_memory();
    media
        .put(KEY, b"the compressed lamp".to_vec().into())
        .await
        .unwrap();
    let app = app_with_media(product_seven(ProductStatus::Done, &[KEY]), media);

    let (status, card) = get(app.clone(), "/shop/products/7/card").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        card,
        json!({"name": "Desk lamp", "price": "49.90", "image": format!("/pipeline/media/{KEY}")})
    );

    let (status, image) = get_bytes(app, card["image"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(image, b"the compressed lamp");
}

#[tokio::test]
async fn a_partial_product_shows_the_image_it_has_a_pending_one_none() {
    let (_, card) = get(
        app(product_seven(ProductStatus::Partial, &[KEY])),
        "/shop/products/7/card",
    )
    .await;
    assert_eq!(card["image"], json!(format!("/pipeline/media/{KEY}")));

    let (status, card) = get(
        app(product_seven(ProductStatus::Pending, &[])),
        "/shop/products/7/card",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(card["image"], Value::Null);
    assert_eq!(card["name"], "Desk lamp");
}

#[tokio::test]
async fn card_of_a_missing_product_is_404_and_a_failing_repository_503() {
    let mut missing = MockProductRepo::new();
    missing
        .expect_get_product()
        .times(1)
        .returning(|_| Ok(None));
    assert_eq!(
        get(app(missing), "/shop/products/8/card").await.0,
        StatusCode::NOT_FOUND
    );

    let mut down = MockProductRepo::new();
    down.expect_get_product()
        .returning(|_| Err(RepoError::Unavailable("connection refused".into())));
    assert_eq!(
        get(app(down), "/shop/products/8/card").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn pipeline_routes_answer_under_their_prefix() {
    let app = app(product_seven(ProductStatus::Done, &[KEY]));

    let (status, body) = get(app.clone(), "/pipeline/products/7").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["product_id"], 7);
    assert_eq!(body["compressed_product_images"], json!([KEY]));

    let (status, _) = get(app.clone(), "/pipeline/healthz").await;
    assert_eq!(status, StatusCode::OK);

    // The pipeline's error format reaches through the nesting.
    let (status, body) = get(app, "/pipeline/products/not-a-number").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["code"].is_string(), "{body}");
}
