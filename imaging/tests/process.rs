//! End-to-end tests of `Imaging::process` against a local HTTP server serving generated images
//! and every failure case of the issue. Each case checks the outcome, the error class, and that
//! nothing was written on failure.

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::*;
use image::{DynamicImage, GenericImageView, RgbImage, RgbaImage};
use product_pipeline_imaging::media::MediaStore;
use product_pipeline_imaging::test_images::{photo_jpeg, with_exif_orientation};
use product_pipeline_imaging::{Imaging, ImagingConfig, ImagingError, StoredImage};

struct Env {
    server: TestServer,
    media: tempfile::TempDir,
}

impl Env {
    async fn new() -> Env {
        Env {
            server: TestServer::start().await,
            media: tempfile::tempdir().unwrap(),
        }
    }

    fn imaging(&self, config: ImagingConfig) -> Imaging {
        Imaging::new(config, MediaStore::local(self.media.path()).unwrap()).unwrap()
    }

    async fn run(&self, config: ImagingConfig, url: &str) -> Result<StoredImage, ImagingError> {
        self.imaging(config).process(7, 0, url).await
    }

    fn files(&self) -> Vec<String> {
        files_under(self.media.path())
    }

    fn read(&self, stored: &StoredImage) -> Vec<u8> {
        std::fs::read(self.media.path().join(&stored.key)).unwrap()
    }

    /// Asserts failure, its class, and that the media directory holds no file at all.
    fn assert_failed(
        &self,
        result: Result<StoredImage, ImagingError>,
        transient: bool,
    ) -> ImagingError {
        let err = match result {
            Ok(s) => panic!("expected an error, got {s:?}"),
            Err(e) => e,
        };
        assert_eq!(
            err.is_transient(),
            transient,
            "wrong error class for: {err} ({err:?})"
        );
        assert!(!err.to_string().is_empty());
        eprintln!("error (transient={}): {err}", err.is_transient());
        assert_eq!(self.files(), Vec::<String>::new(), "nothing may be written");
        err
    }
}

fn decode(bytes: &[u8]) -> DynamicImage {
    image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg).unwrap()
}

fn assert_close(actual: [u8; 3], expected: [u8; 3], tolerance: u8, what: &str) {
    for i in 0..3 {
        assert!(
            actual[i].abs_diff(expected[i]) <= tolerance,
            "{what}: got {actual:?}, expected {expected:?} ±{tolerance}"
        );
    }
}

fn rgb_at(img: &DynamicImage, x: u32, y: u32) -> [u8; 3] {
    let p = img.get_pixel(x, y);
    [p[0], p[1], p[2]]
}

#[tokio::test]
async fn large_jpeg_is_resized_and_stored() {
    let env = Env::new().await;
    let src = photo_jpeg(2000, 1500, 92);
    env.server
        .route("/photo.jpg", Reply::image("image/jpeg", src.clone()));
    let stored = env
        .run(test_config(), &env.server.url("/photo.jpg"))
        .await
        .unwrap();
    assert_eq!((stored.width, stored.height), (1024, 768));
    assert_eq!(stored.bytes_in, src.len() as u64);
    let name = stored.key.strip_prefix("products/7/0-1024-").unwrap();
    assert_eq!(name.len(), 16 + 4, "{name}");
    assert!(name.ends_with(".jpg"));
    assert!(name[..16].chars().all(|c| c.is_ascii_hexdigit()));
    let out = env.read(&stored);
    assert!((out.len() as u64) < stored.bytes_in);
    assert_eq!(decode(&out).dimensions(), (1024, 768));
    // The default renditions: 1024 and 320, JPEG and WebP each, the primary among them.
    let mut keys: Vec<String> = stored.renditions.iter().map(|r| r.key.clone()).collect();
    let sizes: Vec<(u32, u32, &str)> = stored
        .renditions
        .iter()
        .map(|r| (r.width, r.height, r.format.name()))
        .collect();
    assert_eq!(
        sizes,
        [
            (1024, 768, "jpeg"),
            (1024, 768, "webp"),
            (320, 240, "jpeg"),
            (320, 240, "webp")
        ]
    );
    assert!(keys.contains(&stored.key));
    keys.sort();
    assert_eq!(env.files(), keys);
    for rendition in &stored.renditions {
        let bytes = std::fs::read(env.media.path().join(&rendition.key)).unwrap();
        assert_eq!(bytes.len() as u64, rendition.bytes);
    }
    assert_eq!(
        stored.bytes_out,
        stored.renditions.iter().map(|r| r.bytes).sum::<u64>()
    );

    // Same input again: same deterministic keys, nothing new written.
    let again = env
        .run(test_config(), &env.server.url("/photo.jpg"))
        .await
        .unwrap();
    assert_eq!(again, stored);
    assert_eq!(env.files(), keys);
}

