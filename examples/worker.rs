//! The image worker: consumes `products.created`, fetches, compresses and stores the images.
//! Run as many as you like in one consumer group:
//!
//! ```text
//! BROKER=kafka DATABASE_URL=postgres://root@127.0.0.1:5432/test \
//!   cargo run --release --features kafka,postgres --example worker
//! ```

use clap::Parser;
use product_pipeline::app::{self, Roles};
use product_pipeline::telemetry;
use product_pipeline::Config;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let Ok(_telemetry) = telemetry::install().inspect_err(|error| eprintln!("error: {error}"))
    else {
        return std::process::ExitCode::FAILURE;
    };
    app::run_until_signal(&Config::parse(), Roles::WORKER, |_| {}).await
}
