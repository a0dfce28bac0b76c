//! The repository suite, run on SQLite (temp file) and PostgreSQL (`DATABASE_URL`, one fresh
//! schema per test).

#[macro_use]
mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use common::fixtures::{dec, new_product, new_user, user};
use common::{Backend, TestCtx};
use mq_core::domain::{
    Created, IdempotencyKey, ImageError, NewProduct, NewUser, OutboxBacklog, OutboxRepo,
    ProcessingResult, Product, ProductChange, ProductFilter, ProductRepo, ProductStatus, Recorded,
    RepoError, User, UserRepo, PRODUCTS_CREATED_TOPIC,
};
use product_pipeline_store::entities::{idempotency_key, outbox, product, user};
use product_pipeline_store::{Store, StoreOptions};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, PaginatorTrait,
    QueryFilter, Set, Statement, TransactionTrait,
};

// ---------------------------------------------------------------------------------------------
// helpers

async fn rows<E>(store: &Store) -> u64
where
    E: EntityTrait,
    E::Model: Sync,
{
    E::find().count(store.connection()).await.unwrap()
}

async fn outbox_rows(store: &Store) -> u64 {
    rows::<outbox::Entity>(store).await
}

/// The ids of every outbox row, in id order.
async fn outbox_ids(store: &Store) -> Vec<i64> {
    let mut ids: Vec<i64> = outbox::Entity::find()
        .all(store.connection())
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    ids.sort_unstable();
    ids
}

async fn product_rows(store: &Store) -> u64 {
    rows::<product::Entity>(store).await
}

async fn key_rows(store: &Store) -> u64 {
    rows::<idempotency_key::Entity>(store).await
}

/// `create_product_idempotent` without headers.
async fn create_with_key(
    store: &Store,
    new: NewProduct,
    key: &IdempotencyKey,
) -> Result<Created<Product>, RepoError> {
    store
        .create_product_idempotent(new, BTreeMap::new(), key)
        .await
}

/// A key remembered for an hour.
fn key(key: &str, fingerprint: &str) -> IdempotencyKey {
    IdempotencyKey {
        key: key.into(),
        fingerprint: fingerprint.into(),
        ttl: Duration::from_secs(3600),
    }
}

/// The one row all `results` carry, after checking that each call succeeded, exactly one
/// created it and the others replayed that very row.
fn one_created<T: PartialEq + Debug>(results: Vec<Result<Created<T>, RepoError>>) -> T {
    let results: Vec<Created<T>> = results.into_iter().map(Result::unwrap).collect();
    let new = results.iter().filter(|r| !r.is_replay()).count();
    assert_eq!(new, 1, "exactly one call creates: {results:?}");
    let mut rows = results.into_iter().map(Created::into_inner);
    let first = rows.next().unwrap();
    for row in rows {
        assert_eq!(row, first, "every call returns the same row");
    }
    first
}

