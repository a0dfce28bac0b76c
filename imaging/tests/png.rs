//! The PNG fast path (`png::decode`: rows made opaque 8-bit as the decoder hands them over)
//! against the full decode by the `image` crate, reduced to 8 bits by it and flattened onto
//! white here in floating point: on the real PNGs of Debian's `plasma-workspace-wallpapers` and
//! on generated PNGs of every colour type, bit depth and interlacing. PSNR ≥ 40 dB is the bar;
//! no sample may differ by more than 1 (a rounding).

mod common;

use common::{interlaced_png, png_of};
use image::{DynamicImage, ImageBuffer, Luma, LumaA, Rgb, Rgba};
use product_pipeline_imaging::compress::{compress, CompressOptions};
use product_pipeline_imaging::decode::DecodeLimits;
use product_pipeline_imaging::pixels::{Layout, Pixels};
use product_pipeline_imaging::test_images::psnr;

/// Decodes `png` both ways and checks they agree.
fn check(name: &str, png: &[u8]) {
    let (ours, _) = product_pipeline_imaging::png::decode(png, &DecodeLimits::default()).unwrap();
    let reference = reference_decode(png);
    assert_eq!(
        (ours.width, ours.height, ours.layout),
        (reference.width, reference.height, reference.layout),
        "{name}"
    );
    let quality = psnr(&ours.data, &reference.data);
    let most = ours
        .data
        .iter()
        .zip(&reference.data)
        .map(|(&a, &b)| a.abs_diff(b))
        .max()
        .unwrap_or(0);
    eprintln!("{name}: PSNR {quality:.2} dB, largest difference {most}");
    assert!(quality >= 40.0, "{name}: PSNR {quality:.2} dB");
    assert!(most <= 1, "{name}: a sample differs by {most}");
}

/// `png` decoded by the `image` crate, its samples rounded to 8 bits by it and alpha
/// composited onto white in floating point.
fn reference_decode(png: &[u8]) -> Pixels {
    let img = image::load_from_memory(png).unwrap();
    let (width, height) = (img.width(), img.height());
    let flatten = |samples: Vec<u8>, colour: usize| -> Vec<u8> {
        samples
            .chunks_exact(colour + 1)
            .flat_map(|p| {
                let alpha = f64::from(p[colour]) / 255.0;
                p[..colour]
                    .iter()
                    .map(move |&c| (f64::from(c) * alpha + 255.0 * (1.0 - alpha)).round() as u8)
            })
            .collect()
    };
    let (layout, data) = match (img.color().has_color(), img.color().has_alpha()) {
        (false, false) => (Layout::Gray, img.into_luma8().into_raw()),
        (false, true) => (Layout::Gray, flatten(img.into_luma_alpha8().into_raw(), 1)),
        (true, false) => (Layout::Rgb, img.into_rgb8().into_raw()),
        (true, true) => (Layout::Rgb, flatten(img.into_rgba8().into_raw(), 3)),
    };
    Pixels {
        width,
        height,
        layout,
        data,
    }
}

#[test]
fn real_pngs() {
    let photos = [
        "Altai/contents/images/5120x2880.png",
        "Altai/contents/images/1080x1920.png",
        "IceCold/contents/images/5120x2880.png",
        "Kay/contents/images/5120x2880.png",
        "MilkyWay/contents/images/5120x2880.png",
        "Patak/contents/images/5120x2880.png",
    ];
    for photo in photos {
        let path = format!("/usr/share/wallpapers/{photo}");
        let Ok(png) = std::fs::read(&path) else {
            let _: Option<()> =
                testsupport::missing_service(&path, "apt-get install plasma-workspace-wallpapers");
            return;
        };
        check(photo, &png);
    }
}

/// A 301×203 RGBA test card: gradients, and an alpha that runs from transparent to opaque.
fn card() -> image::RgbaImage {
    ImageBuffer::from_fn(301, 203, |x, y| {
        Rgba([
            (x * 255 / 300) as u8,
            (y * 255 / 202) as u8,
            ((x + y) % 256) as u8,
            match x % 3 {
                0 => 255,
                1 => (y * 255 / 202) as u8,
                _ => 0,
            },
        ])
    })
}

