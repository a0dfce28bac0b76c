//! [`RabbitConfig`]: where the broker is and how the backend behaves.

use std::time::Duration;

use mq_core::worker::Backoff;

/// Configuration of a [`RabbitPublisher`](crate::RabbitPublisher) or
/// [`RabbitSubscriber`](crate::RabbitSubscriber).
///
/// ```
/// use std::time::Duration;
/// use mq_rabbit::RabbitConfig;
///
/// let config = RabbitConfig::new("amqp://guest:guest@127.0.0.1:5672/%2f")
///     .with_prefetch(64)
///     .with_publisher_channels(4)
///     .with_connection_name("image-worker");
/// assert_eq!(config.prefetch, 64);
/// assert_eq!(config.confirm_timeout, Duration::from_secs(30));
/// ```
#[derive(Debug, Clone)]
pub struct RabbitConfig {
    /// AMQP URL, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f` (`amqps://` needs the `rustls`
    /// feature).
    pub url: String,
    /// The durable direct exchange every topic is published to (routing key = topic).
    pub exchange: String,
    /// How many unacknowledged deliveries one subscription may hold (`basic.qos`).
    pub prefetch: u16,
    /// How many confirm-mode channels a publisher spreads its publishes over.
    pub publisher_channels: usize,
    /// Delays between reconnection attempts after the connection is lost.
    pub reconnect: Backoff,
    /// How long connecting (TCP + AMQP handshake + topology) may take.
    pub connect_timeout: Duration,
    /// How long a publish waits for the broker's confirm before failing with
    /// [`Error::Timeout`](mq_core::Error::Timeout).
    pub confirm_timeout: Duration,
    /// How long a publish keeps retrying a message that no queue is bound to (a subscriber of
    /// the topic may be declaring its queue at this moment) before it fails with
    /// [`Error::Rejected`](mq_core::Error::Rejected). Zero fails at once.
    pub unroutable_grace: Duration,
    /// When set, queues are declared with `x-expires`: the broker deletes a queue that has had no
    /// consumer for this long. Meant for tests and temporary topics; leave `None` in production.
    pub queue_expires: Option<Duration>,
    /// The group whose queue receives a topic's dead letters when nobody has subscribed to
    /// `<topic>.dlq` yet, so that no dead letter is lost. Read them with
    /// `subscribe("<topic>.dlq", "<dead_letter_group>")`.
    pub dead_letter_group: String,
    /// Name shown for the connection in the management UI and `rabbitmqctl list_connections`.
    pub connection_name: Option<String>,
}

impl RabbitConfig {
    /// Exchange name used when none is configured.
    pub const DEFAULT_EXCHANGE: &'static str = "mq.topics";

    /// Defaults for the broker at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            exchange: Self::DEFAULT_EXCHANGE.to_owned(),
            prefetch: 32,
            publisher_channels: 4,
            reconnect: Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(5),
                multiplier: 2.0,
                jitter: 0.3,
            },
            connect_timeout: Duration::from_secs(10),
            confirm_timeout: Duration::from_secs(30),
            unroutable_grace: Duration::from_secs(2),
            queue_expires: None,
            dead_letter_group: "default".to_owned(),
            connection_name: None,
        }
    }

    /// Sets [`prefetch`](Self::prefetch) (at least 1).
    pub fn with_prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch.max(1);
        self
    }

    /// Sets [`publisher_channels`](Self::publisher_channels) (at least 1).
    pub fn with_publisher_channels(mut self, channels: usize) -> Self {
        self.publisher_channels = channels.max(1);
        self
    }

    /// Sets [`exchange`](Self::exchange).
    pub fn with_exchange(mut self, exchange: impl Into<String>) -> Self {
        self.exchange = exchange.into();
        self
    }

    /// Sets [`reconnect`](Self::reconnect).
    pub fn with_reconnect(mut self, backoff: Backoff) -> Self {
        self.reconnect = backoff;
        self
    }

    /// Sets [`queue_expires`](Self::queue_expires).
    pub fn with_queue_expires(mut self, expires: Duration) -> Self {
        self.queue_expires = Some(expires);
        self
    }

    /// Sets [`unroutable_grace`](Self::unroutable_grace).
    pub fn with_unroutable_grace(mut self, grace: Duration) -> Self {
        self.unroutable_grace = grace;
        self
    }

    /// Sets [`confirm_timeout`](Self::confirm_timeout).
    pub fn with_confirm_timeout(mut self, timeout: Duration) -> Self {
        self.confirm_timeout = timeout;
        self
    }

    /// Sets [`connect_timeout`](Self::connect_timeout).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`dead_letter_group`](Self::dead_letter_group).
    pub fn with_dead_letter_group(mut self, group: impl Into<String>) -> Self {
        self.dead_letter_group = group.into();
        self
    }

    /// Sets [`connection_name`](Self::connection_name).
    pub fn with_connection_name(mut self, name: impl Into<String>) -> Self {
        self.connection_name = Some(name.into());
        self
    }
}
