//! Test support: a local HTTP server with scripted responses, and image generators.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use image::{DynamicImage, ImageEncoder, RgbImage, RgbaImage};
use product_pipeline_imaging::ImagingConfig;

/// What the server answers on one path.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Status, content type and body, with `Content-Length`.
    Body {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
    },
    /// 200 with a streamed (chunked) body: no `Content-Length`.
    Chunked { body: Vec<u8> },
    /// 200 with headers and `first` bytes, then the body never continues.
    Stall { first: Vec<u8>, length: u64 },
    /// 200 with `Content-Length`, then `body` in pieces of `piece` bytes, one every `every`.
    Trickle {
        body: Vec<u8>,
        piece: usize,
        every: Duration,
    },
    /// 302 to `location`.
    Redirect { location: String },
    /// The n-th request gets the n-th reply; the last one repeats.
    Sequence(Vec<Reply>),
}

impl Reply {
    pub fn image(content_type: &'static str, body: Vec<u8>) -> Reply {
        Reply::Body {
            status: 200,
            content_type,
            body,
        }
    }

    pub fn status(status: u16) -> Reply {
        Reply::Body {
            status,
            content_type: "text/plain",
            body: format!("status {status}").into_bytes(),
        }
    }

    pub fn redirect(location: impl Into<String>) -> Reply {
        Reply::Redirect {
            location: location.into(),
        }
    }
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Reply>,
    hits: HashMap<String, usize>,
}

/// A server on 127.0.0.1:<random port>, stopped when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    pub async fn start() -> TestServer {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let app = axum::Router::new().fallback(move |req: Request<Body>| {
            let shared = shared.clone();
            async move { respond(&shared, req.uri().path()) }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TestServer { addr, state, task }
    }

    pub fn route(&self, path: &str, reply: Reply) -> &Self {
        self.state
            .lock()
            .unwrap()
            .routes
            .insert(path.to_string(), reply);
        self
    }

    /// `http://127.0.0.1:<port><path>`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://<host>:<port><path>`
    pub fn url_via(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.addr.port())
    }

    pub fn hits(&self, path: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .hits
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

fn respond(state: &Mutex<State>, path: &str) -> Response<Body> {
    let reply = {
        let mut s = state.lock().unwrap();
        let n = {
            let hits = s.hits.entry(path.to_string()).or_insert(0);
            *hits += 1;
            *hits
        };
        match s.routes.get(path) {
            None => return plain(404, "no such route"),
            Some(Reply::Sequence(list)) => list[(n - 1).min(list.len() - 1)].clone(),
            Some(r) => r.clone(),
        }
    };
    build(reply)
}

fn plain(status: u16, text: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(text.to_string()))
        .unwrap()
}

fn build(reply: Reply) -> Response<Body> {
    match reply {
        Reply::Body {
            status,
            content_type,
            body,
        } => Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_LENGTH, body.len())
            .body(Body::from(body))
            .unwrap(),
        Reply::Chunked { body } => {
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                body.chunks(4096).map(|c| Ok(c.to_vec())).collect();
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "image/jpeg")
                .body(Body::from_stream(futures::stream::iter(chunks)))
                .unwrap()
        }
        Reply::Stall { first, length } => {
            use futures::StreamExt;
            let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(first) })
                .chain(futures::stream::pending());
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "image/jpeg")
                .header(header::CONTENT_LENGTH, length)
                .body(Body::from_stream(stream))
                .unwrap()
        }
        Reply::Trickle { body, piece, every } => {
            use futures::StreamExt;
            let pieces: Vec<Vec<u8>> = body.chunks(piece).map(<[u8]>::to_vec).collect();
            let stream = futures::stream::iter(pieces).then(move |piece| async move {
                tokio::time::sleep(every).await;
                Ok::<_, std::io::Error>(piece)
            });
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "image/jpeg")
                .header(header::CONTENT_LENGTH, body.len())
                .body(Body::from_stream(stream))
                .unwrap()
        }
        Reply::Redirect { location } => Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, location)
            .body(Body::empty())
            .unwrap(),
        Reply::Sequence(_) => unreachable!("nested sequences"),
    }
}

