//! The worker's memory budget (`WORKER_MEMORY_BUDGET`): many large images at once stay within
//! it, and an image that could never fit fails with a reason while the others are processed.

use std::process::Stdio;
use std::time::Duration;

use product_pipeline::app::Roles;
use tokio::process::Command;

use crate::support::*;

const MIB: u64 = 1 << 20;

/// An image whose decode needs more than the whole decode share fails (permanently, with the
/// reason), and the product's other images are stored.
pub async fn an_image_over_the_budget_fails_and_the_others_are_processed() {
    let stack = Stack::memory_sqlite().await.unwrap();
    let images = ImageServer::start().await;
    let mut config = stack.config.clone();
    // 2 MiB for downloads, 2 MiB for decodes: a 300×200 image and its renditions (about
    // 1.1 MB) fit, a 1000×1000 decode (3 MB of pixels before any rendition) cannot.
    config.worker_memory_budget = 4 * MIB;
    config.max_image_bytes = MIB;
    let (publisher, subscriber) = stack.broker().await;
    let app = stack
        .start_custom(&config, Roles::ALL, publisher, subscriber)
        .await;
    let user = create_user(&app).await;
    let urls = [
        images.image(300, 200, "small-a"),
        images.image(1000, 1000, "too-big-to-decode"),
        images.image(200, 300, "small-b"),
    ];
    let id = create_product(&app, user, &urls).await;
    let product = wait_final(&app, id, Duration::from_secs(60)).await;
    assert_eq!(product["status"], "partial", "{product}");
    assert_eq!(
        product["compressed_product_images"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "{product}"
    );
    let errors = product["image_errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{product}");
    assert_eq!(errors[0]["index"], 1);
    let reason = errors[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("memory") && reason.contains("WORKER_MEMORY_BUDGET"),
        "{reason}"
    );
    app.stop().await;
}

/// The peak resident memory (`VmHWM`) of process `pid`, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .expect("Linux reports VmHWM");
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

/// The `pipeline` example on its defaults (SQLite, in-memory broker, local media) with a 96 MiB
/// budget, 8 products at once: 40 images of about 8 MB, some 320 MB if they were all held at
/// once. Its peak RSS grows by no more than the budget over what it had after one such
/// product.
pub async fn many_large_images_stay_within_the_budget() {
    const BUDGET: u64 = 96 * MIB;
    let images = ImageServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(example("pipeline"))
        .current_dir(dir.path())
        .env_clear()
        .env("HTTP_ADDR", "127.0.0.1:0")
        .env("ALLOW_PRIVATE_IMAGE_HOSTS", "true")
        .env("WORKER_MEMORY_BUDGET", BUDGET.to_string())
        .env("WORKER_CONCURRENCY", "8")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let app = App::at(&printed_api_base(&mut child).await);
    let user = create_user(&app).await;
    let large = |name: String| images.noise(2400, 1600, &name);

    let warm_up = create_product(
        &app,
        user,
        &[large("warm-0".into()), large("warm-1".into())],
    )
    .await;
    let product = wait_final(&app, warm_up, Duration::from_secs(120)).await;
    assert_eq!(product["status"], "done", "{product}");
    let after_one = peak_rss(pid);

    let mut ids = Vec::new();
    for p in 0..8 {
        let urls: Vec<String> = (0..5).map(|i| large(format!("p{p}-{i}"))).collect();
        ids.push(create_product(&app, user, &urls).await);
    }
    for id in ids {
        let product = wait_final(&app, id, Duration::from_secs(300)).await;
        assert_eq!(product["status"], "done", "{product}");
    }
    let peak = peak_rss(pid);
    let grown = peak.saturating_sub(after_one);
    eprintln!(
        "peak RSS {} MiB after one product, {} MiB after 8 at once (+{} MiB; budget {} MiB)",
        after_one / MIB,
        peak / MIB,
        grown / MIB,
        BUDGET / MIB
    );
    // The budget counts decode buffers pessimistically (encoded outputs as large as their
    // pixels, every copy held to the end), which leaves room for what it does not count: the
    // HTTP client's read buffers and the allocator's own. Measured on 2026-12-04: +43 to
    // +48 MiB, because the worker has freed image buffers returned to the kernel at once
    // (`budget::return_freed_buffers_to_the_kernel`); +106 to +131 MiB without that, glibc
    // keeping them in its per-thread arenas; +175 MiB without the budget (2026-12-01).
    assert!(
        grown <= BUDGET,
        "peak RSS grew by {} MiB, more than the {} MiB budget",
        grown / MIB,
        BUDGET / MIB
    );
}