#[test]
fn every_colour_type_and_depth() {
    let card = DynamicImage::ImageRgba8(card());
    let sixteen = |v: u8| u16::from(v) * 257 - u16::from(v % 7);
    let rgba16 = DynamicImage::ImageRgba16(ImageBuffer::from_fn(301, 203, |x, y| {
        let p = card.as_rgba8().unwrap().get_pixel(x, y).0;
        Rgba(p.map(sixteen))
    }));
    let cases = [
        ("RGB", DynamicImage::ImageRgb8(card.to_rgb8())),
        ("RGBA", card.clone()),
        ("gray", DynamicImage::ImageLuma8(card.to_luma8())),
        (
            "gray + alpha",
            DynamicImage::ImageLumaA8(card.to_luma_alpha8()),
        ),
        ("16-bit RGBA", rgba16.clone()),
        ("16-bit RGB", DynamicImage::ImageRgb16(rgba16.to_rgb16())),
        (
            "16-bit gray",
            DynamicImage::ImageLuma16(ImageBuffer::from_fn(301, 203, |x, y| {
                Luma([(x * 217 + y * 101) as u16])
            })),
        ),
        (
            "16-bit gray + alpha",
            DynamicImage::ImageLumaA16(ImageBuffer::from_fn(301, 203, |x, y| {
                LumaA([(x * 217) as u16, (y * 322) as u16])
            })),
        ),
    ];
    for (name, img) in cases {
        check(name, &png_of(&img));
    }
}

/// A palette PNG of `depth` bits per index, with a `tRNS` chunk when `transparent`.
fn palette_png(depth: png::BitDepth, transparent: bool) -> Vec<u8> {
    let colours = 1u32 << (depth as u8);
    let (width, height) = (97u32, 61u32);
    let palette: Vec<u8> = (0..colours)
        .flat_map(|i| [(i * 37) as u8, (i * 11 + 90) as u8, (i * 5) as u8])
        .collect();
    let per_byte = 8 / depth as u32;
    let row_bytes = width.div_ceil(per_byte);
    let mut data = Vec::new();
    for y in 0..height {
        let mut row = vec![0u8; row_bytes as usize];
        for x in 0..width {
            let index = (x * 3 + y) % colours;
            let shift = 8 - depth as u32 * (x % per_byte + 1);
            row[(x / per_byte) as usize] |= (index << shift) as u8;
        }
        data.extend(row);
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Indexed);
    encoder.set_depth(depth);
    encoder.set_palette(palette);
    if transparent {
        encoder.set_trns(
            (0..colours)
                .map(|i| (i * 255 / (colours - 1)) as u8)
                .collect::<Vec<_>>(),
        );
    }
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&data).unwrap();
    writer.finish().unwrap();
    out
}

#[test]
fn palettes_low_bit_depths_and_transparency() {
    check("8-bit palette", &palette_png(png::BitDepth::Eight, false));
    check(
        "8-bit palette + tRNS",
        &palette_png(png::BitDepth::Eight, true),
    );
    check(
        "4-bit palette + tRNS",
        &palette_png(png::BitDepth::Four, true),
    );
    check("1-bit palette", &palette_png(png::BitDepth::One, false));
    let bilevel = DynamicImage::ImageLuma8(ImageBuffer::from_fn(77, 33, |x, y| {
        Luma([if (x + y) % 3 == 0 { 255 } else { 0 }])
    }));
    let mut one_bit = Vec::new();
    let mut encoder = png::Encoder::new(&mut one_bit, 77, 33);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::One);
    let packed: Vec<u8> = bilevel
        .as_luma8()
        .unwrap()
        .rows()
        .flat_map(|row| {
            let bits: Vec<u8> = row.map(|p| p.0[0] >> 7).collect();
            bits.chunks(8)
                .map(|c| {
                    c.iter()
                        .enumerate()
                        .fold(0u8, |acc, (i, &b)| acc | b << (7 - i))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&packed).unwrap();
    writer.finish().unwrap();
    check("1-bit gray", &one_bit);
}

#[test]
fn adam7_interlaced() {
    let png = interlaced_png(&card());
    assert!(product_pipeline_imaging::png::is_interlaced(&png));
    assert!(!product_pipeline_imaging::png::is_interlaced(&png_of(
        &DynamicImage::ImageRgba8(card())
    )));
    check("interlaced RGBA", &png);
}

/// The decode and the renditions of a PNG come out of `compress` as of any other source.
#[test]
fn compresses_through_the_fast_path() {
    let png = png_of(&DynamicImage::ImageRgb8(ImageBuffer::from_fn(
        1500,
        900,
        |x, y| Rgb([(x / 6) as u8, (y / 4) as u8, 128]),
    )));
    let out = compress(&png, &CompressOptions::default()).unwrap();
    let mut sizes: Vec<_> = out.renditions.iter().map(|r| (r.width, r.height)).collect();
    sizes.dedup();
    assert_eq!(sizes, [(1024, 614), (320, 192)]);
    assert!(out.renditions.iter().all(|r| !r.kept_source));
}

#[test]
fn truncated_image_data_is_an_error() {
    let png = png_of(&DynamicImage::ImageRgb8(ImageBuffer::from_fn(
        200,
        200,
        |x, y| Rgb([(x ^ y) as u8, x as u8, y as u8]),
    )));
    let cut = &png[..png.len() * 2 / 3];
    let error = product_pipeline_imaging::png::decode(cut, &DecodeLimits::default()).unwrap_err();
    assert!(error.to_string().contains("PNG"), "{error}");
}
