//! [`RabbitSubscriber`]: one consumer (on its own channel, with `basic.qos` prefetch and manual
//! acks) per subscription, re-established after a reconnect.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};
use mq_core::{Delivery, DeliveryStream, Error, Origin, Result, Subscriber};
use tracing::{debug, warn};

use crate::ack::RabbitAcknowledger;
use crate::codec::{self, lapin_error};
use crate::connection::{Link, OnClose};
use crate::in_flight::{InFlight, Pending};
use crate::session::Session;
use crate::topology;
use crate::RabbitConfig;

/// How long the background clean-up of an ended subscription may take.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(10);

/// Consumes from RabbitMQ. Cheap to share: hold it as `Arc<dyn Subscriber>`.
///
/// `subscribe(topic, group)` declares the durable quorum queue `<topic>::<group>` (see
/// [`queue_name`](crate::queue_name)), binds it to the topic and consumes it with manual acks
/// and [`RabbitConfig::prefetch`]. Subscriptions of one group share the queue (competing
/// consumers); each group has its own queue (fan-out).
///
/// - [`Delivery::attempt`] is the queue's `x-delivery-count` + 1.
/// - `nack(Requeue)` returns the message to the queue; dropping a delivery does the same (in a
///   spawned task); `nack(DeadLetter)` publishes it, confirmed, with reason and attempt count, to
///   `<topic>.dlq` and then acks it.
/// - After a lost connection the stream yields one `Err` item, then resumes once the subscriber
///   has reconnected and re-declared its queue. Deliveries from the old connection cannot be
///   acked any more (their settle fails with [`Error::Unavailable`]); the broker redelivers them.
/// - [`close`](Subscriber::close) ends every stream; deliveries handed out before stay valid
///   and the connection stays open until they are settled or dropped, then closes. With nothing
///   in flight, `close` returns once the connection is closed.
pub struct RabbitSubscriber {
    link: Link,
    subscriptions: AtomicU64,
    pending: Pending,
}

impl RabbitSubscriber {
    /// Connects; fails if the broker cannot be reached within
    /// [`RabbitConfig::connect_timeout`]. Must be called inside a tokio runtime.
    pub async fn connect(config: RabbitConfig) -> Result<Self> {
        let link = Link::connect(config, 1, OnClose::Release).await?;
        Ok(Self::with_link(link))
    }

    /// Returns at once and connects in the background; `subscribe` waits up to the connect
    /// timeout for the connection. Must be called inside a tokio runtime.
    pub fn connect_lazy(config: RabbitConfig) -> Self {
        Self::with_link(Link::start(config, 1, OnClose::Release))
    }

    fn with_link(link: Link) -> Self {
        Self {
            link,
            subscriptions: AtomicU64::new(0),
            pending: Pending::default(),
        }
    }

    /// The configuration this subscriber was built with.
    pub fn config(&self) -> &RabbitConfig {
        self.link.config()
    }
}

#[async_trait]
impl Subscriber for RabbitSubscriber {
    async fn subscribe(&self, topic: &str, group: &str) -> Result<DeliveryStream> {
        if self.link.closed_token().is_cancelled() {
            return Err(Error::Closed("subscriber"));
        }
        let timeout = self.link.config().connect_timeout;
        let session = match tokio::time::timeout(timeout, self.link.wait_session(None)).await {
            Ok(Some(session)) => session,
            Ok(None) => return Err(Error::Closed("subscriber")),
            Err(_) => {
                return Err(self.link.session().err().unwrap_or(Error::Timeout {
                    operation: "waiting for the connection to RabbitMQ".into(),
                    after: timeout,
                }))
            }
        };
        let number = self.subscriptions.fetch_add(1, Ordering::Relaxed);
        let mut subscription = Subscription {
            link: self.link.clone(),
            topic: Arc::from(topic),
            group: group.to_owned(),
            consumer_tag: format!("mq-rabbit.{}.{number}", std::process::id()),
            active: None,
            failures: 0,
            pending: self.pending.clone(),
        };
        // The first consumer is set up before returning, so a publish right after `subscribe`
        // is routed to the queue.
        subscription.start(&session).await?;
        Ok(Box::pin(futures::stream::unfold(
            subscription,
            |mut subscription| async move {
                let item = subscription.next().await?;
                Some((item, subscription))
            },
        )))
    }

