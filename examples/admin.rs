//! Operator commands for a running pipeline: its dead letters.
//!
//! ```text
//! BROKER=rabbit cargo run --features rabbit --example admin -- dlq list --limit 20
//! BROKER=rabbit cargo run --features rabbit --example admin -- dlq redrive
//! ```
//!
//! `dlq list` shows the products a worker gave up on (`products.created.dlq`) and leaves them
//! there; once their cause is fixed, `dlq redrive` sends them back to `products.created`, where
//! the workers process them again (see `mq_core::dead_letters`). It reads the broker settings of
//! the other examples (`BROKER`, `AMQP_URL`, `KAFKA_BROKERS`, `TOPIC_PREFIX`). The in-memory
//! broker lives inside the pipeline's process, so there is nothing to reach from here.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mq_core::dead_letters::{self, ReadOptions};
use product_pipeline::{app, telemetry};
use product_pipeline::{BrokerKind, Config};

#[derive(Parser)]
#[command(about = "Operator commands for a running product pipeline")]
struct Admin {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Dead letters of `products.created`.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
        /// Most dead letters to read.
        #[arg(long, global = true, default_value_t = 100)]
        limit: usize,
        /// The consumer group of the dead-letter topic to read as (on RabbitMQ the group that
        /// receives dead letters nobody else subscribed to).
        #[arg(long, global = true, default_value = "default")]
        group: String,
    },
}

#[derive(Subcommand, Clone, Copy)]
enum DlqAction {
    /// Shows the dead letters and leaves them in place.
    List,
    /// Republishes the dead letters to `products.created` and removes them.
    Redrive,
}

#[tokio::main]
async fn main() -> ExitCode {
    let Ok(_telemetry) = telemetry::install().inspect_err(|error| eprintln!("error: {error}"))
    else {
        return std::process::ExitCode::FAILURE;
    };
    let Admin { command, config } = Admin::parse();
    let Command::Dlq {
        action,
        limit,
        group,
    } = command;
    if config.broker == BrokerKind::Memory {
        eprintln!(
            "admin: BROKER=memory lives inside the pipeline's own process; set BROKER to the \
             broker the pipeline runs on (rabbit or kafka)"
        );
        return ExitCode::FAILURE;
    }
    let (publisher, subscriber) = match app::connect_broker(&config).await {
        Ok(broker) => broker,
        Err(error) => {
            eprintln!("admin: {error}");
            return ExitCode::FAILURE;
        }
    };
    let topic = config.products_topic();
    let options = ReadOptions {
        group,
        limit,
        ..ReadOptions::default()
    };
    let done = match action {
        DlqAction::List => dead_letters::list(subscriber.as_ref(), &topic, &options)
            .await
            .map(|letters| {
                for letter in &letters {
                    let payload = String::from_utf8_lossy(letter.message.payload());
                    println!(
                        "{}\tattempts={}\t{}\treason: {}",
                        letter.message.id(),
                        letter.attempts.map_or("?".into(), |n| n.to_string()),
                        payload.chars().take(200).collect::<String>(),
                        letter.reason.as_deref().unwrap_or("(none)"),
                    );
                }
                eprintln!("{} dead letter(s) in {topic}.dlq", letters.len());
            }),
        DlqAction::Redrive => {
            dead_letters::redrive(subscriber.as_ref(), publisher.as_ref(), &topic, &options)
                .await
                .map(|n| eprintln!("{n} dead letter(s) sent back to {topic}"))
        }
    };
    let _ = publisher.close().await;
    let _ = subscriber.close().await;
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("admin: {error}");
            ExitCode::FAILURE
        }
    }
}
