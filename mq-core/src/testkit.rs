//! The conformance kit: scenarios every broker backend must pass.
//!
//! Each scenario is a public async function taking a [`BackendFactory`] and the backend's
//! [`Capabilities`]; scenarios that need a capability the backend lacks print why and return.
//! Every scenario uses topic and group names of its own (with a random suffix), so scenarios run in
//! parallel against one broker. A backend runs them all with [`conformance_tests!`](crate::conformance_tests):
//!
//! ```
//! use std::sync::Arc;
//! use mq_core::testkit::{BackendFactory, Capabilities};
//! use mq_core::{MemoryBroker, Publisher, Subscriber};
//!
//! struct Memory(MemoryBroker);
//!
//! #[async_trait::async_trait]
//! impl BackendFactory for Memory {
//!     async fn publisher(&self) -> Arc<dyn Publisher> { Arc::new(self.0.publisher()) }
//!     async fn subscriber(&self) -> Arc<dyn Subscriber> { Arc::new(self.0.subscriber()) }
//! }
//!
//! # #[tokio::main] async fn main() {
//! let caps = Capabilities { restartable: false, ..Capabilities::default() };
//! mq_core::testkit::round_trip(&Memory(MemoryBroker::new()), &caps).await;
//! # }
//! ```
//!
//! In a backend's `tests/conformance.rs`: `mq_core::conformance_tests!(async { Some(factory) }, caps);`
//! where the first expression yields `None` (after printing why) when the broker is not reachable.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::dead_letters::{self, ReadOptions};
use crate::worker::{handler_fn, Backoff, Worker, WorkerConfig};
use crate::{
    dead_letter_topic, headers, Delivery, DeliveryStream, Error, Message, Nack, Publisher,
    Subscriber,
};

/// What a backend can do; scenarios that need more are skipped with a printed reason.
#[derive(Debug, Clone)]
pub struct Capabilities {
    /// Un-acked messages survive their subscriber: a new subscriber of the group gets them.
    pub persistent: bool,
    /// Messages with the same key are delivered in publish order.
    pub ordered_per_key: bool,
    /// Consumer groups: competing consumers inside a group, fan-out across groups.
    pub consumer_groups: bool,
    /// [`BackendFactory::restart_broker`] works, so the reconnect scenario can run.
    pub restartable: bool,
    /// How long a scenario waits for an expected message before failing.
    pub receive_timeout: Duration,
    /// How long a scenario waits to be sure that an unexpected message does not arrive.
    pub quiet_period: Duration,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self {
            persistent: true,
            ordered_per_key: true,
            consumer_groups: true,
            restartable: false,
            receive_timeout: Duration::from_secs(30),
            quiet_period: Duration::from_millis(500),
        }
    }
}

/// Creates publishers and subscribers of the backend under test.
#[async_trait]
pub trait BackendFactory: Send + Sync {
    /// A new publisher (its own connection where the backend has connections).
    async fn publisher(&self) -> Arc<dyn Publisher>;

    /// A new subscriber (its own connection where the backend has connections).
    async fn subscriber(&self) -> Arc<dyn Subscriber>;

    /// Restarts the broker or forcibly closes every client connection, and returns once the
    /// broker accepts connections again. Only called when [`Capabilities::restartable`] is set.
    async fn restart_broker(&self) {
        panic!("restart_broker is not implemented; set Capabilities::restartable to false");
    }
}

/// Every scenario name, for backends that list them.
pub const SCENARIOS: &[&str] = &[
    "round_trip",
    "concurrent_publishers_and_subscribers",
    "many_topics",
    "redelivery_after_nack",
    "dropped_delivery_is_redelivered",
    "resume_after_subscriber_close",
    "concurrent_close",
    "continue_after_handler_errors",
    "order_per_key",
    "publisher_close_flushes",
    "topic_isolation",
    "consumer_groups_fan_out",
    "consumer_group_splits_work",
    "dead_letter",
    "worker_dead_letters",
    "dead_letters_redrive",
    "reconnect_after_restart",
];

