//! Kafka-specific scenarios beyond the conformance kit: a member joining mid-stream, a consumer
//! dropped with un-acked messages, order per key under load with 4 partitions, and a busy key
//! that must not hold back the other keys of its partition.
//!
//! Needs `KAFKA_BROKERS`; skipped with a printed reason when unset, unless `REQUIRE_SERVICES=1`.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use mq_core::headers::MESSAGE_ID;
use mq_core::testkit::{ack_until, next, receive_ids, unique, wait_for_all};
use mq_core::{Delivery, Message, Publisher, Subscriber};
use mq_kafka::{KafkaConfig, KafkaPublisher, KafkaSubscriber};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

/// How long reading records back with a plain consumer may take.
const TIMEOUT: Duration = Duration::from_secs(60);

fn messages(count: usize, keys: usize) -> Vec<Message> {
    (0..count)
        .map(|n| {
            Message::new(format!("m{n}"))
                .with_key(format!("k{}", n % keys))
                .with_header("seq", (n / keys).to_string())
        })
        .collect()
}

/// Where each message id landed: `(partition, offset)`, read back with a plain rdkafka consumer.
fn locate(config: &KafkaConfig, topic: &str, count: usize) -> HashMap<String, (i32, i64)> {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", unique("locator"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let mut list = TopicPartitionList::new();
    for partition in 0..config.partitions {
        list.add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
    }
    reader.assign(&list).expect("assign");
    let mut found = HashMap::new();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while found.len() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "could not read back the topic"
        );
        let Some(record) = reader.poll(Duration::from_millis(200)) else {
            continue;
        };
        let record = record.expect("read back");
        let id = record
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == MESSAGE_ID))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .expect("id header");
        found.insert(id, (record.partition(), record.offset()));
    }
    found
}

/// The group's committed offset per partition (`None`: nothing committed).
fn committed(config: &KafkaConfig, topic: &str, group_id: &str) -> HashMap<i32, Option<i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .create()
        .expect("offset reader");
    let mut list = TopicPartitionList::new();
    for partition in 0..config.partitions {
        list.add_partition(topic, partition);
    }
    let list = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .expect("committed offsets");
    list.elements()
        .iter()
        .map(|e| {
            let offset = match e.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            };
            (e.partition(), offset)
        })
        .collect()
}

/// The scenarios run one at a time: each measures group behaviour that a parallel scenario's
/// load on the same single test broker would only slow down.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn config_with(partitions: i32) -> Option<KafkaConfig> {
    common::config().map(|config| config.with_partitions(partitions))
}

/// A second member joins while the first is consuming and holds some deliveries un-acked: no
/// commit ever passes a held message, and in the end every message was acked by someone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn member_joins_mid_stream_without_loss_or_early_commit() {
    let caps = common::capabilities();
    let _serial = SERIAL.lock().await;
    let Some(config) = config_with(4) else { return };
    let (topic, group) = (unique("join_mid_stream"), unique("group"));
    const COUNT: usize = 400;
    let sent = messages(COUNT, 16);
    let all: HashSet<String> = sent.iter().map(|m| m.id().to_owned()).collect();
    let publisher = KafkaPublisher::new(config.clone()).unwrap();
    publisher.publish_batch(&topic, sent).await.unwrap();
    let located = locate(&config, &topic, COUNT);

    let acked = Arc::new(Mutex::new(HashSet::<String>::new()));
    let record = {
        let acked = acked.clone();
        move |id| {
            acked.lock().unwrap().insert(id);
        }
    };
    let stop = CancellationToken::new();
    let pause = Duration::from_millis(2);
    let first = KafkaSubscriber::new(config.clone()).unwrap();
    let mut stream = first.subscribe(&topic, &group).await.unwrap();
    let probe = next(&mut stream, &caps, "a delivery").await;
    drop(probe); // handed back at once: comes again
                 // The first member holds every tenth of its first 50 deliveries until the second member has
                 // joined, and acks the rest.
    let mut held = Vec::<Delivery>::new();
    for n in 0..50 {
        let delivery = next(&mut stream, &caps, "a delivery").await;
        if n % 10 == 5 {
            held.push(delivery);
        } else {
            let id = delivery.message().id().to_owned();
            delivery.ack().await.unwrap();
            record(id);
        }
    }
    let first_task = tokio::spawn(ack_until(stream, stop.clone(), pause, record.clone()));
    wait_for_all(&caps, "acks to go before the second member joins", || {
        100usize.saturating_sub(acked.lock().unwrap().len())
    })
    .await;

    let second = KafkaSubscriber::new(config.clone()).unwrap();
    let second_stream = second.subscribe(&topic, &group).await.unwrap();
    let second_task = tokio::spawn(ack_until(second_stream, stop.clone(), pause, record));
    // Give the group a moment to settle and the commits to go out.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Nothing committed early: every offset below a group commit was acked by some member.
    // (Commits first: an offset is committed only after its ack returned, and the ack is
    // recorded right after it returns.)
    assert_eq!(held.len(), 5, "the first member holds some deliveries");
    let commits = committed(&config, &topic, &config.group_id(&topic, &group));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let acked_now = acked.lock().unwrap().clone();
    for (id, (partition, offset)) in &located {
        if let Some(Some(commit)) = commits.get(partition) {
            assert!(
                offset >= commit || acked_now.contains(id),
                "partition {partition}: committed {commit} past un-acked offset {offset}"
            );
        }
    }
    assert!(
        commits.values().any(Option::is_some),
        "acked work was committed: {commits:?}"
    );

    // The held deliveries are given up: they must be delivered again and acked.
    held.clear();
    wait_for_all(&caps, "messages were never acked", || {
        all.difference(&acked.lock().unwrap()).count()
    })
    .await;
    stop.cancel();
    first_task.await.unwrap();
    second_task.await.unwrap();
    first.close().await.unwrap();
    second.close().await.unwrap();

    // Everything done is committed in the end.
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for (partition, offset) in located.values() {
        let end = ends.entry(*partition).or_default();
        *end = (*end).max(offset + 1);
    }
    let commits = committed(&config, &topic, &config.group_id(&topic, &group));
    for (partition, end) in ends {
        assert_eq!(
            commits.get(&partition).copied().flatten(),
            Some(end),
            "partition {partition} fully committed"
        );
    }
}

