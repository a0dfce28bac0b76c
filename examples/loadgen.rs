//! Drives a running API: creates a user, posts N products whose images it serves itself, waits
//! until every product is processed, and reports throughput and latency.
//!
//! ```text
//! cargo run --release --example pipeline &
//! cargo run --release --example loadgen -- --products 1000 --images 3
//! cargo run --release --example loadgen -- --images-dir /usr/share/wallpapers   # real photos
//! cargo run --release --example loadgen -- --products 208 --slow 8   # 8 hostile image hosts
//! ```
//!
//! The API must accept image URLs on 127.0.0.1 (`pipeline` does by default; elsewhere set
//! `ALLOW_PRIVATE_IMAGE_HOSTS=true`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use clap::Parser;
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(about = "Load generator for the product pipeline API")]
struct Args {
    /// Base URL of the API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Products to create.
    #[arg(long, default_value_t = 1000)]
    products: usize,
    /// Images per product.
    #[arg(long, default_value_t = 3)]
    images: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Serve the JPEG/PNG/WebP files of this folder (recursively) instead of generated images.
    #[arg(long)]
    images_dir: Option<PathBuf>,
    /// Size of generated images, WIDTHxHEIGHT.
    #[arg(long, default_value = "1600x1200")]
    size: String,
    /// Generate images of random pixels at quality 95 (about 2.4 bytes a pixel, like large camera
    /// files: 2650x2650 is about 17 MB) instead of a compressible pattern.
    #[arg(long)]
    noise: bool,
    /// Of the products, this many (spread evenly) get a first image whose server announces the
    /// size and then sends one byte a second, like a hostile host; the latency of the others is
    /// reported apart.
    #[arg(long, default_value_t = 0)]
    slow: usize,
    /// Give up waiting for processing after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

/// Images served to the pipeline, by index.
struct Images(Vec<(Vec<u8>, &'static str)>);

impl Images {
    /// The bytes and MIME type served as `{n}.img`.
    fn named(&self, name: &str) -> &(Vec<u8>, &'static str) {
        let n: usize = name.trim_end_matches(".img").parse().unwrap_or(0);
        &self.0[n % self.0.len()]
    }
}

fn load_images(args: &Args) -> Images {
    if let Some(dir) = &args.images_dir {
        let mut files = Vec::new();
        let mut stack = vec![dir.clone()];
        while let Some(path) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&path) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let mime = match path
                    .extension()
                    .and_then(|e| e.to_str())
                    .map(str::to_ascii_lowercase)
                    .as_deref()
                {
                    Some("jpg" | "jpeg") => "image/jpeg",
                    Some("png") => "image/png",
                    Some("webp") => "image/webp",
                    _ => continue,
                };
                if let Ok(bytes) = std::fs::read(&path) {
                    files.push((bytes, mime));
                }
            }
        }
        assert!(
            !files.is_empty(),
            "no JPEG, PNG or WebP files under {}",
            dir.display()
        );
        return Images(files);
    }
    let (width, height) = args
        .size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
        .expect("--size is WIDTHxHEIGHT, e.g. 1600x1200");
    Images(
        (0..8u32)
            .map(|seed| {
                let mut rng = fastrand::Rng::with_seed(u64::from(seed));
                let image = image::RgbImage::from_fn(width, height, |x, y| {
                    if args.noise {
                        return image::Rgb([rng.u8(..), rng.u8(..), rng.u8(..)]);
                    }
                    let v = (x.wrapping_mul(7 + seed) ^ y.wrapping_mul(3 + seed)) as u8;
                    image::Rgb([v, (x * 255 / width) as u8, (y * 255 / height) as u8])
                });
                let quality = if args.noise { 95 } else { 90 };
                let mut bytes = Vec::new();
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality)
                    .encode_image(&image)
                    .expect("encode a generated JPEG");
                (bytes, "image/jpeg")
            })
            .collect(),
    )
}

