//! What every backend does with one subscription: messages arrive intact, once, in order per key, redelivered after a nack or a drop, kept apart by topic.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::{headers, Message, Nack};

use super::helpers::*;
use super::{BackendFactory, Capabilities};

/// Publish → subscribe round trip: id, key, headers and payload bytes arrive intact, attempt is 1,
/// and an acked message is not delivered again.
pub async fn round_trip(factory: &dyn BackendFactory, caps: &Capabilities) {
    let (topic, _, subscriber, mut stream) = fresh_subscription(factory, "round_trip").await;
    let publisher = factory.publisher().await;
    let sent = vec![
        Message::new(vec![0u8, 159, 146, 150, 255])
            .with_key("key-1")
            .with_header("x-custom", "välue ✓"),
        Message::json(&serde_json::json!({"product_id": 42}))
            .expect("json")
            .with_key("key-2")
            .with_header(
                headers::TRACEPARENT,
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        Message::new(Vec::new()),
    ];
    publish_all(publisher.as_ref(), &topic, &sent).await;

    let mut received = HashMap::new();
    for _ in 0..sent.len() {
        let delivery = next(&mut stream, caps, "a round-trip message").await;
        assert_eq!(delivery.topic(), topic);
        assert_eq!(delivery.attempt(), 1, "first delivery has attempt 1");
        received.insert(
            delivery.message().id().to_owned(),
            delivery.message().clone(),
        );
        delivery.ack().await.expect("ack");
    }
    for original in &sent {
        let got = received
            .get(original.id())
            .unwrap_or_else(|| panic!("message {} was not received with its id", original.id()));
        assert_eq!(got.key(), original.key(), "key intact");
        assert_eq!(got.payload(), original.payload(), "payload intact");
        for (name, value) in original.headers() {
            assert_eq!(
                got.header(name),
                Some(value.as_str()),
                "header {name} intact"
            );
        }
    }
    expect_nothing(&mut stream, caps, "every message was acked").await;
    publisher.close().await.expect("close publisher");
    subscriber.close().await.expect("close subscriber");
}

/// Four publishers and three competing subscribers at once: every message arrives.
pub async fn concurrent_publishers_and_subscribers(
    factory: &dyn BackendFactory,
    caps: &Capabilities,
) {
    if !caps.consumer_groups {
        return skip(
            "concurrent_publishers_and_subscribers",
            "no consumer groups",
        );
    }
    const PUBLISHERS: usize = 4;
    const PER_PUBLISHER: usize = 50;
    let (topic, group) = (unique("concurrent"), unique("group"));
    let received = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let stop = CancellationToken::new();
    let mut consumers = Vec::new();
    for _ in 0..3 {
        let subscriber = factory.subscriber().await;
        let stream = subscriber
            .subscribe(&topic, &group)
            .await
            .expect("subscribe");
        let received = received.clone();
        let consume = ack_until(stream, stop.clone(), Duration::ZERO, move |id| {
            *received.lock().unwrap().entry(id).or_default() += 1;
        });
        consumers.push(tokio::spawn(async move {
            consume.await;
            subscriber.close().await.expect("close");
        }));
    }
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let publisher = factory.publisher().await;
        let topic = topic.clone();
        publishers.push(tokio::spawn(async move {
            let messages: Vec<_> = (0..PER_PUBLISHER)
                .map(|n| numbered(&format!("p{p}"), n))
                .collect();
            let ids: Vec<String> = messages.iter().map(|m| m.id().to_owned()).collect();
            let publishes = messages.into_iter().map(|m| publisher.publish(&topic, m));
            futures::future::try_join_all(publishes)
                .await
                .expect("publish");
            publisher.close().await.expect("close");
            ids
        }));
    }
    let mut expected = HashSet::new();
    for publisher in publishers {
        expected.extend(publisher.await.expect("publisher task"));
    }
    wait_for_all(caps, "messages never arrived", || {
        let received = received.lock().unwrap();
        expected
            .iter()
            .filter(|id| !received.contains_key(*id))
            .count()
    })
    .await;
    stop.cancel();
    for consumer in consumers {
        consumer.await.expect("consumer task");
    }
    let received = received.lock().unwrap();
    assert!(
        received.keys().all(|id| expected.contains(id)),
        "no foreign messages"
    );
}

