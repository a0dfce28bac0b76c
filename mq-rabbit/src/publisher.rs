//! [`RabbitPublisher`]: confirmed, persistent, mandatory publishes over a small pool of confirm
//! channels.

use std::time::Duration;

use async_trait::async_trait;
use mq_core::{Error, Message, Publisher, Result};
use tokio::sync::RwLock;

use crate::connection::{Link, OnClose};
use crate::session::confirm_timeout;
use crate::RabbitConfig;

/// Publishes to RabbitMQ. Cheap to share: hold it as `Arc<dyn Publisher>`.
///
/// - Each message is persistent (`delivery_mode` 2) and published with the `mandatory` flag to
///   the configured exchange with the topic as routing key; `publish` returns once the broker
///   confirmed it. A message that no queue is bound to comes back and fails with
///   [`Error::Rejected`]: subscribe a group to the topic first.
/// - Publishes are spread over [`RabbitConfig::publisher_channels`] confirm channels (messages
///   with the same key always use the same channel, so their order is kept); any number of
///   publishes may be in flight at once, and [`publish_batch`](Publisher::publish_batch)
///   pipelines its messages and then awaits all confirms.
/// - While the connection is down, publishes fail at once with [`Error::Unavailable`] (transient)
///   and the publisher reconnects in the background with backoff.
/// - [`close`](Publisher::close) waits for every outstanding confirm, closes the connection and
///   makes later publishes fail with [`Error::Closed`].
///
/// ```no_run
/// use std::sync::Arc;
/// use mq_core::{Message, Publisher};
/// use mq_rabbit::{RabbitConfig, RabbitPublisher};
///
/// # async fn run() -> mq_core::Result<()> {
/// let config = RabbitConfig::new("amqp://guest:guest@127.0.0.1:5672/%2f");
/// let publisher: Arc<dyn Publisher> = Arc::new(RabbitPublisher::connect(config).await?);
/// publisher
///     .publish("products.created", Message::json(&serde_json::json!({"product_id": 7}))?.with_key("7"))
///     .await?;
/// publisher.close().await
/// # }
/// ```
pub struct RabbitPublisher {
    link: Link,
    /// Held shared by every publish in progress; `close` takes it exclusively, so it waits for
    /// them, and flips it to `true`.
    closed: RwLock<bool>,
}

impl RabbitPublisher {
    /// Connects and declares the exchange; fails if the broker cannot be reached within
    /// [`RabbitConfig::connect_timeout`]. Must be called inside a tokio runtime.
    pub async fn connect(config: RabbitConfig) -> Result<Self> {
        let channels = config.publisher_channels;
        let link = Link::connect(config, channels, OnClose::CloseConnection).await?;
        Ok(Self::with_link(link))
    }

    /// Returns at once and connects in the background: publishes fail with
    /// [`Error::Unavailable`] until the connection is up (useful when the service may start
    /// before the broker). Must be called inside a tokio runtime.
    pub fn connect_lazy(config: RabbitConfig) -> Self {
        let channels = config.publisher_channels;
        Self::with_link(Link::start(config, channels, OnClose::CloseConnection))
    }

    fn with_link(link: Link) -> Self {
        Self {
            link,
            closed: RwLock::new(false),
        }
    }

    /// Publishes a message that came back unroutable again, with growing pauses, until a queue
    /// is bound to the topic or [`RabbitConfig::unroutable_grace`] has passed.
    async fn retry_unroutable(&self, topic: &str, message: &Message, reason: String) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.link.config().unroutable_grace;
        let mut delay = Duration::from_millis(20);
        let mut reason = reason;
        while tokio::time::Instant::now() + delay <= deadline {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(500));
            match self.link.session()?.publish(topic, message).await {
                Err(Error::Rejected(again)) => reason = again,
                other => return other,
            }
        }
        Err(Error::Rejected(reason))
    }

    /// Declares the queue of consumer group `group` on `topic` (the same durable quorum queue
    /// [`RabbitSubscriber::subscribe`](crate::RabbitSubscriber) declares) and returns its name.
    ///
    /// Call it at deploy or start-up time for the groups that must receive a topic's messages,
    /// so that messages published before the group's first subscriber starts are kept for it
    /// instead of being rejected as unroutable. Idempotent.
    /// [`Subscriber::declare`](mq_core::Subscriber::declare) does the same from the consuming
    /// side.
    pub async fn declare_group(&self, topic: &str, group: &str) -> Result<String> {
        self.link.declare_group(topic, group).await
    }

    /// The configuration this publisher was built with.
    pub fn config(&self) -> &RabbitConfig {
        self.link.config()
    }
}

#[async_trait]
impl Publisher for RabbitPublisher {
    async fn publish(&self, topic: &str, message: Message) -> Result<()> {
        let closed = self.closed.read().await;
        if *closed {
            return Err(Error::Closed("publisher"));
        }
        let session = self.link.session()?;
        match session.publish(topic, &message).await {
            Err(Error::Rejected(reason)) => self.retry_unroutable(topic, &message, reason).await,
            other => other,
        }
    }

    async fn publish_batch(&self, topic: &str, messages: Vec<Message>) -> Result<()> {
        let closed = self.closed.read().await;
        if *closed {
            return Err(Error::Closed("publisher"));
        }
        let session = self.link.session()?;
        // Send everything first (frames go out in order per channel), then collect the confirms.
        let mut pending = Vec::with_capacity(messages.len());
        let mut first_error = None;
        for message in &messages {
            match session.send(topic, message).await {
                Ok(confirm) => pending.push(confirm.wait_untimed(topic)),
                Err(error) => {
                    first_error = Some(error);
                    break;
                }
            }
        }
        // Wait for what was sent even after an error, so `close` never races a live confirm.
        let timeout = self.link.config().confirm_timeout;
        let results = tokio::time::timeout(timeout, futures::future::join_all(pending))
            .await
            .map_err(|_| confirm_timeout(topic, timeout))?;
        if let Some(error) = first_error {
            return Err(error);
        }
        let mut retries = Vec::new();
        for (message, result) in messages.iter().zip(results) {
            match result {
                Ok(()) => {}
                Err(Error::Rejected(reason)) => {
                    retries.push(self.retry_unroutable(topic, message, reason));
                }
                Err(error) => return Err(error),
            }
        }
        futures::future::try_join_all(retries).await?;
        drop(closed);
        Ok(())
    }

    async fn health(&self) -> Result<()> {
        if *self.closed.read().await {
            return Err(Error::Closed("publisher"));
        }
        self.link.session().map(drop)
    }

    async fn close(&self) -> Result<()> {
        let mut closed = self.closed.write().await;
        if !*closed {
            *closed = true;
            self.link.close();
            self.link.closed().await;
        }
        Ok(())
    }
}
