//! Topic creation on first use and broker health checks.

use std::collections::HashSet;
use std::sync::Arc;

use mq_core::{Error, Result};
use parking_lot::Mutex;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use crate::error::classify;
use crate::KafkaConfig;

/// Creates topics the first time this client uses them and answers health checks.
#[derive(Clone)]
pub(crate) struct TopicAdmin {
    inner: Arc<Inner>,
}

struct Inner {
    client: AdminClient<DefaultClientContext>,
    known: Mutex<HashSet<String>>,
    config: KafkaConfig,
}

impl TopicAdmin {
    pub(crate) fn new(config: &KafkaConfig) -> Result<Self> {
        let client = config
            .admin()
            .create()
            .map_err(|e| classify("admin client creation", e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                known: Mutex::new(HashSet::new()),
                config: config.clone(),
            }),
        })
    }

    /// Creates `topic` with the configured partition count unless this client already did (or
    /// saw that it exists).
    pub(crate) async fn ensure(&self, topic: &str) -> Result<()> {
        self.ensure_with(topic, self.inner.config.partitions, &[])
            .await
    }

    /// Like [`ensure`](Self::ensure) for a topic of one partition whose records of the same key
    /// replace each other (`cleanup.policy=compact`): the broker keeps the latest per key, so the
    /// topic stays as small as its set of keys however often they are written.
    pub(crate) async fn ensure_compacted(&self, topic: &str) -> Result<()> {
        self.ensure_with(topic, 1, &[("cleanup.policy", "compact")])
            .await
    }

    /// Like [`ensure`](Self::ensure) with an explicit partition count and topic configuration.
    async fn ensure_with(
        &self,
        topic: &str,
        partitions: i32,
        topic_config: &[(&str, &str)],
    ) -> Result<()> {
        if self.is_known(topic) {
            return Ok(());
        }
        let config = &self.inner.config;
        let mut new = NewTopic::new(
            topic,
            partitions,
            TopicReplication::Fixed(config.replication_factor),
        );
        for (key, value) in topic_config {
            new = new.set(key, value);
        }
        let options = AdminOptions::new()
            .request_timeout(Some(config.operation_timeout))
            .operation_timeout(Some(config.operation_timeout));
        let results = self
            .inner
            .client
            .create_topics([&new], &options)
            .await
            .map_err(|e| classify("create topic", e))?;
        for result in results {
            match result {
                Ok(_) => {}
                // Created by someone else, perhaps auto-created by a metadata request with the
                // broker's defaults: the configuration it needs is applied to it.
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    self.apply_config(topic, topic_config, &options).await;
                }
                Err((name, code)) => {
                    return Err(classify(
                        &format!("create topic {name}"),
                        rdkafka::error::KafkaError::AdminOp(code),
                    ))
                }
            }
        }
        tracing::debug!(topic, "kafka topic ready");
        self.inner.known.lock().insert(topic.to_owned());
        Ok(())
    }

    /// Sets `topic_config` on an existing topic. Best effort: a broker that refuses is logged,
    /// and the topic used as it is.
    async fn apply_config(
        &self,
        topic: &str,
        topic_config: &[(&str, &str)],
        options: &AdminOptions,
    ) {
        if topic_config.is_empty() {
            return;
        }
        let mut alter = AlterConfig::new(ResourceSpecifier::Topic(topic));
        for (key, value) in topic_config {
            alter = alter.set(key, value);
        }
        match self.inner.client.alter_configs([&alter], options).await {
            Ok(results) if results.iter().all(|r| r.is_ok()) => {
                tracing::debug!(topic, ?topic_config, "kafka topic configuration applied");
            }
            Ok(results) => {
                tracing::warn!(
                    topic,
                    ?results,
                    "the broker refused the topic's configuration"
                );
            }
            Err(error) => {
                tracing::warn!(topic, %error, "the broker refused the topic's configuration");
            }
        }
    }

    pub(crate) fn is_known(&self, topic: &str) -> bool {
        self.inner.known.lock().contains(topic)
    }

    /// Fetches cluster metadata within the operation timeout.
    pub(crate) async fn health(&self) -> Result<()> {
        let inner = self.inner.clone();
        let timeout = inner.config.operation_timeout;
        tokio::task::spawn_blocking(move || inner.client.inner().fetch_metadata(None, timeout))
            .await
            .map_err(|e| Error::unavailable("health check task failed", e))?
            .map(drop)
            .map_err(|e| classify("metadata", e))
    }
}