/// Ten topics at once, each with its own subscriber: each gets exactly its own messages.
pub async fn many_topics(factory: &dyn BackendFactory, caps: &Capabilities) {
    let group = unique("group");
    let subscriber = factory.subscriber().await;
    let publisher = factory.publisher().await;
    let mut tasks = Vec::new();
    for t in 0..10 {
        let topic = unique(&format!("many_topics.{t}"));
        let stream = subscriber
            .subscribe(&topic, &group)
            .await
            .expect("subscribe");
        let messages: Vec<_> = (0..10).map(|n| numbered(&topic, n)).collect();
        publish_all(publisher.as_ref(), &topic, &messages).await;
        let expected: HashSet<_> = messages.iter().map(|m| m.id().to_owned()).collect();
        let caps = caps.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = stream;
            let seen = receive_ids(&mut stream, &expected, &caps).await;
            assert_eq!(
                seen.len(),
                expected.len(),
                "only this topic's messages on {topic}"
            );
            expect_nothing(&mut stream, &caps, "every message of the topic was acked").await;
        }));
    }
    for task in tasks {
        task.await.expect("topic task");
    }
    subscriber.close().await.expect("close");
}

/// A message nacked with requeue comes back with a higher attempt count; once acked it is gone.
pub async fn redelivery_after_nack(factory: &dyn BackendFactory, caps: &Capabilities) {
    let (topic, _, subscriber, mut stream) = fresh_subscription(factory, "redelivery").await;
    let sent = Message::new("retry me").with_key("k");
    factory
        .publisher()
        .await
        .publish(&topic, sent.clone())
        .await
        .expect("publish");

    let first = next(&mut stream, caps, "the first delivery").await;
    assert_eq!(first.message().id(), sent.id());
    assert_eq!(first.attempt(), 1);
    first.nack(Nack::Requeue).await.expect("nack");

    let second = next(&mut stream, caps, "the redelivery after nack").await;
    assert_eq!(
        second.message().id(),
        sent.id(),
        "the nacked message comes back"
    );
    assert_eq!(second.message().payload(), sent.payload());
    assert!(
        second.attempt() >= 2,
        "attempt count grows: {}",
        second.attempt()
    );
    second.ack().await.expect("ack");
    expect_nothing(&mut stream, caps, "the redelivered message was acked").await;
    subscriber.close().await.expect("close");
}

/// A delivery dropped without ack or nack is delivered again.
pub async fn dropped_delivery_is_redelivered(factory: &dyn BackendFactory, caps: &Capabilities) {
    let (topic, _, subscriber, mut stream) = fresh_subscription(factory, "dropped").await;
    let sent = Message::new("drop me");
    factory
        .publisher()
        .await
        .publish(&topic, sent.clone())
        .await
        .expect("publish");

    let first = next(&mut stream, caps, "the first delivery").await;
    assert_eq!(first.message().id(), sent.id());
    drop(first);
    let again = next(&mut stream, caps, "the redelivery of a dropped delivery").await;
    assert_eq!(
        again.message().id(),
        sent.id(),
        "a dropped delivery comes back"
    );
    again.ack().await.expect("ack");
    expect_nothing(&mut stream, caps, "the message was acked").await;
    subscriber.close().await.expect("close");
}

/// Messages with the same key arrive in publish order (keys interleaved).
pub async fn order_per_key(factory: &dyn BackendFactory, caps: &Capabilities) {
    if !caps.ordered_per_key {
        return skip("order_per_key", "backend does not keep order per key");
    }
    const KEYS: usize = 4;
    const PER_KEY: usize = 50;
    let (topic, _, subscriber, mut stream) = fresh_subscription(factory, "order").await;
    let publisher = factory.publisher().await;
    for n in 0..PER_KEY {
        for k in 0..KEYS {
            let message = numbered(&format!("key{k}"), n).with_key(format!("key{k}"));
            publisher.publish(&topic, message).await.expect("publish");
        }
    }
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    for _ in 0..KEYS * PER_KEY {
        let delivery = next(&mut stream, caps, "the next keyed message").await;
        let key = delivery.message().key().expect("key kept").to_owned();
        let seq: i64 = delivery
            .message()
            .header("seq")
            .expect("seq header")
            .parse()
            .unwrap();
        let previous = last.insert(key.clone(), seq).unwrap_or(-1);
        assert_eq!(
            seq,
            previous + 1,
            "key {key}: message {seq} arrived after {previous}"
        );
        delivery.ack().await.expect("ack");
    }
    subscriber.close().await.expect("close");
}