/// A consumer dropped (no close) with un-acked deliveries: a new member gets exactly the
/// messages that were not acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_consumer_hands_unacked_messages_to_the_next() {
    let caps = common::capabilities();
    let _serial = SERIAL.lock().await;
    let Some(config) = config_with(2) else { return };
    let (topic, group) = (unique("dropped_consumer"), unique("group"));
    let sent = messages(50, 50);
    let publisher = KafkaPublisher::new(config.clone()).unwrap();
    publisher.publish_batch(&topic, sent.clone()).await.unwrap();

    let mut acked = HashSet::new();
    {
        let first: Arc<dyn Subscriber> = Arc::new(KafkaSubscriber::new(config.clone()).unwrap());
        let mut stream = first.subscribe(&topic, &group).await.unwrap();
        let mut held = Vec::new();
        for n in 0..20 {
            let delivery = next(&mut stream, &caps, "a delivery").await;
            if n % 2 == 0 {
                acked.insert(delivery.message().id().to_owned());
                delivery.ack().await.unwrap();
            } else {
                held.push(delivery);
            }
        }
        // Everything is dropped without close: stream, held deliveries, subscriber.
    }

    let second = KafkaSubscriber::new(config.clone()).unwrap();
    let mut stream = second.subscribe(&topic, &group).await.unwrap();
    let expected: HashSet<String> = sent
        .iter()
        .map(|m| m.id().to_owned())
        .filter(|id| !acked.contains(id))
        .collect();
    let seen = receive_ids(&mut stream, &expected, &caps).await;
    if let Some(id) = seen.keys().find(|id| acked.contains(*id)) {
        panic!("acked message {id} came back");
    }
    assert_eq!(seen.into_keys().collect::<HashSet<_>>(), expected);
    second.close().await.unwrap();

    // The held deliveries left gaps above the commits, so the ack log was written: a compacted
    // topic, which keeps about one record per key instead of one per commit for ever. Tansu,
    // the test broker, sometimes describes the topic without a `cleanup.policy` entry at all
    // when this runs right after the conformance suite (3 of 5 full workspace runs, never
    // alone); a policy it does report must be `compact`.
    let log = mq_kafka::ack_log_topic(&topic);
    match topic_config(&config, &log, "cleanup.policy").await {
        Some(policy) => assert_eq!(policy, "compact", "{log}"),
        None => eprintln!("{log}: the broker reports no cleanup.policy; not checked"),
    }
}

