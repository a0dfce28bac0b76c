//! Hostile slow image servers: products whose images trickle bytes or never answer, posted
//! before good products, end `partial`/`failed` with the reason within their fetch budget, and
//! the good products behind them are not held up.

use std::time::Duration;

use futures::future::join_all;
use product_pipeline::app::Roles;
use tokio::time::Instant;

use crate::support::*;

/// Seconds each image may spend downloading, over all attempts: three attempts of the grace
/// period.
const BUDGET: u64 = 9;

pub async fn slow_image_servers_do_not_hold_up_good_products(stack: &Stack) {
    let images = ImageServer::start().await;
    let mut config = stack.config.clone();
    config.image_fetch_budget = BUDGET;
    // Long enough for a good image's headers on a busy machine.
    config.image_fetch_grace = 3;
    // Enough attempts for the budget, not the attempt count, to end the slow images.
    config.worker_max_attempts = 10;
    config.worker_concurrency = 8;
    let (publisher, subscriber) = stack.broker().await;
    let app = stack
        .start_custom(&config, Roles::ALL, publisher, subscriber)
        .await;
    let user = create_user(&app).await;

    let slow = [
        vec![images.trickle("t0"), images.image(320, 240, "beside-t0")],
        vec![images.silent("s0"), images.image(320, 240, "beside-s0")],
        vec![images.trickle("t1")],
        vec![images.silent("s1"), images.trickle("t2")],
    ];
    let mut slow_ids = Vec::new();
    for urls in &slow {
        slow_ids.push(create_product(&app, user, urls).await);
    }
    let posted = Instant::now();
    let mut good_ids = Vec::new();
    for n in 0..8 {
        let urls = [
            images.image(480, 360, &format!("good-{n}-a")),
            images.image(360, 480, &format!("good-{n}-b")),
        ];
        good_ids.push(create_product(&app, user, &urls).await);
    }

    let within = Duration::from_secs(60);
    let finished = |ids: Vec<i64>| {
        join_all(ids.into_iter().map(|id| {
            let app = &app;
            async move {
                let product = wait_final(app, id, within).await;
                (product, posted.elapsed())
            }
        }))
    };
    let (slow_done, good_done) = tokio::join!(finished(slow_ids), finished(good_ids));

    let first_slow = slow_done.iter().map(|(_, at)| *at).min().unwrap();
    for (product, at) in &good_done {
        assert_eq!(product["status"], "done", "{product}");
        assert!(
            *at < first_slow,
            "good product {} was final after {at:?}, behind the first slow one ({first_slow:?})",
            product["product_id"]
        );
    }
    let expected = ["partial", "partial", "failed", "failed"];
    for ((product, at), status) in slow_done.iter().zip(expected) {
        assert_eq!(product["status"], status, "{product}");
        // The budget, the backoffs between attempts, and time to record.
        assert!(
            *at < Duration::from_secs(BUDGET + 8),
            "slow product {} took {at:?}",
            product["product_id"]
        );
        for error in product["image_errors"].as_array().unwrap() {
            let reason = error["reason"].as_str().unwrap();
            // A trickle is too slow; a silent server never starts answering.
            assert!(
                reason.contains("IMAGE_FETCH_BUDGET")
                    && (reason.contains("IMAGE_FETCH_MIN_RATE")
                        || reason.contains("IMAGE_FETCH_GRACE")),
                "{reason}"
            );
        }
    }
    app.stop().await;
}
