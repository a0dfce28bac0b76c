//! [`KafkaConfig`]: how the publisher and subscriber reach and use the cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;

/// Settings shared by [`KafkaPublisher`](crate::KafkaPublisher) and
/// [`KafkaSubscriber`](crate::KafkaSubscriber).
///
/// ```
/// let config = mq_kafka::KafkaConfig::new("127.0.0.1:9092").with_partitions(8);
/// assert_eq!(config.partitions, 8);
/// ```
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `bootstrap.servers`: comma-separated `host:port` list.
    pub brokers: String,
    /// Partition count of topics this crate creates on first use (publish or subscribe).
    pub partitions: i32,
    /// Replication factor of topics this crate creates (1 for a single-broker cluster).
    pub replication_factor: i32,
    /// `client.id` of every client.
    pub client_id: String,
    /// Producer `linger.ms`: how long a batch waits for more messages.
    pub linger: Duration,
    /// Producer `message.timeout.ms`: a publish fails (transient error) after this long.
    pub publish_timeout: Duration,
    /// Consumer `session.timeout.ms`: a member that stops heartbeating is removed after this.
    pub session_timeout: Duration,
    /// Consumer `heartbeat.interval.ms`: also how fast members notice a rebalance.
    pub heartbeat_interval: Duration,
    /// Consumer `max.poll.interval.ms`, which is also the rebalance timeout the group waits for
    /// members to rejoin. The consumer thread polls continuously, so this can be short.
    pub rebalance_timeout: Duration,
    /// When `true` (default) the Kafka `group.id` of `subscribe(topic, group)` is
    /// `<group>.<topic>`, so one logical group subscribed to several topics rebalances each topic
    /// on its own instead of stopping all of them whenever one member joins. Set `false` to use
    /// `group` as the `group.id` unchanged (e.g. to share offsets with other Kafka tools).
    pub group_per_topic: bool,
    /// Record the offsets acked above each commit in the side topic `__mq_acks.<topic>` when a
    /// partition is revoked or the subscriber closes with gaps, for brokers that drop commit
    /// metadata (Tansu does). Without it such records are delivered again (at least once).
    pub ack_log_topic: bool,
    /// How long `subscribe` waits for the group to assign partitions to the new member before it
    /// returns the stream anyway (the assignment then arrives in the background).
    pub join_timeout: Duration,
    /// How often acked offsets are committed (an acked prefix is also committed on revoke and
    /// on close).
    pub commit_interval: Duration,
    /// Records taken from librdkafka but not handed out yet (waiting behind a busy key, or
    /// given back by a nack), per assigned partition. Beyond it the stream takes no more of that
    /// partition's records: they wait in librdkafka's prefetch queue, which stops fetching when
    /// full (`queued.min.messages`, `queued.max.messages.kbytes`).
    pub max_buffered_per_partition: usize,
    /// librdkafka's `queued.max.messages.kbytes`: how many KiB of fetched records librdkafka
    /// keeps ready per assigned partition. Each partition has a queue of its own here, so the
    /// bound on prefetched memory is this times the partitions assigned to the member (the
    /// default, 16 MiB, gives librdkafka's own 64 MiB total at 4 partitions); lower it for
    /// members that own many partitions.
    pub prefetch_kbytes_per_partition: u32,
    /// Timeout of admin calls, synchronous commits, metadata requests and `health`.
    pub operation_timeout: Duration,
    /// Extra librdkafka properties applied to every client (they win over the ones above).
    pub extra: BTreeMap<String, String>,
}

impl KafkaConfig {
    /// Defaults for `brokers`: 4 partitions, replication 1, linger 5 ms, 30 s publish timeout,
    /// 10 s session timeout with 500 ms heartbeats, commits every 100 ms.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            partitions: 4,
            replication_factor: 1,
            client_id: "product-pipeline".to_owned(),
            linger: Duration::from_millis(5),
            publish_timeout: Duration::from_secs(30),
            session_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_millis(500),
            rebalance_timeout: Duration::from_secs(30),
            group_per_topic: true,
            ack_log_topic: true,
            join_timeout: Duration::from_secs(30),
            commit_interval: Duration::from_millis(100),
            max_buffered_per_partition: 2000,
            prefetch_kbytes_per_partition: 16 * 1024,
            operation_timeout: Duration::from_secs(10),
            extra: BTreeMap::new(),
        }
    }

    /// The config for `KAFKA_BROKERS`, or `None` when it is unset or empty.
    pub fn from_env() -> Option<Self> {
        std::env::var("KAFKA_BROKERS")
            .ok()
            .filter(|brokers| !brokers.trim().is_empty())
            .map(Self::new)
    }

    /// Sets [`partitions`](Self::partitions).
    pub fn with_partitions(mut self, partitions: i32) -> Self {
        self.partitions = partitions;
        self
    }

    /// Adds a raw librdkafka property for every client.
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    pub(crate) fn base(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set("log_level", "4");
        config
    }

    fn finish(&self, mut config: ClientConfig) -> ClientConfig {
        for (key, value) in &self.extra {
            config.set(key, value);
        }
        config
    }

    pub(crate) fn producer(&self) -> ClientConfig {
        let mut config = self.base();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", millis(self.linger))
            .set("batch.num.messages", "10000")
            .set("message.timeout.ms", millis(self.publish_timeout))
            .set("compression.type", "none");
        self.finish(config)
    }

    pub(crate) fn consumer(&self, group: &str) -> ClientConfig {
        let mut config = self.base();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("session.timeout.ms", millis(self.session_timeout))
            .set("heartbeat.interval.ms", millis(self.heartbeat_interval))
            .set(
                "max.poll.interval.ms",
                millis(self.rebalance_timeout.max(self.session_timeout)),
            )
            .set("partition.assignment.strategy", "range,roundrobin")
            .set("topic.metadata.refresh.interval.ms", "1000")
            .set(
                "queued.max.messages.kbytes",
                self.prefetch_kbytes_per_partition.max(1).to_string(),
            );
        self.finish(config)
    }

    /// The Kafka `group.id` of a subscription (see [`group_per_topic`](Self::group_per_topic)).
    pub fn group_id(&self, topic: &str, group: &str) -> String {
        if self.group_per_topic {
            format!("{group}.{topic}")
        } else {
            group.to_owned()
        }
    }

    /// A consumer that only `assign`s (never joins `group`, never commits).
    pub(crate) fn reader(&self, group: &str) -> ClientConfig {
        let mut config = self.base();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false");
        self.finish(config)
    }

    pub(crate) fn admin(&self) -> ClientConfig {
        self.finish(self.base())
    }
}

fn millis(duration: Duration) -> String {
    duration.as_millis().max(1).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefetch_bound_reaches_librdkafka_per_partition() {
        let mut config = KafkaConfig::new("127.0.0.1:9092");
        config.prefetch_kbytes_per_partition = 4096;
        let consumer = config.consumer("g");
        assert_eq!(consumer.get("queued.max.messages.kbytes"), Some("4096"));
        let raw = config.with_property("queued.max.messages.kbytes", "8");
        assert_eq!(
            raw.consumer("g").get("queued.max.messages.kbytes"),
            Some("8"),
            "extra properties win"
        );
    }
}