    /// Declares the group's durable quorum queue, so messages published before the group's
    /// first subscription starts wait in it instead of being rejected as unroutable.
    async fn declare(&self, topic: &str, group: &str) -> Result<()> {
        if self.link.closed_token().is_cancelled() {
            return Err(Error::Closed("subscriber"));
        }
        self.link.declare_group(topic, group).await.map(drop)
    }

    async fn health(&self) -> Result<()> {
        if self.link.closed_token().is_cancelled() {
            return Err(Error::Closed("subscriber"));
        }
        self.link.session().map(drop)
    }

    async fn close(&self) -> Result<()> {
        let session = self.link.session().ok();
        self.link.close();
        self.link.closed().await;
        let Some(session) = session else {
            return Ok(());
        };
        // Closed politely once nothing needs it; left open, it would end with the runtime's
        // shutdown, which lapin reports as an error. Our own clean-ups are waited for here;
        // deliveries the caller still holds are theirs to settle, after `close` returned.
        let pending = self.pending.clone();
        let close = async move {
            pending.deliveries.idle().await;
            pending.cleanups.idle().await;
            session.shutdown().await;
        };
        if self.pending.deliveries.is_idle() {
            close.await;
        } else {
            self.link.handle().spawn(close);
        }
        Ok(())
    }
}

/// One consumer on one channel of one session.
struct Active {
    handle: tokio::runtime::Handle,
    cleanups: InFlight,
    session: Arc<Session>,
    channel: Arc<Channel>,
    consumer: Option<Consumer>,
    consumer_tag: String,
}

impl Drop for Active {
    /// Cancels the consumer and hands back what it had prefetched but not handed out, so those
    /// messages are not stuck while earlier deliveries keep the channel open.
    fn drop(&mut self) {
        let Some(mut consumer) = self.consumer.take() else {
            return;
        };
        if !self.channel.status().connected() {
            return;
        }
        let channel = Arc::clone(&self.channel);
        let tag = self.consumer_tag.clone();
        let tracked = self.cleanups.track();
        // On the subscriber's runtime, even when the stream is dropped elsewhere. If that runtime
        // is gone, the channel closes with its last handle and the broker requeues.
        self.handle.spawn(async move {
            let cleanup = async {
                channel
                    .basic_cancel(&tag, BasicCancelOptions::default())
                    .await?;
                while let Some(Ok(delivery)) = consumer.next().await {
                    channel
                        .basic_nack(
                            delivery.delivery_tag,
                            BasicNackOptions {
                                multiple: false,
                                requeue: true,
                            },
                        )
                        .await?;
                }
                // Closed here, not by lapin when the last handle goes: a close still under way
                // when the connection closes makes the broker's answer arrive for an unknown
                // channel. Deliveries of this channel still unsettled keep it open.
                if Arc::strong_count(&channel) == 1 {
                    channel.close(200, "subscription ended").await?;
                }
                Ok::<_, lapin::Error>(())
            };
            match tokio::time::timeout(CANCEL_TIMEOUT, cleanup).await {
                Ok(Ok(())) => debug!(consumer = %tag, "consumer cancelled"),
                Ok(Err(error)) => debug!(consumer = %tag, %error, "consumer cancel failed"),
                Err(_) => debug!(consumer = %tag, "consumer cancel timed out"),
            }
            drop(tracked);
        });
    }
}

struct Subscription {
    link: Link,
    topic: Arc<str>,
    group: String,
    consumer_tag: String,
    active: Option<Active>,
    failures: u32,
    pending: Pending,
}

