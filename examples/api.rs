//! The HTTP API and the outbox relay. Pair it with the `worker` example over RabbitMQ or Kafka:
//!
//! ```text
//! BROKER=rabbit DATABASE_URL=postgres://root@127.0.0.1:5432/test \
//!   cargo run --release --features rabbit,postgres --example api
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
    app::run_until_signal(&Config::parse(), Roles::API, |running| {
        println!(
            "API listening on http://{}",
            running.http_addr.expect("the API runs")
        );
    })
    .await
}
