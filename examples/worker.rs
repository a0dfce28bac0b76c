//! The image worker: consumes `products.created`, fetches, compresses and stores the images.
//! Run as many as you like in one consumer group:
//!
//! ```text
//! BROKER=kafka cargo run --release --features kafka,postgres --example worker
//! ```

use clap::Parser;
use product_pipeline::app::{self, Roles};
use product_pipeline::Config;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    app::init_tracing();
    let config = Config::parse();
    let shutdown = CancellationToken::new();
    let running = match app::start(&config, Roles::WORKER, shutdown.clone()).await {
        Ok(running) => running,
        Err(error) => {
            eprintln!("error: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    app::shutdown_signal().await;
    shutdown.cancel();
    running.wait().await;
    std::process::ExitCode::SUCCESS
}