/// Every publish that returned `Ok` is delivered even when the publisher is closed right after,
/// and publishing after close fails.
pub async fn publisher_close_flushes(factory: &dyn BackendFactory, caps: &Capabilities) {
    let (topic, _, subscriber, mut stream) = fresh_subscription(factory, "close_flushes").await;
    let publisher = factory.publisher().await;
    let messages: Vec<_> = (0..200).map(|n| numbered("flush", n)).collect();
    let ids: HashSet<String> = messages.iter().map(|m| m.id().to_owned()).collect();
    publisher
        .publish_batch(&topic, messages)
        .await
        .expect("batch publish");
    publisher.close().await.expect("close");
    let after = publisher.publish(&topic, Message::new("late")).await;
    assert!(after.is_err(), "publish after close must fail");
    let seen = receive_ids(&mut stream, &ids, caps).await;
    assert_eq!(seen.len(), ids.len());
    subscriber.close().await.expect("close");
}

/// Same group name on two topics: each subscription gets only its own topic's messages.
pub async fn topic_isolation(factory: &dyn BackendFactory, caps: &Capabilities) {
    let group = unique("group");
    let (a, b) = (unique("isolation.a"), unique("isolation.b"));
    let subscriber = factory.subscriber().await;
    let mut stream_a = subscriber.subscribe(&a, &group).await.expect("subscribe a");
    let mut stream_b = subscriber.subscribe(&b, &group).await.expect("subscribe b");
    let publisher = factory.publisher().await;
    let (for_a, for_b) = (Message::new("for a"), Message::new("for b"));
    // b's message first: a backend that mixes topics hands it to the subscription of a.
    publisher.publish(&b, for_b.clone()).await.expect("publish");
    publisher.publish(&a, for_a.clone()).await.expect("publish");
    for (stream, expected, topic) in [(&mut stream_a, &for_a, &a), (&mut stream_b, &for_b, &b)] {
        let got = next(stream, caps, "the message of its own topic").await;
        assert_eq!(
            got.message().id(),
            expected.id(),
            "{topic} received another topic's message"
        );
        assert_eq!(got.topic(), topic.as_str());
        got.ack().await.expect("ack");
    }
    expect_nothing(&mut stream_a, caps, "topic a got its one message").await;
    expect_nothing(&mut stream_b, caps, "topic b got its one message").await;
    subscriber.close().await.expect("close");
}

/// An event marked [`Message::drop_if_unrouted`] publishes without error to a topic no group is
/// subscribed to (a backend that refuses unroutable messages does not refuse it), and still
/// reaches a group that subscribes. Earlier unrouted events may or may not reach that group
/// (Kafka keeps them in the topic; memory and RabbitMQ drop them).
pub async fn unrouted_events_publish(factory: &dyn BackendFactory, caps: &Capabilities) {
    let topic = unique("unrouted");
    let publisher = factory.publisher().await;
    for n in 0..3 {
        publisher
            .publish(
                &topic,
                Message::new(format!("nobody listens {n}")).drop_if_unrouted(),
            )
            .await
            .expect("an unrouted event is not refused");
    }
    let group = unique("group");
    let subscriber = factory.subscriber().await;
    subscriber.declare(&topic, &group).await.expect("declare");
    let mut stream = subscriber
        .subscribe(&topic, &group)
        .await
        .expect("subscribe");
    let heard = Message::new("heard").drop_if_unrouted();
    publisher
        .publish(&topic, heard.clone())
        .await
        .expect("publish to a subscribed group");
    loop {
        let got = next(
            &mut stream,
            caps,
            "the event published after the group subscribed",
        )
        .await;
        let message = got.message().clone();
        got.ack().await.expect("ack");
        if message.id() == heard.id() {
            assert_eq!(message.payload(), heard.payload());
            break;
        }
        assert!(
            message.payload().starts_with(b"nobody listens"),
            "{message:?}"
        );
    }
    subscriber.close().await.expect("close");
}
