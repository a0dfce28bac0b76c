//! OpenTelemetry: the example processes export one trace per product to an OTLP/HTTP receiver
//! started by the test, from the `POST /products` server span through the relay's `send` span and
//! the worker's `process` span to the spans of each image; and a collector that is down or stalls
//! holds up neither the products nor the processes' exit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanStatus;
use opentelemetry_proto::tonic::trace::v1::Span;
use product_pipeline::BrokerKind;
use prost::Message as _;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

/// One span as received, with the `service.name` of the process that sent it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    span: Span,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<String> {
        let value = self
            .span
            .attributes
            .iter()
            .find(|attribute| attribute.key == key)?
            .value
            .as_ref()?
            .value
            .as_ref()?;
        Some(text(value))
    }

    fn kind(&self) -> SpanKind {
        SpanKind::try_from(self.span.kind).unwrap_or(SpanKind::Unspecified)
    }

    fn failed(&self) -> bool {
        self.span
            .status
            .as_ref()
            .is_some_and(|status| status.code == SpanStatus::Error as i32)
    }
}

/// An attribute value as text.
fn text(value: &AnyValue) -> String {
    match value {
        AnyValue::StringValue(text) => text.clone(),
        AnyValue::IntValue(number) => number.to_string(),
        AnyValue::BoolValue(flag) => flag.to_string(),
        AnyValue::DoubleValue(number) => number.to_string(),
        other => format!("{other:?}"),
    }
}

/// An OTLP/HTTP receiver on 127.0.0.1 (`POST /v1/traces`, protobuf bodies).
struct Receiver {
    endpoint: String,
    spans: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(Arc::clone(&spans));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { endpoint, spans }
    }

    /// The spans of trace `trace_id` once `complete` says they are all there (within a minute).
    async fn trace(
        &self,
        trace_id: &[u8],
        complete: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let trace: Vec<Received> = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|received| received.span.trace_id == trace_id)
                .cloned()
                .collect();
            if complete(&trace) {
                return trace;
            }
            let names: Vec<&str> = trace.iter().map(|r| r.span.name.as_str()).collect();
            assert!(
                tokio::time::Instant::now() < deadline,
                "the trace is incomplete after a minute: {names:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn receive(
    State(spans): State<Arc<Mutex<Vec<Received>>>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Vec<u8> {
    let gzipped = headers
        .get("content-encoding")
        .is_some_and(|encoding| encoding == "gzip");
    let body = if gzipped {
        use std::io::Read;
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut plain)
            .expect("a gzip body");
        Bytes::from(plain)
    } else {
        body
    };
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body");
    let mut spans = spans.lock().unwrap();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|resource| &resource.attributes)
            .find(|attribute| attribute.key == "service.name")
            .and_then(|attribute| attribute.value.as_ref()?.value.as_ref())
            .map(text)
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            spans.extend(scope.spans.into_iter().map(|span| Received {
                service: service.clone(),
                span,
            }));
        }
    }
    ExportTraceServiceResponse::default().encode_to_vec()
}

/// The processes of `stack` exporting to `endpoint`: the `pipeline` example on the memory broker,
/// else an `api` and a `worker` process (so the trace crosses processes and the broker).
async fn start_processes(
    stack: &Stack,
    endpoint: &str,
    protocol: &str,
    extra: &[(&'static str, &str)],
) -> (Vec<Process>, App) {
    let otel = |service: &str| {
        let mut vars = vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_owned()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
            ("OTEL_SERVICE_NAME", service.to_owned()),
            // Export every 100 ms, not every 5 s.
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
            // Two seconds per export attempt, so the stalled collector costs little at exit.
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2000".to_owned()),
        ];
        vars.extend(extra.iter().map(|(key, value)| (*key, value.to_string())));
        vars
    };
    let mut processes = Vec::new();
    if stack.config.broker == BrokerKind::Memory {
        processes.push(Process::start(stack, "pipeline", &otel("pipeline")));
    } else {
        processes.push(Process::start(stack, "api", &otel("api")));
        processes.push(Process::start(stack, "worker", &otel("worker")));
    }
    let base = processes[0].api_base().await;
    (processes, App::at(&base))
}

/// The one child of `parent` called `name` (by OpenTelemetry name).
fn child<'a>(trace: &'a [Received], parent: &Received, name: &str) -> &'a Received {
    let children: Vec<&Received> = trace
        .iter()
        .filter(|r| r.span.parent_span_id == parent.span.span_id && r.span.name == name)
        .collect();
    assert_eq!(
        children.len(),
        1,
        "one {name:?} under {:?}: {trace:#?}",
        parent.span.name
    );
    children[0]
}

/// Whether `span` descends from `ancestor` in `trace`.
fn descends_from(trace: &[Received], span: &Received, ancestor: &Received) -> bool {
    let by_id: HashMap<&[u8], &Received> = trace
        .iter()
        .map(|r| (r.span.span_id.as_slice(), r))
        .collect();
    let mut current = span;
    while let Some(parent) = by_id.get(current.span.parent_span_id.as_slice()) {
        if parent.span.span_id == ancestor.span.span_id {
            return true;
        }
        current = parent;
    }
    false
}

