//! RabbitMQ backend for the `mq-core` messaging traits, built on lapin. (Filled by the mq-rabbit issue.)
