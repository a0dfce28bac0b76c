//! One live AMQP connection and its publisher-confirm channels.
//!
//! A [`Session`] is what a [`Link`](crate::connection::Link) hands out while it is connected: the
//! connection, its generation (one more after every reconnect) and a fixed set of confirm
//! channels, one chosen per message key so that messages of one key are confirmed in order.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::publisher_confirm::{Confirmation, PublisherConfirm};
use lapin::{Channel, Connection, ConnectionProperties};
use mq_core::{Error, Message, Result};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::codec::{self, lapin_error};
use crate::topology;
use crate::RabbitConfig;

/// How often the supervisor double-checks the connection status (a close initiated by the
/// broker does not always reach the error callback).
pub(crate) const STATUS_POLL: Duration = Duration::from_millis(200);

/// One live connection with its confirm channels.
pub(crate) struct Session {
    pub(crate) connection: Connection,
    pub(crate) generation: u64,
    pub(crate) config: Arc<RabbitConfig>,
    confirm_channels: Vec<Mutex<Arc<Channel>>>,
    next_channel: AtomicUsize,
}

/// How long [`Session::shutdown`] waits for lapin's IO thread after the connection closed.
const IO_THREAD_EXIT: Duration = Duration::from_secs(5);

/// A publish whose frames were sent; awaiting it waits for the broker's confirm.
pub(crate) struct PendingConfirm {
    confirm: PublisherConfirm,
    timeout: Duration,
}

/// The error of a confirm that did not come in time.
pub(crate) fn confirm_timeout(topic: &str, after: Duration) -> Error {
    Error::Timeout {
        operation: format!("waiting for the publisher confirm of topic `{topic}`"),
        after,
    }
}

impl PendingConfirm {
    /// Waits for the confirm: `Ok` once the broker has the message durably, [`Error::Rejected`] if
    /// no queue is bound to the topic.
    pub(crate) async fn wait(self, topic: &str) -> Result<()> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.wait_untimed(topic))
            .await
            .map_err(|_| confirm_timeout(topic, timeout))?
    }

    /// Like [`wait`](Self::wait) without a timeout of its own (for batches, which use one timeout
    /// for all their confirms).
    pub(crate) async fn wait_untimed(self, topic: &str) -> Result<()> {
        let confirmation = self
            .confirm
            .await
            .map_err(|e| lapin_error("publisher confirm", e))?;
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                Err(Error::Rejected(format!(
                    "no queue is bound to topic `{}` (broker returned {} {}); subscribe a group first",
                    topic, returned.reply_code, returned.reply_text
                )))
            }
            Confirmation::Nack(None) => Err(Error::Unavailable {
                message: format!("the broker nacked a message of topic `{topic}`"),
                source: None,
            }),
            Confirmation::NotRequested => Err(Error::Unavailable {
                message: "the publish channel is not in confirm mode".into(),
                source: None,
            }),
        }
    }
}