/// Generates one `#[tokio::test]` per scenario.
///
/// `$factory` is an async expression yielding `Option<impl BackendFactory>` (`None` skips the
/// scenario, e.g. when the broker is not running and services are not required); `$caps` is an
/// expression yielding [`Capabilities`].
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr, $caps:expr) => {
        $crate::conformance_tests!(@each $factory, $caps;
            round_trip, concurrent_publishers_and_subscribers, many_topics, redelivery_after_nack,
            dropped_delivery_is_redelivered, resume_after_subscriber_close, concurrent_close,
            continue_after_handler_errors, order_per_key, publisher_close_flushes, topic_isolation,
            consumer_groups_fan_out, consumer_group_splits_work, dead_letter, worker_dead_letters,
            dead_letters_redrive, reconnect_after_restart);
    };
    (@each $factory:expr, $caps:expr; $($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $scenario() {
                if let Some(factory) = $factory.await {
                    $crate::testkit::$scenario(&factory, &$caps).await;
                }
            }
        )*
    };
}

/// A name unique to this run, so scenarios never share topics or groups.
pub fn unique(name: &str) -> String {
    format!("kit.{name}.{:012x}", fastrand::u64(..) & 0xffff_ffff_ffff)
}

fn skip(scenario: &str, why: &str) {
    eprintln!("conformance scenario `{scenario}` skipped: {why}");
}

async fn next(stream: &mut DeliveryStream, caps: &Capabilities, what: &str) -> Delivery {
    let deadline = tokio::time::Instant::now() + caps.receive_timeout;
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => panic!(
                "timed out after {:?} waiting for {what}",
                caps.receive_timeout
            ),
            Ok(None) => panic!("the subscription ended while waiting for {what}"),
            Ok(Some(Err(error))) => {
                eprintln!("subscription error while waiting for {what}: {error}")
            }
            Ok(Some(Ok(delivery))) => return delivery,
        }
    }
}

/// Asserts that nothing arrives within the quiet period.
async fn expect_nothing(stream: &mut DeliveryStream, caps: &Capabilities, why: &str) {
    if let Ok(Some(Ok(delivery))) = tokio::time::timeout(caps.quiet_period, stream.next()).await {
        panic!(
            "{why}, but received message {} (attempt {})",
            delivery.message().id(),
            delivery.attempt()
        );
    }
}

fn numbered(topic_tag: &str, n: usize) -> Message {
    Message::new(format!("{topic_tag}-{n}")).with_header("seq", n.to_string())
}

async fn publish_all(publisher: &dyn Publisher, topic: &str, messages: &[Message]) {
    for message in messages {
        publisher
            .publish(topic, message.clone())
            .await
            .unwrap_or_else(|e| panic!("publish to {topic} failed: {e}"));
    }
}

