//! What every end-to-end test needs: a local image server, a running stack, an HTTP client.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use mq_core::{Error, Message, Publisher, Subscriber};
use product_pipeline::app::{self, Roles, Running};
use product_pipeline::{BrokerKind, Config};
use product_pipeline_imaging::media::MediaStore;
use serde_json::{json, Value};
use testsupport::pg::PgSchema;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// How long a test waits for a product to be processed: generous, for debug builds on a busy
/// machine.
pub const PROCESSING: Duration = Duration::from_secs(120);

/// Serves generated JPEGs on 127.0.0.1: `/img/{w}x{h}/{name}.jpg`, `/slow/{ms}/{w}x{h}.jpg`,
/// `/noise/{w}x{h}/{name}.jpg` (random pixels at quality 95, 4:2:0: incompressible, the size
/// of a large camera file), `/trickle/{name}.jpg` (one byte a second), and a second port that
/// never answers ([`ImageServer::silent`]); `/unavailable.jpg` is always a 503 (a transient
/// failure); anything else is a 404.
pub struct ImageServer {
    pub base: String,
    silent_base: String,
}

fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            (x * 255 / width.max(1)) as u8,
            (y * 255 / height.max(1)) as u8,
            ((x ^ y) & 0xff) as u8,
        ])
    });
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
        .encode_image(&image)
        .expect("encoding a test JPEG");
    bytes
}

/// A JPEG of random pixels, encoded once per size (libjpeg-turbo: fast in debug builds too).
fn noise_jpeg(width: u32, height: u32) -> bytes::Bytes {
    static CACHE: std::sync::Mutex<Vec<((u32, u32), bytes::Bytes)>> =
        std::sync::Mutex::new(Vec::new());
    let mut cache = CACHE.lock().unwrap();
    if let Some((_, bytes)) = cache.iter().find(|(size, _)| *size == (width, height)) {
        return bytes.clone();
    }
    let mut data = vec![0u8; width as usize * height as usize * 3];
    fastrand::fill(&mut data);
    let pixels = product_pipeline_imaging::pixels::Pixels {
        width,
        height,
        layout: product_pipeline_imaging::pixels::Layout::Rgb,
        data,
    };
    let bytes = bytes::Bytes::from(product_pipeline_imaging::jpeg::encode(&pixels, 95).unwrap());
    cache.push(((width, height), bytes.clone()));
    bytes
}

fn dimensions(size: &str) -> Option<(u32, u32)> {
    let (w, h) = size.trim_end_matches(".jpg").split_once('x')?;
    Some((w.parse().ok()?, h.parse().ok()?))
}

impl ImageServer {
    pub async fn start() -> Self {
        let app = Router::new()
            .route(
                "/img/{size}/{name}",
                get(|Path((size, _name)): Path<(String, String)>| async move {
                    match dimensions(&size) {
                        Some((w, h)) => {
                            ([(header::CONTENT_TYPE, "image/jpeg")], jpeg(w, h)).into_response()
                        }
                        None => StatusCode::BAD_REQUEST.into_response(),
                    }
                }),
            )
            .route(
                "/noise/{size}/{name}",
                get(|Path((size, _name)): Path<(String, String)>| async move {
                    match dimensions(&size) {
                        Some((w, h)) => {
                            let bytes = tokio::task::spawn_blocking(move || noise_jpeg(w, h))
                                .await
                                .unwrap();
                            ([(header::CONTENT_TYPE, "image/jpeg")], bytes).into_response()
                        }
                        None => StatusCode::BAD_REQUEST.into_response(),
                    }
                }),
            )
            .route(
                "/unavailable.jpg",
                get(|| async { StatusCode::SERVICE_UNAVAILABLE }),
            )
            .route(
                "/trickle/{name}",
                get(|| async {
                    // Announces 50 000 bytes, then sends one a second.
                    let stream = futures::stream::unfold((), |()| async {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        Some((Ok::<_, std::io::Error>(vec![0xFFu8]), ()))
                    });
                    axum::response::Response::builder()
                        .header(header::CONTENT_TYPE, "image/jpeg")
                        .header(header::CONTENT_LENGTH, 50_000)
                        .body(axum::body::Body::from_stream(stream))
                        .unwrap()
                }),
            )
            .route(
                "/slow/{ms}/{size}",
                get(|Path((ms, size)): Path<(u64, String)>| async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    match dimensions(&size) {
                        Some((w, h)) => {
                            ([(header::CONTENT_TYPE, "image/jpeg")], jpeg(w, h)).into_response()
                        }
                        None => StatusCode::BAD_REQUEST.into_response(),
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        // Accepts connections and never reads or answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_addr = silent.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = silent.accept().await {
                held.push(socket);
            }
        });
        Self {
            base: format!("http://{addr}"),
            silent_base: format!("http://{silent_addr}"),
        }
    }