/// Config for tests: loopback allowed, short timeouts.
pub fn test_config() -> ImagingConfig {
    ImagingConfig {
        allow_private_hosts: true,
        connect_timeout: Duration::from_secs(2),
        total_timeout: Duration::from_secs(10),
        ..ImagingConfig::default()
    }
}

/// A server that accepts connections and never answers (nor reads); stopped when dropped.
pub struct SilentServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SilentServer {
    pub async fn start() -> SilentServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        SilentServer { addr, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Every file under `dir` (recursively), as paths relative to it.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let e = e.unwrap();
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// PNG of `img`.
pub fn png_of(img: &DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// A two-colour image: left half `left`, right half `right`.
pub fn halves(width: u32, height: u32, left: [u8; 3], right: [u8; 3]) -> RgbImage {
    RgbImage::from_fn(width, height, |x, _| {
        image::Rgb(if x < width / 2 { left } else { right })
    })
}

/// A JPEG of `img` at quality 95 without chroma subsampling (crisp colours for pixel checks).
pub fn jpeg_of(img: &RgbImage) -> Vec<u8> {
    turbojpeg::compress(
        turbojpeg::Image {
            pixels: img.as_raw().as_slice(),
            width: img.width() as usize,
            pitch: img.width() as usize * 3,
            height: img.height() as usize,
            format: turbojpeg::PixelFormat::RGB,
        },
        95,
        turbojpeg::Subsamp::None,
    )
    .unwrap()
    .to_vec()
}

/// A CMYK JPEG (Adobe convention: stored values inverted, 255 = no ink) of two halves:
/// left pure red ink mix (M+Y), right white.
pub fn cmyk_jpeg(width: u32, height: u32) -> Vec<u8> {
    let mut px = Vec::with_capacity((width * height * 4) as usize);
    for _y in 0..height {
        for x in 0..width {
            if x < width / 2 {
                px.extend_from_slice(&[255, 0, 0, 255]); // no cyan, full magenta+yellow, no black
            } else {
                px.extend_from_slice(&[255, 255, 255, 255]); // no ink at all
            }
        }
    }
    let mut c = turbojpeg::Compressor::new().unwrap();
    c.set_quality(95).unwrap();
    c.set_subsamp(turbojpeg::Subsamp::None).unwrap();
    c.compress_to_vec(turbojpeg::Image {
        pixels: px.as_slice(),
        width: width as usize,
        pitch: width as usize * 4,
        height: height as usize,
        format: turbojpeg::PixelFormat::CMYK,
    })
    .unwrap()
}

/// An animated GIF: first frame all `first`, second all `second`.
pub fn animated_gif(size: u32, first: [u8; 3], second: [u8; 3]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = image::codecs::gif::GifEncoder::new(&mut out);
        enc.set_repeat(image::codecs::gif::Repeat::Infinite)
            .unwrap();
        for c in [first, second] {
            let frame = RgbaImage::from_pixel(size, size, image::Rgba([c[0], c[1], c[2], 255]));
            enc.encode_frame(image::Frame::new(frame)).unwrap();
        }
    }
    out
}

/// A lossless WebP of `img`.
pub fn webp_of(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut out)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
}

/// An Adam7-interlaced PNG of `img` (8-bit RGBA, no filtering): neither the `image` crate nor
/// the `png` crate writes one.
pub fn interlaced_png(img: &image::RgbaImage) -> Vec<u8> {
    use std::io::Write;
    const PASSES: [(u32, u32, u32, u32); 7] = [
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    ];
    let (width, height) = img.dimensions();
    let mut raw = Vec::new();
    for (x0, y0, dx, dy) in PASSES {
        if x0 >= width || y0 >= height {
            continue;
        }
        for y in (y0..height).step_by(dy as usize) {
            raw.push(0); // filter type None
            for x in (x0..width).step_by(dx as usize) {
                raw.extend_from_slice(&img.get_pixel(x, y).0);
            }
        }
    }
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    zlib.write_all(&raw).unwrap();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 1]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"IDAT", &zlib.finish().unwrap());
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A valid-looking PNG whose IHDR claims `width`×`height` (RGB, 8 bit) with a tiny IDAT.
pub fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    // zlib stream of a few zero bytes
    png_chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x60, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01],
    );
    png_chunk(&mut out, b"IEND", &[]);
    out
}
