//! product-pipeline: ingest products over HTTP and process their images asynchronously over a
//! pluggable message broker.
//!
//! - [`api`]: the axum router (`POST /users`, `POST /products`, listing, media, health, metrics,
//!   `GET /openapi.json`), with `Idempotency-Key` and optional bearer-token protection of writes.
//! - [`relay`]: the outbox relay that publishes `products.created` after each commit;
//!   [`outbox_retention`] deletes the published rows after `OUTBOX_RETENTION`.
//! - [`consumer`]: the image worker's handler (fetch, compress, store, record).
//! - [`prometheus`]: the metrics recorder and what `GET /metrics` renders.
//! - [`telemetry`]: logs (text or JSON lines) and OTLP export of traces, one trace per product
//!   from the HTTP request through the broker to the stored images.
//! - [`server`]: the HTTP server loop: header timeout, connection caps, graceful shutdown.
//! - [`config`] and [`app`]: one configuration and the wiring the examples use; [`startup`]:
//!   start-up errors, and the wait for dependencies that are not up yet (`STARTUP_TIMEOUT`).
//!
//! The building blocks are re-exported, so that one dependency on this crate reaches them all:
//! [`mq_core`] (messaging traits, in-memory broker, worker runtime, domain), [`store`] (the
//! `product-pipeline-store` crate: sea-orm repositories), [`imaging`] (the
//! `product-pipeline-imaging` crate: fetch, compress, media store), and the broker backends behind
//! the `rabbit` and `kafka` features.
#![warn(missing_docs)]

pub mod api;
pub mod app;
mod backends;
pub mod config;
pub mod consumer;
pub mod outbox_retention;
pub mod prometheus;
pub mod relay;
pub mod server;
pub mod startup;
pub mod telemetry;

pub use config::{BrokerKind, Config};
pub use mq_core;
#[cfg(feature = "kafka")]
pub use mq_kafka;
#[cfg(feature = "rabbit")]
pub use mq_rabbit;
pub use product_pipeline_imaging as imaging;
pub use product_pipeline_store as store;