/// The value of `key` in the broker's configuration of `topic`.
async fn topic_config(config: &KafkaConfig, topic: &str, key: &str) -> Option<String> {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .create()
        .unwrap();
    // The broker may answer a describe without the entry for a moment after the topic's
    // creation: asked again for a few seconds before `None` is the answer.
    for _ in 0..20 {
        let described = admin
            .describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new())
            .await
            .unwrap();
        let value = described
            .into_iter()
            .next()
            .and_then(|resource| resource.ok())
            .and_then(|resource| {
                resource
                    .entries
                    .into_iter()
                    .find(|entry| entry.name == key)
                    .and_then(|entry| entry.value)
            });
        if value.is_some() {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

/// 10 000 messages over 16 keys and 4 partitions, handled 32 at a time with out-of-order acks
/// and some requeues: each key's messages are handed out strictly in publish order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_messages_keep_order_per_key() {
    let _serial = SERIAL.lock().await;
    let Some(config) = config_with(4) else { return };
    const COUNT: usize = 10_000;
    const KEYS: usize = 16;
    let (topic, group) = (unique("order_10k"), unique("group"));
    let subscriber = KafkaSubscriber::new(config.clone()).unwrap();
    let stream = subscriber.subscribe(&topic, &group).await.unwrap();
    let publisher = KafkaPublisher::new(config.clone()).unwrap();
    publisher
        .publish_batch(&topic, messages(COUNT, KEYS))
        .await
        .unwrap();

    // Per key: how many were acked, and whether one is in flight.
    let progress = Arc::new(Mutex::new(HashMap::<String, (u64, bool)>::new()));
    let handled = stream
        .take_while(|item| futures::future::ready(item.is_ok()))
        .map(|item| {
            let delivery = item.unwrap();
            let key = delivery.message().key().unwrap().to_owned();
            let seq: u64 = delivery.message().header("seq").unwrap().parse().unwrap();
            let mut progress_now = progress.lock().unwrap();
            let (done, in_flight) = progress_now.entry(key.clone()).or_default();
            assert!(!*in_flight, "key {key}: two messages in flight at once");
            assert_eq!(seq, *done, "key {key}: got #{seq} after {done} acked");
            *in_flight = true;
            drop(progress_now);
            let progress = progress.clone();
            async move {
                tokio::time::sleep(Duration::from_micros(fastrand::u64(0..500))).await;
                let requeue = delivery.attempt() == 1 && fastrand::u8(0..100) == 0;
                {
                    let mut progress_now = progress.lock().unwrap();
                    let entry = progress_now.get_mut(&key).unwrap();
                    entry.1 = false;
                    if !requeue {
                        entry.0 += 1;
                    }
                }
                if requeue {
                    delivery.requeue().await.unwrap();
                } else {
                    delivery.ack().await.unwrap();
                }
            }
        })
        .buffer_unordered(32);
    tokio::pin!(handled);
    let all_done = async {
        loop {
            handled.next().await.expect("stream ended early");
            let total: u64 = progress
                .lock()
                .unwrap()
                .values()
                .map(|(done, _)| done)
                .sum();
            if total == COUNT as u64 {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), all_done)
        .await
        .expect("all 10 000 messages handled in time");
    {
        let progress = progress.lock().unwrap();
        assert_eq!(progress.len(), KEYS);
        assert!(progress
            .values()
            .all(|(done, _)| *done == (COUNT / KEYS) as u64));
    }
    subscriber.close().await.unwrap();
    publisher.close().await.unwrap();
}

/// One partition, a key whose first message stays in flight, and 300 more of that key ahead of
/// another key's message: the other key's message is handed out at once (the stream takes
/// records from librdkafka past the blocked ones), and the blocked key then goes on in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_busy_key_does_not_hold_back_later_keys_of_its_partition() {
    let caps = common::capabilities();
    let _serial = SERIAL.lock().await;
    let Some(config) = config_with(1) else { return };
    const BLOCKED: usize = 300;
    let (topic, group) = (unique("busy_key"), unique("group"));
    let publisher = KafkaPublisher::new(config.clone()).unwrap();
    let mut batch: Vec<Message> = (0..=BLOCKED)
        .map(|n| Message::new(format!("slow {n}")).with_key("slow"))
        .collect();
    batch.push(Message::new("fast").with_key("fast"));
    publisher.publish_batch(&topic, batch).await.unwrap();
    let subscriber = KafkaSubscriber::new(config).unwrap();
    let mut stream = subscriber.subscribe(&topic, &group).await.unwrap();

    let held = next(&mut stream, &caps, "a delivery").await;
    assert_eq!(&held.message().payload()[..], b"slow 0");
    let fast = next(&mut stream, &caps, "a delivery").await;
    assert_eq!(&fast.message().payload()[..], b"fast");
    fast.ack().await.unwrap();
    held.ack().await.unwrap();
    for n in 1..=BLOCKED {
        let delivery = next(&mut stream, &caps, "a delivery").await;
        assert_eq!(delivery.message().payload(), format!("slow {n}").as_bytes());
        delivery.ack().await.unwrap();
    }
    subscriber.close().await.unwrap();
    publisher.close().await.unwrap();
}
