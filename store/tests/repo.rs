//! The repository suite, run on SQLite (temp file) and PostgreSQL (`DATABASE_URL`, one fresh
//! schema per test).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use common::{Backend, TestCtx};
use mq_core::domain::{
    ImageError, NewProduct, NewUser, OutboxRepo, ProcessingResult, Product, ProductFilter,
    ProductRepo, ProductStatus, RepoError, UserRepo, PRODUCTS_CREATED_TOPIC,
};
use rust_decimal::Decimal;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter, Statement,
};
use store::entities::{outbox, product};
use store::{Store, StoreOptions};

// ---------------------------------------------------------------------------------------------
// helpers

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn new_user(mobile: &str) -> NewUser {
    NewUser {
        name: "Zoë 李雷 🚀".into(),
        mobile: mobile.into(),
        latitude: -89.123456,
        longitude: 179.654321,
    }
}

fn new_product(user_id: i64, name: &str, price: &str) -> NewProduct {
    NewProduct {
        user_id,
        product_name: name.into(),
        product_description: Some("a description".into()),
        product_images: vec!["https://example.com/a.jpg".into()],
        product_price: dec(price),
    }
}

async fn user(store: &Store, mobile: &str) -> i64 {
    store.create_user(new_user(mobile)).await.unwrap().id
}

async fn outbox_rows(store: &Store) -> u64 {
    outbox::Entity::find()
        .count(store.connection())
        .await
        .unwrap()
}

async fn product_rows(store: &Store) -> u64 {
    product::Entity::find()
        .count(store.connection())
        .await
        .unwrap()
}

fn filter(limit: u32) -> ProductFilter {
    ProductFilter {
        limit,
        ..ProductFilter::default()
    }
}

fn ids(products: &[Product]) -> Vec<i64> {
    products.iter().map(|p| p.product_id).collect()
}

/// Publishes everything claimable, like a relay: claim, "send", mark published.
async fn relay(store: Store, batch: u32, sent: Arc<Mutex<Vec<i64>>>) {
    loop {
        let claimed = store
            .claim_outbox(batch, Duration::from_secs(60))
            .await
            .unwrap();
        if claimed.is_empty() {
            return;
        }
        let ids: Vec<i64> = claimed.iter().map(|m| m.id).collect();
        sent.lock().unwrap().extend(&ids);
        tokio::task::yield_now().await;
        store.mark_published(&ids).await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// the suite

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    crate::common::run(crate::common::Backend::Sqlite, crate::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    crate::common::run(crate::common::Backend::Postgres, crate::$name).await;
                }
            )*
        }
    };
}

suite!(
    user_round_trip,
    duplicate_mobile,
    product_round_trip,
    product_without_description,
    create_product_writes_its_outbox_row,
    unknown_user_leaves_nothing_behind,
    failed_outbox_insert_rolls_back_the_product,
    out_of_range_prices_are_refused,
    processing_and_idempotent_results,
    list_filters,
    pagination_walks_every_row_once,
    pagination_under_concurrent_inserts,
    outbox_claims_failures_and_publishing,
    outbox_lease_expires,
    single_relay_publishes_each_row_once,
    unavailable_after_close,
    migrations_are_idempotent,
    stored_column_types,
);

async fn user_round_trip(ctx: TestCtx) {
    let store = ctx.store;
    let before = Utc::now();
    let created = store.create_user(new_user("+4915112345678")).await.unwrap();
    assert!(created.id > 0);
    assert_eq!(created.name, "Zoë 李雷 🚀");
    assert_eq!(created.mobile, "+4915112345678");
    assert_eq!(created.latitude, -89.123456);
    assert_eq!(created.longitude, 179.654321);
    assert_eq!(created.created_at, created.updated_at);
    let skew = chrono::Duration::seconds(5);
    assert!(created.created_at >= before - skew && created.created_at <= Utc::now() + skew);

    let loaded = store.get_user(created.id).await.unwrap();
    assert_eq!(loaded, Some(created.clone()));
    assert_eq!(store.get_user(created.id + 1000).await.unwrap(), None);
}

