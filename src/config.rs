//! [`Config`]: every setting, from command-line flags or the environment, with defaults that run
//! on a bare machine (SQLite under `./data`, the in-memory broker, `./media`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use product_pipeline_imaging::OutputFormat;

/// Which message broker carries `products.created`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BrokerKind {
    /// In-process broker; producer and consumer must run in the same process (`pipeline`).
    Memory,
    /// RabbitMQ at `AMQP_URL` (cargo feature `rabbit`).
    Rabbit,
    /// Kafka at `KAFKA_BROKERS` (cargo feature `kafka`).
    Kafka,
}

impl BrokerKind {
    /// The `BROKER` value; for a networked broker also the cargo feature that compiles it in.
    pub fn name(self) -> &'static str {
        match self {
            BrokerKind::Memory => "memory",
            BrokerKind::Rabbit => "rabbit",
            BrokerKind::Kafka => "kafka",
        }
    }

    /// The broker as OpenTelemetry's `messaging.system` names it.
    pub fn messaging_system(self) -> &'static str {
        match self {
            BrokerKind::Memory => "memory",
            BrokerKind::Rabbit => "rabbitmq",
            BrokerKind::Kafka => "kafka",
        }
    }
}

/// Configuration of the API, the outbox relay and the image worker.
#[derive(Debug, Clone, clap::Parser)]
#[command(version, about = "Product ingestion API and image pipeline")]
pub struct Config {
    /// Database URL: `sqlite://path/file.db` or `postgres://user@host/db` (feature `postgres`).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://data/pipeline.db"
    )]
    pub database_url: String,

    /// Most pooled database connections.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_max_connections: u32,

    /// PostgreSQL schema to work in (it must exist); default: the server's `search_path`.
    #[arg(long, env = "DATABASE_SCHEMA")]
    pub database_schema: Option<String>,

    /// Message broker.
    #[arg(long, env = "BROKER", value_enum, default_value_t = BrokerKind::Memory)]
    pub broker: BrokerKind,

    /// RabbitMQ URL (with `BROKER=rabbit`).
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,

    /// Seconds after which RabbitMQ deletes a queue that has had no consumer (`x-expires`), for
    /// groups that come and go; 0 (default): queues stay until deleted. Set it before a group's
    /// queue is first declared: RabbitMQ refuses to redeclare a queue with other arguments.
    #[arg(long, env = "AMQP_QUEUE_EXPIRES", default_value_t = 0)]
    pub amqp_queue_expires: u64,

    /// Kafka bootstrap servers, comma-separated (with `BROKER=kafka`).
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,

    /// Partitions of topics the Kafka backend creates.
    #[arg(long, env = "KAFKA_PARTITIONS", default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub kafka_partitions: i32,

    /// Prefix for every topic name, e.g. `staging.` to share one broker between environments.
    #[arg(long, env = "TOPIC_PREFIX", default_value = "")]
    pub topic_prefix: String,

    /// Consumer group of the image workers.
    #[arg(long, env = "CONSUMER_GROUP", default_value = "image-workers")]
    pub consumer_group: String,

    /// Where compressed images are stored and served from (`GET /media/...`): a path,
    /// `file:///abs/path`, `memory://`, or `s3://bucket/prefix` (feature `s3`; endpoint, region
    /// and credentials from the `AWS_*` variables), `gs://` (`gcs`), `az://` (`azure`).
    /// Default: the directory `media`. Takes precedence over `MEDIA_DIR`.
    #[arg(long, env = "MEDIA_URL")]
    pub media_url: Option<String>,

    /// Shorthand for a local `MEDIA_URL`: the directory images are stored in (default `media`).
    #[arg(long, env = "MEDIA_DIR")]
    pub media_dir: Option<PathBuf>,

    /// Base URL clients fetch stored images from (a CDN or the bucket's public URL); products
    /// then carry absolute `compressed_product_image_urls`. Unset: links to this API's `/media/`.
    #[arg(long, env = "MEDIA_PUBLIC_URL", value_parser = parse_public_url)]
    pub media_public_url: Option<url::Url>,

    /// Address the HTTP API listens on (port 0 picks a free port).
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// Seconds a client has to send a whole request head; also how long an idle keep-alive
    /// connection is kept open.
    #[arg(long, env = "HTTP_HEADER_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub http_header_timeout: u64,

    /// Most open HTTP connections; more are closed at once. Default: three quarters of the
    /// process's descriptor limit (`ulimit -n`), which a larger value must not exceed.
    #[arg(long, env = "HTTP_MAX_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..))]
    pub http_max_connections: Option<u64>,

    /// Most open HTTP connections from one client address; default an eighth of
    /// `HTTP_MAX_CONNECTIONS`.
    #[arg(long, env = "HTTP_MAX_CONNECTIONS_PER_CLIENT", value_parser = clap::value_parser!(u64).range(1..))]
    pub http_max_connections_per_client: Option<u64>,

    /// Most API requests handled at once; more get 503 with `Retry-After` at once (`/healthz`,
    /// `/readyz` and `/metrics` always answer).
    #[arg(long, env = "HTTP_MAX_IN_FLIGHT", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub http_max_in_flight: u32,

    /// Writes per second per client address, and the burst: `PER_SECOND[,BURST]`, e.g. `10,50`;
    /// over it: 429 with `Retry-After`. Unset: unlimited.
    #[arg(long, env = "RATE_LIMIT_WRITES")]
    pub rate_limit_writes: Option<crate::api::WriteRate>,

    /// Proxies (addresses or CIDR networks, comma-separated) whose `X-Forwarded-For` names the
    /// client; from anyone else it is ignored.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: crate::api::TrustedProxies,

    /// Where a worker-only process (the `worker` example) serves `GET /healthz`, `/readyz` and
    /// `/metrics`; unset: it serves nothing. Processes that run the API serve them on `HTTP_ADDR`.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Largest request body in bytes.
    #[arg(long, env = "HTTP_BODY_LIMIT", default_value_t = 256 * 1024, value_parser = clap::value_parser!(u64).range(1024..=64 * 1024 * 1024))]
    pub http_body_limit: u64,

    /// Longest time one request may take, in seconds.
    #[arg(long, env = "HTTP_REQUEST_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub http_request_timeout: u64,

    /// Bearer token that write requests (`POST /users`, `POST /products`) must carry; at least 16
    /// characters. Unset: no authentication. The value is never shown in help or logs.
    #[arg(long, env = "API_TOKEN", hide_env_values = true)]
    pub api_token: Option<crate::api::ApiToken>,

    /// Seconds an `Idempotency-Key` is remembered; a retry after that creates a new row.
    #[arg(long, env = "IDEMPOTENCY_TTL", default_value_t = 24 * 60 * 60, value_parser = clap::value_parser!(u64).range(1..=30 * 24 * 60 * 60))]
    pub idempotency_ttl: u64,

    /// Seconds a published outbox row is kept before outbox retention deletes it (default 7 days;
    /// `0` deletes rows at the first sweep after they were published). Unpublished rows are kept.
    #[arg(long, env = "OUTBOX_RETENTION", default_value_t = 7 * 24 * 60 * 60)]
    pub outbox_retention: u64,

    /// Largest image download in bytes.
    #[arg(long, env = "MAX_IMAGE_BYTES", default_value_t = 25 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_image_bytes: u64,

    /// Compressed images fit inside this many pixels on each side.
    #[arg(long, env = "IMAGE_SIZE", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(16..=8192))]
    pub image_size: u32,

    /// Longest sides of the renditions made of every image, comma-separated (e.g.
    /// `320,640,1024,2048`); each fits inside that square and is never upscaled. The primary one,
    /// which `compressed_product_images` names, is the largest JPEG not above `IMAGE_SIZE`.
    #[arg(long, env = "IMAGE_RENDITIONS", default_value = "320,1024", value_delimiter = ',', value_parser = clap::value_parser!(u32).range(16..=8192))]
    pub image_renditions: Vec<u32>,

    /// Formats every rendition is written in, comma-separated: `jpeg` (required: the primary
    /// rendition is one), `webp` (cargo feature `webp`, on by default) and `avif` (cargo feature
    /// `avif`; several times the CPU of the others).
    #[arg(long, env = "IMAGE_FORMATS", default_value = DEFAULT_IMAGE_FORMATS, value_delimiter = ',', value_parser = parse_format)]
    pub image_formats: Vec<OutputFormat>,

    /// JPEG quality of compressed images.
    #[arg(long, env = "JPEG_QUALITY", default_value_t = 80, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub jpeg_quality: u8,

    /// WebP quality of compressed images (with `webp` in `IMAGE_FORMATS`).
    #[arg(long, env = "WEBP_QUALITY", default_value_t = 80, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub webp_quality: u8,

    /// AVIF quality of compressed images (with `avif` in `IMAGE_FORMATS`).
    #[arg(long, env = "AVIF_QUALITY", default_value_t = 60, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub avif_quality: u8,

    /// AVIF encoder speed, 1 (slowest, smallest files) to 10 (fastest).
    #[arg(long, env = "AVIF_SPEED", default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..=10))]
    pub avif_speed: u8,

    /// Write progressive JPEGs (shown coarse first while they load) instead of baseline ones.
    #[arg(long, env = "JPEG_PROGRESSIVE", default_value = "false", value_parser = BoolishValueParser::new())]
    pub jpeg_progressive: bool,

    /// Seconds all download attempts of one image may take together (a message's retries
    /// included); the attempt that uses up the rest records the image as failed.
    #[arg(long, env = "IMAGE_FETCH_BUDGET", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub image_fetch_budget: u64,

    /// Bytes per second an image download must average after `IMAGE_FETCH_GRACE`: `10KiB`, or
    /// bytes; `0` = no minimum. A slower download is stopped and retried within the budget.
    #[arg(long, env = "IMAGE_FETCH_MIN_RATE", default_value = "10KiB", value_parser = parse_bytes)]
    pub image_fetch_min_rate: u64,

    /// Seconds at the start of an image download before the minimum rate counts; the image
    /// server's response headers must arrive within them.
    #[arg(long, env = "IMAGE_FETCH_GRACE", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub image_fetch_grace: u64,

    /// Allow image URLs that resolve to loopback, private or link-local addresses.
    #[arg(long, env = "ALLOW_PRIVATE_IMAGE_HOSTS", default_value = "false", value_parser = BoolishValueParser::new())]
    pub allow_private_image_hosts: bool,

    /// Products processed at once by one worker. CPU work and image memory have bounds of their
    /// own (one encode per core, `WORKER_MEMORY_BUDGET`), so this only needs to cover products
    /// waiting on image servers: a slow server holds one for up to `IMAGE_FETCH_BUDGET`.
    #[arg(long, env = "WORKER_CONCURRENCY", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub worker_concurrency: u32,

    /// Memory the images in flight of one worker may hold, downloads and decode buffers
    /// together: `512MiB`, `2GiB`, or bytes; `0` = unbounded. Half is for downloaded bytes, half
    /// for decoding; an image that needs more than its half fails with a reason, others wait.
    #[arg(long, env = "WORKER_MEMORY_BUDGET", default_value = "512MiB", value_parser = parse_bytes)]
    pub worker_memory_budget: u64,

    /// Attempts before a product whose images keep failing transiently is recorded as failed.
    #[arg(long, env = "WORKER_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub worker_max_attempts: u32,

    /// Seconds a stopping process waits for in-flight work before handing it back.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_timeout: u64,

    /// Seconds start-up waits for a database, broker or media store that is not reachable yet
    /// (retrying with backoff) before it gives up; 0 fails at the first refused connection.
    #[arg(long, env = "STARTUP_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub startup_timeout: u64,
}

