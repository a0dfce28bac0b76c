//! Products that change: PATCH, DELETE and reprocess through the HTTP API with `ETag`s and
//! `If-Match`, the media store kept to the latest version's files, the `products.processed`
//! events a downstream group receives, and the users' routes.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use futures::StreamExt;
use mq_core::domain::ProductProcessed;
use product_pipeline::app::Roles;
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::*;

fn etag(headers: &reqwest::header::HeaderMap) -> String {
    headers["etag"].to_str().unwrap().to_owned()
}

/// Polls until product `id`'s stored objects are exactly `expected` (sorted). The worker
/// deletes what a new result no longer references right after recording it, so the product
/// can read `done` a moment before its old objects are gone.
async fn wait_media(stack: &Stack, id: i64, expected: &[String], what: &str) {
    let deadline = tokio::time::Instant::now() + PROCESSING;
    loop {
        let keys = stack.media_keys(id).await;
        if keys == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: product {id} has {keys:?}, not {expected:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A product's life: conditional reads and writes, a price change that keeps the images, new
/// images that replace the old files (the unchanged one not written again), a reprocess, and
/// a delete that leaves no row and no object. Rejected requests change nothing.
pub async fn products_change_and_are_deleted(stack: &Stack) {
    let images = ImageServer::start().await;
    let app = stack.start(Roles::ALL).await;
    let user = create_user(&app).await;
    let (kept, replaced, added) = (
        images.image(900, 600, "kept"),
        images.image(700, 700, "replaced"),
        images.image(640, 480, "added"),
    );
    let id = create_product(&app, user, &[kept.clone(), replaced.clone()]).await;
    let first = wait_final(&app, id, PROCESSING).await;
    assert_eq!(
        (first["status"].clone(), first["version"].clone()),
        (json!("done"), json!(1))
    );
    let first_keys = recorded_keys(&first);
    assert_eq!(stack.media_keys(id).await, first_keys);
    let path = format!("/products/{id}");

    // Conditional GET: 304 while the tag is current.
    let (status, headers, _) = send(&app, Method::GET, &path, None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let tag = etag(&headers);
    let (status, headers, _) =
        send(&app, Method::GET, &path, None, &[("if-none-match", &tag)]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert_eq!(etag(&headers), tag);

    // Rejected writes change nothing: a stale If-Match, every invalid field listed.
    let stale = [("if-match", "\"0-done\"")];
    let (status, _, body) = send(
        &app,
        Method::PATCH,
        &path,
        Some(&json!({"product_price": 1})),
        &stale,
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    let (status, _, _) = send(&app, Method::DELETE, &path, None, &stale).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let invalid =
        json!({"user_id": 2, "product_name": " ", "product_price": -1, "product_images": []});
    let (status, _, body) = send(&app, Method::PATCH, &path, Some(&invalid), &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let mut fields = error_fields(&body).unwrap();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["product_images", "product_name", "product_price", "user_id"]
    );
    let (status, body) = get_json(&app, &path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, first, "rejected requests changed nothing");

    // A new price under the current tag: version 2, the images stay.
    let (status, headers, priced) = send(
        &app,
        Method::PATCH,
        &path,
        Some(&json!({"product_price": "24.50"})),
        &[("if-match", &tag)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{priced}");
    assert_eq!(priced["version"], 2);
    assert_eq!(priced["product_price"], 24.5);
    assert_eq!(priced["status"], "done");
    assert_ne!(etag(&headers), tag);
    let (status, _, _) = send(&app, Method::GET, &path, None, &[("if-none-match", &tag)]).await;
    assert_eq!(status, StatusCode::OK, "the old tag is stale");

    // New images: processed again; the unchanged image keeps its object (not written again),
    // the replaced one's object is gone.
    let kept_key = first["compressed_product_images"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let kept_path = product_pipeline_imaging::object_store::path::Path::parse(&kept_key).unwrap();
    let kept_written = stack.media.head(&kept_path).await.unwrap().last_modified;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, _, reimaged) = send(
        &app,
        Method::PATCH,
        &path,
        Some(&json!({"product_images": [kept, added]})),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{reimaged}");
    assert_eq!(reimaged["version"], 3);
    assert_eq!(reimaged["status"], "pending");
    let second = wait_final_version(&app, id, Some(3), PROCESSING).await;
    assert_eq!(second["status"], "done", "{second}");
    assert_eq!(second["compressed_product_images"][0], json!(kept_key));
    assert_ne!(recorded_keys(&second), first_keys);
    wait_media(stack, id, &recorded_keys(&second), "the old files are gone").await;
    assert_eq!(
        stack.media.head(&kept_path).await.unwrap().last_modified,
        kept_written,
        "an image whose bytes did not change is not written again"
    );

    // Reprocess: a new version, the same files.
    let (status, _, reprocessed) =
        send(&app, Method::POST, &format!("{path}/reprocess"), None, &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reprocessed}");
    assert_eq!(reprocessed["version"], 4);
    let third = wait_final_version(&app, id, Some(4), PROCESSING).await;
    assert_eq!(recorded_keys(&third), recorded_keys(&second));
    wait_media(
        stack,
        id,
        &recorded_keys(&second),
        "a reprocess keeps the files",
    )
    .await;

    // Delete: no row, and through the worker no object.
    let (status, _, _) = send(&app, Method::DELETE, &path, None, &[]).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = get_json(&app, &path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    wait_media(stack, id, &[], "a deleted product keeps no object").await;
    for (method, route) in [
        (Method::DELETE, path.clone()),
        (Method::PATCH, path.clone()),
        (Method::POST, format!("{path}/reprocess")),
    ] {
        let body = (method == Method::PATCH).then(|| json!({"product_price": 1}));
        let (status, _, _) = send(&app, method.clone(), &route, body.as_ref(), &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {route}");
    }
    app.stop().await;
}

/// A second consumer group on `products.processed` receives one event per final status, with
/// the version it belongs to and the keys the row holds.
pub async fn processed_events_reach_a_second_group(stack: &Stack) {
    let images = ImageServer::start().await;
    let (publisher, subscriber) = stack.broker().await;
    let topic = stack.config.processed_topic();
    subscriber.declare(&topic, "downstream").await.unwrap();
    let mut events = subscriber.subscribe(&topic, "downstream").await.unwrap();
    let app = stack
        .start_with(Roles::ALL, publisher.clone(), subscriber.clone())
        .await;
    let user = create_user(&app).await;
    let done = create_product(&app, user, &[images.image(500, 400, "ev-a")]).await;
    let partial = create_product(
        &app,
        user,
        &[images.image(500, 400, "ev-b"), images.missing()],
    )
    .await;
    wait_final(&app, done, PROCESSING).await;
    wait_final(&app, partial, PROCESSING).await;
    let (status, _, _) = send(
        &app,
        Method::PATCH,
        &format!("/products/{done}"),
        Some(&json!({"product_images": [images.image(300, 300, "ev-c")]})),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let changed = wait_final_version(&app, done, Some(2), PROCESSING).await;

    let mut expected = BTreeMap::new();
    for id in [done, partial] {
        let (_, row) = get_json(&app, &format!("/products/{id}")).await;
        expected.insert((id, row["version"].as_i64().unwrap()), row);
    }
    expected.insert((done, 1), Value::Null); // superseded since; status `done`
    let mut received = BTreeMap::new();
    let quiet = std::time::Duration::from_secs(3);
    loop {
        let wait = if received.len() < expected.len() {
            PROCESSING
        } else {
            quiet
        };
        let delivery = match tokio::time::timeout(wait, events.next()).await {
            Err(_) if received.len() >= expected.len() => break,
            Err(_) => panic!("only {received:?} of {expected:?} after {wait:?}"),
            Ok(Some(Ok(delivery))) => delivery,
            Ok(Some(Err(error))) => panic!("stream error: {error}"),
            Ok(None) => panic!("the subscription ended"),
        };
        let event: ProductProcessed = delivery.message().decode().unwrap();
        delivery.ack().await.unwrap();
        if event.product_id != done && event.product_id != partial {
            continue;
        }
        let previous = received.insert((event.product_id, event.version), event.clone());
        assert!(previous.is_none(), "a second event for {event:?}");
    }
    assert_eq!(
        received.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    assert_eq!(received[&(done, 1)].status.as_str(), "done");
    assert_eq!(received[&(partial, 1)].status.as_str(), "partial");
    assert_eq!(received[&(partial, 1)].image_errors.len(), 1);
    let latest = &received[&(done, 2)];
    assert_eq!(
        json!(latest.compressed_product_images),
        changed["compressed_product_images"]
    );
    app.stop().await;
}

/// `GET /users` pages, `PATCH /users/{id}` (the mobile stays unique), `DELETE /users/{id}` (409
/// while the user has products).
pub async fn users_are_listed_changed_and_deleted(stack: &Stack) {
    let images = ImageServer::start().await;
    let app = stack.start(Roles::ALL).await;
    let ids = [
        create_user(&app).await,
        create_user(&app).await,
        create_user(&app).await,
    ];
    let mut seen = Vec::new();
    let mut next = Some(0);
    while let Some(after) = next {
        let (status, page) = get_json(&app, &format!("/users?limit=2&after={after}")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["id"].as_i64().unwrap()),
        );
        next = page["next"].as_i64();
    }
    assert!(ids.iter().all(|id| seen.contains(id)), "{seen:?}");
    let (status, body) = get_json(&app, "/users?limit=0").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let (_, other) = get_json(&app, &format!("/users/{}", ids[1])).await;
    let path = format!("/users/{}", ids[0]);
    let (status, _, renamed) = send(
        &app,
        Method::PATCH,
        &path,
        Some(&json!({"name": "Grace Hopper", "latitude": 12.5})),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(
        (renamed["name"].clone(), renamed["latitude"].clone()),
        (json!("Grace Hopper"), json!(12.5))
    );
    let (status, _, body) = send(
        &app,
        Method::PATCH,
        &path,
        Some(&json!({"mobile": other["mobile"], "name": "Not stored"})),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _, body) = send(
        &app,
        Method::PATCH,
        &path,
        Some(&json!({"mobile": "12", "latitude": 91})),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["error"]["details"].as_array().unwrap().len(),
        2,
        "{body}"
    );
    let (_, now) = get_json(&app, &path).await;
    assert_eq!(now, renamed, "rejected patches changed nothing");

    let product = create_product(&app, ids[0], &[images.image(100, 100, "owned")]).await;
    let (status, _, body) = send(&app, Method::DELETE, &path, None, &[]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _, _) = send(
        &app,
        Method::DELETE,
        &format!("/products/{product}"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = send(&app, Method::DELETE, &path, None, &[]).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = get_json(&app, &path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = send(&app, Method::DELETE, &path, None, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}
