//! Start-up before the services are up: a worker started while PostgreSQL (or RabbitMQ) still
//! refuses connections waits for it (`STARTUP_TIMEOUT`), answers `/healthz` but not `/readyz`
//! meanwhile, and then processes products; with `STARTUP_TIMEOUT=0` it fails at once.
//!
//! The late service is a loopback forwarder ([`Proxy`]) to the real one, started down and brought
//! up a few seconds after the worker.

use std::net::SocketAddr;
use std::time::Duration;

use product_pipeline::app::{self, Roles};
use product_pipeline::{BrokerKind, Config};
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

use crate::proxy::Proxy;
use crate::support::*;

/// Which service comes up late.
#[derive(Debug, Clone, Copy)]
pub enum Late {
    Postgres,
    Rabbit,
}

impl Late {
    /// The readiness detail that names it.
    fn dependency(self) -> &'static str {
        match self {
            Late::Postgres => "database",
            Late::Rabbit => "broker",
        }
    }

    /// The setting that names it, which a start-up error starts with.
    fn setting(self) -> &'static str {
        match self {
            Late::Postgres => "DATABASE_URL",
            Late::Rabbit => "broker: ",
        }
    }

    fn url(self, config: &mut Config) -> &mut String {
        match self {
            Late::Postgres => &mut config.database_url,
            Late::Rabbit => &mut config.amqp_url,
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Late::Postgres => 5432,
            Late::Rabbit => 5672,
        }
    }

    /// A worker configuration that reaches this service through a forwarder that is down.
    async fn behind_a_down_proxy(self, stack: &Stack) -> (Config, Proxy) {
        let mut config = stack.config.clone();
        let url = self.url(&mut config);
        let mut parsed = url::Url::parse(url).unwrap();
        let target: SocketAddr = format!(
            "{}:{}",
            parsed.host_str().unwrap(),
            parsed.port().unwrap_or(self.default_port())
        )
        .parse()
        .expect("the test services listen on an IP address");
        let proxy = Proxy::start(target).await;
        proxy.down();
        parsed.set_port(Some(proxy.addr.port())).unwrap();
        *url = parsed.to_string();
        config.metrics_addr = Some(free_port());
        (config, proxy)
    }
}

/// A loopback address nothing listens on now.
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn stack() -> Option<Stack> {
    Stack::networked_postgres(BrokerKind::Rabbit, "AMQP_URL").await
}

/// Status and body of `GET path` on `addr`; `None` while nothing listens there.
async fn probe(addr: SocketAddr, path: &str) -> Option<(StatusCode, String)> {
    let response = client()
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .ok()?;
    Some((response.status(), response.text().await.unwrap()))
}

/// The message of the error a worker on `config` fails to start with.
async fn start_error(config: &Config) -> String {
    app::start(config, Roles::WORKER, CancellationToken::new())
        .await
        .err()
        .expect("the worker does not start")
        .to_string()
}

pub async fn a_worker_started_first_waits_and_then_processes(late: Late) {
    let Some(stack) = stack().await else { return };
    let images = ImageServer::start().await;
    let api = stack.start(Roles::API).await;
    let (mut config, proxy) = late.behind_a_down_proxy(&stack).await;
    config.startup_timeout = 60;
    let metrics = config.metrics_addr.unwrap();

    let shutdown = CancellationToken::new();
    let worker = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { app::start(&config, Roles::WORKER, shutdown).await }
    });
    let user = create_user(&api).await;
    let product = create_product(&api, user, &[images.image(200, 150, "late")]).await;

    // While it waits: alive, not ready, and the reason names the late service.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (status, body) = loop {
        if let Some((StatusCode::SERVICE_UNAVAILABLE, body)) = probe(metrics, "/readyz").await {
            if body.contains(late.dependency()) {
                break (StatusCode::SERVICE_UNAVAILABLE, body);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the waiting worker never reported the {late:?} on /readyz"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(body.contains("waiting"), "{status}: {body}");
    let (status, _) = probe(metrics, "/healthz").await.unwrap();
    assert_eq!(status, StatusCode::OK, "/healthz answers while waiting");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!worker.is_finished(), "the worker gave up within 2 s");

    proxy.up().await;
    let running = tokio::time::timeout(Duration::from_secs(30), worker)
        .await
        .expect("the worker starts once the service is up")
        .unwrap()
        .unwrap_or_else(|error| panic!("the worker failed to start: {error}"));
    let (status, body) = probe(metrics, "/readyz").await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    let product = wait_final(&api, product, Duration::from_secs(60)).await;
    assert_eq!(product["status"], "done", "{product}");

    shutdown.cancel();
    running.wait().await;
    api.stop().await;
}

pub async fn without_a_startup_timeout_a_worker_fails_at_once(late: Late) {
    let Some(stack) = stack().await else { return };
    let (mut config, _proxy) = late.behind_a_down_proxy(&stack).await;
    config.startup_timeout = 0;
    let message = start_error(&config).await;
    assert!(message.starts_with(late.setting()), "{message}");
    assert!(message.contains("STARTUP_TIMEOUT=0"), "{message}");
    assert!(
        probe(config.metrics_addr.unwrap(), "/healthz")
            .await
            .is_none(),
        "a process that failed to start no longer listens"
    );
}

/// A server that answers and refuses (PostgreSQL: no such database; RabbitMQ: a wrong
/// password) is not waited for, whatever `STARTUP_TIMEOUT` says: waiting cannot help.
pub async fn a_refusing_service_fails_at_once_while_waiting_is_allowed(late: Late) {
    let Some(stack) = stack().await else { return };
    let mut config = stack.config.clone();
    let raw = late.url(&mut config);
    let mut url = url::Url::parse(raw).unwrap();
    match late {
        Late::Postgres => url.set_path("/no_such_database_here"),
        Late::Rabbit => url.set_password(Some("not-the-password")).unwrap(),
    }
    *raw = url.to_string();
    config.startup_timeout = 60;
    let message = start_error(&config).await;
    assert!(message.starts_with(late.setting()), "{message}");
    assert!(
        !message.contains("STARTUP_TIMEOUT"),
        "a refusal was waited for as if the server were down: {message}"
    );
}