/// A size: a number of bytes, optionally followed by `KiB`, `MiB` or `GiB` (or `K`, `M`, `G`).
/// `IMAGE_FORMATS` by default: JPEG, and WebP when it is built in.
const DEFAULT_IMAGE_FORMATS: &str = if cfg!(feature = "webp") {
    "jpeg,webp"
} else {
    "jpeg"
};

fn parse_format(raw: &str) -> Result<OutputFormat, String> {
    let format: OutputFormat = raw.parse()?;
    if format.is_available() {
        Ok(format)
    } else {
        Err(format!(
            "{format} is not built in; build with the cargo feature `{format}`"
        ))
    }
}

fn parse_bytes(raw: &str) -> Result<u64, String> {
    let raw = raw.trim();
    let digits = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{raw}` is not a size such as 512MiB"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        other => return Err(format!("unknown unit `{other}`; use KiB, MiB or GiB")),
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("`{raw}` is too large"))
}

fn parse_public_url(raw: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("not an absolute URL ({e})"))?;
    match url.scheme() {
        "http" | "https" if url.query().is_none() && url.fragment().is_none() => Ok(url),
        "http" | "https" => Err("must not have a query or fragment".into()),
        other => Err(format!("must be http:// or https://, not `{other}`")),
    }
}

impl Config {
    /// Where the media store is: `MEDIA_URL`, else `MEDIA_DIR`, else `./media`. The error
    /// names the setting.
    pub fn media_location(
        &self,
    ) -> Result<product_pipeline_imaging::media::MediaLocation, (&'static str, String)> {
        match (&self.media_url, &self.media_dir) {
            (Some(url), _) => url
                .parse()
                .map_err(|e| (self.media_setting(), format!("{e}"))),
            (None, Some(dir)) => Ok(product_pipeline_imaging::media::MediaLocation::Local(
                dir.clone(),
            )),
            (None, None) => Ok(product_pipeline_imaging::media::MediaLocation::Local(
                PathBuf::from("media"),
            )),
        }
    }

    /// The setting that names the media store, for messages: `MEDIA_URL` when set (it takes
    /// precedence), else `MEDIA_DIR`.
    pub fn media_setting(&self) -> &'static str {
        if self.media_url.is_some() {
            "MEDIA_URL"
        } else {
            "MEDIA_DIR"
        }
    }

    /// The configuration from the environment only (no flags), e.g. for tests and embedding.
    pub fn from_env() -> Result<Self, clap::Error> {
        <Self as clap::Parser>::try_parse_from(["product-pipeline"])
    }

    /// The topic new products are announced on: [`Config::topic_prefix`] + `products.created`.
    pub fn products_topic(&self) -> String {
        format!(
            "{}{}",
            self.topic_prefix,
            mq_core::domain::PRODUCTS_CREATED_TOPIC
        )
    }

    /// The topics the image workers consume: [`Config::topic_prefix`] + each of
    /// `products.created`, `products.updated` and `products.deleted`.
    pub fn product_event_topics(&self) -> Vec<String> {
        mq_core::domain::PRODUCT_EVENT_TOPICS
            .iter()
            .map(|topic| format!("{}{topic}", self.topic_prefix))
            .collect()
    }

    /// The topic final statuses are announced on: [`Config::topic_prefix`] +
    /// `products.processed`.
    pub fn processed_topic(&self) -> String {
        format!(
            "{}{}",
            self.topic_prefix,
            mq_core::domain::PRODUCTS_PROCESSED_TOPIC
        )
    }

    /// [`Config::http_request_timeout`] as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.http_request_timeout)
    }

    /// The connection limits of the HTTP server: `HTTP_MAX_CONNECTIONS` (checked against the
    /// descriptor limit), `HTTP_MAX_CONNECTIONS_PER_CLIENT`, `HTTP_HEADER_TIMEOUT`. The error
    /// names the setting.
    pub fn connection_limits(
        &self,
        descriptors: u64,
    ) -> Result<crate::server::ConnectionLimits, (&'static str, String)> {
        let mut limits = crate::server::ConnectionLimits::for_descriptors(descriptors);
        if let Some(max) = self.http_max_connections {
            if max > descriptors {
                return Err((
                    "HTTP_MAX_CONNECTIONS",
                    format!(
                        "{max} connections need more file descriptors than the process may open \
                         ({descriptors}, `ulimit -n`); raise the limit or lower the setting"
                    ),
                ));
            }
            limits = crate::server::ConnectionLimits::for_connections(max as usize);
        }
        if let Some(per_client) = self.http_max_connections_per_client {
            limits.max_per_client = per_client.min(limits.max_connections as u64) as usize;
        }
        limits.header_timeout = Duration::from_secs(self.http_header_timeout);
        Ok(limits)
    }

    /// [`Config::idempotency_ttl`] as a duration.
    pub fn idempotency_ttl(&self) -> Duration {
        Duration::from_secs(self.idempotency_ttl)
    }

    /// [`Config::outbox_retention`] as a duration.
    pub fn outbox_retention(&self) -> Duration {
        Duration::from_secs(self.outbox_retention)
    }

    /// [`Config::startup_timeout`] as a duration.
    pub fn startup_wait(&self) -> Duration {
        Duration::from_secs(self.startup_timeout)
    }

    /// [`Config::shutdown_timeout`] as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// The built-in defaults (read from the definition, since the test environment may set
    /// variables such as `DATABASE_URL`).
    fn default_of(id: &str) -> String {
        let command = <Config as clap::CommandFactory>::command();
        let argument = command.get_arguments().find(|a| a.get_id() == id).unwrap();
        argument.get_default_values()[0]
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn defaults_run_on_a_bare_machine() {
        assert_eq!(default_of("broker"), "memory");
        assert!(default_of("database_url").starts_with("sqlite://"));
        assert_eq!(default_of("image_size"), "1024");
        assert_eq!(default_of("jpeg_quality"), "80");
        assert_eq!(default_of("jpeg_progressive"), "false");
        assert_eq!(default_of("allow_private_image_hosts"), "false");
    }

    #[test]
    fn bad_values_name_the_setting() {
        let error = Config::try_parse_from(["x", "--jpeg-quality", "0"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("--jpeg-quality"), "{error}");
        let error = Config::try_parse_from(["x", "--broker", "redis"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("--broker"), "{error}");
        let error = Config::try_parse_from(["x", "--api-token", "short"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("--api-token"), "{error}");
    }

    #[test]
    fn connection_limits_fit_the_descriptor_limit() {
        let default = Config::try_parse_from(["x"]).unwrap();
        let limits = default.connection_limits(1024).unwrap();
        assert_eq!((limits.max_connections, limits.max_per_client), (768, 96));
        let set = Config::try_parse_from(["x", "--http-max-connections", "200"]).unwrap();
        assert_eq!(set.connection_limits(1024).unwrap().max_per_client, 25);
        let (setting, reason) = Config::try_parse_from(["x", "--http-max-connections", "5000"])
            .unwrap()
            .connection_limits(1024)
            .unwrap_err();
        assert_eq!(setting, "HTTP_MAX_CONNECTIONS");
        assert!(reason.contains("ulimit -n"), "{reason}");
    }

    #[test]
    fn sizes_take_binary_units() {
        for (raw, bytes) in [
            ("0", 0),
            ("1048576", 1 << 20),
            ("512MiB", 512 << 20),
            ("512 MiB", 512 << 20),
            ("2GiB", 2 << 30),
            ("64k", 64 << 10),
        ] {
            assert_eq!(parse_bytes(raw), Ok(bytes), "{raw}");
        }
        for raw in ["", "MiB", "1.5GiB", "12 parsecs", "99999999999999GiB"] {
            assert!(parse_bytes(raw).is_err(), "{raw}");
        }
        let default = Config::try_parse_from(["x"]).unwrap();
        assert_eq!(default.worker_memory_budget, 512 << 20);
    }

    #[test]
    fn media_settings() {
        let local = Config::try_parse_from(["x", "--media-dir", "/srv/media"]).unwrap();
        assert_eq!(
            local.media_location().unwrap().to_string(),
            "file:///srv/media"
        );
        let s3 = Config::try_parse_from(["x", "--media-url", "s3://shop/media"]).unwrap();
        assert_eq!(s3.media_location().unwrap().to_string(), "s3://shop/media");
        let bad = Config::try_parse_from(["x", "--media-url", "ftp://x/y"]).unwrap();
        let (setting, reason) = bad.media_location().unwrap_err();
        assert_eq!(setting, "MEDIA_URL");
        assert!(reason.contains("unknown scheme"), "{reason}");
        let both =
            Config::try_parse_from(["x", "--media-url", "memory://", "--media-dir", "m"]).unwrap();
        assert_eq!(both.media_location().unwrap().to_string(), "memory://");
        let error = Config::try_parse_from(["x", "--media-public-url", "ftp://cdn/x"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("--media-public-url"), "{error}");
    }

    /// `JPEG_PROGRESSIVE` reaches the image pipeline.
    #[test]
    fn progressive_jpegs_are_a_switch() {
        for (args, progressive) in [
            (&["x"][..], false),
            (&["x", "--jpeg-progressive"][..], true),
        ] {
            let config = Config::try_parse_from(args).unwrap();
            assert_eq!(config.jpeg_progressive, progressive);
            assert_eq!(
                crate::app::imaging_config(&config).jpeg_progressive,
                progressive
            );
        }
    }

    /// `IMAGE_RENDITIONS` and `IMAGE_FORMATS` reach the image pipeline; the primary rendition
    /// must be possible.
    #[test]
    fn renditions_and_formats_are_lists() {
        let default = Config::try_parse_from(["x"]).unwrap();
        let imaging = crate::app::imaging_config(&default);
        assert_eq!(imaging.renditions, [320, 1024]);
        assert_eq!(imaging.formats, [OutputFormat::Jpeg, OutputFormat::WebP]);
        let set = Config::try_parse_from([
            "x",
            "--image-renditions",
            "2048,640,320",
            "--image-formats",
            "jpeg",
            "--webp-quality",
            "70",
        ])
        .unwrap();
        let imaging = crate::app::imaging_config(&set);
        assert_eq!(imaging.webp_quality, 70);
        assert_eq!(imaging.renditions, [2048, 640, 320]);
        assert_eq!(imaging.formats, [OutputFormat::Jpeg]);
        imaging.validate().unwrap();
        for bad in [
            ["--image-renditions", "320,big"],
            ["--image-renditions", "8"],
            ["--image-formats", "jpeg,gif"],
        ] {
            let error = Config::try_parse_from(["x", bad[0], bad[1]])
                .unwrap_err()
                .to_string();
            assert!(error.contains(bad[0]), "{error}");
        }
        let no_jpeg = Config::try_parse_from(["x", "--image-formats", "webp"]).unwrap();
        let error =
            crate::app::imaging_error(crate::app::imaging_config(&no_jpeg).validate().unwrap_err());
        assert!(error.to_string().contains("IMAGE_FORMATS"), "{error}");
    }

    #[test]
    fn the_api_token_is_never_printed() {
        let token = "a-secret-token-0123456789";
        let config = Config::try_parse_from(["x", "--api-token", token]).unwrap();
        assert!(config.api_token.as_ref().unwrap().matches(token));
        assert!(!format!("{config:?}").contains(token));
        let argument = <Config as clap::CommandFactory>::command();
        let argument = argument
            .get_arguments()
            .find(|a| a.get_id() == "api_token")
            .unwrap();
        assert!(argument.is_hide_env_values_set());
    }
}
