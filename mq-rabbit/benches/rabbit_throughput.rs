//! Confirmed publish and consume throughput through the `mq-core` traits vs raw lapin doing the
//! same work (same channel count, same confirm pipelining, same prefetch, same per-message acks),
//! at 16, 256 and 4096-byte payloads, against the RabbitMQ at `AMQP_URL`.
//!
//! ```text
//! AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo bench -p mq-rabbit --bench rabbit_throughput
//! ```
//!
//! - `publish/*`: one iteration publishes a batch of [`BATCH`] persistent, mandatory messages
//!   spread round robin over [`CHANNELS`] confirm channels and waits for every confirm.
//! - After the criterion groups, paired rounds (adapter and lapin alternating) print median rates
//!   and ratios that are robust against background load (`PAIRED_ROUNDS`, default 20; 0 skips).
//!   `cargo bench -p mq-rabbit --bench rabbit_throughput -- paired-only` runs only those (the
//!   filter matches no criterion benchmark).
//! - `consume/*`: one iteration consumes and acks (one by one) [`BATCH`] messages that were put
//!   in the queue beforehand; subscribing (declare + qos + consume) is inside the timing for
//!   both sides.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use mq_core::{Message, Publisher, Subscriber};
use mq_rabbit::{queue_name, RabbitConfig, RabbitPublisher, RabbitSubscriber};
use testsupport::bench::{
    env_usize, paired_rounds, selected_sizes, Side, Stopwatch, Timed, PAYLOAD_SIZES,
};
use tokio::runtime::Runtime;

/// Messages per iteration.
const BATCH: usize = 2000;
/// Confirm channels of both publishers.
const CHANNELS: usize = 4;
/// Prefetch of both consumers.
const PREFETCH: u16 = 256;
const EXCHANGE: &str = "bench.mq-rabbit";
const GROUP: &str = "bench";

fn config(url: &str) -> RabbitConfig {
    RabbitConfig::new(url)
        .with_exchange(EXCHANGE)
        .with_publisher_channels(CHANNELS)
        .with_prefetch(PREFETCH)
        .with_queue_expires(Duration::from_secs(300))
        .with_connection_name("mq-rabbit-bench")
}

fn queue_arguments() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    arguments.insert("x-expires".into(), AMQPValue::LongLongInt(300_000));
    arguments
}

async fn raw_connection(url: &str) -> Connection {
    let properties = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio);
    Connection::connect(url, properties)
        .await
        .expect("connect raw lapin")
}