/// Runs `n` calls of `call` at once, spread over `stores`.
async fn at_once<T, F, Fut>(stores: &[Store], n: usize, call: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(Store) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let start = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let call = call(stores[i % stores.len()].clone());
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                call.await
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

fn filter(limit: u32) -> ProductFilter {
    ProductFilter {
        limit,
        ..ProductFilter::default()
    }
}

/// `n` products of `user_id`, named `p0`, `p1`, ..., created one after the other.
async fn products(store: &Store, user_id: i64, n: usize) -> Vec<Product> {
    let mut created = Vec::new();
    for i in 0..n {
        let new = new_product(user_id, &format!("p{i}"), "1");
        created.push(store.create_product(new, BTreeMap::new()).await.unwrap());
    }
    created
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
    idempotent_user_replays_its_snapshot,
    idempotent_product_replays_its_snapshot,
    idempotency_scopes_are_separate,
    expired_idempotency_key_is_used_afresh,
    failed_idempotent_creates_store_nothing,
    concurrent_idempotent_creates_make_one_row,
    expired_idempotency_keys_are_purged,
    count_by_status_lists_every_status,
    outbox_backlog_counts_unpublished_rows,
    published_rows_are_deleted_after_their_retention,
    retention_deletes_next_to_a_publishing_relay,
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
            serde_json::json!({ "product_id": product.product_id, "version": 1 })
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
    assert_eq!(
        payload,
        serde_json::json!({ "product_id": a.product_id, "version": 1 })
    );
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

    assert_eq!(store.mark_processing(id + 1000, None).await.unwrap(), None);
    let processing = store.mark_processing(id, None).await.unwrap().unwrap();
    assert_eq!(processing.status, ProductStatus::Processing);
    assert!(processing.updated_at >= created.updated_at);
    // Again (a redelivery while processing): still processing.
    let again = store.mark_processing(id, None).await.unwrap().unwrap();
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
    assert_eq!(
        store.record_result(id, 1, &partial).await.unwrap(),
        Recorded::Applied
    );
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
    assert_eq!(
        store.record_result(id, 1, &partial).await.unwrap(),
        Recorded::Unchanged
    );
    assert_eq!(store.get_product(id).await.unwrap().unwrap(), recorded);

    // A final product is not taken back to processing.
    let unchanged = store.mark_processing(id, None).await.unwrap().unwrap();
    assert_eq!(unchanged, recorded);

    // A different result for the same version is refused: a version's first result is its
    // result. After a reprocess (a new version) it is recorded.
    let done = ProcessingResult::new(
        vec![
            format!("products/{id}/0-abcd.jpg"),
            format!("products/{id}/1-ef01.jpg"),
        ],
        vec![],
    );
    assert_eq!(
        store.record_result(id, 1, &done).await.unwrap(),
        Recorded::Superseded
    );
    assert_eq!(store.get_product(id).await.unwrap().unwrap(), recorded);
    let reprocessed = store
        .change_product(id, ProductChange::Reprocess, None, BTreeMap::new(), None)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reprocessed.version, 2);
    assert_eq!(reprocessed.status, ProductStatus::Pending);
    assert_eq!(
        store.record_result(id, 2, &done).await.unwrap(),
        Recorded::Applied
    );
    let finished = store.get_product(id).await.unwrap().unwrap();
    assert_eq!(finished.status, ProductStatus::Done);
    assert_eq!(finished.compressed_product_images.len(), 2);
    assert!(finished.image_errors.is_empty());
    assert!(finished.updated_at > recorded.updated_at);

    assert_eq!(
        store.record_result(id + 1000, 1, &done).await.unwrap(),
        Recorded::Superseded
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
    product_pipeline_store::migrate(store.connection())
        .await
        .unwrap();
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
                "idempotency_keys.created_at",
                "idempotency_keys.expires_at",
            ] {
                assert_eq!(ty(c), "timestamp with time zone", "{c}");
            }
            for c in [
                "idempotency_keys.scope",
                "idempotency_keys.key",
                "idempotency_keys.fingerprint",
                "idempotency_keys.response",
            ] {
                assert_eq!(ty(c), "text", "{c}");
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
// idempotency keys

async fn idempotent_user_replays_its_snapshot(ctx: TestCtx) {
    let store = ctx.store;
    // Coordinates whose shortest JSON form a fast (not correctly rounded) float parser reads
    // back 1 ULP off: the snapshot must give the same f64.
    let new = NewUser {
        latitude: 43.212230480109156,
        longitude: -59.918526640817724,
        ..new_user("5550300")
    };
    let k = key("user-key", "fp-1");
    let created = match store.create_user_idempotent(new.clone(), &k).await.unwrap() {
        Created::New(user) => user,
        other => panic!("the first call creates: {other:?}"),
    };
    assert_eq!(
        store.get_user(created.id).await.unwrap(),
        Some(created.clone())
    );

    // The row changes (by hand: users have no update); a replay is the first response.
    store
        .connection()
        .execute_unprepared(&format!(
            "UPDATE users SET name = 'renamed' WHERE id = {}",
            created.id
        ))
        .await
        .unwrap();
    let again = store.create_user_idempotent(new.clone(), &k).await.unwrap();
    assert_eq!(again, Created::Replayed(created.clone()));
    assert_eq!(rows::<user::Entity>(&store).await, 1);

    // The same key for another request: refused, nothing stored, the key still the first's.
    let err = store
        .create_user_idempotent(new_user("5550301"), &key("user-key", "fp-2"))
        .await
        .unwrap_err();
    assert_eq!(err, RepoError::IdempotencyKeyReused("user-key".into()));
    assert!(!err.is_transient());
    assert_eq!(rows::<user::Entity>(&store).await, 1);
    assert_eq!(key_rows(&store).await, 1);
    let again = store.create_user_idempotent(new, &k).await.unwrap();
    assert_eq!(again, Created::Replayed(created));
}

async fn idempotent_product_replays_its_snapshot(ctx: TestCtx) {
    let store = ctx.store;
    let user_id = user(&store, "5550310").await;
    let headers = BTreeMap::from([("traceparent".to_owned(), "00-abc-def-01".to_owned())]);
    let k = key("product-key", "fp-1");
    let new = new_product(user_id, "Lamp", "0.1");
    let created = match store
        .create_product_idempotent(new.clone(), headers.clone(), &k)
        .await
        .unwrap()
    {
        Created::New(product) => product,
        other => panic!("the first call creates: {other:?}"),
    };
    assert_eq!(created.product_price.to_string(), "0.10");
    assert_eq!(created.status, ProductStatus::Pending);
    assert_eq!(
        store.get_product(created.product_id).await.unwrap(),
        Some(created.clone())
    );
    let claimed = store
        .claim_outbox(10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "the product's outbox row");
    assert_eq!(claimed[0].key, Some(created.product_id.to_string()));
    assert_eq!(claimed[0].headers["traceparent"], "00-abc-def-01");

    // The product moves on; a replay is still the first response.
    let id = created.product_id;
    store.mark_processing(id, None).await.unwrap();
    let result = ProcessingResult::new(vec![format!("products/{id}/0-abc.jpg")], Vec::new());
    store.record_result(id, 1, &result).await.unwrap();
    let now = store.get_product(id).await.unwrap().unwrap();
    assert_eq!(now.status, ProductStatus::Done);
    let again = store
        .create_product_idempotent(new.clone(), headers.clone(), &k)
        .await
        .unwrap();
    assert!(again.is_replay());
    let replayed = again.into_inner();
    assert_eq!(
        replayed, created,
        "the first response, not the row as it is now"
    );
    assert_eq!(replayed.product_price.to_string(), "0.10");
    assert_eq!(product_rows(&store).await, 1);
    assert_eq!(
        outbox_rows(&store).await,
        2,
        "a replay writes no outbox row (the two: created, and processed when it was recorded)"
    );

    // The same key for another request.
    let err = store
        .create_product_idempotent(
            new_product(user_id, "Other", "2"),
            headers,
            &key("product-key", "fp-2"),
        )
        .await
        .unwrap_err();
    assert_eq!(err, RepoError::IdempotencyKeyReused("product-key".into()));
    assert_eq!(product_rows(&store).await, 1);
    assert_eq!(outbox_rows(&store).await, 2);
    assert_eq!(key_rows(&store).await, 1);

    // Prices keep their two decimals through the snapshot's JSON number.
    for price in ["0", "5", "12.3", "9999999999.99"] {
        let k = key(&format!("price {price}"), "fp");
        let new = new_product(user_id, "p", price);
        let first = create_with_key(&store, new.clone(), &k)
            .await
            .unwrap()
            .into_inner();
        let again = create_with_key(&store, new, &k).await.unwrap();
        assert!(again.is_replay(), "{price}");
        let again = again.into_inner();
        assert_eq!(again, first, "{price}");
        assert_eq!(
            again.product_price.to_string(),
            first.product_price.to_string()
        );
    }
}

async fn idempotency_scopes_are_separate(ctx: TestCtx) {
    let store = ctx.store;
    let k = key("shared", "fp");
    let user = match store
        .create_user_idempotent(new_user("5550320"), &k)
        .await
        .unwrap()
    {
        Created::New(user) => user,
        other => panic!("{other:?}"),
    };
    let product = match create_with_key(&store, new_product(user.id, "p", "1"), &k)
        .await
        .unwrap()
    {
        Created::New(product) => product,
        other => panic!("a user's key is not a product's: {other:?}"),
    };
    assert_eq!(key_rows(&store).await, 2);
    assert_eq!(
        store
            .create_user_idempotent(new_user("5550320"), &k)
            .await
            .unwrap(),
        Created::Replayed(user.clone())
    );
    assert_eq!(
        create_with_key(&store, new_product(user.id, "p", "1"), &k)
            .await
            .unwrap(),
        Created::Replayed(product)
    );
}

async fn expired_idempotency_key_is_used_afresh(ctx: TestCtx) {
    let store = ctx.store;
    let user_id = user(&store, "5550330").await;
    // The store purges expired keys on its first idempotent create; have that done, so that the
    // expired key below is met by the lookup rather than removed by the purge.
    create_with_key(&store, new_product(user_id, "w", "1"), &key("w", "fp"))
        .await
        .unwrap();

    let expired = IdempotencyKey {
        ttl: Duration::ZERO,
        ..key("k", "fp-1")
    };
    let first = create_with_key(&store, new_product(user_id, "a", "1"), &expired)
        .await
        .unwrap();
    assert!(!first.is_replay());
    assert_eq!(key_rows(&store).await, 2, "the expired key is still stored");
    // Expired: the key is free, even for another request.
    let second = create_with_key(&store, new_product(user_id, "b", "2"), &key("k", "fp-2"))
        .await
        .unwrap();
    let Created::New(second) = second else {
        panic!("an expired key creates anew: {second:?}");
    };
    assert_ne!(second.product_id, first.into_inner().product_id);
    assert_eq!(key_rows(&store).await, 2, "the expired key was replaced");
    let third = create_with_key(&store, new_product(user_id, "b", "2"), &key("k", "fp-2"))
        .await
        .unwrap();
    assert_eq!(third, Created::Replayed(second));
    assert_eq!(product_rows(&store).await, 3);
    assert_eq!(outbox_rows(&store).await, 3);
}

async fn failed_idempotent_creates_store_nothing(ctx: TestCtx) {
    let store = ctx.store;
    let k = key("k", "fp");
    let err = create_with_key(&store, new_product(987_654, "orphan", "1"), &k)
        .await
        .unwrap_err();
    assert_eq!(err, RepoError::UnknownUser(987_654));
    let user_id = user(&store, "5550340").await;
    let err = create_with_key(&store, new_product(user_id, "p", "0.001"), &k)
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::Other(_)), "{err:?}");
    let err = store
        .create_user_idempotent(new_user("5550340"), &k)
        .await
        .unwrap_err();
    assert_eq!(err, RepoError::DuplicateMobile("5550340".into()));
    assert_eq!(product_rows(&store).await, 0);
    assert_eq!(outbox_rows(&store).await, 0);
    assert_eq!(rows::<user::Entity>(&store).await, 1);
    assert_eq!(key_rows(&store).await, 0);
    // Nothing remembers the key: it creates next time.
    let created = create_with_key(&store, new_product(user_id, "p", "1"), &k)
        .await
        .unwrap();
    assert!(!created.is_replay());
}

