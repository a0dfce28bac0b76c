//! Router tests over mocked repositories: status codes and error bodies for failures that are
//! hard to provoke with a real database.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use mq_core::domain::{MockProductRepo, MockUserRepo, RepoError};
use mq_core::{Error, MockPublisher};
use serde_json::{json, Value};
use tower::ServiceExt;

use super::*;

fn state(products: MockProductRepo, publisher: MockPublisher) -> AppState {
    AppState {
        users: Arc::new(MockUserRepo::new()),
        products: Arc::new(products),
        publisher: Some(Arc::new(publisher)),
        outbox_wakeup: Arc::new(Notify::new()),
        media_dir: std::env::temp_dir(),
        limits: HttpLimits::default(),
    }
}

async fn call(state: AppState, request: Request<Body>) -> (StatusCode, Value) {
    let response = router(state).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn post_product() -> Request<Body> {
    let body = json!({"user_id": 1, "product_name": "Lamp", "product_images": ["http://img.example/a.jpg"], "product_price": 1});
    Request::post("/products")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn database_down_is_503_with_the_error_body() {
    let mut products = MockProductRepo::new();
    products
        .expect_create_product()
        .returning(|_, _| Err(RepoError::Unavailable("connection refused".into())));
    let (status, body) = call(state(products, MockPublisher::new()), post_product()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(body["error"]["message"].as_str().unwrap().contains("retry"));
}

#[tokio::test]
async fn the_trace_context_goes_into_the_outbox_headers() {
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let mut products = MockProductRepo::new();
    products
        .expect_create_product()
        .withf(move |_, headers| {
            headers.get("traceparent").map(String::as_str) == Some(traceparent)
        })
        .returning(|_, _| Err(RepoError::UnknownUser(1)));
    let mut request = post_product();
    request
        .headers_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    let (status, body) = call(state(products, MockPublisher::new()), request).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["details"][0]["field"], "user_id");
}

#[tokio::test]
async fn readyz_reports_what_is_down() {
    let mut products = MockProductRepo::new();
    products.expect_ping().returning(|| Ok(()));
    let mut publisher = MockPublisher::new();
    publisher.expect_health().returning(|| {
        Err(Error::Unavailable {
            message: "no connection".into(),
            source: None,
        })
    });
    let request = Request::get("/readyz").body(Body::empty()).unwrap();
    let (status, body) = call(state(products, publisher), request).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["details"][0]["field"], "broker");
}

#[tokio::test]
async fn unknown_routes_answer_in_the_error_format() {
    let request = Request::get("/nope").body(Body::empty()).unwrap();
    let (status, body) = call(state(MockProductRepo::new(), MockPublisher::new()), request).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
}
