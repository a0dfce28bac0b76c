//! The end-to-end scenarios; every backend combination runs all of them.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use futures::StreamExt;
use mq_core::{headers, Message};
use product_pipeline::app::Roles;
use serde_json::{json, Value};

use crate::support::*;

/// Checks a finished product's images: JPEGs in the media store at the recorded keys, ≤ 1024 px,
/// served under /media with the caching headers, no duplicates; every rendition listed (320 and
/// 1024 px, JPEG and WebP, by default), stored, served at its `url` and decoding to its size;
/// nothing else stored.
async fn assert_images_stored(stack: &Stack, app: &App, product: &Value, expected: usize) {
    let id = product["product_id"].as_i64().unwrap();
    let paths: Vec<&str> = product["compressed_product_images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(paths.len(), expected, "{product}");
    assert_eq!(
        paths.iter().collect::<HashSet<_>>().len(),
        expected,
        "no duplicate paths: {paths:?}"
    );
    for (index, path) in paths.iter().enumerate() {
        assert!(
            path.starts_with(&format!("products/{id}/{index}-")),
            "path {path} belongs to image {index}"
        );
        let bytes = stack.read_media(path).await;
        assert_eq!(&bytes[..3], &[0xFF, 0xD8, 0xFF], "{path} is a JPEG");
        let image = image::load_from_memory(&bytes).expect("a decodable image");
        assert!(
            image.width() <= 1024 && image.height() <= 1024,
            "{path} is {}x{}",
            image.width(),
            image.height()
        );
        let served = client()
            .get(app.url(&format!("/media/{path}")))
            .send()
            .await
            .unwrap();
        assert_eq!(served.status().as_u16(), 200);
        let headers = served.headers();
        assert_eq!(headers["content-type"], "image/jpeg");
        assert_eq!(
            headers["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert!(headers.contains_key("etag"), "{headers:?}");
        assert_eq!(served.bytes().await.unwrap(), bytes);
    }
    let renditions = product["image_renditions"].as_array().unwrap();
    assert_eq!(renditions.len(), 4 * expected, "{product}");
    for rendition in renditions {
        let path = rendition["path"].as_str().unwrap();
        let index = rendition["index"].as_u64().unwrap();
        assert!(
            path.starts_with(&format!("products/{id}/{index}-")),
            "{path}"
        );
        let served = client()
            .get(app.url(rendition["url"].as_str().unwrap()))
            .send()
            .await
            .unwrap();
        assert_eq!(served.status().as_u16(), 200, "{path}");
        let content_type = match rendition["format"].as_str().unwrap() {
            "jpeg" => "image/jpeg",
            "webp" => "image/webp",
            other => panic!("unexpected format {other}"),
        };
        assert_eq!(served.headers()["content-type"], content_type, "{path}");
        let bytes = served.bytes().await.unwrap();
        assert_eq!(bytes.len() as u64, rendition["bytes"].as_u64().unwrap());
        let image = image::load_from_memory(&bytes).expect("a decodable rendition");
        assert_eq!(
            (u64::from(image.width()), u64::from(image.height())),
            (
                rendition["width"].as_u64().unwrap(),
                rendition["height"].as_u64().unwrap()
            ),
            "{path}"
        );
    }
    for path in &paths {
        assert!(
            renditions
                .iter()
                .any(|r| r["path"] == *path && r["format"] == "jpeg"),
            "the primary {path} is one of the renditions"
        );
    }
    assert_eq!(
        stack.media_keys(id).await,
        recorded_keys(product),
        "exactly the recorded objects for product {id}"
    );
}

/// Products with 1 and 5 images end `done` with valid JPEGs ≤ 1024 px at the recorded paths.
pub async fn images_end_done(stack: &Stack) {
    let images = ImageServer::start().await;
    let app = stack.start(Roles::ALL).await;
    let user = create_user(&app).await;
    let one = create_product(&app, user, &[images.image(2000, 1500, "big")]).await;
    let five: Vec<String> = (0..5)
        .map(|i| images.image(200 + i * 300, 900, &format!("p{i}")))
        .collect();
    let five = create_product(&app, user, &five).await;

    let product = wait_final(&app, one, PROCESSING).await;
    assert_eq!(product["status"], "done", "{product}");
    assert_eq!(product["image_errors"], json!([]));
    assert_images_stored(stack, &app, &product, 1).await;
    let bytes = stack
        .read_media(product["compressed_product_images"][0].as_str().unwrap())
        .await;
    let image = image::load_from_memory(&bytes).unwrap();
    assert_eq!(
        (image.width(), image.height()),
        (1024, 768),
        "2000x1500 fits inside 1024x1024"
    );

    let product = wait_final(&app, five, PROCESSING).await;
    assert_eq!(product["status"], "done", "{product}");
    assert_images_stored(stack, &app, &product, 5).await;
    app.stop().await;
}

/// A product with one 404 image ends `partial` with that image in `image_errors`.
pub async fn missing_image_ends_partial(stack: &Stack) {
    let images = ImageServer::start().await;
    let app = stack.start(Roles::ALL).await;
    let user = create_user(&app).await;
    let id = create_product(
        &app,
        user,
        &[images.image(640, 480, "ok"), images.missing()],
    )
    .await;
    let product = wait_final(&app, id, PROCESSING).await;
    assert_eq!(product["status"], "partial", "{product}");
    assert_eq!(
        product["compressed_product_images"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let errors = product["image_errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{product}");
    assert_eq!(errors[0]["index"], 1);
    assert_eq!(errors[0]["url"], images.missing());
    assert!(
        errors[0]["reason"].as_str().unwrap().contains("404"),
        "{}",
        errors[0]["reason"]
    );
    app.stop().await;
}

enum Body {
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

async fn send(app: &App, path: &str, body: &Body) -> (StatusCode, Value) {
    let request = client().post(app.url(path));
    let request = match body {
        Body::Json(value) => request.json(value),
        Body::Raw(content_type, bytes) => request
            .header("content-type", *content_type)
            .body(bytes.clone()),
    };
    let response = request.send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Every validation rule of the contract, table-tested: status, error code and the `details`
/// fields; nothing is stored for a rejected request.
pub async fn validation_rules(stack: &Stack) {
    let app = stack.start(Roles::API).await;
    let user = create_user(&app).await;
    let url = "https://img.example/a.jpg";
    let product = |patch: Value| {
        let mut body = json!({"user_id": user, "product_name": "Lamp", "product_description": "d", "product_images": [url], "product_price": 9.5});
        for (key, value) in patch.as_object().unwrap() {
            if value.is_null() {
                body.as_object_mut().unwrap().remove(key);
            } else {
                body[key] = value.clone();
            }
        }
        Body::Json(body)
    };
    let user_body = |patch: Value| {
        let mut body =
            json!({"name": "Ada", "mobile": "+4915100000001", "latitude": 10.0, "longitude": 20.0});
        for (key, value) in patch.as_object().unwrap() {
            if value.is_null() {
                body.as_object_mut().unwrap().remove(key);
            } else {
                body[key] = value.clone();
            }
        }
        Body::Json(body)
    };
    let long_url = format!("https://img.example/{}.jpg", "a".repeat(2040));
    let cases: Vec<(&str, &str, Body, u16, &[&str])> = vec![
        (
            "empty object",
            "/products",
            Body::Json(json!({})),
            422,
            &["user_id", "product_name", "product_images", "product_price"],
        ),
        (
            "user_id text",
            "/products",
            product(json!({"user_id": "seven"})),
            422,
            &["user_id"],
        ),
        (
            "user_id zero",
            "/products",
            product(json!({"user_id": 0})),
            422,
            &["user_id"],
        ),
        (
            "user_id unknown",
            "/products",
            product(json!({"user_id": 987654321})),
            422,
            &["user_id"],
        ),
        (
            "name empty",
            "/products",
            product(json!({"product_name": ""})),
            422,
            &["product_name"],
        ),
        (
            "name blank",
            "/products",
            product(json!({"product_name": "   "})),
            422,
            &["product_name"],
        ),
        (
            "name 256 chars",
            "/products",
            product(json!({"product_name": "é".repeat(256)})),
            422,
            &["product_name"],
        ),
        (
            "name not text",
            "/products",
            product(json!({"product_name": 5})),
            422,
            &["product_name"],
        ),
        (
            "description 10001",
            "/products",
            product(json!({"product_description": "x".repeat(10_001)})),
            422,
            &["product_description"],
        ),
        (
            "description number",
            "/products",
            product(json!({"product_description": 1})),
            422,
            &["product_description"],
        ),
        (
            "no images",
            "/products",
            product(json!({"product_images": []})),
            422,
            &["product_images"],
        ),
        (
            "21 images",
            "/products",
            product(json!({"product_images": vec![url; 21]})),
            422,
            &["product_images"],
        ),
        (
            "images not a list",
            "/products",
            product(json!({"product_images": url})),
            422,
            &["product_images"],
        ),
        (
            "ftp image",
            "/products",
            product(json!({"product_images": [url, "ftp://img.example/a.jpg"]})),
            422,
            &["product_images[1]"],
        ),
        (
            "file image",
            "/products",
            product(json!({"product_images": ["file:///etc/passwd"]})),
            422,
            &["product_images[0]"],
        ),
        (
            "not a url",
            "/products",
            product(json!({"product_images": ["lamp.jpg"]})),
            422,
            &["product_images[0]"],
        ),
        (
            "url too long",
            "/products",
            product(json!({"product_images": [long_url]})),
            422,
            &["product_images[0]"],
        ),
        (
            "image not text",
            "/products",
            product(json!({"product_images": [7]})),
            422,
            &["product_images[0]"],
        ),
        (
            "price negative",
            "/products",
            product(json!({"product_price": -1})),
            422,
            &["product_price"],
        ),
        (
            "price 3 decimals",
            "/products",
            product(json!({"product_price": 1.234})),
            422,
            &["product_price"],
        ),
        (
            "price text",
            "/products",
            product(json!({"product_price": "cheap"})),
            422,
            &["product_price"],
        ),
        (
            "price too big",
            "/products",
            product(json!({"product_price": 10_000_000_000u64})),
            422,
            &["product_price"],
        ),
        (
            "price missing",
            "/products",
            product(json!({"product_price": null})),
            422,
            &["product_price"],
        ),
        (
            "price bool",
            "/products",
            product(json!({"product_price": true})),
            422,
            &["product_price"],
        ),
        (
            "several at once",
            "/products",
            product(json!({"product_name": "", "product_price": -5})),
            422,
            &["product_name", "product_price"],
        ),
        (
            "json array",
            "/products",
            Body::Json(json!([1, 2])),
            422,
            &[],
        ),
        (
            "malformed json",
            "/products",
            Body::Raw("application/json", b"{\"user_id\": ".to_vec()),
            400,
            &[],
        ),
        (
            "not json",
            "/products",
            Body::Raw("text/plain", b"user_id=1".to_vec()),
            415,
            &[],
        ),
        (
            "no content type",
            "/products",
            Body::Raw("", b"{}".to_vec()),
            415,
            &[],
        ),
        (
            "body over limit",
            "/products",
            Body::Raw("application/json", vec![b' '; 300 * 1024]),
            413,
            &[],
        ),
        (
            "user empty",
            "/users",
            Body::Json(json!({})),
            422,
            &["name", "mobile", "latitude", "longitude"],
        ),
        (
            "user name 101",
            "/users",
            user_body(json!({"name": "n".repeat(101)})),
            422,
            &["name"],
        ),
        (
            "mobile short",
            "/users",
            user_body(json!({"mobile": "123456"})),
            422,
            &["mobile"],
        ),
        (
            "mobile long",
            "/users",
            user_body(json!({"mobile": "+1234567890123456"})),
            422,
            &["mobile"],
        ),
        (
            "mobile letters",
            "/users",
            user_body(json!({"mobile": "+49abc12345"})),
            422,
            &["mobile"],
        ),
        (
            "mobile number",
            "/users",
            user_body(json!({"mobile": 4915100000001u64})),
            422,
            &["mobile"],
        ),
        (
            "latitude 91",
            "/users",
            user_body(json!({"latitude": 91})),
            422,
            &["latitude"],
        ),
        (
            "longitude -181",
            "/users",
            user_body(json!({"longitude": -180.5})),
            422,
            &["longitude"],
        ),
        (
            "latitude text",
            "/users",
            user_body(json!({"latitude": "north"})),
            422,
            &["latitude"],
        ),
        (
            "user malformed",
            "/users",
            Body::Raw("application/json", b"{".to_vec()),
            400,
            &[],
        ),
    ];
    for (name, path, body, status, fields) in &cases {
        let (got, answer) = send(&app, path, body).await;
        assert_eq!(got.as_u16(), *status, "{name}: {answer}");
        let error = &answer["error"];
        assert!(
            error["code"].is_string() && error["message"].is_string(),
            "{name}: error body {answer}"
        );
        let details = error_fields(&answer).unwrap_or_else(|| panic!("{name}: {answer}"));
        assert_eq!(details, *fields, "{name}: {answer}");
    }
    // Nothing was stored by any rejected request.
    let (_, listing) = get_json(&app, &format!("/products?user_id={user}&limit=100")).await;
    assert_eq!(listing["items"], json!([]), "rejected products were stored");
    let (status, _) = get_json(&app, &format!("/users/{}", user + 1)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a rejected user was stored");

    // The boundaries themselves are accepted.
    let accepted = [
        product(
            json!({"product_name": "é".repeat(255), "product_description": "x".repeat(10_000)}),
        ),
        product(json!({"product_images": vec![url; 20], "product_price": 0})),
        product(json!({"product_price": "9999999999.99", "product_description": null})),
        product(json!({"product_price": 0.1})),
    ];
    for body in &accepted {
        let (status, answer) = send(&app, "/products", body).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
    let (_, listing) = get_json(&app, &format!("/products?user_id={user}&limit=100")).await;
    let prices: Vec<String> = listing["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["product_price"].to_string())
        .collect();
    assert_eq!(
        prices,
        ["9.5", "0.0", "9999999999.99", "0.1"],
        "prices exact"
    );
    for path in ["/products/abc", "/users/-1"] {
        let (status, answer) = get_json(&app, path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {answer}");
    }
    let (status, _) = get_json(&app, "/products/999999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

/// Unknown user → 422 on `user_id`; a reused mobile → 409.
pub async fn unknown_user_and_duplicate_mobile(stack: &Stack) {
    let app = stack.start(Roles::API).await;
    let mobile = format!("+1{:010}", fastrand::u64(..10_000_000_000));
    let body = json!({"name": "Ada", "mobile": mobile, "latitude": 0, "longitude": 0});
    let (status, _) = post(&app, "/users", &body).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, answer) = post(&app, "/users", &body).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["details"][0]["field"], "mobile");
    let (status, answer) = post(&app, "/products", &json!({"user_id": 424242, "product_name": "x", "product_images": ["http://a.example/x.jpg"], "product_price": 1})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["details"][0]["field"], "user_id");
    app.stop().await;
}

/// Listing filters (user, price range, name contains) and keyset pagination.
pub async fn list_filters_and_pagination(stack: &Stack) {
    let app = stack.start(Roles::API).await;
    let (ada, bob) = (create_user(&app).await, create_user(&app).await);
    let rows = [
        (ada, "Red Lamp", "5"),
        (ada, "Blue lamp", "10.50"),
        (ada, "Red chair", "15"),
        (bob, "Green LAMP", "20"),
        (bob, "Desk", "25.25"),
    ];
    let mut ids = Vec::new();
    for (user, name, price) in rows {
        let body = json!({"user_id": user, "product_name": name, "product_images": ["http://img.example/x.jpg"], "product_price": price});
        let (status, product) = post(&app, "/products", &body).await;
        assert_eq!(status, StatusCode::CREATED);
        ids.push(product["product_id"].as_i64().unwrap());
    }
    let names = |listing: &Value| -> Vec<String> {
        listing["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["product_name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, listing) = get_json(&app, &format!("/products?user_id={ada}")).await;
    assert_eq!(names(&listing), ["Red Lamp", "Blue lamp", "Red chair"]);
    let (_, listing) = get_json(&app, &format!("/products?user_id={bob}&min_price=20.5")).await;
    assert_eq!(names(&listing), ["Desk"]);
    let (_, listing) = get_json(
        &app,
        &format!("/products?min_price=10.5&max_price=20&after={}", ids[0] - 1),
    )
    .await;
    assert_eq!(names(&listing), ["Blue lamp", "Red chair", "Green LAMP"]);
    let (_, listing) = get_json(&app, &format!("/products?q=lamp&after={}", ids[0] - 1)).await;
    assert_eq!(
        names(&listing),
        ["Red Lamp", "Blue lamp", "Green LAMP"],
        "name contains, case-insensitive"
    );

    let mut seen = Vec::new();
    let mut next = Some(ids[0] - 1);
    while let Some(after) = next {
        let (status, page) = get_json(&app, &format!("/products?limit=2&after={after}")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page["items"].as_array().unwrap().len() <= 2);
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["product_id"].as_i64().unwrap()),
        );
        next = page["next"].as_i64();
    }
    assert_eq!(seen, ids, "pages neither skip nor repeat");
    for bad in [
        "limit=0",
        "limit=101",
        "min_price=-1",
        "user_id=x",
        "min_price=5&max_price=1",
    ] {
        let (status, answer) = get_json(&app, &format!("/products?{bad}")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {answer}");
    }
    app.stop().await;
}

/// A worker stopped mid-batch hands its in-flight messages back without acking; a new worker
/// finishes every product exactly once, with no duplicate paths or files.
pub async fn worker_stopped_mid_batch(stack: &Stack) {
    let images = ImageServer::start().await;
    let (publisher, subscriber) = stack.broker().await;
    let api = stack.start_with(Roles::API, publisher, subscriber).await;
    let mut impatient = stack.config.clone();
    impatient.shutdown_timeout = 0; // stop = hand back at once
    impatient.worker_concurrency = 3;
    let (publisher, subscriber) = stack.broker().await;
    let first = stack
        .start_custom(&impatient, Roles::WORKER, publisher, subscriber)
        .await;

    let user = create_user(&api).await;
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(
            create_product(
                &api,
                user,
                &[
                    images.slow(1500, 800, 600),
                    images.image(500, 500, &format!("q{n}")),
                ],
            )
            .await,
        );
    }
    // Wait until the first worker is busy, then stop it in the middle of its batch.
    let deadline = tokio::time::Instant::now() + PROCESSING;
    loop {
        let (_, listing) = get_json(&api, &format!("/products?user_id={user}&limit=100")).await;
        if listing["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["status"] == "processing")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first worker never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.stop().await;
    let (_, listing) = get_json(&api, &format!("/products?user_id={user}&limit=100")).await;
    let unfinished = listing["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"] != "done")
        .count();
    assert!(
        unfinished > 0,
        "the first worker was stopped before it finished everything"
    );

    let (publisher, subscriber) = stack.broker().await;
    let second = stack.start_with(Roles::WORKER, publisher, subscriber).await;
    for id in ids {
        let product = wait_final(&api, id, PROCESSING).await;
        assert_eq!(product["status"], "done", "{product}");
        assert_images_stored(stack, &api, &product, 2).await;
    }
    second.stop().await;
    api.stop().await;
}

/// With the broker unreachable, `POST /products` still answers 201; once it is back, every
/// product is processed.
pub async fn broker_outage(stack: &Stack) {
    let images = ImageServer::start().await;
    let (publisher, subscriber) = stack.broker().await;
    let switchable = Arc::new(SwitchablePublisher {
        inner: publisher,
        down: AtomicBool::new(true),
    });
    let app = stack
        .start_with(Roles::ALL, switchable.clone(), subscriber)
        .await;
    let user = create_user(&app).await;
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(create_product(&app, user, &[images.image(300, 200, &format!("o{n}"))]).await);
    }
    let (status, ready) = get_json(&app, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    for id in &ids {
        let (_, product) = get_json(&app, &format!("/products/{id}")).await;
        assert_eq!(
            product["status"], "pending",
            "nothing can be processed while the broker is down"
        );
    }
    switchable.down.store(false, Ordering::SeqCst);
    for id in ids {
        let product = wait_final(&app, id, PROCESSING).await;
        assert_eq!(product["status"], "done", "{product}");
    }
    let (status, _) = get_json(&app, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

/// A message whose payload cannot be decoded goes to the dead-letter topic; the worker carries on.
pub async fn poison_message(stack: &Stack) {
    let images = ImageServer::start().await;
    let (publisher, subscriber) = stack.broker().await;
    let topic = stack.config.products_topic();
    let mut dead = subscriber
        .subscribe(&mq_core::dead_letter_topic(&topic), "e2e-dlq")
        .await
        .expect("subscribe to the dead letters");
    let app = stack
        .start_with(Roles::ALL, publisher.clone(), subscriber.clone())
        .await;
    let user = create_user(&app).await;
    let poison = Message::new("this is not a products.created event").with_key("poison");
    publisher
        .publish(&topic, poison.clone())
        .await
        .expect("publish the poison message");
    let id = create_product(&app, user, &[images.image(400, 300, "after-poison")]).await;
    let product = wait_final(&app, id, PROCESSING).await;
    assert_eq!(
        product["status"], "done",
        "the worker carries on after the poison message"
    );

    let letter = tokio::time::timeout(PROCESSING, async {
        loop {
            match dead.next().await {
                Some(Ok(letter)) => return letter,
                Some(Err(_)) => continue,
                None => panic!("the dead-letter subscription ended"),
            }
        }
    })
    .await
    .expect("the poison message reaches the dead-letter topic");
    assert_eq!(letter.message().payload(), poison.payload());
    assert!(
        letter
            .message()
            .header(headers::DEAD_LETTER_REASON)
            .unwrap()
            .contains("payload"),
        "{:?}",
        letter.message().headers()
    );
    assert_eq!(
        letter.message().header(headers::ATTEMPTS),
        Some("1"),
        "permanent: no retries"
    );
    letter.ack().await.unwrap();
    app.stop().await;
}

/// A retried create with the same `Idempotency-Key` returns the original response and creates
/// (and publishes) nothing new; the same key with another body is refused.
pub async fn idempotent_creates(stack: &Stack) {
    let images = ImageServer::start().await;
    let app = stack.start(Roles::ALL).await;
    let key = format!("e2e-{:016x}", fastrand::u64(..));
    let idempotent = [("idempotency-key", key.as_str())];

    let mobile = format!("+49{:010}", fastrand::u64(..10_000_000_000));
    let user = json!({"name": "Once", "mobile": mobile, "latitude": 1.0, "longitude": 2.0});
    let (status, headers, first_user) = post_with(&app, "/users", &user, &idempotent).await;
    assert_eq!(status, StatusCode::CREATED, "{first_user}");
    assert!(headers.get("idempotent-replayed").is_none());
    let (status, headers, again) = post_with(&app, "/users", &user, &idempotent).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(again, first_user, "the original response, not a new user");
    let user_id = first_user["id"].as_i64().unwrap();

    // The same key on the other route is a different key.
    let product = json!({"user_id": user_id, "product_name": "Once", "product_images": [images.image(300, 200, "once")], "product_price": "5.00"});
    let (status, headers, first) = post_with(&app, "/products", &product, &idempotent).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert!(headers.get("idempotent-replayed").is_none());
    let product_id = first["product_id"].as_i64().unwrap();
    let done = wait_final(&app, product_id, PROCESSING).await;
    assert_eq!(done["status"], "done", "{done}");

    // Keys in another order are the same request.
    let reordered = json!({"product_price": "5.00", "product_images": [images.image(300, 200, "once")], "product_name": "Once", "user_id": user_id});
    let (status, headers, replay) = post_with(&app, "/products", &reordered, &idempotent).await;
    assert_eq!(status, StatusCode::CREATED, "{replay}");
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(
        headers["location"],
        format!("/products/{product_id}").as_str()
    );
    assert_eq!(
        replay, first,
        "the original response (status pending), not the current row"
    );

    let changed = json!({"user_id": user_id, "product_name": "Twice", "product_images": [images.image(300, 200, "once")], "product_price": "5.00"});
    let (status, _, refused) = post_with(&app, "/products", &changed, &idempotent).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["error"]["code"], "idempotency_key_reused");

    let (status, page) = get_json(&app, &format!("/products?user_id={user_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    // Give a wrongly written second outbox row time to go out, then count what was published.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let topic = stack.config.products_topic();
    assert_eq!(
        Scrape::of(&app)
            .await
            .count("messages_published_total", &[("topic", &topic)]),
        1.0,
        "one product, one message"
    );
    app.stop().await;
}

/// After a run, `/metrics` shows the HTTP, outbox, messaging, image and product series moving.
pub async fn metrics_move(stack: &Stack) {
    let images = ImageServer::start().await;
    let (publisher, subscriber) = stack.broker().await;
    let app = stack
        .start_with(Roles::ALL, publisher.clone(), subscriber.clone())
        .await;
    let topic = stack.config.products_topic();
    let group = stack.config.consumer_group.clone();
    let on_topic = [("topic", topic.as_str())];
    let on_group = [("topic", topic.as_str()), ("group", group.as_str())];
    let before = Scrape::of(&app).await;

    let user = create_user(&app).await;
    let id = create_product(
        &app,
        user,
        &[images.image(800, 600, "metered"), images.unavailable()],
    )
    .await;
    let product = wait_final(&app, id, PROCESSING).await;
    assert_eq!(product["status"], "partial", "{product}");
    publisher
        .publish(&topic, Message::new("not a products.created event"))
        .await
        .expect("publish a poison message");
    let deadline = tokio::time::Instant::now() + PROCESSING;
    let after = loop {
        let scrape = Scrape::of(&app).await;
        if scrape.count("messages_dead_lettered_total", &on_group) >= 1.0 {
            break scrape;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the poison message was never counted as dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let moved = |name: &str, labels: &[(&str, &str)]| {
        after.count(name, labels) - before.count(name, labels)
    };
    let created = [
        ("method", "POST"),
        ("route", "/products"),
        ("status", "201"),
    ];
    assert!(moved("http_requests_total", &created) >= 1.0);
    assert!(moved("http_request_duration_seconds_count", &created) >= 1.0);
    assert!(
        after
            .get(
                "http_request_duration_seconds_bucket",
                &[("route", "/products/{id}")]
            )
            .is_some(),
        "latency is a histogram, by route template"
    );
    assert_eq!(moved("messages_published_total", &on_topic), 1.0);
    assert_eq!(moved("messages_consumed_total", &on_group), 1.0);
    assert_eq!(
        moved("messages_retried_total", &on_group),
        f64::from(stack.config.worker_max_attempts - 1),
        "the 503 image is retried until the last attempt"
    );
    assert_eq!(moved("messages_dead_lettered_total", &on_group), 1.0);
    assert!(moved("image_fetch_duration_seconds_count", &[]) >= 1.0);
    assert!(moved("image_compress_duration_seconds_count", &[]) >= 1.0);
    assert!(moved("image_bytes_in_total", &[]) > 0.0);
    assert!(moved("image_bytes_out_total", &[]) > 0.0);
    assert!(moved("image_failures_total", &[("reason", "http")]) >= 1.0);
    assert!(after.count("products_by_status", &[("status", "partial")]) >= 1.0);
    assert!(after.get("outbox_backlog_rows", &[]).is_some());
    assert!(after
        .get("outbox_oldest_unpublished_age_seconds", &[])
        .is_some());
    app.stop().await;
}