async fn duplicate_mobile(ctx: TestCtx) {
    let store = ctx.store;
    let first = store.create_user(new_user("+15550001")).await.unwrap();
    let err = store.create_user(new_user("+15550001")).await.unwrap_err();
    assert_eq!(err, RepoError::DuplicateMobile("+15550001".into()));
    assert!(!err.is_transient());
    assert_eq!(store.get_user(first.id).await.unwrap(), Some(first));
    store.create_user(new_user("+15550002")).await.unwrap();
}

async fn product_round_trip(ctx: TestCtx) {
    let store = ctx.store;
    let user_id = user(&store, "5550100").await;
    let description: String = "é漢🚀a".chars().cycle().take(10_000).collect();
    assert_eq!(description.chars().count(), 10_000);
    let images: Vec<String> = (0..20)
        .map(|i| format!("https://example.com/ünï/{i}/画像.jpg?q=1&x=\"y\""))
        .collect();
    let name = format!(
        "Ünïcødé 製品 🚀 '\"; DROP TABLE products; -- {}",
        "x".repeat(200)
    );

    for (price, stored) in [
        ("0", "0.00"),
        ("0.10", "0.10"),
        ("0.2", "0.20"),
        ("9999999999.99", "9999999999.99"),
    ] {
        let new = NewProduct {
            user_id,
            product_name: name.clone(),
            product_description: Some(description.clone()),
            product_images: images.clone(),
            product_price: dec(price),
        };
        let created = store.create_product(new, BTreeMap::new()).await.unwrap();
        assert_eq!(created.user_id, user_id);
        assert_eq!(created.product_name, name);
        assert_eq!(created.product_description.as_deref(), Some(&*description));
        assert_eq!(created.product_images, images);
        assert_eq!(created.product_price, dec(price));
        assert_eq!(created.product_price.to_string(), stored, "exact price");
        assert_eq!(created.status, ProductStatus::Pending);
        assert!(created.compressed_product_images.is_empty());
        assert!(created.image_errors.is_empty());
        assert_eq!(created.created_at, created.updated_at);

        let loaded = store
            .get_product(created.product_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(loaded, created);
        assert_eq!(loaded.product_price.to_string(), stored);

        // The same value through the JSON the API sends.
        let json = serde_json::to_value(&loaded).unwrap();
        assert_eq!(
            json["product_price"].as_f64(),
            Some(stored.parse::<f64>().unwrap())
        );
    }
    let page = store
        .list_products(&ProductFilter {
            user_id: Some(user_id),
            ..filter(100)
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 4);
    let prices: Vec<String> = page
        .items
        .iter()
        .map(|p| p.product_price.to_string())
        .collect();
    assert_eq!(prices, ["0.00", "0.10", "0.20", "9999999999.99"]);
    assert!(page.items.iter().all(|p| p.product_images.len() == 20));
}

async fn product_without_description(ctx: TestCtx) {
    let store = ctx.store;
    let user_id = user(&store, "5550101").await;
    let mut new = new_product(user_id, "plain", "1.5");
    new.product_description = None;
    let created = store.create_product(new, BTreeMap::new()).await.unwrap();
    assert_eq!(created.product_description, None);
    assert_eq!(created.product_price.to_string(), "1.50");
    assert_eq!(
        store.get_product(created.product_id).await.unwrap(),
        Some(created)
    );
    assert_eq!(store.get_product(i64::MAX).await.unwrap(), None);
}

async fn create_product_writes_its_outbox_row(ctx: TestCtx) {
    let store = ctx.store;
    let user_id = user(&store, "5550102").await;
    let headers = BTreeMap::from([("traceparent".to_owned(), "00-abc-def-01".to_owned())]);
    let a = store
        .create_product(new_product(user_id, "a", "1"), headers.clone())
        .await
        .unwrap();
    let b = store
        .create_product(new_product(user_id, "b", "2"), headers)
        .await
        .unwrap();
    assert_eq!(outbox_rows(&store).await, 2);

    let claimed = store
        .claim_outbox(10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    for (message, product) in claimed.iter().zip([&a, &b]) {
        assert_eq!(message.topic, PRODUCTS_CREATED_TOPIC);
        assert_eq!(message.key, Some(product.product_id.to_string()));
        assert_eq!(
            message.payload,
            serde_json::json!({ "product_id": product.product_id })
        );
        assert_eq!(message.headers["traceparent"], "00-abc-def-01");
        assert!(message.headers.contains_key("message-id"));
        assert_eq!(message.attempts, 0);
        assert_eq!(message.created_at, product.created_at);
    }
    assert_ne!(
        claimed[0].headers["message-id"],
        claimed[1].headers["message-id"]
    );
    let broker_message = claimed[0].to_message();
    let payload: serde_json::Value = serde_json::from_slice(broker_message.payload()).unwrap();
    assert_eq!(payload, serde_json::json!({ "product_id": a.product_id }));
}

async fn unknown_user_leaves_nothing_behind(ctx: TestCtx) {
    let store = ctx.store;
    let err = store
        .create_product(new_product(987_654, "orphan", "1"), BTreeMap::new())
        .await
        .unwrap_err();
    assert_eq!(err, RepoError::UnknownUser(987_654));
    assert_eq!(product_rows(&store).await, 0);
    assert_eq!(outbox_rows(&store).await, 0);
    assert!(store
        .claim_outbox(10, Duration::from_secs(1))
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .list_products(&filter(10))
        .await
        .unwrap()
        .items
        .is_empty());
}

async fn failed_outbox_insert_rolls_back_the_product(ctx: TestCtx) {
    let store = ctx.store;
    let user_id = user(&store, "5550103").await;
    // Break the second insert of the transaction: the product insert must not survive it.
    store
        .connection()
        .execute_unprepared("DROP TABLE outbox")
        .await
        .unwrap();
    let err = store
        .create_product(new_product(user_id, "half", "1"), BTreeMap::new())
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::Other(_)), "{err:?}");
    assert_eq!(product_rows(&store).await, 0);
    assert!(store
        .list_products(&filter(10))
        .await
        .unwrap()
        .items
        .is_empty());
}

async fn out_of_range_prices_are_refused(ctx: TestCtx) {
    let store = ctx.store;
    let user_id = user(&store, "5550104").await;
    for price in ["-0.01", "0.001", "10000000000", "12345678901234567890"] {
        let err = store
            .create_product(new_product(user_id, "bad", price), BTreeMap::new())
            .await
            .unwrap_err();
        assert!(matches!(err, RepoError::Other(_)), "{price}: {err:?}");
    }
    assert_eq!(product_rows(&store).await, 0);
    assert_eq!(outbox_rows(&store).await, 0);
}

async fn processing_and_idempotent_results(ctx: TestCtx) {
    let store = ctx.store;
    let user_id = user(&store, "5550105").await;
    let mut new = new_product(user_id, "p", "3");
    new.product_images = vec!["http://x/0.jpg".into(), "http://x/1.jpg".into()];
    let created = store.create_product(new, BTreeMap::new()).await.unwrap();
    let id = created.product_id;

    assert_eq!(store.mark_processing(id + 1000).await.unwrap(), None);
    let processing = store.mark_processing(id).await.unwrap().unwrap();
    assert_eq!(processing.status, ProductStatus::Processing);
    assert!(processing.updated_at >= created.updated_at);
    // Again (a redelivery while processing): still processing.
    let again = store.mark_processing(id).await.unwrap().unwrap();
    assert_eq!(again.status, ProductStatus::Processing);

    let partial = ProcessingResult::new(
        vec![format!("products/{id}/0-abcd.jpg")],
        vec![ImageError {
            index: 1,
            url: "http://x/1.jpg".into(),
            reason: "HTTP 404 — nicht gefunden".into(),
        }],
    );
    assert_eq!(partial.status, ProductStatus::Partial);
    store.record_result(id, &partial).await.unwrap();
    let recorded = store.get_product(id).await.unwrap().unwrap();
    assert_eq!(recorded.status, ProductStatus::Partial);
    assert_eq!(
        recorded.compressed_product_images,
        partial.compressed_product_images
    );
    assert_eq!(recorded.image_errors, partial.image_errors);
    assert_eq!(recorded.product_images, created.product_images);
    assert_eq!(recorded.product_price, created.product_price);

    // The same result again changes nothing, not even updated_at.
    tokio::time::sleep(Duration::from_millis(20)).await;
    store.record_result(id, &partial).await.unwrap();
    assert_eq!(store.get_product(id).await.unwrap().unwrap(), recorded);

    // A final product is not taken back to processing.
    let unchanged = store.mark_processing(id).await.unwrap().unwrap();
    assert_eq!(unchanged, recorded);

    // A different result is recorded.
    let done = ProcessingResult::new(
        vec![
            format!("products/{id}/0-abcd.jpg"),
            format!("products/{id}/1-ef01.jpg"),
        ],
        vec![],
    );
    store.record_result(id, &done).await.unwrap();
    let finished = store.get_product(id).await.unwrap().unwrap();
    assert_eq!(finished.status, ProductStatus::Done);
    assert_eq!(finished.compressed_product_images.len(), 2);
    assert!(finished.image_errors.is_empty());
    assert!(finished.updated_at > recorded.updated_at);

    let err = store.record_result(id + 1000, &done).await.unwrap_err();
    assert_eq!(
        err,
        RepoError::NotFound {
            entity: "product",
            id: id + 1000
        }
    );
}

async fn list_filters(ctx: TestCtx) {
    let store = ctx.store;
    let alice = user(&store, "5550106").await;
    let bob = user(&store, "5550107").await;
    let mut by_name = HashMap::new();
    for (owner, name, price) in [
        (alice, "Blue widget", "1.50"),
        (alice, "Red WIDGET", "1.51"),
        (alice, "Café crème", "0.10"),
        (bob, "50% off gadget", "9999999999.99"),
        (bob, "5000 off gadget", "20"),
        (bob, "under_score", "0"),
        (bob, "underXscore", "0.01"),
    ] {
        let p = store
            .create_product(new_product(owner, name, price), BTreeMap::new())
            .await
            .unwrap();
        by_name.insert(name, p.product_id);
    }
    let names = |products: &[Product]| -> Vec<String> {
        products.iter().map(|p| p.product_name.clone()).collect()
    };
    let list = |f: ProductFilter| {
        let store = store.clone();
        async move { store.list_products(&f).await.unwrap() }
    };

    let page = list(ProductFilter {
        user_id: Some(alice),
        ..filter(100)
    })
    .await;
    assert_eq!(
        names(&page.items),
        ["Blue widget", "Red WIDGET", "Café crème"]
    );
    assert_eq!(page.next, None);

    let page = list(ProductFilter {
        min_price: Some(dec("1.50")),
        max_price: Some(dec("20")),
        ..filter(100)
    })
    .await;
    assert_eq!(
        names(&page.items),
        ["Blue widget", "Red WIDGET", "5000 off gadget"]
    );

    // Bounds with more decimals than prices have.
    let page = list(ProductFilter {
        min_price: Some(dec("1.505")),
        max_price: Some(dec("1.515")),
        ..filter(100)
    })
    .await;
    assert_eq!(names(&page.items), ["Red WIDGET"]);

    let page = list(ProductFilter {
        min_price: Some(dec("9999999999.99")),
        ..filter(100)
    })
    .await;
    assert_eq!(names(&page.items), ["50% off gadget"]);

    let page = list(ProductFilter {
        max_price: Some(dec("0")),
        ..filter(100)
    })
    .await;
    assert_eq!(names(&page.items), ["under_score"]);

    // Case-insensitive substring.
    let page = list(ProductFilter {
        q: Some("widget".into()),
        ..filter(100)
    })
    .await;
    assert_eq!(names(&page.items), ["Blue widget", "Red WIDGET"]);
    let page = list(ProductFilter {
        q: Some("CAFÉ".to_lowercase()),
        ..filter(100)
    })
    .await;
    assert_eq!(names(&page.items), ["Café crème"]);
    if ctx.backend == Backend::Postgres {
        // PostgreSQL folds non-ASCII case too.
        let page = list(ProductFilter {
            q: Some("CAFÉ CRÈME".into()),
            ..filter(100)
        })
        .await;
        assert_eq!(names(&page.items), ["Café crème"]);
    }

    // LIKE wildcards in q are literal.
    let page = list(ProductFilter {
        q: Some("50%".into()),
        ..filter(100)
    })
    .await;
    assert_eq!(names(&page.items), ["50% off gadget"]);
    let page = list(ProductFilter {
        q: Some("under_".into()),
        ..filter(100)
    })
    .await;
    assert_eq!(names(&page.items), ["under_score"]);

    // Everything at once.
    let page = list(ProductFilter {
        user_id: Some(alice),
        min_price: Some(dec("1")),
        q: Some("red".into()),
        ..filter(100)
    })
    .await;
    assert_eq!(names(&page.items), ["Red WIDGET"]);

    // Limits are clamped to 1..=100.
    let page = list(filter(0)).await;
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.next, Some(by_name["Blue widget"]));
    let page = list(filter(1000)).await;
    assert_eq!(page.items.len(), 7);
}

