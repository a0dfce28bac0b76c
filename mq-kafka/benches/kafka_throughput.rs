//! Kafka throughput through our traits vs raw rdkafka doing the same work, at 16, 256 and 4096
//! byte payloads:
//!
//! - `publish/{ours,raw}/SIZE`: N keyed messages with an id header, idempotent producer,
//!   `acks=all`, `linger.ms=5`, all enqueued then every delivery report awaited
//!   (`Publisher::publish_batch` vs `FutureProducer::send_result` + awaiting the futures);
//! - `consume/{ours,raw}/SIZE`: a fresh consumer group reads N pre-published messages, copying
//!   payload and headers out and acking / storing each offset, commits every 100 ms. Timed from
//!   the first message to the last (the group join is not timed). The raw consumer uses the same
//!   client properties as ours, except the prefetch bound: raw keeps librdkafka's one shared
//!   64 MiB queue, ours has a queue per partition of 16 MiB each (the same 64 MiB at 4
//!   partitions).
//! - then paired rounds (ours and raw alternating, order swapped every round): median rates,
//!   ratios and process CPU time per message, robust against the background load of a shared
//!   machine (`PAIRED_ROUNDS`, `PAIRED_OPS`, `PAIRED_SIZES`, `PAIRED_SCALE`; `-- paired-only`
//!   skips the criterion groups);
//! - `KAFKA_PROFILE=ours|raw`: one side only, for profiling (see [`profile`]).
//!
//! Needs a broker: `scripts/kafka.sh start && KAFKA_BROKERS=127.0.0.1:9092 cargo bench -p mq-kafka`
//! (without `KAFKA_BROKERS` it prints why and measures nothing).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures::StreamExt;
use mq_core::headers::MESSAGE_ID;
use mq_core::{Message, Publisher, Subscriber};
use mq_kafka::{KafkaConfig, KafkaPublisher, KafkaSubscriber};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message as _};
use testsupport::bench::{
    env_usize, paired_rounds, selected_sizes, Side, Stopwatch, Timed, PAYLOAD_SIZES,
};

fn count(size: usize) -> usize {
    if size >= 4096 {
        4_000
    } else {
        10_000
    }
}

fn unique(name: &str) -> String {
    testsupport::unique_name(&format!("bench.{name}"))
}

fn config(brokers: &str) -> KafkaConfig {
    let mut config = KafkaConfig::new(brokers).with_partitions(4);
    config.session_timeout = Duration::from_secs(6);
    config.heartbeat_interval = Duration::from_millis(200);
    config.rebalance_timeout = Duration::from_secs(6);
    config
}

fn messages(n: usize, size: usize) -> Vec<Message> {
    let payload = bytes::Bytes::from(vec![7u8; size]);
    (0..n)
        .map(|i| Message::new(payload.clone()).with_key((i % 64).to_string()))
        .collect()
}

fn raw_producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("client.id", "product-pipeline")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("message.timeout.ms", "30000")
        .set("compression.type", "none")
        .create()
        .expect("raw producer")
}

async fn raw_publish(producer: &FutureProducer, topic: &str, messages: &[Message]) {
    let mut pending = Vec::with_capacity(messages.len());
    for message in messages {
        let headers = OwnedHeaders::new_with_capacity(1).insert(Header {
            key: MESSAGE_ID,
            value: Some(message.id()),
        });
        let record = FutureRecord::<str, [u8]>::to(topic)
            .payload(&message.payload()[..])
            .key(message.key().unwrap())
            .headers(headers);
        match producer.send_result(record) {
            Ok(delivery) => pending.push(delivery),
            Err((error, _)) => panic!("raw enqueue failed: {error}"),
        }
    }
    for delivery in pending {
        delivery.await.unwrap().unwrap();
    }
}

async fn ours_consume(config: &KafkaConfig, topic: &str, n: usize) -> Timed {
    let subscriber = KafkaSubscriber::new(config.clone()).unwrap();
    let mut stream = subscriber.subscribe(topic, &unique("g")).await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    let started = Stopwatch::start();
    first.ack().await.unwrap();
    for _ in 1..n {
        let delivery = stream.next().await.unwrap().unwrap();
        std::hint::black_box(delivery.message().payload().len());
        delivery.ack().await.unwrap();
    }
    let consumed = started.stop();
    drop(stream);
    subscriber.close().await.unwrap();
    consumed
}

