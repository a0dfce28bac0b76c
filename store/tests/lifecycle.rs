//! Products that change (updates, reprocessing, deletes, versions) and the image consumer's
//! version-checked writes, on SQLite and PostgreSQL; users listed, changed and deleted.

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::fixtures::{dec, new_product, user};
use common::TestCtx;
use mq_core::domain::{
    Created, IdempotencyKey, ImageError, ImageRendition, ProcessingResult, Product, ProductChange,
    ProductPatch, ProductRepo, ProductStatus, Recorded, RepoError, UserFilter, UserPatch, UserRepo,
};
use product_pipeline_store::entities::outbox;
use product_pipeline_store::Store;
use sea_orm::{EntityTrait, QueryOrder};
use serde_json::json;

suite!(
    changes_bump_the_version_and_announce_it,
    a_stale_if_match_changes_nothing,
    delete_removes_the_row_and_announces_it,
    changes_of_a_missing_product_are_not_found,
    results_count_only_for_their_version,
    renditions_are_recorded_and_announced,
    idempotent_changes_replay,
    concurrent_changes_make_distinct_versions,
    changes_from_two_processes_make_distinct_versions,
    users_are_listed_changed_and_deleted,
);

/// `(topic, payload)` of every outbox row, oldest first.
async fn events(store: &Store) -> Vec<(String, serde_json::Value)> {
    outbox::Entity::find()
        .order_by_asc(outbox::Column::Id)
        .all(store.connection())
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.topic, row.payload))
        .collect()
}

async fn product(store: &Store, mobile: &str) -> Product {
    let user_id = user(store, mobile).await;
    store
        .create_product(new_product(user_id, "lamp", "10.00"), BTreeMap::new())
        .await
        .unwrap()
}

async fn change(store: &Store, id: i64, change: ProductChange) -> Result<Product, RepoError> {
    store
        .change_product(id, change, None, BTreeMap::new(), None)
        .await
        .map(Created::into_inner)
}

fn price(value: &str) -> ProductChange {
    ProductChange::Update(ProductPatch {
        product_price: Some(dec(value)),
        ..ProductPatch::default()
    })
}

fn images(urls: &[&str]) -> ProductChange {
    ProductChange::Update(ProductPatch {
        product_images: Some(urls.iter().map(|u| u.to_string()).collect()),
        ..ProductPatch::default()
    })
}

fn done(id: i64, hash: &str) -> ProcessingResult {
    ProcessingResult::new(vec![format!("products/{id}/0-{hash}.jpg")], vec![])
}

async fn changes_bump_the_version_and_announce_it(ctx: TestCtx) {
    let store = ctx.store;
    let created = product(&store, "5550201").await;
    let id = created.product_id;
    assert_eq!(created.version, 1);

    // A new price: version 2, status untouched.
    let mark = store.mark_processing(id, Some(1)).await.unwrap().unwrap();
    assert_eq!(mark.status, ProductStatus::Processing);
    store.record_result(id, 1, &done(id, "a")).await.unwrap();
    let priced = change(&store, id, price("12.50")).await.unwrap();
    assert_eq!(priced.version, 2);
    assert_eq!(priced.product_price, dec("12.50"));
    assert_eq!(
        priced.status,
        ProductStatus::Done,
        "a price change keeps the images"
    );
    assert!(priced.updated_at >= created.updated_at);

    // The same price again: nothing written, no event.
    let before = events(&store).await.len();
    let same = change(&store, id, price("12.5")).await.unwrap();
    assert_eq!(same, store.get_product(id).await.unwrap().unwrap());
    assert_eq!(same.version, 2);
    assert_eq!(events(&store).await.len(), before);

    // New images: pending again, the previous result kept until the new one is recorded.
    let reimaged = change(&store, id, images(&["https://example.com/b.jpg"]))
        .await
        .unwrap();
    assert_eq!(reimaged.version, 3);
    assert_eq!(reimaged.status, ProductStatus::Pending);
    assert_eq!(
        reimaged.compressed_product_images,
        priced.compressed_product_images
    );

    // Reprocessing: always a new version.
    let reprocessed = change(&store, id, ProductChange::Reprocess).await.unwrap();
    assert_eq!(reprocessed.version, 4);
    assert_eq!(reprocessed.status, ProductStatus::Pending);

    let topics: Vec<_> = events(&store)
        .await
        .into_iter()
        .filter(|(topic, _)| topic != "products.processed")
        .collect();
    assert_eq!(
        topics,
        vec![
            (
                "products.created".into(),
                json!({"product_id": id, "version": 1})
            ),
            (
                "products.updated".into(),
                json!({"product_id": id, "version": 2})
            ),
            (
                "products.updated".into(),
                json!({"product_id": id, "version": 3})
            ),
            (
                "products.updated".into(),
                json!({"product_id": id, "version": 4})
            ),
        ]
    );
}

