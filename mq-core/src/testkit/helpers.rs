//! Building blocks of the scenarios, public so that backend-specific tests use them too.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::{Delivery, DeliveryStream, Message, Publisher, Subscriber};

use super::{BackendFactory, Capabilities};

/// A name unique to this run, so scenarios never share topics or groups. (The workspace's own
/// tests have `testsupport::unique_name` too; this one is part of the published kit.)
pub fn unique(name: &str) -> String {
    format!("kit.{name}.{:012x}", fastrand::u64(..) & 0xffff_ffff_ffff)
}

/// Prints why `scenario` does not run on this backend.
pub(super) fn skip(scenario: &str, why: &str) {
    eprintln!("conformance scenario `{scenario}` skipped: {why}");
}

/// The next delivery of `stream`, failing with `what` after [`Capabilities::receive_timeout`] or
/// when the stream ends; transient stream errors (a backend recovering) are printed and waited
/// through, a permanent one fails.
pub async fn next(stream: &mut DeliveryStream, caps: &Capabilities, what: &str) -> Delivery {
    let deadline = tokio::time::Instant::now() + caps.receive_timeout;
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => panic!(
                "timed out after {:?} waiting for {what}",
                caps.receive_timeout
            ),
            Ok(None) => panic!("the subscription ended while waiting for {what}"),
            Ok(Some(Err(error))) => {
                assert!(
                    error.is_transient(),
                    "permanent subscription error while waiting for {what}: {error}"
                );
                eprintln!("subscription error while waiting for {what}: {error}");
            }
            Ok(Some(Ok(delivery))) => return delivery,
        }
    }
}

/// Asserts that nothing arrives within [`Capabilities::quiet_period`]; `why` says why nothing
/// should.
pub async fn expect_nothing(stream: &mut DeliveryStream, caps: &Capabilities, why: &str) {
    let deadline = tokio::time::Instant::now() + caps.quiet_period;
    // Until the quiet period is over: a stream error (a backend recovering) is not the end of it.
    while let Ok(Some(item)) = tokio::time::timeout_at(deadline, stream.next()).await {
        if let Ok(delivery) = item {
            panic!(
                "{why}, but received message {} (attempt {})",
                delivery.message().id(),
                delivery.attempt()
            );
        }
    }
}

/// Message `n` of a numbered series: payload `<topic_tag>-<n>`, header `seq` = `n`.
pub fn numbered(topic_tag: &str, n: usize) -> Message {
    Message::new(format!("{topic_tag}-{n}")).with_header("seq", n.to_string())
}

/// Publishes `messages` to `topic` one by one, failing on the first error.
pub async fn publish_all(publisher: &dyn Publisher, topic: &str, messages: &[Message]) {
    for message in messages {
        publisher
            .publish(topic, message.clone())
            .await
            .unwrap_or_else(|e| panic!("publish to {topic} failed: {e}"));
    }
}

/// Polls `missing` until it counts nothing, failing with `what` and the last count once the
/// receive timeout has passed.
pub async fn wait_for_all(caps: &Capabilities, what: &str, missing: impl Fn() -> usize) {
    let deadline = tokio::time::Instant::now() + caps.receive_timeout;
    loop {
        let count = missing();
        if count == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{count} {what} after {:?}",
            caps.receive_timeout
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A new subscriber, subscribed to a topic and a group of their own named after `scenario`.
pub async fn fresh_subscription(
    factory: &dyn BackendFactory,
    scenario: &str,
) -> (String, String, Arc<dyn Subscriber>, DeliveryStream) {
    let (topic, group) = (unique(scenario), unique("group"));
    let subscriber = factory.subscriber().await;
    let stream = subscriber
        .subscribe(&topic, &group)
        .await
        .expect("subscribe");
    (topic, group, subscriber, stream)
}

/// Declares `group` on `topic` ([`Subscriber::declare`]), the way a deployment sets up its
/// queues before the first publish.
pub async fn declare_group(subscriber: &dyn Subscriber, topic: &str, group: &str) {
    subscriber
        .declare(topic, group)
        .await
        .unwrap_or_else(|e| panic!("declare {group} on {topic}: {e}"));
}

/// Acks every delivery of `stream` and reports its id to `record`, pausing `pause` after each,
/// until `stop` is cancelled or the stream ends.
pub async fn ack_until(
    mut stream: DeliveryStream,
    stop: CancellationToken,
    pause: Duration,
    record: impl Fn(String) + Send + 'static,
) {
    loop {
        let delivery = tokio::select! {
            () = stop.cancelled() => break,
            next = stream.next() => match next {
                Some(Ok(delivery)) => delivery,
                Some(Err(_)) => continue,
                None => break,
            },
        };
        let id = delivery.message().id().to_owned();
        delivery.ack().await.expect("ack");
        record(id);
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
}

/// Receives and acks until every id in `expected` was seen; returns how many times each id came.
pub async fn receive_ids(
    stream: &mut DeliveryStream,
    expected: &HashSet<String>,
    caps: &Capabilities,
) -> HashMap<String, usize> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    while !expected.iter().all(|id| seen.contains_key(id)) {
        let missing = expected.len() - expected.iter().filter(|id| seen.contains_key(*id)).count();
        let delivery = next(stream, caps, &format!("{missing} more messages")).await;
        *seen.entry(delivery.message().id().to_owned()).or_default() += 1;
        delivery.ack().await.expect("ack");
    }
    seen
}