/// A product posted with a `traceparent` yields one trace: the server span (child of the
/// caller's span), the relay's send span, the worker's process span and, per image, an `image`
/// span with `fetch image`, `compress image` and `store image`, with the HTTP and messaging
/// attributes; a failing image marks its span failed.
pub async fn one_trace_per_product(stack: &Stack) {
    let receiver = Receiver::start().await;
    check_one_trace(stack, &receiver, &receiver.endpoint, "http/protobuf").await;
}

/// [`one_trace_per_product`] over OTLP/gRPC: the processes export to a real collector (rotel,
/// from PyPI, `ROTEL_AGENT` set by scripts/services.sh), which forwards to the receiver.
pub async fn one_trace_per_product_over_grpc() {
    let Some(agent) = testsupport::service_var("ROTEL_AGENT", "scripts/services.sh start sets it")
    else {
        return;
    };
    let receiver = Receiver::start().await;
    let (grpc, http) = (free_port(), free_port());
    let _collector = tokio::process::Command::new(agent)
        .args([
            "start",
            "--exporter",
            "otlp",
            "--otlp-exporter-protocol",
            "http",
        ])
        .args(["--otlp-exporter-compression", "none"])
        .arg(format!("--otlp-grpc-endpoint=127.0.0.1:{grpc}"))
        .arg(format!("--otlp-http-endpoint=127.0.0.1:{http}"))
        .arg(format!("--otlp-exporter-endpoint={}", receiver.endpoint))
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start rotel-agent");
    let stack = Stack::memory_sqlite().await.unwrap();
    let endpoint = format!("http://127.0.0.1:{grpc}");
    check_one_trace(&stack, &receiver, &endpoint, "grpc").await;
}

async fn check_one_trace(stack: &Stack, receiver: &Receiver, endpoint: &str, protocol: &str) {
    let images = ImageServer::start().await;
    let (_processes, app) = start_processes(stack, endpoint, protocol, &[]).await;
    let user = create_user(&app).await;
    let trace_id = fastrand::u128(1..);
    let caller_span = fastrand::u64(1..);
    let traceparent = format!("00-{trace_id:032x}-{caller_span:016x}-01");
    let body = json!({"user_id": user, "product_name": "Lamp", "product_price": 19.99,
        "product_images": [images.image(640, 480, "landscape"), images.image(480, 640, "portrait"),
                           images.missing()]});
    let (status, _, product) =
        post_with(&app, "/products", &body, &[("traceparent", &traceparent)]).await;
    assert_eq!(status, StatusCode::CREATED, "{product}");
    let id = product["product_id"].as_i64().unwrap();
    let product = wait_final(&app, id, PROCESSING).await;
    assert_eq!(product["status"], "partial", "{product}");

    let topic = format!("{}products.created", stack.config.topic_prefix);
    let trace = receiver
        .trace(&trace_id.to_be_bytes(), |trace| {
            trace.iter().any(|r| r.span.name.starts_with("process "))
                && trace.iter().filter(|r| r.span.name == "image").count() == 3
                && trace
                    .iter()
                    .filter(|r| r.span.name == "store image")
                    .count()
                    == 2
        })
        .await;

    let server = trace
        .iter()
        .find(|r| r.span.name == "POST /products")
        .unwrap_or_else(|| panic!("a POST /products span: {trace:#?}"));
    assert_eq!(server.kind(), SpanKind::Server);
    assert_eq!(server.span.parent_span_id, caller_span.to_be_bytes());
    assert_eq!(
        server.attribute("http.request.method").as_deref(),
        Some("POST")
    );
    assert_eq!(server.attribute("http.route").as_deref(), Some("/products"));
    assert_eq!(
        server.attribute("http.response.status_code").as_deref(),
        Some("201")
    );

    let system = stack.config.broker.messaging_system();
    let send = child(&trace, server, &format!("send {topic}"));
    assert_eq!(send.kind(), SpanKind::Producer);
    let process = child(&trace, send, &format!("process {topic}"));
    assert_eq!(process.kind(), SpanKind::Consumer);
    for (span, operation) in [(send, "send"), (process, "process")] {
        assert_eq!(span.attribute("messaging.system").as_deref(), Some(system));
        assert_eq!(
            span.attribute("messaging.operation.type").as_deref(),
            Some(operation)
        );
        assert_eq!(
            span.attribute("messaging.destination.name"),
            Some(topic.clone())
        );
    }
    assert_eq!(
        process.attribute("messaging.message.id"),
        send.attribute("messaging.message.id"),
        "the consumer saw the message the relay sent"
    );
    assert!(process.attribute("messaging.message.id").is_some());
    if stack.config.broker == BrokerKind::Kafka {
        assert!(process
            .attribute("messaging.destination.partition.id")
            .is_some());
        assert!(process.attribute("messaging.kafka.offset").is_some());
    }
    if stack.config.broker != BrokerKind::Memory {
        assert_eq!(server.service, "api");
        assert_eq!(process.service, "worker");
    }

    let image_spans: Vec<&Received> = trace.iter().filter(|r| r.span.name == "image").collect();
    for image in &image_spans {
        assert!(descends_from(&trace, image, process), "{image:#?}");
        child(&trace, image, "fetch image");
        if image.attribute("url.full") == Some(images.missing()) {
            assert!(
                image.failed(),
                "the missing image's span failed: {image:#?}"
            );
            // The 404 failed the fetch, so there is nothing to compress or store.
            assert_eq!(image.attribute("error.type").as_deref(), Some("http"));
            assert!(
                !trace
                    .iter()
                    .any(|r| r.span.parent_span_id == image.span.span_id
                        && r.span.name == "compress image"),
                "{trace:#?}"
            );
        } else {
            assert!(!image.failed(), "{image:#?}");
            let compress = child(&trace, image, "compress image");
            assert!(compress.attribute("width").is_some(), "{compress:#?}");
            child(&trace, image, "store image");
        }
    }
}

