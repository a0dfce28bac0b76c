//! In-memory broker throughput: publish → consume → ack, messages per second at 16, 256 and 4096
//! byte payloads, through the `Publisher`/`Subscriber` traits; the baseline moves the same
//! messages through a bare `tokio::sync::mpsc` channel (no groups, acks or redelivery).
//!
//! `cargo bench -p mq-core --bench memory_throughput`

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures::StreamExt;
use mq_core::{MemoryBroker, Message, Publisher, Subscriber};

const MESSAGES: usize = 10_000;

async fn publish_then_consume(payload: Arc<[u8]>, keyed: bool) {
    let broker = MemoryBroker::new();
    let publisher: Arc<dyn Publisher> = Arc::new(broker.publisher());
    let subscriber: Arc<dyn Subscriber> = Arc::new(broker.subscriber());
    let mut stream = subscriber.subscribe("bench", "g").await.unwrap();
    let producer = tokio::spawn(async move {
        for n in 0..MESSAGES {
            let mut message = Message::new(payload.to_vec());
            if keyed {
                message = message.with_key((n % 64).to_string());
            }
            publisher.publish("bench", message).await.unwrap();
        }
    });
    for _ in 0..MESSAGES {
        stream.next().await.unwrap().unwrap().ack().await.unwrap();
    }
    producer.await.unwrap();
}

async fn channel_baseline(payload: Arc<[u8]>) {
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let producer = tokio::spawn(async move {
        for _ in 0..MESSAGES {
            sender.send(Message::new(payload.to_vec())).unwrap();
        }
    });
    for _ in 0..MESSAGES {
        std::hint::black_box(receiver.recv().await.unwrap());
    }
    producer.await.unwrap();
}

fn throughput(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("memory_publish_consume");
    group.throughput(Throughput::Elements(MESSAGES as u64));
    group.sample_size(20);
    for size in [16usize, 256, 4096] {
        let payload: Arc<[u8]> = vec![7u8; size].into();
        group.bench_with_input(BenchmarkId::new("unkeyed", size), &payload, |b, payload| {
            b.to_async(&runtime)
                .iter(|| publish_then_consume(payload.clone(), false));
        });
        group.bench_with_input(
            BenchmarkId::new("mpsc_baseline", size),
            &payload,
            |b, payload| {
                b.to_async(&runtime)
                    .iter(|| channel_baseline(payload.clone()));
            },
        );
        group.bench_with_input(BenchmarkId::new("keyed", size), &payload, |b, payload| {
            b.to_async(&runtime)
                .iter(|| publish_then_consume(payload.clone(), true));
        });
    }
    group.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