    /// An image whose server announces 50 000 bytes and sends one a second.
    pub fn trickle(&self, name: &str) -> String {
        format!("{}/trickle/{name}.jpg", self.base)
    }

    /// An image whose server accepts the connection and never answers.
    pub fn silent(&self, name: &str) -> String {
        format!("{}/{name}.jpg", self.silent_base)
    }

    /// The base URL of that server: any service pointed at it hangs.
    #[allow(dead_code)] // only the telemetry tests use it
    pub fn silent_base(&self) -> &str {
        &self.silent_base
    }

    pub fn image(&self, width: u32, height: u32, name: &str) -> String {
        format!("{}/img/{width}x{height}/{name}.jpg", self.base)
    }

    pub fn noise(&self, width: u32, height: u32, name: &str) -> String {
        format!("{}/noise/{width}x{height}/{name}.jpg", self.base)
    }

    pub fn slow(&self, millis: u64, width: u32, height: u32) -> String {
        format!("{}/slow/{millis}/{width}x{height}.jpg", self.base)
    }

    pub fn missing(&self) -> String {
        format!("{}/missing.jpg", self.base)
    }

    pub fn unavailable(&self) -> String {
        format!("{}/unavailable.jpg", self.base)
    }
}

/// One example binary of this build (`cargo test` builds the examples next to the tests).
pub fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(std::path::Path::parent)
        .map(|debug| debug.join("examples").join(name))
        .unwrap();
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --all-features` (or scripts/test.sh), which builds the examples",
        path.display()
    );
    path
}

/// The address an API process printed first (`API listening on http://...`, or the pipeline's
/// `product-pipeline listening on http://... (...)`); keeps draining
/// its stdout afterwards so that it never blocks on a full pipe.
pub async fn printed_api_base(child: &mut tokio::process::Child) -> String {
    use tokio::io::AsyncBufReadExt;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the API starts within a minute")
        .unwrap()
        .expect("the API prints its address");
    let base = line
        .split_once(" listening on ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_owned();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    base
}

/// One backend combination: its configuration and how to reach its broker.
pub struct Stack {
    pub config: Config,
    /// The stack's media store, opened the way the processes open it.
    pub media: MediaStore,
    memory: Option<mq_core::MemoryBroker>,
    _dirs: Vec<tempfile::TempDir>,
    /// The PostgreSQL schema of a networked stack, dropped with it.
    _schema: Option<PgSchema>,
}

fn base_config() -> (Config, tempfile::TempDir) {
    let media = tempfile::tempdir().unwrap();
    let mut config = <Config as clap::Parser>::try_parse_from(["e2e"]).unwrap();
    config.media_dir = Some(media.path().to_owned());
    config.http_addr = "127.0.0.1:0".parse().unwrap();
    config.allow_private_image_hosts = true;
    config.worker_concurrency = 4;
    config.worker_max_attempts = 3;
    config.shutdown_timeout = 5;
    config.database_schema = None;
    config.topic_prefix = format!("{}.", testsupport::unique_name("e2e"));
    config.consumer_group = "e2e-workers".into();
    // Every stack declares queues of its own topics: RabbitMQ deletes them once the stack is
    // gone, instead of accumulating hundreds of quorum queues over runs.
    config.amqp_queue_expires = 300;
    (config, media)
}

impl Stack {
    /// The embedded defaults: SQLite file, in-memory broker.
    pub async fn memory_sqlite() -> Option<Stack> {
        let (mut config, media) = base_config();
        let data = tempfile::tempdir().unwrap();
        config.database_url = format!("sqlite://{}/e2e.db", data.path().display());
        config.broker = BrokerKind::Memory;
        Some(Stack {
            media: app::open_media(&config).await.unwrap(),
            config,
            memory: Some(mq_core::MemoryBroker::new()),
            _dirs: vec![media, data],
            _schema: None,
        })
    }

    /// A networked broker and PostgreSQL in a fresh schema; `None` (skip) when a service URL is
    /// not set and services are not required.
    #[allow(dead_code)]
    pub async fn networked_postgres(broker: BrokerKind, broker_env: &str) -> Option<Stack> {
        let how = "scripts/services.sh start prints it";
        let database_url = testsupport::service_var("DATABASE_URL", how)?;
        let broker_url = testsupport::service_var(broker_env, how)?;
        let (mut config, media) = base_config();
        let schema = PgSchema::create(&database_url, "e2e").await;
        config.database_url = database_url;
        config.database_schema = Some(schema.name().to_owned());
        config.database_max_connections = 5;
        config.broker = broker;
        match broker {
            BrokerKind::Rabbit => config.amqp_url = broker_url,
            BrokerKind::Kafka => config.kafka_brokers = broker_url,
            BrokerKind::Memory => {}
        }
        Some(Stack {
            media: app::open_media(&config).await.unwrap(),
            config,
            memory: None,
            _dirs: vec![media],
            _schema: Some(schema),
        })
    }

    /// Like [`Stack::networked_postgres`], with media in a fresh prefix of the test bucket
    /// (`MEDIA_TEST_S3_URL`, started by scripts/s3.sh); `None` (skip) when it is not set and
    /// services are not required.
    #[allow(dead_code)]
    pub async fn s3_postgres(broker: BrokerKind, broker_env: &str) -> Option<Stack> {
        let bucket = testsupport::service_var("MEDIA_TEST_S3_URL", "scripts/s3.sh env prints it")?;
        let mut stack = Stack::networked_postgres(broker, broker_env).await?;
        stack.config.media_dir = None;
        stack.config.media_url = Some(format!("{bucket}/{}", testsupport::unique_name("e2e")));
        stack.media = app::open_media(&stack.config).await.unwrap();
        Some(stack)
    }

    /// The bytes stored under `key`.
    pub async fn read_media(&self, key: &str) -> bytes::Bytes {
        let path = product_pipeline_imaging::object_store::path::Path::parse(key).unwrap();
        let object = self
            .media
            .get(&path, Default::default())
            .await
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        object.bytes().await.unwrap()
    }

    /// Every stored key of product `id`, sorted.
    pub async fn media_keys(&self, id: i64) -> Vec<String> {
        self.media.list_product(id).await.unwrap()
    }

    /// A publisher and subscriber for this stack (memory: handles of the one shared broker).
    pub async fn broker(&self) -> (Arc<dyn Publisher>, Arc<dyn Subscriber>) {
        match &self.memory {
            Some(broker) => (Arc::new(broker.publisher()), Arc::new(broker.subscriber())),
            None => app::connect_broker(&self.config)
                .await
                .expect("connect the broker"),
        }
    }

    /// Starts `roles` on this stack.
    pub async fn start(&self, roles: Roles) -> App {
        let (publisher, subscriber) = self.broker().await;
        self.start_with(roles, publisher, subscriber).await
    }

    /// Starts `roles` with the given broker clients (e.g. a switchable publisher).
    pub async fn start_with(
        &self,
        roles: Roles,
        publisher: Arc<dyn Publisher>,
        subscriber: Arc<dyn Subscriber>,
    ) -> App {
        self.start_custom(&self.config, roles, publisher, subscriber)
            .await
    }

    /// Starts `roles` with a configuration derived from [`Stack::config`].
    pub async fn start_custom(
        &self,
        config: &Config,
        roles: Roles,
        publisher: Arc<dyn Publisher>,
        subscriber: Arc<dyn Subscriber>,
    ) -> App {
        let media = app::open_media(config).await.expect("open the media store");
        self.start_on(config, roles, publisher, subscriber, media)
            .await
    }

    /// Starts `roles` on broker clients and a media store of the caller's.
    pub async fn start_on(
        &self,
        config: &Config,
        roles: Roles,
        publisher: Arc<dyn Publisher>,
        subscriber: Arc<dyn Subscriber>,
        media: MediaStore,
    ) -> App {
        let shutdown = CancellationToken::new();
        let running = app::start_with_parts(
            config,
            roles,
            publisher,
            subscriber,
            media,
            shutdown.clone(),
        )
        .await
        .expect("start the stack");
        let base = running.http_addr.map(|addr| format!("http://{addr}"));
        App {
            running: Some(running),
            shutdown,
            base,
        }
    }
}

/// A process of the stack in its own empty working directory; killed when dropped.
pub struct Process {
    pub child: Child,
    dir: tempfile::TempDir,
}

impl Process {
    /// Starts example `name` with the stack's settings (its broker, database and media) and
    /// `extra` variables; a memory stack only works with the `pipeline` example.
    pub fn start(stack: &Stack, name: &str, extra: &[(&str, String)]) -> Process {
        Self::spawn(stack, name, extra, Stdio::inherit())
    }

    /// [`Process::start`] with its stderr (the logs) piped, for the test to read.
    pub fn start_with_logs(stack: &Stack, name: &str, extra: &[(&str, String)]) -> Process {
        Self::spawn(stack, name, extra, Stdio::piped())
    }

    fn spawn(stack: &Stack, name: &str, extra: &[(&str, String)], stderr: Stdio) -> Process {
        let dir = tempfile::tempdir().unwrap();
        let config = &stack.config;
        let mut command = Command::new(example(name));
        command
            .current_dir(dir.path())
            .env("DATABASE_URL", &config.database_url)
            .env("DATABASE_MAX_CONNECTIONS", "5")
            .env("TOPIC_PREFIX", &config.topic_prefix)
            .env("CONSUMER_GROUP", &config.consumer_group)
            .env("ALLOW_PRIVATE_IMAGE_HOSTS", "true")
            // The tests choose telemetry themselves, whatever the runner's shell exports.
            .env_remove("LOG_FORMAT")
            .env("WORKER_CONCURRENCY", "4")
            .env("HTTP_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true);
        if let Some(schema) = &config.database_schema {
            command.env("DATABASE_SCHEMA", schema);
        }
        match config.broker {
            BrokerKind::Memory => command.env("BROKER", "memory"),
            BrokerKind::Rabbit => command
                .env("BROKER", "rabbit")
                .env("AMQP_URL", &config.amqp_url)
                .env("AMQP_QUEUE_EXPIRES", config.amqp_queue_expires.to_string()),
            BrokerKind::Kafka => command
                .env("BROKER", "kafka")
                .env("KAFKA_BROKERS", &config.kafka_brokers),
        };
        match (&config.media_url, &config.media_dir) {
            (Some(url), _) => command.env("MEDIA_URL", url).env_remove("MEDIA_DIR"),
            (None, Some(dir)) => command.env("MEDIA_DIR", dir).env_remove("MEDIA_URL"),
            (None, None) => &mut command,
        };
        for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("OTEL_")) {
            command.env_remove(key);
        }
        for (key, value) in extra {
            command.env(key, value);
        }
        let child = command.spawn().unwrap();
        Process { child, dir }
    }

    /// Sends SIGTERM and waits up to `within` for the process to exit; its exit status.
    pub async fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running").to_string();
        let killed = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap();
        assert!(killed.success());
        tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("still running {within:?} after SIGTERM"))
            .unwrap()
    }

    /// The address the API printed.
    pub async fn api_base(&mut self) -> String {
        printed_api_base(&mut self.child).await
    }

    /// Files the process left in its working directory (there must be none: nothing assumes a
    /// shared filesystem).
    #[allow(dead_code)] // only the S3 tests use it
    pub fn files(&self) -> Vec<PathBuf> {
        walkdir(self.dir.path())
    }
}