async fn raw_consume(brokers: &str, topic: &str, n: usize) -> Timed {
    // The same client properties as our consumer (`KafkaConfig::consumer` with `config()`),
    // but for `queued.max.messages.kbytes` (see the module docs).
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("client.id", "product-pipeline")
        .set("log_level", "4")
        .set("group.id", unique("raw"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "200")
        .set("max.poll.interval.ms", "6000")
        .set("partition.assignment.strategy", "range,roundrobin")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .create()
        .expect("raw consumer");
    consumer.subscribe(&[topic]).unwrap();
    let mut started = None;
    let mut last_commit = Instant::now();
    for i in 0..n {
        let record = consumer.recv().await.unwrap();
        started.get_or_insert_with(Stopwatch::start);
        // The same work as ours: copy payload, key and headers out, store the offset.
        let payload = bytes::Bytes::copy_from_slice(record.payload().unwrap_or_default());
        let key = record
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned());
        let headers: Vec<(String, String)> = record
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        let value = String::from_utf8_lossy(h.value.unwrap_or_default());
                        (h.key.to_owned(), value.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        std::hint::black_box((payload.len(), key, headers));
        consumer
            .store_offset(record.topic(), record.partition(), record.offset() + 1)
            .unwrap();
        // Reading the clock costs; look every 64 records, as ours does once per fetched batch.
        if i % 64 == 0 && last_commit.elapsed() >= Duration::from_millis(100) {
            let _ = consumer.commit_consumer_state(CommitMode::Async);
            last_commit = Instant::now();
        }
    }
    let consumed = started.unwrap().stop();
    let _ = consumer.commit_consumer_state(CommitMode::Sync);
    consumed
}

fn throughput(c: &mut Criterion) {
    let Some(brokers) = std::env::var("KAFKA_BROKERS")
        .ok()
        .filter(|b| !b.is_empty())
    else {
        eprintln!(
            "kafka_throughput: KAFKA_BROKERS is not set (scripts/kafka.sh start); nothing measured"
        );
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = config(&brokers);
    let publisher = KafkaPublisher::new(config.clone()).unwrap();
    let raw = raw_producer(&brokers);
    if let Ok(side) = std::env::var("KAFKA_PROFILE") {
        profile(&runtime, &brokers, &config, &publisher, &side);
        return;
    }

    let mut group = benchmark_group(c, "kafka_publish");
    for size in PAYLOAD_SIZES {
        let n = count(size);
        group.throughput(Throughput::Elements(n as u64));
        let topic = unique(&format!("publish.{size}"));
        runtime
            .block_on(publisher.publish_batch(&topic, messages(1, size)))
            .unwrap();
        group.bench_function(BenchmarkId::new("ours", size), |b| {
            b.to_async(&runtime).iter_batched(
                || messages(n, size),
                |batch| async { publisher.publish_batch(&topic, batch).await.unwrap() },
                criterion::BatchSize::PerIteration,
            )
        });
        group.bench_function(BenchmarkId::new("raw", size), |b| {
            b.to_async(&runtime).iter_batched(
                || messages(n, size),
                |batch| {
                    let (raw, topic) = (&raw, &topic);
                    async move { raw_publish(raw, topic, &batch).await }
                },
                criterion::BatchSize::PerIteration,
            )
        });
    }
    group.finish();

    let mut group = benchmark_group(c, "kafka_consume");
    for size in PAYLOAD_SIZES {
        let n = count(size);
        group.throughput(Throughput::Elements(n as u64));
        let topic = unique(&format!("consume.{size}"));
        runtime
            .block_on(publisher.publish_batch(&topic, messages(n, size)))
            .unwrap();
        let config = Arc::new(config.clone());
        group.bench_function(BenchmarkId::new("ours", size), |b| {
            b.to_async(&runtime).iter_custom(|iterations| {
                let (config, topic) = (config.clone(), topic.clone());
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iterations {
                        total += ours_consume(&config, &topic, n).await.elapsed;
                    }
                    total
                }
            })
        });
        group.bench_function(BenchmarkId::new("raw", size), |b| {
            b.to_async(&runtime).iter_custom(|iterations| {
                let (brokers, topic) = (brokers.clone(), topic.clone());
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iterations {
                        total += raw_consume(&brokers, &topic, n).await.elapsed;
                    }
                    total
                }
            })
        });
    }
    group.finish();
    paired(&runtime, &brokers, &config, &publisher, &raw);
    runtime.block_on(publisher.close()).unwrap();
}