/// A port on 127.0.0.1 that nothing listens on (until someone binds it).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// With the collector down (a closed port) or hanging (accepts, never answers), every product is
/// still processed, the spans that do not fit the (here tiny) queue are counted dropped, failed
/// exports are counted, and the process stops on SIGTERM within its shutdown bounds.
pub async fn a_dead_or_stalled_collector_holds_nothing_up() {
    let images = ImageServer::start().await;
    for (endpoint, counted) in [
        (
            format!("http://127.0.0.1:{}", free_port()),
            "otel_spans_export_failed_total",
        ),
        // Accepts connections and never answers, like a collector that hangs.
        (images.silent_base().to_owned(), "otel_spans_dropped_total"),
    ] {
        let stack = Stack::memory_sqlite().await.unwrap();
        let queue = [("OTEL_BSP_MAX_QUEUE_SIZE", "4")];
        let (mut processes, app) =
            start_processes(&stack, &endpoint, "http/protobuf", &queue).await;
        let user = create_user(&app).await;
        let ids: Vec<i64> = futures::future::join_all((0..10).map(|n| {
            let image = images.image(320, 240, &format!("p{n}"));
            let app = &app;
            async move { create_product(app, user, &[image]).await }
        }))
        .await;
        for id in ids {
            let product = wait_final(&app, id, PROCESSING).await;
            assert_eq!(product["status"], "done", "{endpoint}: {product}");
        }
        // Failed exports are counted once their attempt ends (at most 2 s, the export timeout).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while Scrape::of(&app).await.count(counted, &[]) == 0.0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{endpoint}: {counted} is still 0"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Nothing is in flight: the stop takes at most the 5 s the last spans get, plus slack for
        // a debug build on a busy machine.
        let exit = processes[0].terminate(Duration::from_secs(15)).await;
        assert!(exit.success(), "{endpoint}: {exit}");
    }
}

/// `LOG_FORMAT=json`: a worker's warning carries the trace id of the request that caused it,
/// also when `RUST_LOG=warn` leaves the spans out of the logs, and without any export.
pub async fn json_logs_carry_the_trace_id() {
    use tokio::io::AsyncBufReadExt;
    let stack = Stack::memory_sqlite().await.unwrap();
    let images = ImageServer::start().await;
    let json = [
        ("LOG_FORMAT", "json".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    let mut pipeline = Process::start_with_logs(&stack, "pipeline", &json);
    let stderr = pipeline.child.stderr.take().expect("stderr is piped");
    let app = App::at(&pipeline.api_base().await);
    let user = create_user(&app).await;
    let trace_id = format!("{:032x}", fastrand::u128(1..));
    let traceparent = format!("00-{trace_id}-{:016x}-01", fastrand::u64(1..));
    // A 503 is transient: the worker logs a warning and retries.
    let body = json!({"user_id": user, "product_name": "Lamp", "product_price": 1,
        "product_images": [images.unavailable()]});
    let (status, _, product) =
        post_with(&app, "/products", &body, &[("traceparent", &traceparent)]).await;
    assert_eq!(status, StatusCode::CREATED, "{product}");
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let warning = tokio::time::timeout(PROCESSING, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let line: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|error| panic!("not a JSON line ({error}): {line}"));
            if line["level"] == "WARN" && line["target"] == "product_pipeline::consumer" {
                return line;
            }
        }
        panic!("the pipeline exited without a warning");
    })
    .await
    .expect("a warning from the worker");
    assert_eq!(warning["trace_id"], trace_id.as_str(), "{warning}");
    assert_eq!(
        warning["span_id"].as_str().map(str::len),
        Some(16),
        "{warning}"
    );
}
