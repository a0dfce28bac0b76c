//! Shared by the benches: inputs (real wallpapers when installed, generated photos always) and
//! the baseline pipelines we compare against.
#![allow(dead_code)]

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use product_pipeline_imaging::pixels::{Layout, Pixels};
use turbojpeg::{Decompressor, Image, PixelFormat, ScalingFactor};

/// The 5120×2880 JPEG wallpapers of Debian's `plasma-workspace-wallpapers`, when installed.
pub fn wallpapers() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/usr/share/wallpapers") {
        for e in entries.flatten() {
            for sub in ["images", "images_dark"] {
                let p = e.path().join("contents").join(sub).join("5120x2880.jpg");
                if p.is_file() {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

/// A photo-like image: smooth gradients, soft shapes and mild sensor-like noise.
pub fn generated_photo(width: u32, height: u32) -> Pixels {
    let mut data = Vec::with_capacity((width * height * 3) as usize);
    let mut seed: u32 = 0x9E37_79B9;
    for y in 0..height {
        for x in 0..width {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let noise = (seed % 9) as f32 - 4.0;
            let fx = x as f32 / width as f32;
            let fy = y as f32 / height as f32;
            let d = ((fx - 0.6).powi(2) + (fy - 0.4).powi(2)).sqrt();
            let blob = (1.0 - (d * 3.0).min(1.0)) * 90.0;
            let ripple = 18.0 * ((fx * 40.0).sin() * (fy * 25.0).cos());
            let r = 30.0 + 150.0 * fx + blob + ripple;
            let g = 50.0 + 120.0 * fy + blob * 0.6;
            let b = 140.0 - 90.0 * fy + ripple * 0.5;
            for v in [r, g, b] {
                data.push((v + noise).clamp(0.0, 255.0) as u8);
            }
        }
    }
    Pixels {
        width,
        height,
        layout: Layout::Rgb,
        data,
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
                let jpeg =
                    product_pipeline_imaging::jpeg::encode(&generated_photo(w, h), 90).unwrap();
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