async fn pagination_walks_every_row_once(ctx: TestCtx) {
    let store = ctx.store;
    let user_id = user(&store, "5550108").await;
    let mut created = Vec::new();
    for i in 0..25 {
        let p = store
            .create_product(new_product(user_id, &format!("p{i}"), "1"), BTreeMap::new())
            .await
            .unwrap();
        created.push(p.product_id);
    }
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_products(&ProductFilter {
                after,
                ..filter(10)
            })
            .await
            .unwrap();
        sizes.push(page.items.len());
        seen.extend(ids(&page.items));
        match page.next {
            Some(next) => {
                assert_eq!(Some(&next), seen.last());
                after = Some(next);
            }
            None => break,
        }
    }
    assert_eq!(sizes, [10, 10, 5]);
    assert_eq!(seen, created);
}

async fn pagination_under_concurrent_inserts(ctx: TestCtx) {
    let store = ctx.store;
    let user_id = user(&store, "5550109").await;
    let mut before = BTreeSet::new();
    for i in 0..60 {
        let p = store
            .create_product(
                new_product(user_id, &format!("old{i}"), "1"),
                BTreeMap::new(),
            )
            .await
            .unwrap();
        before.insert(p.product_id);
    }
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..60 {
                store
                    .create_product(
                        new_product(user_id, &format!("new{i}"), "1"),
                        BTreeMap::new(),
                    )
                    .await
                    .unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_products(&ProductFilter { after, ..filter(7) })
            .await
            .unwrap();
        seen.extend(ids(&page.items));
        tokio::time::sleep(Duration::from_millis(2)).await;
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    writer.await.unwrap();
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "ascending, no repeats"
    );
    let seen: BTreeSet<i64> = seen.into_iter().collect();
    assert!(
        before.is_subset(&seen),
        "no row that existed before was skipped"
    );
}