/// Product "p" of `user_id` with key "k", as each racing call asks for it.
async fn create_raced_product(store: Store, user_id: i64) -> Result<Created<Product>, RepoError> {
    create_with_key(&store, new_product(user_id, "p", "1"), &key("k", "fp")).await
}

/// The user with mobile 5550399 and key "k", as each racing call asks for it.
async fn create_raced_user(store: Store) -> Result<Created<User>, RepoError> {
    store
        .create_user_idempotent(new_user("5550399"), &key("k", "fp"))
        .await
}

/// After racing product calls: one of them created the product, the others replayed it, and
/// it is the only product, with one outbox row.
async fn assert_one_product(store: &Store, results: Vec<Result<Created<Product>, RepoError>>) {
    let product = one_created(results);
    assert_eq!(product_rows(store).await, 1);
    assert_eq!(outbox_rows(store).await, 1);
    assert_eq!(
        store.get_product(product.product_id).await.unwrap(),
        Some(product)
    );
}

/// After racing user calls: one created the user, the others replayed it; `users` users in all.
async fn assert_one_user(
    store: &Store,
    results: Vec<Result<Created<User>, RepoError>>,
    users: u64,
) {
    let user = one_created(results);
    assert_eq!(rows::<user::Entity>(store).await, users);
    assert_eq!(store.get_user(user.id).await.unwrap(), Some(user));
}