/// Paired rounds: ours and raw alternate (order swapped every round) so both see the same
/// background load on a shared machine; prints the median rates and the ratios (of the medians,
/// and the median of the per-round ratios). `PAIRED_ROUNDS` (default 15; 0 skips),
/// `PAIRED_OPS`, `PAIRED_SIZES`, `PAIRED_SCALE`.
fn paired(
    runtime: &tokio::runtime::Runtime,
    brokers: &str,
    config: &KafkaConfig,
    publisher: &KafkaPublisher,
    raw: &FutureProducer,
) {
    let rounds = env_usize("PAIRED_ROUNDS", 15);
    if rounds == 0 {
        return;
    }
    eprintln!("\npaired rounds ({rounds} per case, median msg/s):");
    // `PAIRED_OPS=consume` (or `publish`) runs one kind only.
    let ops = std::env::var("PAIRED_OPS").unwrap_or_default();
    for op in ["publish", "consume"] {
        if !ops.is_empty() && !ops.contains(op) {
            continue;
        }
        for size in selected_sizes() {
            // `PAIRED_SCALE=10` makes a consume round read 10 times the criterion count: long
            // enough for the broker's fetch rate, not the client, to set the pace.
            let n = match op {
                "publish" => count(size),
                _ => count(size) * env_usize("PAIRED_SCALE", 1).max(1),
            };
            let topic = unique(&format!("paired.{op}.{size}"));
            publish_many(runtime, publisher, &topic, n, size);
            let paired = paired_rounds(rounds, |side| {
                let run = runtime.block_on(async {
                    match (op, side) {
                        ("publish", Side::Ours) => {
                            let batch = messages(n, size);
                            let started = Stopwatch::start();
                            publisher.publish_batch(&topic, batch).await.unwrap();
                            started.stop()
                        }
                        ("publish", Side::Baseline) => {
                            let batch = messages(n, size);
                            let started = Stopwatch::start();
                            raw_publish(raw, &topic, &batch).await;
                            started.stop()
                        }
                        (_, Side::Ours) => ours_consume(config, &topic, n).await,
                        (_, Side::Baseline) => raw_consume(brokers, &topic, n).await,
                    }
                });
                run.sample(n)
            });
            eprintln!(
                "{}",
                paired.report(&format!("{op:<7} {size:>5} B"), "ours", "raw")
            );
        }
    }
}

/// `KAFKA_PROFILE=ours|raw` (with `KAFKA_PROFILE_SIZE`, default 16, and `KAFKA_PROFILE_N`,
/// default 300 000): publishes N messages once, then consumes them 3 times with fresh groups on
/// one side only and prints the rates; for `perf record` (the criterion runs are dominated by
/// group joins, which sleep).
fn profile(
    runtime: &tokio::runtime::Runtime,
    brokers: &str,
    config: &KafkaConfig,
    publisher: &KafkaPublisher,
    side: &str,
) {
    let (size, n) = (
        env_usize("KAFKA_PROFILE_SIZE", 16),
        env_usize("KAFKA_PROFILE_N", 300_000),
    );
    // `KAFKA_PROFILE_TOPIC`: consume an existing topic (published by an earlier run, which
    // prints its name), so that a profile holds nothing but consuming.
    let topic = match std::env::var("KAFKA_PROFILE_TOPIC") {
        Ok(topic) => topic,
        Err(_) => {
            let topic = unique(&format!("profile.{size}"));
            publish_many(runtime, publisher, &topic, n, size);
            eprintln!("profile: published {n} messages of {size} B to {topic}");
            topic
        }
    };
    for _ in 0..env_usize("KAFKA_PROFILE_ROUNDS", 3) {
        let run = runtime.block_on(async {
            if side == "raw" {
                raw_consume(brokers, &topic, n).await
            } else {
                ours_consume(config, &topic, n).await
            }
        });
        eprintln!(
            "profile {side} {size} B: {:.0} msg/s, {:.2} µs CPU/msg",
            n as f64 / run.elapsed.as_secs_f64(),
            run.cpu.as_secs_f64() * 1e6 / n as f64,
        );
    }
}

/// Publishes `n` messages of `size` bytes in batches the producer queue holds.
fn publish_many(
    runtime: &tokio::runtime::Runtime,
    publisher: &KafkaPublisher,
    topic: &str,
    n: usize,
    size: usize,
) {
    for start in (0..n).step_by(10_000) {
        let batch = messages((n - start).min(10_000), size);
        runtime
            .block_on(publisher.publish_batch(topic, batch))
            .unwrap();
    }
}

/// A criterion group sized for a broker round trip: 10 samples over 5 s after a 1 s warm-up.
fn benchmark_group<'c>(
    c: &'c mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'c, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.warm_up_time(Duration::from_secs(1));
    group
}

criterion_group!(benches, throughput);
criterion_main!(benches);
