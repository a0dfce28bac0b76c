//! Image servers that are slow on purpose: one that trickles bytes, one that accepts the
//! connection and never answers. Each download keeps a minimum transfer rate after a grace
//! period, the attempts of one image share its fetch budget, and waiting for memory is not
//! counted against either.

mod common;

use std::time::{Duration, Instant};

use common::*;
use product_pipeline_imaging::budget::{MemoryBudget, Phase};
use product_pipeline_imaging::fetch::Fetcher;
use product_pipeline_imaging::media::MediaStore;
use product_pipeline_imaging::test_images::photo_jpeg;
use product_pipeline_imaging::{Imaging, ImagingConfig, ImagingError};

/// Test settings: at least 1 000 bytes/s after the first 500 ms.
fn paced() -> ImagingConfig {
    ImagingConfig {
        min_transfer_rate: 1_000,
        transfer_grace: Duration::from_millis(500),
        ..test_config()
    }
}

fn imaging(config: ImagingConfig, media: &tempfile::TempDir) -> Imaging {
    Imaging::new(config, MediaStore::local(media.path()).unwrap()).unwrap()
}

/// A JPEG served ten bytes a second: far below the minimum rate.
fn trickle(body: Vec<u8>) -> Reply {
    Reply::Trickle {
        body,
        piece: 1,
        every: Duration::from_millis(100),
    }
}

#[tokio::test]
async fn a_trickling_server_is_given_up_after_the_grace_period() {
    let server = TestServer::start().await;
    server.route("/slow.jpg", trickle(photo_jpeg(200, 100, 80)));
    let media = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let error = imaging(paced(), &media)
        .process(7, 0, &server.url("/slow.jpg"))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(error, ImagingError::TooSlow { received, min_rate: 1_000, .. } if received < 100),
        "{error:?}"
    );
    assert!(error.is_transient(), "{error}");
    assert!(
        error.to_string().contains("IMAGE_FETCH_MIN_RATE"),
        "{error}"
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(files_under(media.path()).is_empty());
}

#[tokio::test]
async fn a_silent_server_is_given_up_after_the_grace_period() {
    let server = SilentServer::start().await;
    let media = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let error = imaging(paced(), &media)
        .process(7, 0, &server.url("/never.jpg"))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(error, ImagingError::NoAnswer { after } if after == Duration::from_millis(500)),
        "{error:?}"
    );
    assert!(error.is_transient(), "{error}");
    assert!(error.to_string().contains("IMAGE_FETCH_GRACE"), "{error}");
    // Without the rate it would wait for the 10 s total timeout.
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

/// A download that keeps the minimum rate completes, however long past the grace period.
#[tokio::test]
async fn a_steady_download_longer_than_the_grace_period_completes() {
    let server = TestServer::start().await;
    let jpeg = photo_jpeg(600, 400, 95);
    let pieces = jpeg.len().div_ceil(4_000);
    // 40 000 bytes a second, eight times the minimum.
    server.route(
        "/steady.jpg",
        Reply::Trickle {
            body: jpeg,
            piece: 4_000,
            every: Duration::from_millis(100),
        },
    );
    let config = ImagingConfig {
        min_transfer_rate: 5_000,
        transfer_grace: Duration::from_millis(300),
        ..test_config()
    };
    let media = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let stored = imaging(config, &media)
        .process(7, 0, &server.url("/steady.jpg"))
        .await
        .unwrap();
    assert_eq!((stored.width, stored.height), (600, 400));
    assert!(pieces >= 6, "the download must outlast the grace period");
    assert!(started.elapsed() > Duration::from_millis(600));
}

