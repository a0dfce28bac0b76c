//! [`KafkaPublisher`]: idempotent, `acks=all` producer whose publishes resolve on the delivery
//! report.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mq_core::{Error, Message, Publisher, Result};
use parking_lot::RwLock;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use crate::admin::TopicAdmin;
use crate::codec::record_headers;
use crate::error::classify;
use crate::KafkaConfig;

/// Publishes [`Message`]s to Kafka.
///
/// - idempotent (`enable.idempotence=true`, `acks=all`): a publish returns once every in-sync
///   replica has the message (the delivery report);
/// - the message key picks the partition, so one key's messages stay in order;
/// - the message id travels in the `x-message-id` header, next to the message's own headers;
/// - topics are created on first use with [`KafkaConfig::partitions`] partitions;
/// - [`close`](Publisher::close) flushes everything outstanding, then refuses new publishes.
///
/// Cheap to clone (clones share one librdkafka producer); `Send + Sync`, usable as
/// `Arc<dyn Publisher>`.
///
/// ```no_run
/// use mq_core::{Message, Publisher};
/// use mq_kafka::{KafkaConfig, KafkaPublisher};
///
/// # async fn run() -> mq_core::Result<()> {
/// let publisher = KafkaPublisher::new(KafkaConfig::new("127.0.0.1:9092"))?;
/// publisher
///     .publish("products.created", Message::json(&serde_json::json!({"product_id": 7}))?.with_key("7"))
///     .await?;
/// publisher.close().await
/// # }
/// ```
#[derive(Clone)]
pub struct KafkaPublisher {
    inner: Arc<ProducerInner>,
}

pub(crate) struct ProducerInner {
    producer: FutureProducer,
    admin: TopicAdmin,
    /// `true` once closed; held for reading while a record is enqueued so that `close` (which
    /// takes it for writing) flushes every record that got in.
    closed: RwLock<bool>,
    config: KafkaConfig,
}

impl KafkaPublisher {
    /// Creates the producer (no network round trip yet: librdkafka connects in the background).
    pub fn new(config: KafkaConfig) -> Result<Self> {
        let admin = TopicAdmin::new(&config)?;
        Ok(Self {
            inner: Arc::new(ProducerInner::new(config, admin)?),
        })
    }
}

impl ProducerInner {
    pub(crate) fn new(config: KafkaConfig, admin: TopicAdmin) -> Result<Self> {
        let producer: FutureProducer = config
            .producer()
            .create()
            .map_err(|e| classify("producer creation", e))?;
        Ok(Self {
            producer,
            admin,
            closed: RwLock::new(false),
            config,
        })
    }

    /// Hands one record to librdkafka without waiting for its delivery report.
    pub(crate) fn enqueue(&self, topic: &str, message: &Message) -> Result<Option<DeliveryFuture>> {
        let closed = self.closed.read();
        if *closed {
            return Err(Error::Closed("publisher"));
        }
        let mut record = FutureRecord::<str, [u8]>::to(topic)
            .payload(&message.payload()[..])
            .headers(record_headers(message));
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        match self.producer.send_result(record) {
            Ok(delivery) => Ok(Some(delivery)),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => Ok(None),
            Err((error, _)) => Err(classify("publish", error)),
        }
    }

    /// Enqueues, waiting for room in librdkafka's queue (up to the publish timeout).
    async fn enqueue_waiting(&self, topic: &str, message: &Message) -> Result<DeliveryFuture> {
        let started = Instant::now();
        loop {
            if let Some(delivery) = self.enqueue(topic, message)? {
                return Ok(delivery);
            }
            if started.elapsed() > self.config.publish_timeout {
                return Err(Error::Timeout {
                    operation: "waiting for room in the producer queue".into(),
                    after: started.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub(crate) async fn publish(&self, topic: &str, message: &Message) -> Result<()> {
        self.admin.ensure(topic).await?;
        let delivery = self.enqueue_waiting(topic, message).await?;
        await_delivery(delivery).await
    }

    async fn publish_batch(&self, topic: &str, messages: &[Message]) -> Result<()> {
        self.admin.ensure(topic).await?;
        let mut outstanding = VecDeque::with_capacity(messages.len());
        for message in messages {
            loop {
                if let Some(delivery) = self.enqueue(topic, message)? {
                    outstanding.push_back(delivery);
                    break;
                }
                // The local queue is full: wait for the oldest report to make room.
                match outstanding.pop_front() {
                    Some(oldest) => await_delivery(oldest).await?,
                    None => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        }
        // Reports arrive roughly in order: awaiting them one by one is cheaper than polling a
        // join of thousands of futures.
        for delivery in outstanding {
            await_delivery(delivery).await?;
        }
        Ok(())
    }

    pub(crate) async fn close(&self) -> Result<()> {
        *self.closed.write() = true;
        let producer = self.producer.clone();
        let timeout = self.config.publish_timeout;
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|e| Error::unavailable("flush task failed", e))?
            .map_err(|e| classify("flush", e))
    }
}

pub(crate) async fn await_delivery(delivery: DeliveryFuture) -> Result<()> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((error, _))) => Err(classify("publish", error)),
        Err(canceled) => Err(Error::unavailable(
            "the producer dropped the delivery report",
            canceled,
        )),
    }
}

#[async_trait]
impl Publisher for KafkaPublisher {
    async fn publish(&self, topic: &str, message: Message) -> Result<()> {
        self.inner.publish(topic, &message).await
    }

    async fn publish_batch(&self, topic: &str, messages: Vec<Message>) -> Result<()> {
        self.inner.publish_batch(topic, &messages).await
    }

    async fn health(&self) -> Result<()> {
        self.inner.admin.health().await
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}