impl Subscription {
    /// Declares the queue and starts consuming on a new channel of `session`.
    async fn start(&mut self, session: &Arc<Session>) -> Result<()> {
        let config = &session.config;
        let channel = session
            .connection
            .create_channel()
            .await
            .map_err(|e| lapin_error("opening a channel", e))?;
        let queue =
            topology::declare_group_queue(&channel, config, &self.topic, &self.group).await?;
        channel
            .basic_qos(config.prefetch.max(1), BasicQosOptions { global: false })
            .await
            .map_err(|e| lapin_error("setting the prefetch", e))?;
        let consumer = channel
            .basic_consume(
                &queue,
                &self.consumer_tag,
                BasicConsumeOptions {
                    no_ack: false,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| lapin_error(&format!("consuming queue `{queue}`"), e))?;
        self.active = Some(Active {
            handle: self.link.handle().clone(),
            cleanups: self.pending.cleanups.clone(),
            session: session.clone(),
            channel: Arc::new(channel),
            consumer: Some(consumer),
            consumer_tag: self.consumer_tag.clone(),
        });
        Ok(())
    }

    /// The next stream item; `None` once the subscriber is closed.
    async fn next(&mut self) -> Option<Result<Delivery>> {
        loop {
            if self.link.closed_token().is_cancelled() {
                self.active = None;
                return None;
            }
            let Some(active) = self.active.as_mut() else {
                if self.failures > 0 {
                    let delay = self.link.config().reconnect.delay(self.failures);
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = self.link.closed_token().cancelled() => return None,
                    }
                }
                // A session of the same connection is fine after a channel-level failure; after
                // a lost connection, wait for the next one.
                let session = self.link.wait_session(None).await?;
                if let Err(error) = self.start(&session).await {
                    self.failures += 1;
                    warn!(topic = %self.topic, group = %self.group, %error, "cannot resume the subscription");
                    return Some(Err(error));
                }
                self.failures = 0;
                continue;
            };
            let consumer = active
                .consumer
                .as_mut()
                .expect("an active subscription has a consumer");
            let item = tokio::select! {
                item = consumer.next() => item,
                () = self.link.closed_token().cancelled() => {
                    self.active = None;
                    return None;
                }
            };
            match item {
                Some(Ok(_)) if !active.channel.status().connected() => {
                    // Buffered before the channel died: it can never be acked, and the broker
                    // has already put it back in the queue. The consumer ends next.
                    continue;
                }
                Some(Ok(delivery)) => {
                    let message = codec::message(&delivery.properties, delivery.data);
                    let attempt = codec::attempt(&delivery.properties, delivery.redelivered);
                    let acknowledger = RabbitAcknowledger {
                        session: active.session.clone(),
                        channel: Arc::clone(&active.channel),
                        delivery_tag: delivery.delivery_tag,
                        topic: Arc::clone(&self.topic),
                        message: message.clone(),
                        handle: self.link.handle().clone(),
                        delivery: Some(self.pending.deliveries.track()),
                        cleanups: self.pending.cleanups.clone(),
                    };
                    return Some(Ok(Delivery::new(
                        &*self.topic,
                        message,
                        attempt,
                        Box::new(acknowledger),
                    )
                    .with_origin(Origin::system("rabbitmq"))));
                }
                Some(Err(error)) => {
                    self.active = None;
                    self.failures = 1;
                    warn!(topic = %self.topic, group = %self.group, %error, "subscription interrupted; resuming");
                    return Some(Err(lapin_error("subscription interrupted", error)));
                }
                None => {
                    self.active = None;
                    self.failures = 1;
                    warn!(topic = %self.topic, group = %self.group, "the broker cancelled the consumer; resuming");
                    return Some(Err(Error::Unavailable {
                        message: format!(
                            "the consumer of topic `{}` group `{}` was cancelled; resuming",
                            self.topic, self.group
                        ),
                        source: None,
                    }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With nothing in flight, `close` has closed the connection when it returns: left to the
    /// runtime's shutdown, lapin logs IO errors.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn close_closes_the_connection_before_it_returns() {
        let Some(url) =
            testsupport::service_var("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
        else {
            return;
        };
        let config = RabbitConfig::new(url)
            .with_exchange("test.mq-rabbit.close")
            .with_queue_expires(Duration::from_secs(60));
        let subscriber = RabbitSubscriber::connect(config).await.unwrap();
        let topic = testsupport::unique_name("close");
        drop(subscriber.subscribe(&topic, "g").await.unwrap());
        let session = subscriber.link.session().unwrap();
        subscriber.close().await.unwrap();
        assert!(
            !session.connected(),
            "the connection is still open after close"
        );
    }
}