/// Eight calls with one new key at once, through two stores (processes) on the same database.
async fn concurrent_idempotent_creates_make_one_row(ctx: TestCtx) {
    let other = Store::connect(&ctx.url, ctx.options.clone()).await.unwrap();
    let stores = [ctx.store.clone(), other.clone()];
    let store = ctx.store;
    let user_id = user(&store, "5550350").await;
    let results = at_once(&stores, 8, |store| create_raced_product(store, user_id)).await;
    assert_one_product(&store, results).await;
    let results = at_once(&stores, 8, create_raced_user).await;
    assert_one_user(&store, results, 2).await;
    assert_eq!(key_rows(&store).await, 2);
    other.close().await.unwrap();
}

async fn expired_idempotency_keys_are_purged(ctx: TestCtx) {
    let store = ctx.store;
    let user_id = user(&store, "5550360").await;
    let db = store.connection();
    let hour = chrono::Duration::hours(1);
    let stored = |scope: &str, key: String, expires_at| idempotency_key::ActiveModel {
        scope: Set(scope.to_owned()),
        key: Set(key),
        fingerprint: Set("fp".into()),
        response: Set("{}".into()),
        created_at: Set(Utc::now() - hour * 2),
        expires_at: Set(expires_at),
    };
    // More expired keys than one purge deletes, of both scopes, and a live one.
    let expired: Vec<_> = (0..1200)
        .map(|i| {
            let scope = if i % 2 == 0 { "users" } else { "products" };
            stored(scope, format!("old {i}"), Utc::now() - hour)
        })
        .collect();
    for chunk in expired.chunks(300) {
        idempotency_key::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(db)
            .await
            .unwrap();
    }
    idempotency_key::Entity::insert(stored("users", "live".into(), Utc::now() + hour))
        .exec_without_returning(db)
        .await
        .unwrap();
    let expired_rows = || async {
        idempotency_key::Entity::find()
            .filter(idempotency_key::Column::ExpiresAt.lte(Utc::now()))
            .count(db)
            .await
            .unwrap()
    };
    let create = |name: &'static str| {
        let store = store.clone();
        async move {
            let k = key(name, "fp");
            create_with_key(&store, new_product(user_id, name, "1"), &k)
                .await
                .unwrap()
        }
    };

    // The first create purges (a batch of 1000).
    create("new 1").await;
    assert_eq!(expired_rows().await, 200);
    // A full batch may have left some: the next create purges again.
    create("new 2").await;
    assert_eq!(expired_rows().await, 0);
    assert_eq!(
        key_rows(&store).await,
        3,
        "the live key and the two new ones"
    );
    // Otherwise the store purges again a minute later.
    idempotency_key::Entity::insert(stored("users", "old".into(), Utc::now() - hour))
        .exec_without_returning(db)
        .await
        .unwrap();
    create("new 3").await;
    assert_eq!(expired_rows().await, 1);
}

