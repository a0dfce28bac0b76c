//! Subscribers and brokers that go away: closing, resuming, and reconnecting after a broker restart.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;

use crate::Message;

use super::helpers::*;
use super::{BackendFactory, Capabilities};

/// A subscriber that closes mid-stream with unsettled deliveries loses nothing: another
/// subscriber of the same group gets every message that was not acked.
pub async fn resume_after_subscriber_close(factory: &dyn BackendFactory, caps: &Capabilities) {
    if !caps.persistent {
        return skip("resume_after_subscriber_close", "backend is not persistent");
    }
    let (topic, group) = (unique("resume"), unique("group"));
    let first = factory.subscriber().await;
    let mut stream = first.subscribe(&topic, &group).await.expect("subscribe");
    let messages: Vec<_> = (0..20).map(|n| numbered("resume", n)).collect();
    publish_all(factory.publisher().await.as_ref(), &topic, &messages).await;

    let mut acked = HashSet::new();
    let mut held = Vec::new();
    for n in 0..10 {
        let delivery = next(&mut stream, caps, "one of the first ten messages").await;
        if n % 2 == 0 {
            acked.insert(delivery.message().id().to_owned());
            delivery.ack().await.expect("ack");
        } else {
            held.push(delivery);
        }
    }
    first.close().await.expect("close the first subscriber");
    drop(stream);
    drop(held); // unsettled: must come back

    let second = factory.subscriber().await;
    let mut stream = second
        .subscribe(&topic, &group)
        .await
        .expect("subscribe again");
    let expected: HashSet<String> = messages
        .iter()
        .map(|m| m.id().to_owned())
        .filter(|id| !acked.contains(id))
        .collect();
    let seen = receive_ids(&mut stream, &expected, caps).await;
    assert!(
        seen.keys().all(|id| !acked.contains(id)),
        "a message acked before the close came back"
    );
    expect_nothing(&mut stream, caps, "everything was acked").await;
    second.close().await.expect("close");
}

/// Closing several subscribers and publishers at the same time, while they work, neither hangs
/// nor panics; their streams end and a closed publisher refuses to publish.
pub async fn concurrent_close(factory: &dyn BackendFactory, caps: &Capabilities) {
    let topic = unique("concurrent_close");
    let mut subscribers = Vec::new();
    let mut streams = Vec::new();
    for n in 0..4 {
        let subscriber = factory.subscriber().await;
        streams.push(
            subscriber
                .subscribe(&topic, &format!("{topic}.g{n}"))
                .await
                .expect("subscribe"),
        );
        subscribers.push(subscriber);
    }
    let publishers: Vec<_> = futures::future::join_all((0..4).map(|_| factory.publisher())).await;
    publish_all(
        publishers[0].as_ref(),
        &topic,
        &[Message::new("before close")],
    )
    .await;
    let closes = subscribers
        .iter()
        .map(|s| s.close())
        .chain(publishers.iter().map(|p| p.close()));
    let results = tokio::time::timeout(caps.receive_timeout, futures::future::join_all(closes))
        .await
        .expect("closing at the same time must not hang");
    for result in results {
        result.expect("close succeeds");
    }
    for mut stream in streams {
        // A stream may hand out what it already holds, but must end.
        let end = tokio::time::timeout(caps.receive_timeout, async {
            while let Some(item) = stream.next().await {
                drop(item);
            }
        });
        end.await.expect("a closed subscriber's stream ends");
    }
    let refused = publishers[1]
        .publish(&topic, Message::new("after close"))
        .await;
    assert!(refused.is_err(), "a closed publisher refuses to publish");
}

/// The broker restarts (or drops every connection) mid-run: publisher and subscriber reconnect on
/// their own and nothing is lost — neither the unacked messages from before the restart nor the
/// ones published after it.
pub async fn reconnect_after_restart(factory: &dyn BackendFactory, caps: &Capabilities) {
    if !caps.restartable {
        return skip(
            "reconnect_after_restart",
            "the test cannot restart this broker",
        );
    }
    let (topic, _, subscriber, mut stream) = fresh_subscription(factory, "reconnect").await;
    let publisher = factory.publisher().await;
    let before: Vec<_> = (0..10).map(|n| numbered("before", n)).collect();
    publish_all(publisher.as_ref(), &topic, &before).await;
    // Take a few, ack some, leave the rest unacked across the restart.
    let mut acked = HashSet::new();
    for _ in 0..3 {
        let delivery = next(&mut stream, caps, "a message before the restart").await;
        acked.insert(delivery.message().id().to_owned());
        delivery.ack().await.expect("ack");
    }

    factory.restart_broker().await;

    let after: Vec<_> = (0..10).map(|n| numbered("after", n)).collect();
    let deadline = tokio::time::Instant::now() + caps.receive_timeout;
    for message in &after {
        loop {
            match publisher.publish(&topic, message.clone()).await {
                Ok(()) => break,
                Err(error) => {
                    assert!(
                        error.is_transient(),
                        "publish after a restart failed permanently: {error}"
                    );
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "publisher never reconnected: {error}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    let expected: HashSet<String> = before
        .iter()
        .chain(&after)
        .map(|m| m.id().to_owned())
        .filter(|id| !acked.contains(id))
        .collect();
    receive_ids(&mut stream, &expected, caps).await;
    publisher.close().await.expect("close publisher");
    subscriber.close().await.expect("close subscriber");
}