/// Declares exactly what the adapter declares, so both sides use the same exchange and queue.
async fn declare(channel: &Channel, topic: &str) -> String {
    channel
        .exchange_declare(
            EXCHANGE,
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("exchange");
    let queue = queue_name(topic, GROUP);
    channel
        .queue_declare(
            &queue,
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            queue_arguments(),
        )
        .await
        .expect("queue");
    channel
        .queue_bind(
            &queue,
            EXCHANGE,
            topic,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    queue
}

fn messages(size: usize) -> Vec<Message> {
    (0..BATCH).map(|_| Message::new(vec![b'x'; size])).collect()
}

/// Raw lapin publisher with the adapter's channel count and message properties.
struct RawPublisher {
    channels: Vec<Channel>,
}

impl RawPublisher {
    async fn new(connection: &Connection) -> Self {
        let mut channels = Vec::new();
        for _ in 0..CHANNELS {
            let channel = connection.create_channel().await.expect("channel");
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .expect("confirm");
            channels.push(channel);
        }
        Self { channels }
    }

    async fn publish_batch(&self, topic: &str, messages: &[Message]) {
        let mut confirms = Vec::with_capacity(messages.len());
        for (n, message) in messages.iter().enumerate() {
            let properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id(ShortString::from(message.id()))
                .with_headers(FieldTable::default());
            let confirm = self.channels[n % CHANNELS]
                .basic_publish(
                    EXCHANGE,
                    topic,
                    BasicPublishOptions {
                        mandatory: true,
                        immediate: false,
                    },
                    message.payload(),
                    properties,
                )
                .await
                .expect("publish");
            confirms.push(confirm);
        }
        for confirmation in futures::future::join_all(confirms).await {
            let confirmation = confirmation.expect("confirm");
            assert!(confirmation.is_ack() && confirmation.take_message().is_none());
        }
    }
}

/// Everything one benchmark run shares.
struct Setup {
    url: String,
    adapter: RabbitPublisher,
    raw: RawPublisher,
    _raw_connection: Connection,
    control: Channel,
}

impl Setup {
    async fn publish_adapter(&self, topic: &str, queue: &str, batch: &[Message]) -> Timed {
        purge(&self.control, queue).await;
        let batch = batch.to_vec();
        let start = Stopwatch::start();
        self.adapter
            .publish_batch(topic, batch)
            .await
            .expect("publish");
        start.stop()
    }

    async fn publish_raw(&self, topic: &str, queue: &str, batch: &[Message]) -> Timed {
        purge(&self.control, queue).await;
        let batch = batch.to_vec();
        let start = Stopwatch::start();
        self.raw.publish_batch(topic, &batch).await;
        start.stop()
    }

    async fn consume_adapter(&self, topic: &str, queue: &str, batch: &[Message]) -> Timed {
        purge(&self.control, queue).await;
        self.raw.publish_batch(topic, batch).await;
        let subscriber = RabbitSubscriber::connect(config(&self.url))
            .await
            .expect("subscriber");
        let start = Stopwatch::start();
        let mut stream = subscriber.subscribe(topic, GROUP).await.expect("sub");
        for _ in 0..batch.len() {
            let delivery = stream.next().await.expect("open").expect("delivery");
            delivery.ack().await.expect("ack");
        }
        let elapsed = start.stop();
        subscriber.close().await.expect("close");
        drop(stream);
        elapsed
    }

    async fn consume_raw(&self, topic: &str, queue: &str, batch: &[Message]) -> Timed {
        purge(&self.control, queue).await;
        self.raw.publish_batch(topic, batch).await;
        let connection = raw_connection(&self.url).await;
        let start = Stopwatch::start();
        let channel = connection.create_channel().await.expect("channel");
        declare(&channel, topic).await;
        channel
            .basic_qos(PREFETCH, BasicQosOptions { global: false })
            .await
            .expect("qos");
        let mut consumer = channel
            .basic_consume(
                queue,
                "bench",
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        for _ in 0..batch.len() {
            let delivery = consumer.next().await.expect("open").expect("delivery");
            // The same decoding work the adapter does for each delivery.
            let id = delivery
                .properties
                .message_id()
                .as_ref()
                .map(|id| id.as_str().to_owned());
            std::hint::black_box((id, &delivery.data, delivery.redelivered));
            channel
                .basic_ack(delivery.delivery_tag, BasicAckOptions::default())
                .await
                .expect("ack");
        }
        let elapsed = start.stop();
        connection.close(200, "done").await.expect("close");
        elapsed
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Publish,
    Consume,
}

async fn once(
    setup: &Setup,
    op: Op,
    side: Side,
    topic: &str,
    queue: &str,
    batch: &[Message],
) -> Timed {
    match (op, side) {
        (Op::Publish, Side::Ours) => setup.publish_adapter(topic, queue, batch).await,
        (Op::Publish, Side::Baseline) => setup.publish_raw(topic, queue, batch).await,
        (Op::Consume, Side::Ours) => setup.consume_adapter(topic, queue, batch).await,
        (Op::Consume, Side::Baseline) => setup.consume_raw(topic, queue, batch).await,
    }
}

fn bench(c: &mut Criterion) {
    let Ok(url) = std::env::var("AMQP_URL") else {
        eprintln!("rabbit_throughput skipped: AMQP_URL is not set");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let setup = runtime.block_on(async {
        let adapter = RabbitPublisher::connect(config(&url))
            .await
            .expect("adapter");
        let raw_connection = raw_connection(&url).await;
        let raw = RawPublisher::new(&raw_connection).await;
        let control = raw_connection.create_channel().await.expect("channel");
        Setup {
            url: url.clone(),
            adapter,
            raw,
            _raw_connection: raw_connection,
            control,
        }
    });

    for (op, name) in [(Op::Publish, "publish"), (Op::Consume, "consume")] {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(BATCH as u64));
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(8));
        group.warm_up_time(Duration::from_secs(2));
        for size in PAYLOAD_SIZES {
            let topic = format!("bench.{name}.{size}");
            let queue = runtime.block_on(declare(&setup.control, &topic));
            let batch = messages(size);
            for (side, label) in [(Side::Ours, "mq-rabbit"), (Side::Baseline, "lapin")] {
                group.bench_with_input(BenchmarkId::new(label, size), &size, |b, _| {
                    b.to_async(&runtime).iter_custom(|iterations| {
                        let (setup, topic, queue, batch) = (&setup, &topic, &queue, &batch);
                        async move {
                            let mut total = Duration::ZERO;
                            for _ in 0..iterations {
                                total += once(setup, op, side, topic, queue, batch).await.elapsed;
                            }
                            total
                        }
                    });
                });
            }
            runtime.block_on(purge(&setup.control, &queue));
        }
        group.finish();
    }

    paired(&runtime, &setup);
    runtime.block_on(async {
        setup.adapter.close().await.expect("close");
    });
}

/// Paired rounds (adapter and raw lapin alternating, order swapped every round) so both see the
/// same background load on a shared machine; prints the median rates and their ratio, and the
/// process CPU time per message. `PAIRED_ROUNDS` (default 20; 0 skips), `PAIRED_SIZES`.
fn paired(runtime: &Runtime, setup: &Setup) {
    let rounds = env_usize("PAIRED_ROUNDS", 20);
    if rounds == 0 {
        return;
    }
    eprintln!("\npaired rounds ({rounds} x {BATCH} messages per side, median msg/s):");
    for (op, name) in [(Op::Publish, "publish"), (Op::Consume, "consume")] {
        for size in selected_sizes() {
            let topic = format!("bench.{name}.{size}");
            let queue = runtime.block_on(declare(&setup.control, &topic));
            let batch = messages(size);
            let paired = paired_rounds(rounds, |side| {
                runtime
                    .block_on(once(setup, op, side, &topic, &queue, &batch))
                    .sample(BATCH)
            });
            runtime.block_on(purge(&setup.control, &queue));
            let case = format!("{name:<7} {size:>5} B");
            eprintln!("{}", paired.report(&case, "mq-rabbit", "lapin"));
        }
    }
}

async fn purge(control: &Channel, queue: &str) {
    control
        .queue_purge(queue, QueuePurgeOptions::default())
        .await
        .expect("purge");
}

criterion_group!(benches, bench);
criterion_main!(benches);