// ---------------------------------------------------------------------------------------------
// metrics

async fn count_by_status_lists_every_status(ctx: TestCtx) {
    let store = ctx.store;
    let zeros: Vec<(ProductStatus, u64)> = ProductStatus::ALL.iter().map(|&s| (s, 0)).collect();
    assert_eq!(store.count_by_status().await.unwrap(), zeros);

    let user_id = user(&store, "5550370").await;
    let ids = ids(&products(&store, user_id, 7).await);
    let error = ImageError {
        index: 1,
        url: "https://example.com/b.jpg".into(),
        reason: "404".into(),
    };
    let done = ProcessingResult::new(vec!["a.jpg".into()], Vec::new());
    let partial = ProcessingResult::new(vec!["a.jpg".into()], vec![error.clone()]);
    let failed = ProcessingResult::new(Vec::new(), vec![error]);
    store.mark_processing(ids[0], None).await.unwrap();
    store.mark_processing(ids[1], None).await.unwrap();
    store.record_result(ids[2], 1, &done).await.unwrap();
    store.record_result(ids[3], 1, &done).await.unwrap();
    store.record_result(ids[4], 1, &done).await.unwrap();
    store.record_result(ids[5], 1, &partial).await.unwrap();
    assert_eq!(
        store.count_by_status().await.unwrap(),
        [
            (ProductStatus::Pending, 1),
            (ProductStatus::Processing, 2),
            (ProductStatus::Done, 3),
            (ProductStatus::Partial, 1),
            (ProductStatus::Failed, 0),
        ]
    );
    store.record_result(ids[6], 1, &failed).await.unwrap();
    let counts = store.count_by_status().await.unwrap();
    assert_eq!(counts[0], (ProductStatus::Pending, 0));
    assert_eq!(counts[4], (ProductStatus::Failed, 1));
}

