//! The HTTP API and the outbox relay. Pair it with the `worker` example over RabbitMQ or Kafka:
//!
//! ```text
//! BROKER=rabbit cargo run --release --features rabbit,postgres --example api
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
    let running = match app::start(&config, Roles::API, shutdown.clone()).await {
        Ok(running) => running,
        Err(error) => {
            eprintln!("error: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!(
        "API listening on http://{}",
        running.http_addr.expect("the API runs")
    );
    app::shutdown_signal().await;
    shutdown.cancel();
    running.wait().await;
    std::process::ExitCode::SUCCESS
}
