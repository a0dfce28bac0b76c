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
        status,
        image_errors: Vec::new(),
        created_at: at,
        updated_at: at,
    }
}

fn app(products: MockProductRepo) -> axum::Router {
    let state = AppState::new(
        Arc::new(MockUserRepo::new()),
        Arc::new(products),
        MediaStore::in_memory(),
    );
    shop_catalog::app(state)
}

async fn get(app: axum::Router, uri: &str) -> (StatusCode, Value) {
    let response = app
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn card_of_a_processed_product_links_its_first_image() {
    let mut products = MockProductRepo::new();
    products
        .expect_get_product()
        .withf(|id| *id == 7)
        .times(1)
        .returning(|id| {
            Ok(Some(lamp(
                id,
                ProductStatus::Done,
                &["products/7/0-ab.jpg"],
            )))
        });

    let (status, body) = get(app(products), "/shop/products/7/card").await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"name": "Desk lamp", "price": "49.90", "image": "/pipeline/media/products/7/0-ab.jpg"})
    );
}

#[tokio::test]
async fn card_of_a_pending_product_has_no_image_yet() {
    let mut products = MockProductRepo::new();
    products
        .expect_get_product()
        .returning(|id| Ok(Some(lamp(id, ProductStatus::Pending, &[]))));

    let (status, body) = get(app(products), "/shop/products/7/card").await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["image"], Value::Null);
}

#[tokio::test]
async fn card_of_a_missing_product_is_404_and_a_failing_repository_503() {
    let mut missing = MockProductRepo::new();
    missing.expect_get_product().returning(|_| Ok(None));
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
    let mut products = MockProductRepo::new();
    products
        .expect_get_product()
        .withf(|id| *id == 7)
        .returning(|id| {
            Ok(Some(lamp(
                id,
                ProductStatus::Done,
                &["products/7/0-ab.jpg"],
            )))
        });
    let app = app(products);

    let (status, body) = get(app.clone(), "/pipeline/products/7").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["product_id"], 7);
    assert_eq!(
        body["compressed_product_images"],
        json!(["products/7/0-ab.jpg"])
    );

    let (status, _) = get(app.clone(), "/pipeline/healthz").await;
    assert_eq!(status, StatusCode::OK);

    // The pipeline's error format reaches through the nesting.
    let (status, body) = get(app, "/pipeline/products/not-a-number").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["code"].is_string(), "{body}");
}