async fn outbox_backlog_counts_unpublished_rows(ctx: TestCtx) {
    let store = ctx.store;
    assert_eq!(
        store.outbox_backlog().await.unwrap(),
        OutboxBacklog {
            unpublished: 0,
            oldest_created_at: None
        }
    );
    let user_id = user(&store, "5550380").await;
    let created: Vec<_> = products(&store, user_id, 3)
        .await
        .iter()
        .map(|p| p.created_at)
        .collect();
    let backlog = |unpublished, oldest| OutboxBacklog {
        unpublished,
        oldest_created_at: Some(oldest),
    };
    assert_eq!(
        store.outbox_backlog().await.unwrap(),
        backlog(3, created[0])
    );
    // Claimed rows are still unpublished.
    let claimed = store
        .claim_outbox(2, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        store.outbox_backlog().await.unwrap(),
        backlog(3, created[0])
    );
    store.mark_published(&[claimed[0].id]).await.unwrap();
    assert_eq!(
        store.outbox_backlog().await.unwrap(),
        backlog(2, created[1])
    );
    let all = outbox_ids(&store).await;
    store.mark_published(&all).await.unwrap();
    assert_eq!(
        store.outbox_backlog().await.unwrap(),
        OutboxBacklog::default()
    );
}

async fn published_rows_are_deleted_after_their_retention(ctx: TestCtx) {
    let store = ctx.store;
    let user_id = user(&store, "5550390").await;
    products(&store, user_id, 6).await;
    let ids = outbox_ids(&store).await;
    let now = Utc::now();
    let hour = chrono::Duration::hours(1);
    store.mark_published(&ids[..4]).await.unwrap();
    // Published 3 h, 2 h, 30 min ago and now; ids[4] unpublished for ten days; ids[5] unpublished.
    let ages = [
        (ids[0], Some(now - hour * 3)),
        (ids[1], Some(now - hour * 2)),
        (ids[2], Some(now - hour / 2)),
    ];
    for (id, published_at) in ages {
        outbox::Entity::update_many()
            .col_expr(outbox::Column::PublishedAt, Expr::value(published_at))
            .filter(outbox::Column::Id.eq(id))
            .exec(store.connection())
            .await
            .unwrap();
    }
    outbox::Entity::update_many()
        .col_expr(outbox::Column::CreatedAt, Expr::value(now - hour * 240))
        .filter(outbox::Column::Id.eq(ids[4]))
        .exec(store.connection())
        .await
        .unwrap();

    let cutoff = now - hour;
    assert_eq!(store.delete_published(cutoff, 0).await.unwrap(), 0);
    assert_eq!(store.delete_published(cutoff, 1).await.unwrap(), 1);
    assert_eq!(
        outbox_ids(&store).await,
        ids[1..],
        "the earliest published first"
    );
    assert_eq!(store.delete_published(cutoff, 10).await.unwrap(), 1);
    assert_eq!(
        outbox_ids(&store).await,
        ids[2..],
        "only rows published before the cutoff"
    );
    assert_eq!(store.delete_published(cutoff, 10).await.unwrap(), 0);

    // However far the cutoff, unpublished rows stay.
    let later = now + hour;
    assert_eq!(store.delete_published(later, 10).await.unwrap(), 2);
    assert_eq!(outbox_ids(&store).await, ids[4..]);
    assert_eq!(store.outbox_backlog().await.unwrap().unpublished, 2);
}

async fn retention_deletes_next_to_a_publishing_relay(ctx: TestCtx) {
    let store = ctx.store;
    let user_id = user(&store, "5550391").await;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Retention with a cutoff in the future deletes every row as soon as it is published.
    let retention = {
        let (store, done) = (store.clone(), done.clone());
        tokio::spawn(async move {
            let mut deleted = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let cutoff = Utc::now() + chrono::Duration::hours(1);
                deleted += store.delete_published(cutoff, 5).await.unwrap();
                tokio::task::yield_now().await;
            }
            deleted
        })
    };
    let sent = Arc::new(Mutex::new(Vec::new()));
    for round in 0..12 {
        products(&store, user_id, 5).await;
        if round % 2 == 1 {
            relay(store.clone(), 3, sent.clone()).await;
        }
    }
    relay(store.clone(), 3, sent.clone()).await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let deleted = retention.await.unwrap();

    // Every row was published exactly once: none was deleted before its publish.
    let sent = sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 60);
    assert_eq!(sent.iter().collect::<BTreeSet<_>>().len(), 60);
    let left = outbox_ids(&store).await;
    assert_eq!(deleted + left.len() as u64, 60);
    assert_eq!(store.outbox_backlog().await.unwrap().unpublished, 0);
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

