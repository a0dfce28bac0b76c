//! The worker runtime on the backend: retries, handler errors and dead letters.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::worker::{handler_fn, Backoff, Worker, WorkerConfig};
use crate::{dead_letter_topic, headers, Error, Message};

use super::helpers::*;
use super::{BackendFactory, Capabilities};

/// The worker runtime carries on after handler errors: every message is eventually handled.
pub async fn continue_after_handler_errors(factory: &dyn BackendFactory, caps: &Capabilities) {
    let (topic, group) = (unique("handler_errors"), unique("group"));
    let messages: Vec<_> = (0..30).map(|n| numbered("errors", n)).collect();
    let expected: HashSet<String> = messages.iter().map(|m| m.id().to_owned()).collect();
    let handled = Arc::new(Mutex::new(HashSet::<String>::new()));
    let failures = Arc::new(Mutex::new(HashMap::<String, u32>::new()));
    let shutdown = CancellationToken::new();
    let subscriber = factory.subscriber().await;
    let worker = {
        let (handled, failures, expected, shutdown) = (
            handled.clone(),
            failures.clone(),
            expected.clone(),
            shutdown.clone(),
        );
        Worker::new(
            subscriber.clone(),
            &topic,
            &group,
            handler_fn(move |message: Message, _attempt| {
                let (handled, failures, expected, shutdown) = (
                    handled.clone(),
                    failures.clone(),
                    expected.clone(),
                    shutdown.clone(),
                );
                async move {
                    let seq: usize = message.header("seq").unwrap_or("0").parse().unwrap_or(0);
                    let mut failures = failures.lock().unwrap();
                    let failed = failures.entry(message.id().to_owned()).or_default();
                    // Every third message fails twice before it succeeds.
                    if seq.is_multiple_of(3) && *failed < 2 {
                        *failed += 1;
                        return Err(Error::transient(format!("flaky dependency for #{seq}")));
                    }
                    drop(failures);
                    let mut handled = handled.lock().unwrap();
                    handled.insert(message.id().to_owned());
                    if expected.iter().all(|id| handled.contains(id)) {
                        shutdown.cancel();
                    }
                    Ok(())
                }
            }),
        )
        .with_config(quick_worker_config(4, 5))
    };
    let stats = worker.stats();
    declare_group(subscriber.as_ref(), &topic, &group).await;
    let run = tokio::spawn(worker.run(shutdown.clone()));
    publish_all(factory.publisher().await.as_ref(), &topic, &messages).await;
    match tokio::time::timeout(caps.receive_timeout, run).await {
        Ok(result) => result.expect("worker task").expect("worker run"),
        Err(_) => {
            let handled = handled.lock().unwrap().len();
            panic!("only {handled} of {} messages were handled", expected.len());
        }
    }
    assert_eq!(
        *handled.lock().unwrap(),
        expected,
        "every message handled after the errors"
    );
    let stats = stats.snapshot();
    assert_eq!(
        stats.retried, 20,
        "10 flaky messages retried twice each: {stats:?}"
    );
    assert_eq!(stats.dead_lettered, 0);
    subscriber.close().await.expect("close");
}

fn quick_worker_config(concurrency: usize, max_attempts: u32) -> WorkerConfig {
    WorkerConfig {
        concurrency,
        max_attempts,
        backoff: Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
            multiplier: 2.0,
            jitter: 0.5,
        },
        shutdown_timeout: Duration::from_secs(10),
    }
}

/// The worker runtime dead-letters a permanent failure at once and a transient one after the
/// last attempt, while the other messages are handled.
pub async fn worker_dead_letters(factory: &dyn BackendFactory, caps: &Capabilities) {
    let (topic, group) = (unique("worker_dlq"), unique("group"));
    let subscriber = factory.subscriber().await;
    let mut dead = subscriber
        .subscribe(&dead_letter_topic(&topic), &group)
        .await
        .expect("subscribe to the dead-letter topic");
    let attempts_seen = Arc::new(Mutex::new(HashMap::<String, u32>::new()));
    let good = Arc::new(Mutex::new(0usize));
    let worker = {
        let (attempts_seen, good) = (attempts_seen.clone(), good.clone());
        Worker::new(
            subscriber.clone(),
            &topic,
            &group,
            handler_fn(move |message: Message, attempt| {
                let (attempts_seen, good) = (attempts_seen.clone(), good.clone());
                async move {
                    attempts_seen
                        .lock()
                        .unwrap()
                        .insert(message.id().to_owned(), attempt.number());
                    match &message.payload()[..] {
                        b"permanent" => Err(Error::permanent("payload is not a product id")),
                        b"transient" => Err(Error::transient("image host keeps timing out")),
                        _ => {
                            *good.lock().unwrap() += 1;
                            Ok(())
                        }
                    }
                }
            }),
        )
        .with_config(quick_worker_config(2, 3))
    };
    let stats = worker.stats();
    let shutdown = CancellationToken::new();
    declare_group(subscriber.as_ref(), &topic, &group).await;
    let run = tokio::spawn(worker.run(shutdown.clone()));
    let permanent = Message::new("permanent");
    let transient = Message::new("transient");
    let publisher = factory.publisher().await;
    publish_all(
        publisher.as_ref(),
        &topic,
        &[
            Message::new("ok"),
            permanent.clone(),
            transient.clone(),
            Message::new("ok"),
        ],
    )
    .await;

    let mut letters = HashMap::new();
    for _ in 0..2 {
        let letter = next(&mut dead, caps, "a dead letter from the worker").await;
        letters.insert(letter.message().id().to_owned(), letter.message().clone());
        letter.ack().await.expect("ack");
    }
    let permanent_letter = letters
        .get(permanent.id())
        .expect("the permanent failure was dead-lettered");
    assert_eq!(
        permanent_letter.header(headers::ATTEMPTS),
        Some("1"),
        "no retry for a permanent error"
    );
    assert!(permanent_letter
        .header(headers::DEAD_LETTER_REASON)
        .unwrap()
        .contains("not a product id"));
    let transient_letter = letters
        .get(transient.id())
        .expect("the transient failure was dead-lettered");
    assert_eq!(
        transient_letter.header(headers::ATTEMPTS),
        Some("3"),
        "dead-lettered after max attempts"
    );
    assert!(transient_letter
        .header(headers::DEAD_LETTER_REASON)
        .unwrap()
        .contains("timing out"));

    wait_for_all(caps, "good messages were not handled", || {
        2usize.saturating_sub(*good.lock().unwrap())
    })
    .await;
    shutdown.cancel();
    run.await.expect("worker task").expect("worker run");
    let stats = stats.snapshot();
    assert_eq!(
        (stats.acked, stats.dead_lettered, stats.retried),
        (2, 2, 2),
        "{stats:?}"
    );
    expect_nothing(&mut dead, caps, "only the two failures are dead letters").await;
    subscriber.close().await.expect("close");
}
