//! The ack log: a side topic that keeps the offsets acked above each commit, for brokers that
//! drop commit metadata (see [`KafkaConfig::ack_log_topic`](crate::KafkaConfig::ack_log_topic)).
//!
//! One record per partition and commit, keyed `<group.id>/<partition>`, valued
//! `<commit offset> <metadata>`; the latest entry of a key wins, and only an entry written with
//! the very commit the group holds describes it. The topic is compacted, so the broker keeps
//! about one record per key and reading it on an assignment stays short.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use mq_core::{Error, Message, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::{Message as _, Offset, TopicPartitionList};

use crate::producer::await_delivery;

use super::commits::DueCommit;
use super::subscription::Subscription;

/// The side topic that records acked-above offsets for `topic` (see
/// [`KafkaConfig::ack_log_topic`](crate::KafkaConfig::ack_log_topic)).
pub fn ack_log_topic(topic: &str) -> String {
    format!("__mq_acks.{topic}")
}

impl Subscription {
    /// Records `offset metadata` under `<group.id>/<partition>` in the ack log for every commit
    /// that leaves acked offsets above it. Best effort: a failure only means redeliveries.
    pub(super) fn write_ack_log(&self, due: &[DueCommit]) {
        if !self.config.ack_log_topic || due.is_empty() {
            return;
        }
        let log = ack_log_topic(&self.topic);
        let result = (|| -> Result<()> {
            futures::executor::block_on(self.admin.ensure_compacted(&log))?;
            let producer = self.side_producer.get()?;
            let mut deliveries = Vec::new();
            for (partition, offset, metadata) in due.iter().filter(|(_, _, m)| !m.is_empty()) {
                let record = Message::new(format!("{offset} {metadata}"))
                    .with_key(format!("{}/{partition}", self.group_id));
                match producer.enqueue(&log, &record)? {
                    Some(delivery) => deliveries.push(delivery),
                    None => return Err(Error::Rejected("producer queue full".into())),
                }
            }
            for delivery in deliveries {
                futures::executor::block_on(await_delivery(delivery))?;
            }
            tracing::debug!(topic = %self.topic, ?due, "ack log written");
            Ok(())
        })();
        if let Err(error) = result {
            tracing::warn!(topic = %self.topic, %error, "writing the ack log failed");
        }
    }

    /// The latest ack-log entry (`offset`, `metadata`) of each partition in `wanted`.
    pub(super) fn read_ack_log(&self, wanted: &HashSet<i32>) -> HashMap<i32, (i64, String)> {
        let mut found = HashMap::new();
        if !self.config.ack_log_topic || wanted.is_empty() {
            return found;
        }
        let log = ack_log_topic(&self.topic);
        let timeout = self.config.operation_timeout;
        let result = (|| -> KafkaResult<()> {
            let reader: BaseConsumer = self
                .config
                .reader(&format!("{}.ack-log-reader", self.group_id))
                .create()?;
            let metadata = reader.fetch_metadata(Some(&log), timeout)?;
            if metadata
                .topics()
                .first()
                .is_none_or(|t| t.error().is_some() || t.partitions().is_empty())
            {
                return Ok(());
            }
            let (low, high) = reader.fetch_watermarks(&log, 0, timeout)?;
            if high <= low {
                return Ok(());
            }
            let mut list = TopicPartitionList::new();
            list.add_partition_offset(&log, 0, Offset::Offset(low))?;
            reader.assign(&list)?;
            let prefix = format!("{}/", self.group_id);
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline {
                let Some(record) = reader.poll(Duration::from_millis(100)) else {
                    continue;
                };
                let record = record?;
                let key = record
                    .key()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                let value = record
                    .payload()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                if let Some(partition) = key
                    .strip_prefix(&prefix)
                    .and_then(|p| p.parse::<i32>().ok())
                {
                    if wanted.contains(&partition) {
                        let (offset, metadata) = value.split_once(' ').unwrap_or((&value, ""));
                        if let Ok(offset) = offset.parse::<i64>() {
                            found.insert(partition, (offset, metadata.to_owned()));
                        }
                    }
                }
                if record.offset() >= high - 1 {
                    break;
                }
            }
            Ok(())
        })();
        if let Err(error) = result {
            tracing::warn!(topic = %self.topic, %error, "reading the ack log failed");
        }
        tracing::debug!(topic = %self.topic, ?wanted, ?found, "ack log read");
        found
    }
}