async fn outbox_claims_failures_and_publishing(ctx: TestCtx) {
    let store = ctx.store;
    let user_id = user(&store, "5550110").await;
    for i in 0..3 {
        store
            .create_product(new_product(user_id, &format!("p{i}"), "1"), BTreeMap::new())
            .await
            .unwrap();
    }
    let lease = Duration::from_secs(60);
    assert!(store.claim_outbox(0, lease).await.unwrap().is_empty());
    let first = store.claim_outbox(2, lease).await.unwrap();
    assert_eq!(first.len(), 2);
    assert!(first[0].id < first[1].id);
    let rest = store.claim_outbox(10, lease).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert!(rest[0].id > first[1].id, "oldest first");
    assert!(
        store.claim_outbox(10, lease).await.unwrap().is_empty(),
        "all leased"
    );

    // A failure keeps the error, counts the attempt and releases the lease.
    let failed = first[0].id;
    store
        .record_publish_failure(failed, "broker down: connection refused")
        .await
        .unwrap();
    let retry = store.claim_outbox(10, lease).await.unwrap();
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].id, failed);
    assert_eq!(retry[0].attempts, 1);
    let row = outbox::Entity::find_by_id(failed)
        .one(store.connection())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.last_error.as_deref(),
        Some("broker down: connection refused")
    );
    assert_eq!(row.published_at, None);

    let all = vec![first[0].id, first[1].id, rest[0].id];
    store.mark_published(&all).await.unwrap();
    let published: Vec<_> = outbox::Entity::find()
        .filter(outbox::Column::PublishedAt.is_not_null())
        .all(store.connection())
        .await
        .unwrap();
    assert_eq!(published.len(), 3);
    assert!(published.iter().all(|r| r.locked_until.is_none()));

    // Idempotent: publishing again changes nothing; a late failure report is ignored.
    store.mark_published(&all).await.unwrap();
    store.mark_published(&[]).await.unwrap();
    store.record_publish_failure(failed, "late").await.unwrap();
    let after: Vec<_> = outbox::Entity::find()
        .all(store.connection())
        .await
        .unwrap();
    assert_eq!(after, published);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(store
        .claim_outbox(10, Duration::ZERO)
        .await
        .unwrap()
        .is_empty());

    let err = store
        .record_publish_failure(i64::MAX, "x")
        .await
        .unwrap_err();
    assert_eq!(
        err,
        RepoError::NotFound {
            entity: "outbox message",
            id: i64::MAX
        }
    );
}

