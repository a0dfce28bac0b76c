//! Helpers the workspace's tests and benches share, written once. See the README.
#![warn(missing_docs)]

pub mod bench;
pub mod names;
#[cfg(feature = "postgres")]
pub mod pg;
pub mod services;

pub use names::unique_name;
pub use services::{missing_service, program, service_var, services_required};