async fn serve_images(images: Images) -> String {
    let images = Arc::new(images);
    let app = axum::Router::new()
        .route(
            "/img/{n}",
            axum::routing::get(
                |State(images): State<Arc<Images>>, Path(n): Path<String>| async move {
                    let (bytes, mime) = images.named(&n);
                    ([(header::CONTENT_TYPE, *mime)], bytes.clone()).into_response()
                },
            ),
        )
        .route(
            "/trickle/{n}",
            axum::routing::get(
                |State(images): State<Arc<Images>>, Path(n): Path<String>| async move {
                    let (bytes, mime) = images.named(&n);
                    let body = bytes.clone();
                    let stream = futures::stream::unfold(0, move |sent| {
                        let body = body.clone();
                        async move {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            let byte = body.get(sent)?;
                            Some((Ok::<_, std::io::Error>(vec![*byte]), sent + 1))
                        }
                    });
                    (
                        [
                            (header::CONTENT_TYPE, mime.to_string()),
                            (header::CONTENT_LENGTH, bytes.len().to_string()),
                        ],
                        axum::body::Body::from_stream(stream),
                    )
                        .into_response()
                },
            ),
        )
        .with_state(images);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the image server");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(name: &str, mut latencies: Vec<Duration>) {
    latencies.sort();
    println!(
        "{name:<22} p50 {:>8.1} ms   p95 {:>8.1} ms   p99 {:>8.1} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.95).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3
    );
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let images = load_images(&args);
    let image_count = images.0.len();
    let image_bytes: usize = images.0.iter().map(|(bytes, _)| bytes.len()).sum();
    println!(
        "images:      {image_count} distinct, {:.1} MB on average",
        image_bytes as f64 / image_count as f64 / 1e6
    );
    let image_base = serve_images(images).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .unwrap();
    let api = args.url.trim_end_matches('/').to_owned();

    let mobile = format!("+1{:010}", fastrand::u64(..10_000_000_000));
    let user: Value = client
        .post(format!("{api}/users"))
        .json(&json!({"name": "loadgen", "mobile": mobile, "latitude": 0, "longitude": 0}))
        .send()
        .await
        .expect("the API is reachable")
        .json()
        .await
        .unwrap();
    let user_id = user["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("creating the user failed: {user}"));
    println!(
        "{} products × {} images ({} distinct source images) against {api}",
        args.products, args.images, image_count
    );

    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:>10} [{bar:40}] {pos}/{len} {per_sec}")
        .unwrap()
        .progress_chars("=> ");
    let created_bar = bars.add(
        ProgressBar::new(args.products as u64)
            .with_style(style.clone())
            .with_prefix("created"),
    );
    let done_bar = bars.add(
        ProgressBar::new(args.products as u64)
            .with_style(style)
            .with_prefix("processed"),
    );

    // Every `slow_every`-th product, from the middle of the first stretch on.
    let slow_every = (args.products / args.slow.max(1)).max(1);
    let is_slow = |n: usize| n % slow_every == slow_every / 2 && n / slow_every < args.slow;
    let started = Instant::now();
    let created: Vec<(i64, Instant, Duration, bool)> = futures::stream::iter(0..args.products)
        .map(|n| {
            let (client, api, image_base, created_bar) = (&client, &api, &image_base, &created_bar);
            async move {
                let mut urls: Vec<String> = (0..args.images).map(|i| format!("{image_base}/img/{}.img?p={n}", n * args.images + i)).collect();
                if is_slow(n) {
                    urls[0] = format!("{image_base}/trickle/{}.img?p={n}", n * args.images);
                }
                let body = json!({"user_id": user_id, "product_name": format!("load {n}"), "product_images": urls, "product_price": "9.99"});
                let sent = Instant::now();
                let response = client.post(format!("{api}/products")).json(&body).send().await.expect("POST /products");
                let latency = sent.elapsed();
                assert_eq!(response.status(), StatusCode::CREATED.as_u16(), "POST /products failed");
                let product: Value = response.json().await.unwrap();
                created_bar.inc(1);
                (product["product_id"].as_i64().unwrap(), sent, latency, is_slow(n))
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let ingest_elapsed = started.elapsed();
    created_bar.finish();

    let sent_at: HashMap<i64, Instant> = created
        .iter()
        .map(|(id, sent, _, _)| (*id, *sent))
        .collect();
    let mut finished: HashMap<i64, (Instant, String)> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    while finished.len() < sent_at.len() && Instant::now() < deadline {
        let mut after = 0;
        loop {
            let response = client
                .get(format!(
                    "{api}/products?user_id={user_id}&limit=100&after={after}"
                ))
                .send()
                .await
                .expect("GET /products");
            assert!(
                response.status().is_success(),
                "GET /products answered {}",
                response.status()
            );
            let page: Value = response.json().await.unwrap();
            let now = Instant::now();
            for product in page["items"].as_array().into_iter().flatten() {
                let id = product["product_id"].as_i64().unwrap();
                let status = product["status"].as_str().unwrap_or_default();
                if matches!(status, "done" | "partial" | "failed") && !finished.contains_key(&id) {
                    finished.insert(id, (now, status.to_owned()));
                    done_bar.inc(1);
                }
            }
            match page["next"].as_i64() {
                Some(next) => after = next,
                None => break,
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let total_elapsed = started.elapsed();
    done_bar.finish();

    let mut statuses: HashMap<&str, usize> = HashMap::new();
    for (_, status) in finished.values() {
        *statuses.entry(status.as_str()).or_default() += 1;
    }
    let last_done = finished
        .values()
        .map(|(at, _)| *at)
        .max()
        .unwrap_or_else(Instant::now);
    let pipeline_elapsed = last_done.duration_since(started);
    println!();
    println!(
        "ingest:      {:>8.1} requests/s  ({} products in {:.2} s)",
        created.len() as f64 / ingest_elapsed.as_secs_f64(),
        created.len(),
        ingest_elapsed.as_secs_f64()
    );
    println!(
        "end to end:  {:>8.1} products/s  {:>8.1} images/s  ({} processed in {:.2} s)",
        finished.len() as f64 / pipeline_elapsed.as_secs_f64(),
        (finished.len() * args.images) as f64 / pipeline_elapsed.as_secs_f64(),
        finished.len(),
        pipeline_elapsed.as_secs_f64()
    );
    println!("statuses:    {statuses:?}");
    summary(
        "ingest latency",
        created.iter().map(|(_, _, latency, _)| *latency).collect(),
    );
    let end_to_end = |slow: bool| -> Vec<Duration> {
        created
            .iter()
            .filter(|(_, _, _, is_slow)| *is_slow == slow)
            .filter_map(|(id, sent, _, _)| Some(finished.get(id)?.0.duration_since(*sent)))
            .collect()
    };
    if args.slow == 0 {
        summary("end-to-end latency", end_to_end(false));
    } else {
        summary("end-to-end (good)", end_to_end(false));
        summary("end-to-end (slow)", end_to_end(true));
        let mut slow_statuses: HashMap<&str, usize> = HashMap::new();
        for (id, _, _, slow) in &created {
            if let (true, Some((_, status))) = (*slow, finished.get(id)) {
                *slow_statuses.entry(status.as_str()).or_default() += 1;
            }
        }
        println!("slow:        {slow_statuses:?}");
    }
    if finished.len() < sent_at.len() {
        eprintln!(
            "{} products were not processed within {:?} (total {:.1} s)",
            sent_at.len() - finished.len(),
            Duration::from_secs(args.timeout),
            total_elapsed.as_secs_f64()
        );
        std::process::exit(1);
    }
}