#[allow(dead_code)]
fn walkdir(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walkdir(&path));
        }
        out.push(path);
    }
    out
}

/// A running part of the stack.
pub struct App {
    running: Option<Running>,
    shutdown: CancellationToken,
    pub base: Option<String>,
}

impl App {
    /// An API that runs elsewhere (another process) at `base`.
    pub fn at(base: &str) -> App {
        App {
            running: None,
            shutdown: CancellationToken::new(),
            base: Some(base.to_owned()),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!(
            "{}{path}",
            self.base.as_ref().expect("this part runs the API")
        )
    }

    /// Graceful stop: waits for in-flight work (up to the shutdown timeout).
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            running.wait().await;
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub async fn post(app: &App, path: &str, body: &Value) -> (StatusCode, Value) {
    let response = client()
        .post(app.url(path))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// POST with extra headers; returns the status, the response headers and the JSON body.
pub async fn post_with(
    app: &App,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    send(app, reqwest::Method::POST, path, Some(body), headers).await
}

/// Any request, with an optional JSON body and extra headers; returns the status, the response
/// headers and the JSON body (`Null` when there is none).
pub async fn send(
    app: &App,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut request = client().request(method, app.url(path));
    if let Some(body) = body {
        request = request.json(body);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.json().await.unwrap_or(Value::Null),
    )
}

/// Every media key a product (as the API shows it) refers to, sorted, each once: its primary
/// renditions and all the others, which is what its prefix in the media store must hold.
pub fn recorded_keys(product: &Value) -> Vec<String> {
    let primary = product["compressed_product_images"]
        .as_array()
        .unwrap()
        .iter();
    let renditions = product["image_renditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rendition| &rendition["path"]);
    let keys: std::collections::BTreeSet<String> = primary
        .chain(renditions)
        .map(|key| key.as_str().unwrap().to_owned())
        .collect();
    keys.into_iter().collect()
}

/// The `field` of every entry of an error answer's `details`, in order; `None` when the answer
/// has no `details` list.
pub fn error_fields(answer: &Value) -> Option<Vec<&str>> {
    let details = answer["error"]["details"].as_array()?;
    Some(
        details
            .iter()
            .map(|detail| detail["field"].as_str().unwrap())
            .collect(),
    )
}

pub async fn get_json(app: &App, path: &str) -> (StatusCode, Value) {
    let response = client().get(app.url(path)).send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Creates a user with a unique mobile number and returns its id.
pub async fn create_user(app: &App) -> i64 {
    let mobile = format!("+49{:010}", fastrand::u64(..10_000_000_000));
    let (status, user) = post(
        app,
        "/users",
        &json!({"name": "E2E", "mobile": mobile, "latitude": 1.5, "longitude": -2.25}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    user["id"].as_i64().unwrap()
}

/// Creates a product and returns its id.
pub async fn create_product(app: &App, user_id: i64, images: &[String]) -> i64 {
    let body = json!({"user_id": user_id, "product_name": "Lamp", "product_description": "bright", "product_images": images, "product_price": 19.99});
    let (status, product) = post(app, "/products", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{product}");
    assert_eq!(product["status"], "pending");
    product["product_id"].as_i64().unwrap()
}

/// Polls until the product has a final status; returns it.
pub async fn wait_final(app: &App, product_id: i64, within: Duration) -> Value {
    wait_final_version(app, product_id, None, within).await
}

/// Polls until the product has a final status, at `version` when given; returns it.
pub async fn wait_final_version(
    app: &App,
    product_id: i64,
    version: Option<i64>,
    within: Duration,
) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (status, product) = get_json(app, &format!("/products/{product_id}")).await;
        assert_eq!(status, StatusCode::OK);
        if matches!(
            product["status"].as_str(),
            Some("done" | "partial" | "failed")
        ) && version.is_none_or(|version| product["version"] == version)
        {
            return product;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "product {product_id} still {} after {within:?}",
            product["status"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A publisher that fails with a transient error while switched off, like a broker outage.
pub struct SwitchablePublisher {
    pub inner: Arc<dyn Publisher>,
    pub down: AtomicBool,
}

#[async_trait]
impl Publisher for SwitchablePublisher {
    async fn publish(&self, topic: &str, message: Message) -> mq_core::Result<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::Unavailable {
                message: "broker unreachable (test outage)".into(),
                source: None,
            });
        }
        self.inner.publish(topic, message).await
    }
    async fn health(&self) -> mq_core::Result<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::Unavailable {
                message: "broker unreachable (test outage)".into(),
                source: None,
            });
        }
        self.inner.health().await
    }
    async fn close(&self) -> mq_core::Result<()> {
        self.inner.close().await
    }
}

/// One scrape of `GET /metrics`: every sample line of the Prometheus text format.
pub struct Scrape(Vec<(String, f64)>);

impl Scrape {
    pub async fn of(app: &App) -> Scrape {
        let response = client().get(app.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let text = response.text().await.unwrap();
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').expect("`series value`");
                (series.to_owned(), value.parse().expect("a numeric sample"))
            })
            .collect();
        Scrape(samples)
    }

    /// The sum of the samples of `name` whose labels include all of `labels`; `None` when there
    /// is no such series.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .0
            .iter()
            .filter(|(series, _)| {
                let series_name = series.split('{').next().unwrap();
                series_name == name
                    && labels
                        .iter()
                        .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
            })
            .map(|(_, value)| *value)
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    }

    /// Like [`Scrape::get`], 0 when absent (a counter not yet incremented).
    pub fn count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }
}