/// Polls `missing` until it counts nothing, failing with `what` and the last count once the
/// receive timeout has passed.
async fn wait_for_all(caps: &Capabilities, what: &str, missing: impl Fn() -> usize) {
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
async fn fresh_subscription(
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
async fn declare_group(subscriber: &dyn Subscriber, topic: &str, group: &str) {
    subscriber
        .declare(topic, group)
        .await
        .unwrap_or_else(|e| panic!("declare {group} on {topic}: {e}"));
}

/// Acks every delivery of `stream` and reports its id to `record`, pausing `pause` after each,
/// until `stop` is cancelled or the stream ends.
async fn ack_until(
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
async fn receive_ids(
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

/// Two groups on one topic each receive every message.
pub async fn consumer_groups_fan_out(factory: &dyn BackendFactory, caps: &Capabilities) {
    if !caps.consumer_groups {
        return skip("consumer_groups_fan_out", "no consumer groups");
    }
    let topic = unique("fan_out");
    let subscriber = factory.subscriber().await;
    let mut first = subscriber
        .subscribe(&topic, &unique("g1"))
        .await
        .expect("subscribe");
    let mut second = subscriber
        .subscribe(&topic, &unique("g2"))
        .await
        .expect("subscribe");
    let messages: Vec<_> = (0..20).map(|n| numbered("fan", n)).collect();
    let ids: HashSet<String> = messages.iter().map(|m| m.id().to_owned()).collect();
    publish_all(factory.publisher().await.as_ref(), &topic, &messages).await;
    let (a, b) = tokio::join!(
        receive_ids(&mut first, &ids, caps),
        receive_ids(&mut second, &ids, caps)
    );
    assert_eq!(a.len(), ids.len());
    assert_eq!(b.len(), ids.len());
    subscriber.close().await.expect("close");
}

/// Two subscribers of one group split the messages: both get some, none is lost, none is handled
/// by both. Messages are published in rounds until both have some, so backends that assign
/// partitions lazily (Kafka) pass too.
pub async fn consumer_group_splits_work(factory: &dyn BackendFactory, caps: &Capabilities) {
    if !caps.consumer_groups {
        return skip("consumer_group_splits_work", "no consumer groups");
    }
    let (topic, group) = (unique("split"), unique("group"));
    let counts = Arc::new(Mutex::new([
        HashMap::<String, usize>::new(),
        HashMap::new(),
    ]));
    let stop = CancellationToken::new();
    let mut consumers = Vec::new();
    let mut subscribers = Vec::new();
    for index in 0..2 {
        let subscriber = factory.subscriber().await;
        let stream = subscriber
            .subscribe(&topic, &group)
            .await
            .expect("subscribe");
        subscribers.push(subscriber);
        let counts = counts.clone();
        // Each member pauses a little after each message so the other gets a share even on a
        // fast broker.
        consumers.push(tokio::spawn(ack_until(
            stream,
            stop.clone(),
            Duration::from_millis(2),
            move |id| {
                *counts.lock().unwrap()[index].entry(id).or_default() += 1;
            },
        )));
    }
    let publisher = factory.publisher().await;
    let mut ids = HashSet::new();
    let deadline = tokio::time::Instant::now() + caps.receive_timeout;
    for round in 0.. {
        let batch: Vec<_> = (0..20)
            .map(|n| numbered("split", round * 20 + n).with_key(format!("k{}", round * 20 + n)))
            .collect();
        ids.extend(batch.iter().map(|m| m.id().to_owned()));
        publisher
            .publish_batch(&topic, batch)
            .await
            .expect("publish");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let both_busy = counts.lock().unwrap().iter().all(|c| !c.is_empty());
        if both_busy {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "one member of the group never got a message"
        );
    }
    wait_for_all(caps, "messages never arrived", || {
        let counts = counts.lock().unwrap();
        ids.iter()
            .filter(|id| !counts[0].contains_key(*id) && !counts[1].contains_key(*id))
            .count()
    })
    .await;
    stop.cancel();
    for consumer in consumers {
        consumer.await.expect("consumer");
    }
    {
        let counts = counts.lock().unwrap();
        let both = counts[0]
            .keys()
            .filter(|id| counts[1].contains_key(*id))
            .count();
        assert_eq!(both, 0, "{both} messages went to both members of one group");
    }
    for subscriber in subscribers {
        subscriber.close().await.expect("close");
    }
}

/// A message nacked to the dead-letter topic arrives there intact with reason, attempt count and
/// original topic, and is not delivered on its own topic again.
pub async fn dead_letter(factory: &dyn BackendFactory, caps: &Capabilities) {
    let (topic, group, subscriber, mut stream) = fresh_subscription(factory, "dead_letter").await;
    let mut dead = subscriber
        .subscribe(&dead_letter_topic(&topic), &group)
        .await
        .expect("subscribe to the dead-letter topic");
    let sent = Message::new("poison")
        .with_key("k")
        .with_header("x-custom", "kept");
    factory
        .publisher()
        .await
        .publish(&topic, sent.clone())
        .await
        .expect("publish");

    let delivery = next(&mut stream, caps, "the poison message").await;
    delivery
        .nack(Nack::DeadLetter {
            reason: "cannot decode payload".into(),
            attempts: 3,
        })
        .await
        .expect("dead-letter");
    let letter = next(&mut dead, caps, "the dead letter").await;
    let message = letter.message();
    assert_eq!(message.payload(), sent.payload(), "payload kept");
    assert_eq!(message.key(), sent.key(), "key kept");
    assert_eq!(message.header("x-custom"), Some("kept"), "headers kept");
    assert_eq!(
        message.header(headers::DEAD_LETTER_REASON),
        Some("cannot decode payload")
    );
    assert_eq!(message.header(headers::ATTEMPTS), Some("3"));
    assert_eq!(
        message.header(headers::ORIGINAL_TOPIC),
        Some(topic.as_str())
    );
    letter.ack().await.expect("ack");
    expect_nothing(
        &mut stream,
        caps,
        "a dead-lettered message is not redelivered",
    )
    .await;
    subscriber.close().await.expect("close");
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

/// Dead-letters the next `n` deliveries of `stream` as "bad payload" after 2 attempts.
async fn dead_letter_next(stream: &mut DeliveryStream, n: usize, caps: &Capabilities) {
    for _ in 0..n {
        next(stream, caps, "a message to dead-letter")
            .await
            .nack(Nack::DeadLetter {
                reason: "bad payload".into(),
                attempts: 2,
            })
            .await
            .expect("dead-letter");
    }
}

/// A publisher that fails every publish after its first `succeed` ones.
struct FailsAfter {
    inner: Arc<dyn Publisher>,
    succeed: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl Publisher for FailsAfter {
    async fn publish(&self, topic: &str, message: Message) -> crate::Result<()> {
        use std::sync::atomic::Ordering::SeqCst;
        // One atomic step: a publish either takes one of the successes left or fails.
        if self
            .succeed
            .fetch_update(SeqCst, SeqCst, |left| left.checked_sub(1))
            .is_err()
        {
            return Err(Error::Unavailable {
                message: "the broker went away mid-redrive".into(),
                source: None,
            });
        }
        self.inner.publish(topic, message).await
    }

    async fn health(&self) -> crate::Result<()> {
        self.inner.health().await
    }

    async fn close(&self) -> crate::Result<()> {
        self.inner.close().await
    }
}

/// Dead letters are listed without being consumed, and redriven to their topic, where the group
/// gets them again without the dead-letter headers. A redrive whose publishes start failing
/// midway loses nothing: what it did not republish is still a dead letter. A redriven message
/// that fails again is a dead letter again.
pub async fn dead_letters_redrive(factory: &dyn BackendFactory, caps: &Capabilities) {
    let (topic, _group, subscriber, mut stream) =
        fresh_subscription(factory, "dead_letters_redrive").await;
    let options = ReadOptions {
        group: unique("dlq"),
        limit: 10,
        first_wait: caps.receive_timeout,
        idle: caps.quiet_period,
    };
    declare_group(
        subscriber.as_ref(),
        &dead_letter_topic(&topic),
        &options.group,
    )
    .await;
    let publisher = factory.publisher().await;
    let sent: Vec<Message> = (0..3)
        .map(|n| numbered("poison", n).with_key(format!("k{n}")))
        .collect();
    publish_all(publisher.as_ref(), &topic, &sent).await;
    dead_letter_next(&mut stream, 3, caps).await;
    let ids = |messages: &[Message]| -> HashSet<String> {
        messages.iter().map(|m| m.id().to_owned()).collect()
    };

    for listing in 0..2 {
        let letters = dead_letters::list(subscriber.as_ref(), &topic, &options)
            .await
            .expect("list");
        let listed: Vec<Message> = letters.iter().map(|l| l.message.clone()).collect();
        assert_eq!(
            ids(&listed),
            ids(&sent),
            "listing {listing} shows every dead letter"
        );
        for letter in &letters {
            assert_eq!(letter.reason.as_deref(), Some("bad payload"));
            assert_eq!(letter.attempts, Some(2));
            let original = sent.iter().find(|m| m.id() == letter.message.id()).unwrap();
            assert_eq!(&letter.message, original, "the message as it was published");
        }
    }

    let failing = FailsAfter {
        inner: publisher.clone(),
        succeed: 1.into(),
    };
    dead_letters::redrive(subscriber.as_ref(), &failing, &topic, &options)
        .await
        .expect_err("the second publish fails");
    let first = next(&mut stream, caps, "the one redriven message").await;
    let original = sent
        .iter()
        .find(|m| m.id() == first.message().id())
        .unwrap();
    assert_eq!(
        first.message(),
        original,
        "redriven without dead-letter headers"
    );
    first.ack().await.expect("ack");

    let redriven = dead_letters::redrive(subscriber.as_ref(), publisher.as_ref(), &topic, &options)
        .await
        .expect("redrive");
    assert_eq!(redriven, 2, "the rest were still dead letters");
    let rest: HashSet<String> = ids(&sent)
        .into_iter()
        .filter(|id| id != original.id())
        .collect();
    let mut again = Vec::new();
    for _ in 0..2 {
        again.push(next(&mut stream, caps, "a redriven message").await);
    }
    let received: HashSet<String> = again.iter().map(|d| d.message().id().to_owned()).collect();
    assert_eq!(received, rest);
    let fails_again = again.pop().unwrap();
    let fails_again_id = fails_again.message().id().to_owned();
    fails_again
        .nack(Nack::DeadLetter {
            reason: "still bad".into(),
            attempts: 1,
        })
        .await
        .expect("dead-letter again");
    again.pop().unwrap().ack().await.expect("ack");

    // What failed again is a dead letter again, with its new reason, and the only one left.
    let letters = dead_letters::list(subscriber.as_ref(), &topic, &options)
        .await
        .expect("list");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].message.id(), fails_again_id);
    assert_eq!(letters[0].reason.as_deref(), Some("still bad"));
    subscriber.close().await.expect("close");
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