/// The attempts of one image draw on one budget: the attempt that uses up the rest fails
/// permanently, saying how many attempts there were, and so does every later one, at once.
/// Other images have their own budget.
#[tokio::test]
async fn attempts_of_one_image_share_its_fetch_budget() {
    let server = SilentServer::start().await;
    let url = server.url("/never.jpg");
    let media = tempfile::tempdir().unwrap();
    let imaging = imaging(
        ImagingConfig {
            transfer_grace: Duration::from_secs(1),
            fetch_budget: Duration::from_millis(2_300),
            ..paced()
        },
        &media,
    );
    for attempt in 1..=2 {
        let error = imaging.process(7, 0, &url).await.unwrap_err();
        assert!(
            matches!(error, ImagingError::NoAnswer { .. }),
            "attempt {attempt}: {error:?}"
        );
    }
    // About 300 ms are left: the third attempt stops then, and for good.
    let started = Instant::now();
    let error = imaging.process(7, 0, &url).await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(error, ImagingError::FetchBudgetSpent { attempts: 3, .. }),
        "{error:?}"
    );
    assert!(!error.is_transient(), "{error}");
    let reason = error.to_string();
    assert!(
        reason.contains("IMAGE_FETCH_BUDGET") && reason.contains("IMAGE_FETCH_GRACE"),
        "{reason}"
    );
    assert!(took < Duration::from_millis(900), "took {took:?}");
    // Asked for again (another image of the product kept the message retrying): no request.
    let started = Instant::now();
    let again = imaging.process(7, 0, &url).await.unwrap_err();
    assert!(
        matches!(again, ImagingError::FetchBudgetSpent { attempts: 3, .. }),
        "{again:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(100));
    // Another image of the product has a budget of its own.
    let error = imaging.process(7, 1, &url).await.unwrap_err();
    assert!(matches!(error, ImagingError::NoAnswer { .. }), "{error:?}");
}

/// With no minimum rate, the budget alone bounds a trickle that would outlast the timeout.
#[tokio::test]
async fn the_budget_bounds_a_download_without_a_minimum_rate() {
    let server = TestServer::start().await;
    server.route("/slow.jpg", trickle(photo_jpeg(200, 100, 80)));
    let config = ImagingConfig {
        min_transfer_rate: 0,
        fetch_budget: Duration::from_millis(600),
        ..test_config()
    };
    let media = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let error = imaging(config, &media)
        .process(7, 0, &server.url("/slow.jpg"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ImagingError::FetchBudgetSpent { attempts: 1, .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("after 1 attempt within"),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// A server that has not answered holds no memory; a download waiting for memory is not
/// charged for the wait.
#[tokio::test]
async fn waiting_for_memory_is_not_counted_and_silence_holds_none() {
    let config = ImagingConfig {
        max_bytes: 1 << 20,
        ..paced()
    };
    let fetcher = Fetcher::new(&config).unwrap();
    let memory = MemoryBudget::new(2 << 20);
    let share = memory.share(Phase::Download);

    let silent = SilentServer::start().await;
    let waiting = {
        let (fetcher, memory, url) = (fetcher.clone(), memory.clone(), silent.url("/x.jpg"));
        tokio::spawn(async move {
            let mut time_left = Duration::from_secs(10);
            fetcher.fetch_within(&url, &memory, &mut time_left).await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(memory.available(Phase::Download), share);
    assert!(matches!(
        waiting.await.unwrap(),
        Err(ImagingError::NoAnswer { .. })
    ));

    // All of the download share is taken for 1.5 s, three grace periods.
    let server = TestServer::start().await;
    server.route(
        "/ok.jpg",
        Reply::image("image/jpeg", photo_jpeg(64, 64, 80)),
    );
    let held = memory.reserve(Phase::Download, share).await.unwrap();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        drop(held);
    });
    let mut time_left = Duration::from_secs(10);
    let (fetched, _reservation) = fetcher
        .fetch_within(&server.url("/ok.jpg"), &memory, &mut time_left)
        .await
        .unwrap();
    assert!(!fetched.bytes.is_empty());
    assert!(
        time_left > Duration::from_millis(9_500),
        "the wait for memory was charged: {time_left:?} left"
    );
}