async fn outbox_lease_expires(ctx: TestCtx) {
    let store = ctx.store;
    let user_id = user(&store, "5550111").await;
    store
        .create_product(new_product(user_id, "p", "1"), BTreeMap::new())
        .await
        .unwrap();
    let claimed = store
        .claim_outbox(10, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(store
        .claim_outbox(10, Duration::from_millis(300))
        .await
        .unwrap()
        .is_empty());
    tokio::time::sleep(Duration::from_millis(600)).await;
    let again = store
        .claim_outbox(10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "an expired lease frees the row");
    assert_eq!(again[0].id, claimed[0].id);
    assert_eq!(again[0].attempts, 0);
}

async fn single_relay_publishes_each_row_once(ctx: TestCtx) {
    let store = ctx.store;
    let user_id = user(&store, "5550112").await;
    let mut expected = Vec::new();
    for i in 0..30 {
        store
            .create_product(new_product(user_id, &format!("p{i}"), "1"), BTreeMap::new())
            .await
            .unwrap();
    }
    for row in outbox::Entity::find()
        .all(store.connection())
        .await
        .unwrap()
    {
        expected.push(row.id);
    }
    let sent = Arc::new(Mutex::new(Vec::new()));
    relay(store.clone(), 7, sent.clone()).await;
    let sent = sent.lock().unwrap().clone();
    assert_eq!(sent, expected, "each row once, in order");
    let unpublished = outbox::Entity::find()
        .filter(outbox::Column::PublishedAt.is_null())
        .count(store.connection())
        .await
        .unwrap();
    assert_eq!(unpublished, 0);
}

async fn unavailable_after_close(ctx: TestCtx) {
    let store = ctx.store;
    store.ping().await.unwrap();
    store.close().await.unwrap();
    let err = store.ping().await.unwrap_err();
    assert!(matches!(err, RepoError::Unavailable(_)), "{err:?}");
    assert!(err.is_transient());
    let err = store.get_user(1).await.unwrap_err();
    assert!(matches!(err, RepoError::Unavailable(_)), "{err:?}");
    let err = store
        .claim_outbox(1, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::Unavailable(_)), "{err:?}");
}

