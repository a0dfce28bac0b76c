//! Dead letters through the whole pipeline: products whose messages were dead-lettered because
//! the media store was down stay unfinished, and once the store is back a redrive
//! (`mq_core::dead_letters::redrive`, what `admin dlq redrive` runs) gets them processed.

use std::sync::Arc;
use std::time::Duration;

use mq_core::dead_letters::{self, ReadOptions};
use product_pipeline::app::Roles;
use product_pipeline_imaging::media::outage::OutageStore;
use product_pipeline_imaging::media::MediaStore;

use crate::support::*;

pub async fn products_dead_lettered_by_a_media_outage_are_redriven(stack: &Stack) {
    let store = Arc::new(OutageStore::default());
    store.fail_writes(true);
    let media = MediaStore::from_object_store(store.clone(), "outage");
    let images = ImageServer::start().await;
    let mut config = stack.config.clone();
    config.worker_max_attempts = 2;
    let (publisher, subscriber) = stack.broker().await;
    let app = stack
        .start_on(
            &config,
            Roles::ALL,
            publisher.clone(),
            subscriber.clone(),
            media.clone(),
        )
        .await;
    let user = create_user(&app).await;
    let ids = [
        create_product(
            &app,
            user,
            &[
                images.image(640, 480, "dlq-a0"),
                images.image(480, 640, "dlq-a1"),
            ],
        )
        .await,
        create_product(&app, user, &[images.image(500, 500, "dlq-b0")]).await,
    ];

    let topic = config.products_topic();
    let on_topic = [("topic", topic.as_str())];
    let deadline = tokio::time::Instant::now() + PROCESSING;
    while Scrape::of(&app)
        .await
        .count("messages_dead_lettered_total", &on_topic)
        < 2.0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the products were never dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The store's outage is not the images' fault: nothing is recorded, nothing is stored.
    for id in ids {
        let (_, product) = get_json(&app, &format!("/products/{id}")).await;
        assert_eq!(product["status"], "processing", "{product}");
        assert!(media.list_product(id).await.unwrap().is_empty());
    }

    store.fail_writes(false);
    let options = ReadOptions {
        limit: 10,
        ..ReadOptions::default()
    };
    let letters = dead_letters::list(subscriber.as_ref(), &topic, &options)
        .await
        .expect("list the dead letters");
    assert_eq!(letters.len(), 2, "{letters:?}");
    for letter in &letters {
        let reason = letter.reason.as_deref().unwrap_or_default();
        assert!(reason.contains("test outage"), "{reason}");
    }
    let redriven = dead_letters::redrive(subscriber.as_ref(), publisher.as_ref(), &topic, &options)
        .await
        .expect("redrive the dead letters");
    assert_eq!(redriven, 2);

    for id in ids {
        let product = wait_final(&app, id, PROCESSING).await;
        assert_eq!(product["status"], "done", "{product}");
        let recorded = recorded_keys(&product);
        let mut stored = media.list_product(id).await.unwrap();
        stored.sort();
        assert_eq!(stored, recorded);
    }
    let left = dead_letters::list(
        subscriber.as_ref(),
        &topic,
        &ReadOptions {
            first_wait: Duration::from_secs(2),
            ..options
        },
    )
    .await
    .unwrap();
    assert!(left.is_empty(), "{left:?}");
    app.stop().await;
}
