//! Kafka backend for the `mq-core` messaging traits, built on rdkafka. (Filled by the mq-kafka issue.)
