//! [`KafkaAcknowledger`]: settles one delivery against its partition's state; [`delivery`] makes
//! the delivery of a record the subscription handed out.

use std::sync::Arc;

use async_trait::async_trait;
use mq_core::{dead_letter_topic, Acknowledger, Delivery, Nack, Origin, Result, Settlement};

use crate::codec::RawRecord;

use super::subscription::{Subscription, Taken};

/// The delivery of `taken`, settled against `subscription`.
pub(super) fn delivery(subscription: &Arc<Subscription>, taken: Taken) -> Delivery {
    let Taken {
        partition,
        offset,
        epoch,
        record,
        attempt,
        message,
    } = taken;
    let acknowledger = KafkaAcknowledger {
        subscription: subscription.clone(),
        partition,
        offset,
        epoch,
        record,
    };
    let origin = Origin {
        system: "kafka",
        partition: Some(partition),
        offset: Some(offset),
    };
    Delivery::new(
        subscription.topic.clone(),
        message,
        attempt,
        Box::new(acknowledger),
    )
    .with_origin(origin)
}

/// Settles one delivery: ack, requeue, or dead letter (produced before the original counts as
/// acked). Settling after the partition moved to another member changes nothing: the new owner
/// delivers the record again.
struct KafkaAcknowledger {
    subscription: Arc<Subscription>,
    partition: i32,
    offset: i64,
    /// The ownership of the partition the record was handed out in.
    epoch: u64,
    /// The record as fetched, to hand it out again (requeue, drop) or dead-letter it.
    record: RawRecord,
}

#[async_trait]
impl Acknowledger for KafkaAcknowledger {
    async fn settle(self: Box<Self>, settlement: Settlement) -> Result<()> {
        let Self {
            subscription,
            partition,
            offset,
            epoch,
            record,
        } = *self;
        match settlement {
            Settlement::Ack => {
                if !subscription.ack(partition, offset, epoch) {
                    tracing::debug!(topic = %subscription.topic, partition, offset,
                        "ack of a record of a revoked partition ignored; its new owner gets it again");
                }
                Ok(())
            }
            Settlement::Nack(Nack::Requeue) => {
                subscription.requeue(partition, offset, epoch, record);
                Ok(())
            }
            Settlement::Nack(Nack::DeadLetter { reason, attempts }) => {
                if !subscription.is_in_flight(partition, offset, epoch) {
                    // Revoked: the new owner handles (and dead-letters) it again.
                    return Ok(());
                }
                let topic = &subscription.topic;
                let dead = record
                    .message(topic, partition, offset)
                    .dead_letter(topic, &reason, attempts);
                let published = match subscription.side_producer.get() {
                    Ok(producer) => producer.publish(&dead_letter_topic(topic), &dead).await,
                    Err(error) => Err(error),
                };
                match published {
                    Ok(()) => {
                        subscription.ack(partition, offset, epoch);
                        Ok(())
                    }
                    Err(error) => {
                        subscription.requeue(partition, offset, epoch, record);
                        Err(error)
                    }
                }
            }
        }
    }

    fn abandon(self: Box<Self>) {
        self.subscription
            .requeue(self.partition, self.offset, self.epoch, self.record);
    }
}