impl Session {
    pub(crate) async fn open(
        config: Arc<RabbitConfig>,
        generation: u64,
        channels: usize,
    ) -> Result<Self> {
        let mut properties = ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio);
        if let Some(name) = &config.connection_name {
            properties = properties.with_connection_name(name.clone().into());
        }
        let connection = Connection::connect(&config.url, properties)
            .await
            .map_err(|e| lapin_error("connecting to RabbitMQ", e))?;
        let setup = connection
            .create_channel()
            .await
            .map_err(|e| lapin_error("opening a channel", e))?;
        topology::declare_exchange(&setup, &config).await?;
        drop(setup);
        let mut confirm_channels = Vec::with_capacity(channels);
        for _ in 0..channels {
            confirm_channels.push(Mutex::new(Arc::new(
                open_confirm_channel(&connection).await?,
            )));
        }
        Ok(Self {
            connection,
            generation,
            config,
            confirm_channels,
            next_channel: AtomicUsize::new(0),
        })
    }

    /// `true` while the connection is usable.
    pub(crate) fn connected(&self) -> bool {
        self.connection.status().connected()
    }

    /// Resolves when the connection is lost, with the reason.
    pub(crate) async fn lost(&self) -> String {
        let (tx, rx) = oneshot::channel::<String>();
        let tx = Mutex::new(Some(tx));
        self.connection.on_error(move |error| {
            if let Some(tx) = tx.lock().take() {
                let _ = tx.send(error.to_string());
            }
        });
        let poll = async {
            let mut interval = tokio::time::interval(STATUS_POLL);
            loop {
                interval.tick().await;
                if !self.connected() {
                    return format!("connection {:?}", self.connection.status().state());
                }
            }
        };
        tokio::select! {
            reason = rx => reason.unwrap_or_else(|_| "connection error".into()),
            reason = poll => reason,
        }
    }

    /// A confirm channel: the same one for the same key (order per key), round robin otherwise.
    /// A channel that died (e.g. closed by a channel error) is replaced.
    async fn confirm_channel(&self, key: Option<&str>) -> Result<Arc<Channel>> {
        let index = match key {
            Some(key) => {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                key.hash(&mut hasher);
                hasher.finish() as usize
            }
            None => self.next_channel.fetch_add(1, Ordering::Relaxed),
        } % self.confirm_channels.len();
        let slot = &self.confirm_channels[index];
        let channel = slot.lock().clone();
        if channel.status().connected() {
            return Ok(channel);
        }
        if !self.connected() {
            return Err(Error::Unavailable {
                message: "the connection to RabbitMQ is lost; reconnecting".into(),
                source: None,
            });
        }
        let fresh = Arc::new(open_confirm_channel(&self.connection).await?);
        let mut slot = slot.lock();
        if !slot.status().connected() {
            *slot = fresh;
        }
        Ok(slot.clone())
    }

    /// Sends `message` to `topic` (persistent; mandatory unless it
    /// [drops if unrouted](Message::drops_if_unrouted)) and returns the pending confirm.
    pub(crate) async fn send(&self, topic: &str, message: &Message) -> Result<PendingConfirm> {
        let channel = self.confirm_channel(message.key()).await?;
        let confirm = channel
            .basic_publish(
                &self.config.exchange,
                topic,
                BasicPublishOptions {
                    mandatory: !message.drops_if_unrouted(),
                    immediate: false,
                },
                message.payload(),
                codec::properties(message),
            )
            .await
            .map_err(|e| lapin_error("publishing", e))?;
        Ok(PendingConfirm {
            confirm,
            timeout: self.config.confirm_timeout,
        })
    }

    /// Sends and waits for the confirm.
    pub(crate) async fn publish(&self, topic: &str, message: &Message) -> Result<()> {
        self.send(topic, message).await?.wait(topic).await
    }

    /// Closes the connection politely and, when this was the last handle of the session, waits
    /// (up to [`IO_THREAD_EXIT`]) until lapin's IO thread has stopped: one still running when
    /// the tokio runtime shuts down reports that as an IO error.
    pub(crate) async fn shutdown(self: Arc<Self>) {
        self.close().await;
        if let Some(session) = Arc::into_inner(self) {
            let io_thread = tokio::task::spawn_blocking(move || session.connection.run());
            let _ = tokio::time::timeout(IO_THREAD_EXIT, io_thread).await;
        }
    }

    /// Closes the connection politely (confirm channels first).
    async fn close(&self) {
        for slot in &self.confirm_channels {
            let channel = slot.lock().clone();
            if channel.status().connected() {
                let _ = channel.close(200, "closing").await;
            }
        }
        if self.connected() {
            let _ = self.connection.close(200, "closing").await;
        }
    }
}

async fn open_confirm_channel(connection: &Connection) -> Result<Channel> {
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| lapin_error("opening a channel", e))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| lapin_error("enabling publisher confirms", e))?;
    Ok(channel)
}
