//! The same publish and consume measurements through `dyn Publisher` / `dyn Subscriber` on every
//! broker backend that is reachable: the in-memory broker always, RabbitMQ when the `rabbit`
//! feature is on and `AMQP_URL` is set, Kafka when the `kafka` feature is on and `KAFKA_BROKERS`
//! is set. Each backend is connected the way the pipeline connects it
//! ([`connect_broker`](product_pipeline::app::connect_broker)), so the figures compare the
//! backends as the pipeline uses them; how each adapter compares with its raw client is in the
//! crates' own benches.
//!
//! - `publish/BACKEND/SIZE`: [`BATCH`] keyed messages of SIZE bytes through `publish_batch`,
//!   until every one is confirmed; a consumer of the same topic acks them meanwhile, so queues
//!   stay short.
//! - `consume/BACKEND/SIZE`: [`BATCH`] messages published beforehand (not timed), then received
//!   and acked one by one on a subscription opened before the first iteration (the group join is
//!   not timed).
//!
//! ```text
//! cargo bench --bench brokers                                    # memory only
//! eval "$(scripts/services.sh start)"
//! cargo bench --bench brokers --features rabbit,kafka            # every backend
//! ```

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures::StreamExt;
use mq_core::testkit::ack_until;
use mq_core::{DeliveryStream, Message, Publisher, Subscriber};
use product_pipeline::app::connect_broker;
use product_pipeline::{BrokerKind, Config};
use testsupport::bench::PAYLOAD_SIZES;
use testsupport::unique_name;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

/// Messages per iteration.
const BATCH: usize = 1000;

/// A connected backend.
struct Backend {
    name: &'static str,
    publisher: Arc<dyn Publisher>,
    subscriber: Arc<dyn Subscriber>,
}

/// The backends compiled in whose address is set.
fn reachable(runtime: &Runtime) -> Vec<Backend> {
    let mut kinds = vec![BrokerKind::Memory];
    if cfg!(feature = "rabbit") && std::env::var("AMQP_URL").is_ok_and(|url| !url.is_empty()) {
        kinds.push(BrokerKind::Rabbit);
    }
    if cfg!(feature = "kafka") && std::env::var("KAFKA_BROKERS").is_ok_and(|url| !url.is_empty()) {
        kinds.push(BrokerKind::Kafka);
    }
    kinds
        .into_iter()
        .map(|kind| {
            // Config reads AMQP_URL and KAFKA_BROKERS itself.
            let mut config = <Config as clap::Parser>::try_parse_from(["brokers"]).unwrap();
            config.broker = kind;
            let (publisher, subscriber) = runtime
                .block_on(connect_broker(&config))
                .unwrap_or_else(|e| panic!("connecting {}: {e}", kind.name()));
            Backend {
                name: kind.name(),
                publisher,
                subscriber,
            }
        })
        .collect()
}

fn messages(size: usize) -> Vec<Message> {
    let payload = bytes::Bytes::from(vec![7u8; size]);
    (0..BATCH)
        .map(|i| Message::new(payload.clone()).with_key((i % 64).to_string()))
        .collect()
}

/// Receives and acks `n` deliveries.
async fn receive(stream: &mut DeliveryStream, n: usize) {
    for _ in 0..n {
        let delivery = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("a delivery within 60 s")
            .expect("the subscription is open")
            .expect("a delivery");
        delivery.ack().await.expect("ack");
    }
}

fn publish(c: &mut Criterion, runtime: &Runtime, backend: &Backend) {
    let mut group = benchmark_group(c, "publish");
    for size in PAYLOAD_SIZES {
        let (topic, group_name) = (unique_name("bench.publish"), unique_name("bench"));
        let stop = CancellationToken::new();
        let stream = runtime
            .block_on(backend.subscriber.subscribe(&topic, &group_name))
            .expect("subscribe");
        let drain = runtime.spawn(ack_until(stream, stop.clone(), Duration::ZERO, drop));
        group.bench_function(BenchmarkId::new(backend.name, size), |b| {
            b.to_async(runtime).iter_batched(
                || messages(size),
                |batch| async {
                    backend
                        .publisher
                        .publish_batch(&topic, batch)
                        .await
                        .expect("publish");
                },
                criterion::BatchSize::PerIteration,
            );
        });
        stop.cancel();
        runtime.block_on(drain).unwrap();
    }
    group.finish();
}

fn consume(c: &mut Criterion, runtime: &Runtime, backend: &Backend) {
    let mut group = benchmark_group(c, "consume");
    for size in PAYLOAD_SIZES {
        let (topic, group_name) = (unique_name("bench.consume"), unique_name("bench"));
        let mut stream = runtime.block_on(async {
            let mut stream = backend
                .subscriber
                .subscribe(&topic, &group_name)
                .await
                .expect("subscribe");
            // One round trip first, so that the group join is behind us.
            let warm = messages(size).into_iter().take(1).collect();
            backend.publisher.publish_batch(&topic, warm).await.unwrap();
            receive(&mut stream, 1).await;
            stream
        });
        group.bench_function(BenchmarkId::new(backend.name, size), |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    runtime
                        .block_on(backend.publisher.publish_batch(&topic, messages(size)))
                        .expect("publish");
                    let started = std::time::Instant::now();
                    runtime.block_on(receive(&mut stream, BATCH));
                    total += started.elapsed();
                }
                total
            });
        });
    }
    group.finish();
}

/// A criterion group sized for broker round trips: 10 samples over 5 s after a 1 s warm-up.
fn benchmark_group<'c>(
    c: &'c mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'c, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.warm_up_time(Duration::from_secs(1));
    group
}

fn brokers(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for backend in reachable(&runtime) {
        publish(c, &runtime, &backend);
        consume(c, &runtime, &backend);
        runtime.block_on(async {
            backend
                .publisher
                .close()
                .await
                .expect("close the publisher");
            backend
                .subscriber
                .close()
                .await
                .expect("close the subscriber");
        });
    }
}

criterion_group!(benches, brokers);
criterion_main!(benches);