async fn a_stale_if_match_changes_nothing(ctx: TestCtx) {
    let store = ctx.store;
    let id = product(&store, "5550202").await.product_id;
    change(&store, id, price("11")).await.unwrap();
    let before = (store.get_product(id).await.unwrap(), events(&store).await);
    for stale in [price("99"), ProductChange::Reprocess, ProductChange::Delete] {
        let error = store
            .change_product(id, stale, Some(1), BTreeMap::new(), None)
            .await
            .unwrap_err();
        assert_eq!(
            error,
            RepoError::VersionMismatch {
                entity: "product",
                id,
                expected: 1,
                current: 2
            }
        );
    }
    assert_eq!(
        (store.get_product(id).await.unwrap(), events(&store).await),
        before
    );
    // The current version matches.
    let changed = store
        .change_product(id, price("99"), Some(2), BTreeMap::new(), None)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(changed.version, 3);
}

async fn delete_removes_the_row_and_announces_it(ctx: TestCtx) {
    let store = ctx.store;
    let id = product(&store, "5550203").await.product_id;
    let deleted = change(&store, id, ProductChange::Delete).await.unwrap();
    assert_eq!(deleted.version, 2, "the version the delete announces");
    assert_eq!(store.get_product(id).await.unwrap(), None);
    assert_eq!(
        events(&store).await.last().unwrap(),
        &(
            "products.deleted".to_owned(),
            json!({"product_id": id, "version": 2})
        )
    );
    // The consumer's writes find nothing.
    assert_eq!(store.mark_processing(id, Some(1)).await.unwrap(), None);
    assert_eq!(
        store.record_result(id, 1, &done(id, "a")).await.unwrap(),
        Recorded::Superseded
    );
}

async fn changes_of_a_missing_product_are_not_found(ctx: TestCtx) {
    let store = ctx.store;
    let id = product(&store, "5550204").await.product_id + 1000;
    for missing in [price("1"), ProductChange::Reprocess, ProductChange::Delete] {
        assert_eq!(
            change(&store, id, missing).await.unwrap_err(),
            RepoError::NotFound {
                entity: "product",
                id
            }
        );
    }
    assert_eq!(events(&store).await.len(), 1, "only the create's");
}

