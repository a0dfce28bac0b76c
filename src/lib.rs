//! product-pipeline: ingest products over HTTP and process their images asynchronously over a
//! pluggable message broker.
//!
//! This facade re-exports the workspace crates; the HTTP API, the outbox relay, the image
//! consumer and the configuration are wired here.

pub use mq_core;