#[tokio::test]
async fn not_found_is_permanent() {
    let env = Env::new().await;
    let err = env.assert_failed(
        env.run(test_config(), &env.server.url("/missing.jpg"))
            .await,
        false,
    );
    assert!(matches!(err, ImagingError::Http { status: 404 }), "{err:?}");
    assert!(err.to_string().contains("404"), "{err}");
}

#[tokio::test]
async fn server_error_is_transient_then_succeeds() {
    let env = Env::new().await;
    let png = png_of(&DynamicImage::ImageRgb8(halves(
        40,
        30,
        [10, 20, 30],
        [200, 100, 50],
    )));
    env.server.route(
        "/flaky.png",
        Reply::Sequence(vec![
            Reply::status(500),
            Reply::image("image/png", png.clone()),
        ]),
    );
    let url = env.server.url("/flaky.png");
    // One call is one attempt: the first reports the 500 as transient, without retrying...
    let err = env.assert_failed(env.run(test_config(), &url).await, true);
    assert!(matches!(err, ImagingError::Http { status: 500 }), "{err:?}");
    assert_eq!(env.server.hits("/flaky.png"), 1);
    // ...and trying again (the worker's retry) succeeds.
    let stored = env.run(test_config(), &url).await.unwrap();
    assert_eq!((stored.width, stored.height), (40, 30));
    assert_eq!(env.server.hits("/flaky.png"), 2);
}

#[tokio::test]
async fn dropped_and_refused_connections_are_transient() {
    let env = Env::new().await;
    // A server that accepts and closes the connection without answering.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let closer = tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            drop(socket);
        }
    });
    let err = env.assert_failed(
        env.run(test_config(), &format!("http://{addr}/x.jpg"))
            .await,
        true,
    );
    assert!(matches!(err, ImagingError::Network { .. }), "{err:?}");
    closer.abort();

    // Nobody listening: connection refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // A presigned URL's signature stays out of the reason (it reaches logs and traces).
    let err = env.assert_failed(
        env.run(
            test_config(),
            &format!("http://127.0.0.1:{port}/x.jpg?X-Amz-Signature=s3cr3t"),
        )
        .await,
        true,
    );
    assert!(matches!(err, ImagingError::Network { .. }), "{err:?}");
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
}

