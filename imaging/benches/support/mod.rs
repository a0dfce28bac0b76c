//! Shared by the benches: inputs (real wallpapers when installed, generated photos always) and
//! the baseline pipelines we compare against.
#![allow(dead_code)]

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use turbojpeg::{Decompressor, Image, PixelFormat, ScalingFactor};

/// The 5120×2880 JPEG wallpapers of Debian's `plasma-workspace-wallpapers`, when installed
/// (baseline and progressive).
pub fn wallpapers() -> Vec<PathBuf> {
    wallpapers_named("5120x2880.jpg")
}

/// The 5120×2880 PNG wallpapers of the same package.
pub fn wallpaper_pngs() -> Vec<PathBuf> {
    wallpapers_named("5120x2880.png")
}

fn wallpapers_named(file: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/usr/share/wallpapers") {
        for e in entries.flatten() {
            for sub in ["images", "images_dark"] {
                let p = e.path().join("contents").join(sub).join(file);
                if p.is_file() {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

/// The class of an input for per-class totals: `baseline JPEG`, `progressive JPEG`, `PNG`...
pub fn file_class(bytes: &[u8]) -> &'static str {
    let probe = product_pipeline_imaging::decode::probe(bytes, &Default::default())
        .expect("a supported image");
    match (probe.format.name(), probe.jpeg) {
        (_, Some(info)) if info.progressive => "progressive JPEG",
        (_, Some(_)) => "baseline JPEG",
        ("png", _) => "PNG",
        ("webp", _) => "WebP",
        _ => "GIF",
    }
}

/// A short label for an input in tables: a wallpaper's theme and variant
/// (`Kite/images_dark/5120x2880.jpg`), else the file name.
pub fn short_name(path: &Path) -> String {
    let text = path.to_string_lossy();
    match text.strip_prefix("/usr/share/wallpapers/") {
        Some(rest) => rest.replace("/contents/", "/"),
        None => path.file_name().map_or_else(
            || text.to_string(),
            |name| name.to_string_lossy().into_owned(),
        ),
    }
}

/// Writes generated photo JPEGs (12 MP 4000×3000 and 5120×2880, quality 90) into `dir`.
pub fn generated_jpegs(dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    [(4000, 3000), (5120, 2880)]
        .into_iter()
        .map(|(w, h)| {
            let p = dir.join(format!("generated-{w}x{h}.jpg"));
            if !p.exists() {
                let jpeg = product_pipeline_imaging::test_images::photo_jpeg(w, h, 90);
                std::fs::write(&p, jpeg).unwrap();
            }
            p
        })
        .collect()
}

/// Baseline: decode + Lanczos3 + encode with the `image` crate alone, q80.
pub fn image_crate_pipeline(bytes: &[u8], target: u32) -> Vec<u8> {
    let img = image::load_from_memory(bytes).unwrap();
    let small = img.resize(target, target, FilterType::Lanczos3).to_rgb8();
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(Cursor::new(&mut out), 80)
        .encode_image(&small)
        .unwrap();
    out
}

/// The decode floor: for a JPEG [`huffman_floor`]; for the other formats, decoding them in full
/// with the `image` crate (what the pipeline does for them today).
pub fn decode_floor(bytes: &[u8]) -> usize {
    if bytes.starts_with(&[0xFF, 0xD8]) {
        huffman_floor(bytes)
    } else {
        image::load_from_memory(bytes).unwrap().as_bytes().len()
    }
}

/// The floor: Huffman decoding with the smallest DCT (1/8 scale), no resize, no encode.
pub fn huffman_floor(bytes: &[u8]) -> usize {
    let mut d = Decompressor::new().unwrap();
    let h = d.read_header(bytes).unwrap();
    d.set_scaling_factor(ScalingFactor::ONE_EIGHTH).unwrap();
    let s = h.scaled(ScalingFactor::ONE_EIGHTH);
    let mut buf = vec![0u8; s.width * s.height * 3];
    d.decompress(
        bytes,
        Image {
            pixels: buf.as_mut_slice(),
            width: s.width,
            pitch: s.width * 3,
            height: s.height,
            format: PixelFormat::RGB,
        },
    )
    .unwrap();
    buf.len()
}