async fn migrations_are_idempotent(ctx: TestCtx) {
    let store = ctx.store;
    let user_id = user(&store, "5550113").await;
    store::migrate(store.connection()).await.unwrap();
    // A second process starting on the same database.
    let other = Store::connect(&ctx.url, ctx.options.clone()).await.unwrap();
    assert!(other.get_user(user_id).await.unwrap().is_some());
    other.close().await.unwrap();
}

async fn stored_column_types(ctx: TestCtx) {
    let store = ctx.store;
    let user_id = user(&store, "5550114").await;
    store
        .create_product(new_product(user_id, "p", "9999999999.99"), BTreeMap::new())
        .await
        .unwrap();
    let db = store.connection();
    match ctx.backend {
        Backend::Postgres => {
            let sql = "SELECT table_name, column_name, data_type, \
                       coalesce(numeric_precision, 0) AS p, coalesce(numeric_scale, 0) AS s \
                       FROM information_schema.columns WHERE table_schema = current_schema()";
            let rows = db
                .query_all(Statement::from_string(DbBackend::Postgres, sql))
                .await
                .unwrap();
            let types: HashMap<String, (String, i32, i32)> = rows
                .iter()
                .map(|r| {
                    let table: String = r.try_get("", "table_name").unwrap();
                    let column: String = r.try_get("", "column_name").unwrap();
                    (
                        format!("{table}.{column}"),
                        (
                            r.try_get("", "data_type").unwrap(),
                            r.try_get("", "p").unwrap(),
                            r.try_get("", "s").unwrap(),
                        ),
                    )
                })
                .collect();
            let ty = |c: &str| types[c].0.clone();
            assert_eq!(
                types["products.product_price"],
                ("numeric".to_owned(), 12, 2)
            );
            for c in [
                "products.product_images",
                "products.compressed_product_images",
                "products.image_errors",
                "outbox.headers",
                "outbox.payload",
            ] {
                assert_eq!(ty(c), "jsonb", "{c}");
            }
            for c in [
                "users.created_at",
                "users.updated_at",
                "products.created_at",
                "products.updated_at",
                "outbox.created_at",
                "outbox.published_at",
                "outbox.locked_until",
            ] {
                assert_eq!(ty(c), "timestamp with time zone", "{c}");
            }
            assert_eq!(ty("products.user_id"), "bigint");
        }
        Backend::Sqlite => {
            let row = db
                .query_one(Statement::from_string(
                    DbBackend::Sqlite,
                    "SELECT typeof(product_price) AS t, product_price AS v, \
                     json_type(product_images) AS j FROM products",
                ))
                .await
                .unwrap()
                .unwrap();
            let t: String = row.try_get("", "t").unwrap();
            let v: i64 = row.try_get("", "v").unwrap();
            let j: String = row.try_get("", "j").unwrap();
            assert_eq!(
                (t.as_str(), v, j.as_str()),
                ("integer", 999_999_999_999, "array")
            );
        }
    }
    // Rows written by hand must keep the shape: the CHECK constraints refuse other JSON.
    let bad = db
        .execute_unprepared(&format!(
            "INSERT INTO products (user_id, product_name, product_images, product_price, \
             created_at, updated_at) VALUES ({user_id}, 'x', '{{\"a\": 1}}', 1, \
             '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00')"
        ))
        .await;
    assert!(bad.is_err(), "an object is not an image list");
    let bad = db
        .execute_unprepared(&format!(
            "INSERT INTO products (user_id, product_name, product_images, product_price, status, \
             created_at, updated_at) VALUES ({user_id}, 'x', '[]', 1, 'weird', \
             '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00')"
        ))
        .await;
    assert!(bad.is_err(), "unknown status");
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL only

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_relays_claim_disjoint_rows() {
    common::run(Backend::Postgres, |ctx| async move {
        let store = ctx.store;
        let user_id = user(&store, "5550200").await;
        const ROWS: usize = 240;
        for i in 0..ROWS {
            store
                .create_product(new_product(user_id, &format!("p{i}"), "1"), BTreeMap::new())
                .await
                .unwrap();
        }
        let sent = Arc::new(Mutex::new(Vec::new()));
        let relays: Vec<_> = (0..8)
            .map(|_| tokio::spawn(relay(store.clone(), 5, sent.clone())))
            .collect();
        for r in relays {
            r.await.unwrap();
        }
        let sent = sent.lock().unwrap().clone();
        let distinct: BTreeSet<i64> = sent.iter().copied().collect();
        assert_eq!(sent.len(), ROWS, "every row published exactly once");
        assert_eq!(distinct.len(), ROWS, "no row claimed twice");
        let unpublished = outbox::Entity::find()
            .filter(outbox::Column::PublishedAt.is_null())
            .count(store.connection())
            .await
            .unwrap();
        assert_eq!(unpublished, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_start_ups_migrate_once() {
    let Some(url) = common::database_url() else {
        return;
    };
    let (admin, schema) = common::create_pg_schema(&url).await;
    let options = StoreOptions {
        schema: Some(schema.clone()),
        max_connections: 2,
        ..StoreOptions::default()
    };
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let (url, options) = (url.clone(), options.clone());
            tokio::spawn(async move { Store::connect(&url, options).await })
        })
        .collect();
    let mut results = Vec::new();
    for s in starts {
        results.push(s.await.unwrap());
    }
    for store in results.iter().flatten() {
        store.close().await.unwrap();
    }
    common::drop_pg_schema(admin, &schema).await;
    for r in results {
        r.expect("every concurrent start-up succeeds");
    }
}

/// The server ends the store's connection (as on a restart or failover). A call running on it
/// fails with `Unavailable`; with `test_before_acquire` (the default) the pool replaces a dead
/// idle connection before using it, so the next call succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_connection() {
    let Some(url) = common::database_url() else {
        return;
    };
    let (admin, schema) = common::create_pg_schema(&url).await;
    let options = StoreOptions {
        schema: Some(schema.clone()),
        max_connections: 1,
        min_connections: 1,
        ..StoreOptions::default()
    };
    let store = Store::connect(&url, options).await.unwrap();
    let backend_pid = |store: Store| async move {
        store
            .connection()
            .query_one(Statement::from_string(
                DbBackend::Postgres,
                "SELECT pg_backend_pid() AS pid",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i32>("", "pid")
            .unwrap()
    };
    let kill = |pid: i32| {
        let admin = admin.clone();
        async move {
            admin
                .execute_unprepared(&format!("SELECT pg_terminate_backend({pid})"))
                .await
                .unwrap();
            // pg_terminate_backend only signals; wait until the backend is gone.
            for _ in 0..100 {
                let alive = admin
                    .query_one(Statement::from_string(
                        DbBackend::Postgres,
                        format!("SELECT 1 AS one FROM pg_stat_activity WHERE pid = {pid}"),
                    ))
                    .await
                    .unwrap();
                if alive.is_none() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("backend {pid} did not exit");
        }
    };

    // 1. Killed while a call runs on it: hold a lock so get_user waits, then end its backend.
    let pid = backend_pid(store.clone()).await;
    let holder = sea_orm::TransactionTrait::begin(&admin).await.unwrap();
    holder
        .execute_unprepared(&format!(
            "LOCK TABLE \"{schema}\".users IN ACCESS EXCLUSIVE MODE"
        ))
        .await
        .unwrap();
    let call = tokio::spawn({
        let store = store.clone();
        async move { store.get_user(1).await }
    });
    let mut waiting = false;
    for _ in 0..100 {
        waiting = admin
            .query_one(Statement::from_string(
                DbBackend::Postgres,
                format!("SELECT 1 AS one FROM pg_stat_activity WHERE pid = {pid} AND wait_event_type = 'Lock'"),
            ))
            .await
            .unwrap()
            .is_some();
        if waiting {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kill(pid).await;
    let during = call.await.unwrap();
    holder.rollback().await.unwrap();

    // 2. Killed while idle in the pool: the checkout ping notices and reconnects.
    store.ping().await.unwrap();
    let pid = backend_pid(store.clone()).await;
    kill(pid).await;
    let after = store.get_user(1).await;

    store.close().await.unwrap();
    common::drop_pg_schema(admin, &schema).await;
    assert!(waiting, "get_user was blocked on the lock");
    let err = during.unwrap_err();
    assert!(matches!(err, RepoError::Unavailable(_)), "{err:?}");
    assert_eq!(after, Ok(None));
}

#[tokio::test]
async fn postgres_missing_schema_is_created() {
    let Some(url) = common::database_url() else {
        return;
    };
    let schema = common::unique_name("store_test_new");
    let options = StoreOptions {
        schema: Some(schema.clone()),
        ..StoreOptions::default()
    };
    let store = Store::connect(&url, options).await;
    let admin = sea_orm::Database::connect(&url).await.unwrap();
    if let Ok(store) = &store {
        store.close().await.unwrap();
    }
    let tables = admin
        .query_one(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT count(*) AS n FROM pg_tables WHERE schemaname = $1",
            [schema.clone().into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    common::drop_pg_schema(admin, &schema).await;
    store.expect("connect creates the schema");
    // users, products, outbox and sea-orm-migration's seaql_migrations
    assert_eq!(tables, 4);
}

// ---------------------------------------------------------------------------------------------
// connecting

#[tokio::test]
async fn unreachable_postgres_is_unavailable() {
    let options = StoreOptions {
        connect_timeout: Duration::from_secs(2),
        acquire_timeout: Duration::from_secs(2),
        ..StoreOptions::default()
    };
    let err = Store::connect("postgres://root@127.0.0.1:1/test", options)
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn bad_url_is_not_an_outage() {
    let err = Store::connect("nosuchdb://x", StoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::Other(_)), "{err:?}");
}

#[tokio::test]
async fn sqlite_file_and_directory_are_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/deeper/pipeline.db");
    let url = format!("sqlite://{}", path.display());
    let store = Store::connect(&url, StoreOptions::default()).await.unwrap();
    store.ping().await.unwrap();
    store.close().await.unwrap();
    assert!(path.exists());
}