#[tokio::test]
async fn stalled_body_times_out() {
    let env = Env::new().await;
    let jpeg = photo_jpeg(300, 200, 80);
    env.server.route(
        "/stall.jpg",
        Reply::Stall {
            first: jpeg[..100].to_vec(),
            length: jpeg.len() as u64,
        },
    );
    let config = ImagingConfig {
        total_timeout: Duration::from_millis(400),
        ..test_config()
    };
    let started = Instant::now();
    let err = env.assert_failed(env.run(config, &env.server.url("/stall.jpg")).await, true);
    assert!(matches!(err, ImagingError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn body_over_limit_with_content_length() {
    let env = Env::new().await;
    env.server.route(
        "/big.jpg",
        Reply::image("image/jpeg", photo_jpeg(800, 600, 95)),
    );
    let config = ImagingConfig {
        max_bytes: 10_000,
        ..test_config()
    };
    let err = env.assert_failed(env.run(config, &env.server.url("/big.jpg")).await, false);
    assert!(
        matches!(err, ImagingError::TooLarge { size: Some(s), limit: 10_000 } if s > 10_000),
        "{err:?}"
    );
}

#[tokio::test]
async fn body_over_limit_without_content_length() {
    let env = Env::new().await;
    let body = photo_jpeg(800, 600, 95);
    assert!(body.len() > 20_000);
    env.server.route("/big.jpg", Reply::Chunked { body });
    let config = ImagingConfig {
        max_bytes: 10_000,
        ..test_config()
    };
    let err = env.assert_failed(env.run(config, &env.server.url("/big.jpg")).await, false);
    assert!(
        matches!(
            err,
            ImagingError::TooLarge {
                size: None,
                limit: 10_000
            }
        ),
        "{err:?}"
    );
    // Under the limit, a chunked body is fine.
    let small = photo_jpeg(64, 48, 80);
    env.server
        .route("/small.jpg", Reply::Chunked { body: small });
    let stored = env
        .run(test_config(), &env.server.url("/small.jpg"))
        .await
        .unwrap();
    assert_eq!((stored.width, stored.height), (64, 48));
}

fn redirect_chain(server: &TestServer, prefix: &str, length: usize, image: Vec<u8>) -> String {
    for i in (1..=length).rev() {
        server.route(
            &format!("/{prefix}{i}"),
            Reply::redirect(format!("/{prefix}{}", i - 1)),
        );
    }
    server.route(&format!("/{prefix}0"), Reply::image("image/jpeg", image));
    server.url(&format!("/{prefix}{length}"))
}

#[tokio::test]
async fn redirect_chain_of_six_is_refused_five_is_fine() {
    let env = Env::new().await;
    let img = photo_jpeg(120, 80, 85);
    let six = redirect_chain(&env.server, "a", 6, img.clone());
    let err = env.assert_failed(env.run(test_config(), &six).await, false);
    assert!(
        matches!(err, ImagingError::TooManyRedirects { max: 5 }),
        "{err:?}"
    );
    assert_eq!(
        env.server.hits("/a0"),
        0,
        "the 6th redirect must not be followed"
    );

    let five = redirect_chain(&env.server, "b", 5, img);
    let stored = env.run(test_config(), &five).await.unwrap();
    assert_eq!((stored.width, stored.height), (120, 80));
}

/// Config that refuses private addresses, but lets the test reach its loopback server under the
/// allow-listed name `images.test`; `internal.test` also maps to loopback but is not allowed.
fn no_private_config() -> ImagingConfig {
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    let mut config = ImagingConfig {
        allow_private_hosts: false,
        private_host_allowlist: vec!["images.test".into()],
        ..test_config()
    };
    config
        .static_hosts
        .insert("images.test".into(), vec![loopback]);
    config
        .static_hosts
        .insert("internal.test".into(), vec![loopback]);
    config
}

#[tokio::test]
async fn private_addresses_are_refused_at_connect_time() {
    let env = Env::new().await;
    let img = photo_jpeg(100, 100, 85);
    env.server
        .route("/secret.jpg", Reply::image("image/jpeg", img.clone()));
    env.server
        .route("/public.jpg", Reply::image("image/jpeg", img));
    let s = &env.server;
    s.route("/to-literal", Reply::redirect(s.url("/secret.jpg")));
    s.route(
        "/to-name",
        Reply::redirect(s.url_via("internal.test", "/secret.jpg")),
    );
    s.route(
        "/to-localhost",
        Reply::redirect(s.url_via("localhost", "/secret.jpg")),
    );
    s.route(
        "/to-v6",
        Reply::redirect(format!("http://[::1]:{}/secret.jpg", s.addr.port())),
    );
    s.route(
        "/to-mapped",
        Reply::redirect(format!(
            "http://[::ffff:127.0.0.1]:{}/secret.jpg",
            s.addr.port()
        )),
    );

    // The allow-listed name works (sanity check of the setup).
    let ok = env
        .run(
            no_private_config(),
            &s.url_via("images.test", "/public.jpg"),
        )
        .await
        .unwrap();
    assert_eq!((ok.width, ok.height), (100, 100));
    std::fs::remove_dir_all(env.media.path().join("products")).unwrap();

    // Direct loopback: literal IPv4, literal IPv6, a name resolving to loopback.
    for url in [
        s.url("/secret.jpg"),
        format!("http://[::1]:{}/secret.jpg", s.addr.port()),
        s.url_via("internal.test", "/secret.jpg"),
        s.url_via("localhost", "/secret.jpg"),
        // Numeric spellings of 127.0.0.1 that URL parsing turns into IPv4 literals.
        s.url_via("2130706433", "/secret.jpg"),
        s.url_via("0x7f.1", "/secret.jpg"),
        s.url_via("0.0.0.0", "/secret.jpg"),
    ] {
        let err = env.assert_failed(env.run(no_private_config(), &url).await, false);
        assert!(
            matches!(err, ImagingError::BlockedAddress { .. }),
            "{url}: {err:?}"
        );
        assert!(err.to_string().contains("public"), "{err}");
    }

    // Redirects from the allowed host to loopback, by IP literal (checked by the redirect
    // policy: reqwest skips the resolver for literals) and by name (checked by the resolver).
    for path in [
        "/to-literal",
        "/to-name",
        "/to-localhost",
        "/to-v6",
        "/to-mapped",
    ] {
        let err = env.assert_failed(
            env.run(no_private_config(), &s.url_via("images.test", path))
                .await,
            false,
        );
        assert!(
            matches!(err, ImagingError::BlockedAddress { .. }),
            "{path}: {err:?}"
        );
        assert_eq!(s.hits(path), 1, "{path} was requested");
    }
    assert_eq!(
        s.hits("/secret.jpg"),
        0,
        "no request may reach a refused address"
    );

    // Control: the same redirect is followed when private addresses are allowed, so the
    // refusals above come from the address checks.
    let stored = env
        .run(test_config(), &s.url_via("localhost", "/to-literal"))
        .await
        .unwrap();
    assert_eq!((stored.width, stored.height), (100, 100));
    assert_eq!(s.hits("/secret.jpg"), 1);
}

#[tokio::test]
async fn metadata_address_is_refused_without_connecting() {
    let env = Env::new().await;
    let config = ImagingConfig {
        connect_timeout: Duration::from_secs(30),
        total_timeout: Duration::from_secs(60),
        ..no_private_config()
    };
    let started = Instant::now();
    let err = env.assert_failed(
        env.run(config, "http://169.254.169.254/latest/meta-data/")
            .await,
        false,
    );
    assert!(
        matches!(err, ImagingError::BlockedAddress { kind, .. } if kind.contains("link-local")),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn non_http_schemes_are_refused() {
    let env = Env::new().await;
    for url in [
        "file:///etc/passwd",
        "ftp://example.com/image.jpg",
        "gopher://example.com/",
    ] {
        let err = env.assert_failed(env.run(test_config(), url).await, false);
        assert!(
            matches!(err, ImagingError::UnsupportedScheme { .. }),
            "{url}: {err:?}"
        );
    }
    let err = env.assert_failed(env.run(test_config(), "not a url").await, false);
    assert!(matches!(err, ImagingError::InvalidUrl { .. }), "{err:?}");

    // A redirect to file:// is not followed either.
    env.server
        .route("/to-file", Reply::redirect("file:///etc/passwd"));
    env.assert_failed(
        env.run(test_config(), &env.server.url("/to-file")).await,
        false,
    );
}

#[tokio::test]
async fn wrong_content_type_still_works_and_html_is_not_an_image() {
    let env = Env::new().await;
    let png = png_of(&DynamicImage::ImageRgb8(halves(50, 20, [0; 3], [255; 3])));
    env.server
        .route("/image.html", Reply::image("text/html", png));
    let stored = env
        .run(test_config(), &env.server.url("/image.html"))
        .await
        .unwrap();
    assert_eq!((stored.width, stored.height), (50, 20));
    std::fs::remove_dir_all(env.media.path().join("products")).unwrap();

    env.server.route(
        "/page.jpg",
        Reply::image("image/jpeg", b"<!doctype html><html>nope</html>".to_vec()),
    );
    let err = env.assert_failed(
        env.run(test_config(), &env.server.url("/page.jpg")).await,
        false,
    );
    assert!(matches!(err, ImagingError::NotAnImage { .. }), "{err:?}");
    assert!(err.to_string().contains("HTML"), "{err}");
}

#[tokio::test]
async fn truncated_jpeg_is_permanent() {
    let env = Env::new().await;
    let full = photo_jpeg(640, 480, 90);
    env.server.route(
        "/cut.jpg",
        Reply::image("image/jpeg", full[..full.len() * 6 / 10].to_vec()),
    );
    let err = env.assert_failed(
        env.run(test_config(), &env.server.url("/cut.jpg")).await,
        false,
    );
    assert!(matches!(err, ImagingError::Decode { .. }), "{err:?}");
}

#[tokio::test]
async fn huge_png_header_is_refused_before_decoding() {
    let env = Env::new().await;
    env.server.route(
        "/huge.png",
        Reply::image("image/png", png_claiming(100_000, 100_000)),
    );
    let err = env.assert_failed(
        env.run(test_config(), &env.server.url("/huge.png")).await,
        false,
    );
    assert!(
        matches!(
            err,
            ImagingError::DimensionsTooLarge {
                width: 100_000,
                height: 100_000,
                ..
            }
        ),
        "{err:?}"
    );
    // Within the side limit but over 50 MP.
    env.server.route(
        "/wide.png",
        Reply::image("image/png", png_claiming(10_000, 6_000)),
    );
    let err = env.assert_failed(
        env.run(test_config(), &env.server.url("/wide.png")).await,
        false,
    );
    assert!(
        matches!(err, ImagingError::DimensionsTooLarge { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn cmyk_jpeg_is_converted_to_rgb() {
    let env = Env::new().await;
    let src = cmyk_jpeg(64, 32);
    let info = product_pipeline_imaging::jpeg::read_info(&src).unwrap();
    assert!(info.is_cmyk(), "{info:?}");
    env.server
        .route("/cmyk.jpg", Reply::image("image/jpeg", src));
    let stored = env
        .run(test_config(), &env.server.url("/cmyk.jpg"))
        .await
        .unwrap();
    assert_eq!((stored.width, stored.height), (64, 32));
    let out = env.read(&stored);
    let out_info = product_pipeline_imaging::jpeg::read_info(&out).unwrap();
    assert!(!out_info.is_cmyk(), "output must be RGB: {out_info:?}");
    let img = decode(&out);
    assert_close(rgb_at(&img, 8, 16), [255, 0, 0], 40, "red half");
    assert_close(rgb_at(&img, 56, 16), [255, 255, 255], 12, "white half");
}

#[tokio::test]
async fn exif_orientation_is_applied() {
    let env = Env::new().await;
    // 64×32, left half red, right half blue, EXIF says "rotate 90° clockwise".
    let src = with_exif_orientation(&jpeg_of(&halves(64, 32, [255, 0, 0], [0, 0, 255])), 6);
    env.server
        .route("/rot.jpg", Reply::image("image/jpeg", src));
    let stored = env
        .run(test_config(), &env.server.url("/rot.jpg"))
        .await
        .unwrap();
    assert_eq!((stored.width, stored.height), (32, 64), "dimensions swap");
    let out = env.read(&stored);
    assert_eq!(product_pipeline_imaging::jpeg::exif_orientation(&out), None);
    let img = decode(&out);
    assert_eq!(img.dimensions(), (32, 64));
    // After a clockwise turn the left (red) half is on top.
    assert_close(rgb_at(&img, 16, 8), [255, 0, 0], 40, "top");
    assert_close(rgb_at(&img, 16, 56), [0, 0, 255], 40, "bottom");

    // Also through the resize path: a large rotated photo fits 1024 on its (new) long side.
    let big = with_exif_orientation(&photo_jpeg(2400, 1200, 85), 8);
    env.server
        .route("/rot-big.jpg", Reply::image("image/jpeg", big));
    let stored = env
        .run(test_config(), &env.server.url("/rot-big.jpg"))
        .await
        .unwrap();
    assert_eq!((stored.width, stored.height), (512, 1024));
}

#[tokio::test]
async fn png_alpha_is_flattened_onto_white() {
    let env = Env::new().await;
    // Left half fully transparent black, right half opaque green; a half-transparent red strip.
    let img = RgbaImage::from_fn(64, 64, |x, y| {
        if y >= 56 {
            image::Rgba([255, 0, 0, 128])
        } else if x < 32 {
            image::Rgba([0, 0, 0, 0])
        } else {
            image::Rgba([0, 200, 0, 255])
        }
    });
    env.server.route(
        "/alpha.png",
        Reply::image("image/png", png_of(&DynamicImage::ImageRgba8(img))),
    );
    let stored = env
        .run(test_config(), &env.server.url("/alpha.png"))
        .await
        .unwrap();
    let out = decode(&env.read(&stored));
    assert_close(
        rgb_at(&out, 8, 20),
        [255, 255, 255],
        6,
        "transparent → white",
    );
    assert_close(rgb_at(&out, 50, 20), [0, 200, 0], 20, "opaque green");
    assert_close(
        rgb_at(&out, 8, 61),
        [255, 128, 128],
        24,
        "half red over white",
    );
}

#[tokio::test]
async fn animated_gif_uses_first_frame() {
    let env = Env::new().await;
    env.server.route(
        "/anim.gif",
        Reply::image("image/gif", animated_gif(48, [220, 30, 30], [30, 30, 220])),
    );
    let stored = env
        .run(test_config(), &env.server.url("/anim.gif"))
        .await
        .unwrap();
    assert_eq!((stored.width, stored.height), (48, 48));
    let out = decode(&env.read(&stored));
    assert_close(
        rgb_at(&out, 24, 24),
        [220, 30, 30],
        24,
        "first frame colour",
    );
}

#[tokio::test]
async fn one_pixel_image() {
    let env = Env::new().await;
    let png = png_of(&DynamicImage::ImageRgb8(RgbImage::from_pixel(
        1,
        1,
        image::Rgb([12, 200, 90]),
    )));
    env.server.route("/dot.png", Reply::image("image/png", png));
    let stored = env
        .run(test_config(), &env.server.url("/dot.png"))
        .await
        .unwrap();
    assert_eq!((stored.width, stored.height), (1, 1));
    let out = decode(&env.read(&stored));
    assert_close(rgb_at(&out, 0, 0), [12, 200, 90], 16, "the pixel");
}

#[tokio::test]
async fn small_jpeg_never_grows() {
    let env = Env::new().await;
    // A low-quality JPEG within bounds, with EXIF: re-encoding at q80 would be bigger.
    let plain = photo_jpeg(300, 200, 30);
    let src = with_exif_orientation(&plain, 1);
    env.server
        .route("/small.jpg", Reply::image("image/jpeg", src.clone()));
    let stored = env
        .run(test_config(), &env.server.url("/small.jpg"))
        .await
        .unwrap();
    assert_eq!((stored.width, stored.height), (300, 200));
    let out = env.read(&stored);
    assert!(
        out.len() as u64 <= stored.bytes_in,
        "{} > {}",
        out.len(),
        stored.bytes_in
    );
    // Same pixels as the source (no generation loss), metadata gone.
    assert_eq!(out, plain, "the source minus its EXIF segment is kept");
    // Sanity: a q80 re-encode really would have been bigger.
    let reencoded = product_pipeline_imaging::jpeg::encode(
        &product_pipeline_imaging::decode::decode(&src, &Default::default(), None)
            .unwrap()
            .pixels,
        80,
    )
    .unwrap();
    assert!(reencoded.len() > out.len());
}

#[tokio::test]
async fn grayscale_sixteen_bit_and_webp_inputs() {
    let env = Env::new().await;
    let gray16 = image::ImageBuffer::<image::Luma<u16>, _>::from_fn(40, 30, |x, _| {
        image::Luma([(x * 1600) as u16])
    });
    env.server.route(
        "/g16.png",
        Reply::image("image/png", png_of(&DynamicImage::ImageLuma16(gray16))),
    );
    let stored = env
        .run(test_config(), &env.server.url("/g16.png"))
        .await
        .unwrap();
    assert_eq!((stored.width, stored.height), (40, 30));
    let out = env.read(&stored);
    assert_eq!(
        product_pipeline_imaging::jpeg::read_info(&out)
            .unwrap()
            .colorspace,
        turbojpeg::Colorspace::Gray,
        "gray stays gray"
    );

    let rgb16 = image::ImageBuffer::<image::Rgba<u16>, _>::from_pixel(
        20,
        20,
        image::Rgba([65535, 0, 0, 65535]),
    );
    env.server.route(
        "/rgba16.png",
        Reply::image("image/png", png_of(&DynamicImage::ImageRgba16(rgb16))),
    );
    let stored = env
        .run(test_config(), &env.server.url("/rgba16.png"))
        .await
        .unwrap();
    let out = decode(&env.read(&stored));
    assert_close(rgb_at(&out, 10, 10), [255, 0, 0], 30, "16-bit red");

    let webp = webp_of(&halves(2048, 100, [0, 0, 0], [255, 255, 255]));
    env.server
        .route("/wide.webp", Reply::image("image/webp", webp));
    let stored = env
        .run(test_config(), &env.server.url("/wide.webp"))
        .await
        .unwrap();
    assert_eq!((stored.width, stored.height), (1024, 50));
}

#[tokio::test]
async fn concurrent_jobs_share_the_cpu_pool() {
    let env = Env::new().await;
    env.server.route(
        "/p.jpg",
        Reply::image("image/jpeg", photo_jpeg(1600, 1200, 85)),
    );
    let imaging = env.imaging(ImagingConfig {
        max_concurrent_jobs: Some(1),
        ..test_config()
    });
    let url = env.server.url("/p.jpg");
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let imaging = imaging.clone();
            let url = url.clone();
            tokio::spawn(async move { imaging.process(9, i, &url).await })
        })
        .collect();
    for t in tasks {
        let stored = t.await.unwrap().unwrap();
        assert_eq!((stored.width, stored.height), (1024, 768));
    }
    // Four renditions each by default: 320 and 1024, JPEG and WebP.
    assert_eq!(env.files().len(), 6 * 4);
    assert!(env
        .files()
        .iter()
        .all(|f| f.starts_with("products/9/") && !f.contains(".tmp-")));
}

#[tokio::test]
async fn invalid_config_names_the_setting() {
    let err = Imaging::new(
        ImagingConfig {
            jpeg_quality: 0,
            ..ImagingConfig::default()
        },
        MediaStore::in_memory(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("jpeg_quality"), "{err}");
}