/// The `n` of a PostgreSQL `SELECT count(*) AS n … $1` query.
async fn pg_count(db: &DatabaseConnection, sql: &str, arg: &str) -> i64 {
    db.query_one(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        [arg.into()],
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get("", "n")
    .unwrap()
}

/// Runs `n` calls while another connection holds `table` in EXCLUSIVE mode, and lets them go
/// once all `n` wait for that lock: every call has then looked its key up and found nothing.
async fn behind_lock<T, F, Fut>(
    admin: &DatabaseConnection,
    schema: &str,
    table: &str,
    n: usize,
    call: F,
) -> Vec<T>
where
    T: Send + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let relation = format!("\"{schema}\".{table}");
    let holder = admin.begin().await.unwrap();
    holder
        .execute_unprepared(&format!("LOCK TABLE {relation} IN EXCLUSIVE MODE"))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..n).map(|_| tokio::spawn(call())).collect();
    let mut waiting = 0;
    for _ in 0..400 {
        waiting = pg_count(
            admin,
            "SELECT count(*) AS n FROM pg_locks WHERE relation = $1::regclass AND NOT granted",
            &relation,
        )
        .await;
        if waiting == n as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    holder.commit().await.unwrap();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    assert_eq!(waiting, n as i64, "every call waited for the {table} lock");
    results
}

/// Every call passes the lookup before any commits, so they really race for the key: the
/// products' losers lose at the key insert, the users' at the unique mobile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_racing_idempotent_creates_make_one_row() {
    common::run(Backend::Postgres, |ctx| async move {
        let store = ctx.store;
        let schema = ctx.options.schema.clone().unwrap();
        let admin = sea_orm::Database::connect(&ctx.url).await.unwrap();
        let user_id = user(&store, "5550400").await;

        let results = behind_lock(&admin, &schema, "outbox", 8, || {
            create_raced_product(store.clone(), user_id)
        })
        .await;
        assert_one_product(&store, results).await;
        let results = behind_lock(&admin, &schema, "users", 8, || {
            create_raced_user(store.clone())
        })
        .await;
        assert_one_user(&store, results, 2).await;
        assert_eq!(key_rows(&store).await, 2);
        admin.close().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_start_ups_migrate_once() {
    let Some(url) = common::database_url() else {
        return;
    };
    let schema = common::PgSchema::create(&url, "store_test").await;
    let options = StoreOptions {
        schema: Some(schema.name().to_owned()),
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
    schema.drop_now().await;
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
    let schema = common::PgSchema::create(&url, "store_test").await;
    let admin = sea_orm::Database::connect(&url).await.unwrap();
    let options = StoreOptions {
        schema: Some(schema.name().to_owned()),
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
            "LOCK TABLE \"{}\".users IN ACCESS EXCLUSIVE MODE",
            schema.name()
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
    admin.close().await.unwrap();
    schema.drop_now().await;
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
    let schema = common::PgSchema::named(&url, "store_test_new");
    let options = StoreOptions {
        schema: Some(schema.name().to_owned()),
        ..StoreOptions::default()
    };
    let store = Store::connect(&url, options).await;
    let admin = sea_orm::Database::connect(&url).await.unwrap();
    if let Ok(store) = &store {
        store.close().await.unwrap();
    }
    let tables = pg_count(
        &admin,
        "SELECT count(*) AS n FROM pg_tables WHERE schemaname = $1",
        schema.name(),
    )
    .await;
    admin.close().await.unwrap();
    schema.drop_now().await;
    store.expect("connect creates the schema");
    // users, products, outbox, idempotency_keys and sea-orm-migration's seaql_migrations
    assert_eq!(tables, 5);
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