/// A worker that processed version 1 while the product moved to version 2 records nothing;
/// version 2's result is recorded with its `products.processed` event, once.
async fn results_count_only_for_their_version(ctx: TestCtx) {
    let store = ctx.store;
    let id = product(&store, "5550205").await.product_id;
    store.mark_processing(id, Some(1)).await.unwrap();
    change(&store, id, images(&["https://example.com/c.jpg"]))
        .await
        .unwrap();
    // A stale event does not mark the row.
    let row = store.mark_processing(id, Some(1)).await.unwrap().unwrap();
    assert_eq!((row.version, row.status), (2, ProductStatus::Pending));

    let processed_events = |events: Vec<(String, serde_json::Value)>| {
        events
            .into_iter()
            .filter(|(topic, _)| topic == "products.processed")
            .map(|(_, payload)| payload)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        store.record_result(id, 1, &done(id, "old")).await.unwrap(),
        Recorded::Superseded
    );
    assert!(processed_events(events(&store).await).is_empty());

    let partial = ProcessingResult::new(
        vec![],
        vec![ImageError {
            index: 0,
            url: "https://example.com/c.jpg".into(),
            reason: "HTTP 404".into(),
        }],
    );
    assert_eq!(
        store.record_result(id, 2, &partial).await.unwrap(),
        Recorded::Applied
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    let recorded = store.get_product(id).await.unwrap().unwrap();
    assert_eq!(
        store.record_result(id, 2, &partial).await.unwrap(),
        Recorded::Unchanged
    );
    assert_eq!(store.get_product(id).await.unwrap().unwrap(), recorded);
    assert_eq!(
        store
            .record_result(id, 2, &done(id, "other"))
            .await
            .unwrap(),
        Recorded::Superseded,
        "a version's first result is its result"
    );
    assert_eq!(
        processed_events(events(&store).await),
        vec![json!({
            "product_id": id,
            "version": 2,
            "status": "failed",
            "compressed_product_images": [],
            "image_renditions": [],
            "image_errors": [{"index": 0, "url": "https://example.com/c.jpg", "reason": "HTTP 404"}],
        })]
    );
}

/// A result's renditions are stored with the row, read back as they were, compared when the
/// same result comes again, and announced in `products.processed`.
async fn renditions_are_recorded_and_announced(ctx: TestCtx) {
    let store = ctx.store;
    let id = product(&store, "5550206").await.product_id;
    store.mark_processing(id, Some(1)).await.unwrap();
    let rendition = |side: u32, format: &str, ext: &str| ImageRendition {
        index: 0,
        width: side,
        height: side * 3 / 4,
        format: format.into(),
        bytes: u64::from(side) * 10,
        path: format!("products/{id}/0-{side}-ab.{ext}"),
        url: None,
    };
    let renditions = vec![
        rendition(1024, "jpeg", "jpg"),
        rendition(1024, "webp", "webp"),
        rendition(320, "jpeg", "jpg"),
    ];
    let result = ProcessingResult::new(vec![format!("products/{id}/0-1024-ab.jpg")], vec![])
        .with_renditions(renditions.clone());
    assert_eq!(
        store.record_result(id, 1, &result).await.unwrap(),
        Recorded::Applied
    );
    let row = store.get_product(id).await.unwrap().unwrap();
    assert_eq!(row.image_renditions, renditions);
    assert_eq!(row.stored_keys().len(), 3);
    assert_eq!(
        store.record_result(id, 1, &result).await.unwrap(),
        Recorded::Unchanged
    );
    let fewer = result.clone().with_renditions(renditions[..1].to_vec());
    assert_eq!(
        store.record_result(id, 1, &fewer).await.unwrap(),
        Recorded::Superseded,
        "other renditions are another result"
    );
    let processed: Vec<serde_json::Value> = events(&store)
        .await
        .into_iter()
        .filter(|(topic, _)| topic == "products.processed")
        .map(|(_, payload)| payload)
        .collect();
    assert_eq!(processed.len(), 1);
    assert_eq!(
        processed[0]["image_renditions"],
        serde_json::to_value(&renditions).unwrap()
    );
}

async fn idempotent_changes_replay(ctx: TestCtx) {
    let store = ctx.store;
    let id = product(&store, "5550206").await.product_id;
    let key = |fingerprint: &str| IdempotencyKey {
        key: "change-1".into(),
        fingerprint: fingerprint.into(),
        ttl: Duration::from_secs(60),
    };
    let first = store
        .change_product(id, price("20"), None, BTreeMap::new(), Some(key("a")))
        .await
        .unwrap();
    assert!(!first.is_replay());
    let again = store
        .change_product(id, price("20"), None, BTreeMap::new(), Some(key("a")))
        .await
        .unwrap();
    assert!(again.is_replay());
    assert_eq!(again.into_inner(), first.into_inner());
    assert_eq!(store.get_product(id).await.unwrap().unwrap().version, 2);
    assert_eq!(
        store
            .change_product(id, price("30"), None, BTreeMap::new(), Some(key("b")))
            .await
            .unwrap_err(),
        RepoError::IdempotencyKeyReused("change-1".into())
    );

    // A delete retried with its key is replayed, not a 404.
    let delete_key = IdempotencyKey {
        key: "delete-1".into(),
        ..key("d")
    };
    for replay in [false, true] {
        let outcome = store
            .change_product(
                id,
                ProductChange::Delete,
                None,
                BTreeMap::new(),
                Some(delete_key.clone()),
            )
            .await
            .unwrap();
        assert_eq!(outcome.is_replay(), replay);
    }
    let deletes = events(&store)
        .await
        .into_iter()
        .filter(|(topic, _)| topic == "products.deleted")
        .count();
    assert_eq!(deletes, 1);
}

/// Concurrent changes each get their own version: none is lost.
async fn concurrent_changes_make_distinct_versions(ctx: TestCtx) {
    let store = ctx.store;
    let id = product(&store, "5550207").await.product_id;
    let changes = (1..=8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move { change(&store, id, price(&format!("{i}.00"))).await })
    });
    let mut versions: Vec<i64> = futures::future::join_all(changes)
        .await
        .into_iter()
        .map(|joined| joined.unwrap().unwrap().version)
        .collect();
    versions.sort_unstable();
    assert_eq!(versions, (2..=9).collect::<Vec<_>>());
    assert_eq!(store.get_product(id).await.unwrap().unwrap().version, 9);
}

