//! [`RabbitAcknowledger`]: settles one delivery on the channel it came from.

use std::sync::Arc;

use async_trait::async_trait;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::Channel;
use mq_core::{dead_letter_topic, Acknowledger, Error, Message, Nack, Result, Settlement};
use tokio::runtime::Handle;
use tracing::debug;

use crate::codec::lapin_error;
use crate::in_flight::{InFlight, InFlightGuard};
use crate::session::Session;
use crate::topology;

/// Settles a delivery with its delivery tag, on the channel that delivered it and on nothing
/// else: if that channel is gone (connection lost), the broker has already put the message back
/// and an ack is impossible — it reports [`Error::Unavailable`] and the message is redelivered;
/// a requeue then is already done.
pub(crate) struct RabbitAcknowledger {
    pub(crate) session: Arc<Session>,
    pub(crate) channel: Arc<Channel>,
    pub(crate) delivery_tag: u64,
    pub(crate) topic: Arc<str>,
    pub(crate) message: Message,
    pub(crate) handle: Handle,
    /// Keeps the subscriber's connection open after its close until this is settled or dropped.
    pub(crate) delivery: Option<InFlightGuard>,
    /// Counts the requeue of a dropped delivery (see [`Acknowledger::abandon`]).
    pub(crate) cleanups: InFlight,
}

fn channel_gone() -> Error {
    Error::Unavailable {
        message: "the channel that delivered this message is closed; the broker will redeliver it"
            .into(),
        source: None,
    }
}

impl RabbitAcknowledger {
    async fn ack(&self) -> Result<()> {
        if !self.channel.status().connected() {
            return Err(channel_gone());
        }
        self.channel
            .basic_ack(self.delivery_tag, BasicAckOptions::default())
            .await
            .map_err(|e| lapin_error("acking a delivery", e))
    }

    async fn requeue(&self) -> Result<()> {
        if !self.channel.status().connected() {
            // The broker requeued every unacked message of the channel when it closed.
            return Ok(());
        }
        match self
            .channel
            .basic_nack(
                self.delivery_tag,
                BasicNackOptions {
                    multiple: false,
                    requeue: true,
                },
            )
            .await
        {
            Ok(()) => Ok(()),
            // Closed meanwhile: requeued all the same.
            Err(_) if !self.channel.status().connected() => Ok(()),
            Err(e) => Err(lapin_error("requeueing a delivery", e)),
        }
    }

    /// Publishes the dead letter (confirmed) to `<topic>.dlq`, then acks the original. If nobody
    /// subscribed to the dead-letter topic yet, its default group queue is declared first so the
    /// letter is kept.
    async fn dead_letter(&self, reason: &str, attempts: u32) -> Result<()> {
        if !self.channel.status().connected() {
            return Err(channel_gone());
        }
        let topic = dead_letter_topic(&self.topic);
        let letter = self.message.dead_letter(&self.topic, reason, attempts);
        match self.session.publish(&topic, &letter).await {
            Ok(()) => {}
            Err(Error::Rejected(_)) => {
                let config = &self.session.config;
                let channel = self
                    .session
                    .connection
                    .create_channel()
                    .await
                    .map_err(|e| lapin_error("opening a channel", e))?;
                let queue = topology::declare_group_queue(
                    &channel,
                    config,
                    &topic,
                    &config.dead_letter_group,
                )
                .await?;
                debug!(%queue, "declared the default dead-letter queue");
                let _ = channel.close(200, "declared").await;
                self.session.publish(&topic, &letter).await?;
            }
            Err(error) => return Err(error),
        }
        self.ack().await
    }
}

#[async_trait]
impl Acknowledger for RabbitAcknowledger {
    async fn settle(self: Box<Self>, settlement: Settlement) -> Result<()> {
        match settlement {
            Settlement::Ack => self.ack().await,
            Settlement::Nack(Nack::Requeue) => self.requeue().await,
            Settlement::Nack(Nack::DeadLetter { reason, attempts }) => {
                self.dead_letter(&reason, attempts).await
            }
        }
    }

    fn abandon(mut self: Box<Self>) {
        // No longer the caller's to settle, but a requeue of ours to finish.
        let cleanup = self.cleanups.track();
        self.delivery = None;
        if !self.channel.status().connected() {
            return; // already back in the queue
        }
        let handle = self.handle.clone();
        handle.spawn(async move {
            if let Err(error) = self.requeue().await {
                debug!(%error, "could not requeue an abandoned delivery; the channel close will");
            }
            drop(cleanup);
        });
    }
}
