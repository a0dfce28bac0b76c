//! API + outbox relay + image worker in one process, on the embedded defaults (SQLite under
//! `./data`, the in-memory broker, images under `./media`).
//!
//! ```text
//! cargo run --release --example pipeline
//! ```
//!
//! Every setting can be changed by flag or environment variable (`--help`). Image URLs that resolve
//! to private or loopback addresses are refused unless `ALLOW_PRIVATE_IMAGE_HOSTS=true` (needed for
//! images served from this machine, e.g. by `loadgen`).

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
    let config = Config::parse();
    app::run_until_signal(&config, Roles::ALL, |running| {
        let addr = running.http_addr.expect("the pipeline runs the API");
        println!(
            "product-pipeline listening on http://{addr}  (broker: {:?}, database: {})",
            config.broker, config.database_url
        );
        println!("try:");
        println!("  curl -s -X POST http://{addr}/users -H 'content-type: application/json' \\");
        println!("       -d '{{\"name\":\"Ada\",\"mobile\":\"+4915112345678\",\"latitude\":52.52,\"longitude\":13.40}}'");
        println!("  curl -s -X POST http://{addr}/products -H 'content-type: application/json' \\");
        println!("       -d '{{\"user_id\":1,\"product_name\":\"Lamp\",\"product_images\":[\"https://example.com/lamp.jpg\"],\"product_price\":19.99}}'");
        println!("  curl -s http://{addr}/products/1");
    })
    .await
}
