//! Router tests over mocked repositories: status codes and error bodies for failures that are
//! hard to provoke with a real database.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use mq_core::domain::{Created, MockProductRepo, MockUserRepo, ProductChange, RepoError};
use mq_core::{Error, MockPublisher};
use serde_json::{json, Value};
use tower::ServiceExt;

use super::*;

fn state(products: MockProductRepo, publisher: MockPublisher) -> AppState {
    AppState {
        publisher: Some(Arc::new(publisher)),
        ..AppState::new(
            Arc::new(MockUserRepo::new()),
            Arc::new(products),
            product_pipeline_imaging::media::MediaStore::in_memory(),
        )
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

fn product(id: i64) -> mq_core::domain::Product {
    let now = chrono::Utc::now();
    mq_core::domain::Product {
        product_id: id,
        user_id: 1,
        product_name: "Lamp".into(),
        product_description: None,
        product_images: vec!["http://img.example/a.jpg".into()],
        product_price: 1.into(),
        compressed_product_images: vec![],
        image_renditions: vec![],
        status: mq_core::domain::ProductStatus::Pending,
        image_errors: vec![],
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

const TOKEN: &str = "test-token-0123456789abcdef";

fn with_token(mut state: AppState) -> AppState {
    state.api_token = Some(TOKEN.parse().unwrap());
    state
}

#[tokio::test]
async fn with_a_token_writes_need_it_and_nothing_is_stored_without_it() {
    // No expectation on create_product: a call would panic.
    let state = with_token(state(MockProductRepo::new(), MockPublisher::new()));
    for authorization in [None, Some("Bearer wrong-token-0123456789abc"), Some(TOKEN)] {
        let mut request = post_product();
        if let Some(value) = authorization {
            request
                .headers_mut()
                .insert("authorization", value.parse().unwrap());
        }
        let response = router(state.clone()).oneshot(request).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{authorization:?}"
        );
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }
}

#[tokio::test]
async fn with_a_token_the_right_bearer_writes_and_reads_need_none() {
    let mut products = MockProductRepo::new();
    products
        .expect_create_product()
        .times(1)
        .returning(|_, _| Ok(product(7)));
    products
        .expect_get_product()
        .returning(|id| Ok(Some(product(id))));
    let state = with_token(state(products, MockPublisher::new()));
    let mut request = post_product();
    request
        .headers_mut()
        .insert("authorization", format!("bearer {TOKEN}").parse().unwrap());
    let (status, body) = call(state.clone(), request).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let request = Request::get("/products/7").body(Body::empty()).unwrap();
    let (status, _) = call(state, request).await;
    assert_eq!(status, StatusCode::OK);
}

fn keyed(mut request: Request<Body>, key: &str) -> Request<Body> {
    request
        .headers_mut()
        .insert("idempotency-key", key.parse().unwrap());
    request
}

#[tokio::test]
async fn a_replayed_create_answers_like_the_original_and_does_not_wake_the_relay() {
    let mut products = MockProductRepo::new();
    products
        .expect_create_product_idempotent()
        .withf(|_, _, key| {
            key.key == "k-1" && key.fingerprint.len() == 64 && key.ttl == DEFAULT_IDEMPOTENCY_TTL
        })
        .returning(|_, _, _| Ok(mq_core::domain::Created::Replayed(product(5))));
    let state = state(products, MockPublisher::new());
    let wakeup = state.outbox_wakeup.clone();
    let response = router(state)
        .oneshot(keyed(post_product(), "k-1"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["location"], "/products/5");
    assert_eq!(response.headers()["idempotent-replayed"], "true");
    let woken = tokio::time::timeout(std::time::Duration::from_millis(50), wakeup.notified());
    assert!(woken.await.is_err(), "a replay publishes nothing new");
}

#[tokio::test]
async fn a_key_reused_for_another_body_is_422() {
    let mut products = MockProductRepo::new();
    products
        .expect_create_product_idempotent()
        .returning(|_, _, key| Err(RepoError::IdempotencyKeyReused(key.key.clone())));
    let (status, body) = call(
        state(products, MockPublisher::new()),
        keyed(post_product(), "k-2"),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["code"], "idempotency_key_reused");
}

#[tokio::test]
async fn a_malformed_key_is_400_before_anything_is_stored() {
    let (status, body) = call(
        state(MockProductRepo::new(), MockPublisher::new()),
        keyed(post_product(), "has spaces"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_idempotency_key");
}

#[tokio::test]
async fn a_missing_image_is_404_in_the_error_format() {
    let request = Request::get("/media/products/1/0-missing.jpg")
        .body(Body::empty())
        .unwrap();
    let (status, body) = call(state(MockProductRepo::new(), MockPublisher::new()), request).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
}

/// Log lines written while the guard lives.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn the_token_never_reaches_the_logs() {
    let logs = CapturedLogs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let wrong = "Bearer wrong-token-0123456789abc";
    let mut products = MockProductRepo::new();
    products
        .expect_create_product()
        .returning(|_, _| Err(RepoError::UnknownUser(1)));
    let state = with_token(state(products, MockPublisher::new()));
    for authorization in [wrong.to_owned(), format!("Bearer {TOKEN}")] {
        let mut request = post_product();
        request
            .headers_mut()
            .insert("authorization", authorization.parse().unwrap());
        router(state.clone()).oneshot(request).await.unwrap();
    }
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("/products"), "requests are logged: {logs}");
    assert!(
        !logs.contains(TOKEN) && !logs.contains("wrong-token"),
        "{logs}"
    );
}

fn change_request(method: &str, uri: &str, body: Option<Value>) -> Request<Body> {
    let builder = Request::builder().method(method).uri(uri);
    match body {
        Some(body) => builder
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    }
}

/// A PATCH lists every failing field and never reaches the repository.
#[tokio::test]
async fn a_patch_lists_every_failing_field_and_writes_nothing() {
    let mut products = MockProductRepo::new();
    products.expect_change_product().never();
    let body = json!({"user_id": 2, "product_name": "", "product_price": "1.001", "product_images": ["ftp://x"], "product_description": 5});
    let request = change_request("PATCH", "/products/7", Some(body));
    let (status, body) = call(state(products, MockPublisher::new()), request).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let mut fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|detail| detail["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "product_description",
            "product_images[0]",
            "product_name",
            "product_price",
            "user_id"
        ]
    );

    let mut products = MockProductRepo::new();
    products.expect_change_product().never();
    let request = change_request("PATCH", "/products/7", Some(json!({"unknown": 1})));
    let (status, body) = call(state(products, MockPublisher::new()), request).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["details"][0]["field"], "body");
}

/// `If-Match` reaches the repository as a version; a stale one is a 412.
#[tokio::test]
async fn a_stale_if_match_is_412() {
    let mut products = MockProductRepo::new();
    products
        .expect_change_product()
        .withf(|id, change, if_version, _, key| {
            *id == 7 && *change == ProductChange::Delete && *if_version == Some(3) && key.is_none()
        })
        .returning(|id, _, _, _, _| {
            Err(RepoError::VersionMismatch {
                entity: "product",
                id,
                expected: 3,
                current: 4,
            })
        });
    let mut request = change_request("DELETE", "/products/7", None);
    request
        .headers_mut()
        .insert("if-match", "\"3-done\"".parse().unwrap());
    let (status, body) = call(state(products, MockPublisher::new()), request).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    assert_eq!(body["error"]["code"], "precondition_failed");
}

/// GET answers the product's tag, and 304 for it.
#[tokio::test]
async fn get_answers_304_for_the_current_etag() {
    let mut products = MockProductRepo::new();
    products
        .expect_get_product()
        .returning(|id| Ok(Some(product(id))));
    let state = state(products, MockPublisher::new());
    let response = router(state.clone())
        .oneshot(change_request("GET", "/products/7", None))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let tag = response.headers()["etag"].clone();
    assert_eq!(tag, "\"1-pending\"");
    let mut request = change_request("GET", "/products/7", None);
    request.headers_mut().insert("if-none-match", tag);
    let response = router(state).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert!(response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .is_empty());
}

/// A reprocess retried with its key is replayed (202 again, marked), and the relay is woken only
/// for the first.
#[tokio::test]
async fn a_replayed_reprocess_is_marked() {
    let mut products = MockProductRepo::new();
    products
        .expect_change_product()
        .withf(|_, change, _, _, key| {
            *change == ProductChange::Reprocess
                && key.as_ref().is_some_and(|key| key.key == "retry-1")
        })
        .returning(|id, _, _, _, _| Ok(Created::Replayed(product(id))));
    let mut request = change_request("POST", "/products/7/reprocess", None);
    request
        .headers_mut()
        .insert("idempotency-key", "retry-1".parse().unwrap());
    let response = router(state(products, MockPublisher::new()))
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["idempotent-replayed"], "true");
}

/// Deleting a user who still has products is a 409.
#[tokio::test]
async fn deleting_a_user_with_products_is_409() {
    let mut users = MockUserRepo::new();
    users
        .expect_delete_user()
        .returning(|id| Err(RepoError::UserHasProducts(id)));
    let state = AppState {
        users: Arc::new(users),
        ..state(MockProductRepo::new(), MockPublisher::new())
    };
    let (status, body) = call(state, change_request("DELETE", "/users/3", None)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("still has products"));
}