/// Two stores on one database (two processes: on SQLite each has its own write turn) change one
/// product at once: every change succeeds with a version of its own. On SQLite a change that read
/// before the other process wrote would otherwise fail with BUSY_SNAPSHOT (a 503).
async fn changes_from_two_processes_make_distinct_versions(ctx: TestCtx) {
    let other = Store::connect(&ctx.url, ctx.options.clone()).await.unwrap();
    let id = product(&ctx.store, "5550208").await.product_id;
    let changes = (1..=16).map(|i| {
        let store = if i % 2 == 0 {
            ctx.store.clone()
        } else {
            other.clone()
        };
        tokio::spawn(async move { change(&store, id, price(&format!("{i}.00"))).await })
    });
    let mut versions: Vec<i64> = futures::future::join_all(changes)
        .await
        .into_iter()
        .map(|joined| joined.unwrap().unwrap().version)
        .collect();
    versions.sort_unstable();
    assert_eq!(versions, (2..=17).collect::<Vec<_>>());
    other.close().await.unwrap();
}

async fn users_are_listed_changed_and_deleted(ctx: TestCtx) {
    let store = ctx.store;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(user(&store, &format!("555030{i}")).await);
    }
    // Pages of two walk every user once.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_users(&UserFilter { limit: 2, after })
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|u| u.id));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ids);

    let renamed = store
        .update_user(
            ids[0],
            UserPatch {
                name: Some("Grace".into()),
                latitude: Some(10.5),
                ..UserPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((renamed.name.as_str(), renamed.latitude), ("Grace", 10.5));
    assert_eq!(renamed.mobile, "5550300");
    assert!(renamed.updated_at >= renamed.created_at);

    // Another user's mobile: 409, nothing changed.
    let taken = store
        .update_user(
            ids[0],
            UserPatch {
                name: Some("Not stored".into()),
                mobile: Some("5550301".into()),
                ..UserPatch::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(taken, RepoError::DuplicateMobile("5550301".into()));
    assert_eq!(store.get_user(ids[0]).await.unwrap().unwrap(), renamed);
    assert_eq!(
        store
            .update_user(ids[4] + 1000, UserPatch::default())
            .await
            .unwrap_err(),
        RepoError::NotFound {
            entity: "user",
            id: ids[4] + 1000
        }
    );

    // A user with products stays until they are deleted.
    let owned = store
        .create_product(new_product(ids[1], "lamp", "1"), BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(
        store.delete_user(ids[1]).await.unwrap_err(),
        RepoError::UserHasProducts(ids[1])
    );
    assert!(store.get_user(ids[1]).await.unwrap().is_some());
    change(&store, owned.product_id, ProductChange::Delete)
        .await
        .unwrap();
    store.delete_user(ids[1]).await.unwrap();
    assert_eq!(store.get_user(ids[1]).await.unwrap(), None);
    assert_eq!(
        store.delete_user(ids[1]).await.unwrap_err(),
        RepoError::NotFound {
            entity: "user",
            id: ids[1]
        }
    );
}
