//! Renditions: every configured size of every image, fitted inside and never upscaled, in every
//! configured format; the primary one is the largest JPEG not above the target size; WebP
//! outputs decode with an independent decoder (`dwebp`, Debian's `webp`).

use std::path::Path;
use std::process::Command;

use product_pipeline_imaging::compress::{compress, CompressOptions, Compressed};
use product_pipeline_imaging::test_images::{photo_jpeg, with_exif_orientation};
use product_pipeline_imaging::OutputFormat;

fn options(renditions: &[u32], formats: &[OutputFormat]) -> CompressOptions {
    CompressOptions {
        renditions: renditions.to_vec(),
        formats: formats.to_vec(),
        ..CompressOptions::default()
    }
}

/// `(width, height, format)` of each rendition, in order.
fn shapes(compressed: &Compressed) -> Vec<(u32, u32, &'static str)> {
    compressed
        .renditions
        .iter()
        .map(|r| (r.width, r.height, r.format.name()))
        .collect()
}

/// The dimensions a rendition decodes to, with a decoder other than the one that wrote it:
/// `image` for JPEG, `dwebp` for WebP, `avifdec` (Debian's `libavif-bin`, dav1d or libaom) for
/// AVIF.
fn decoded_size(data: &[u8], format: OutputFormat) -> Option<(u32, u32)> {
    match format {
        OutputFormat::Jpeg => {
            let img = image::load_from_memory_with_format(data, image::ImageFormat::Jpeg).unwrap();
            Some((img.width(), img.height()))
        }
        OutputFormat::WebP => decoded_by("dwebp", "webp", data, format, |input, output| {
            vec!["-quiet".into(), input.into(), "-o".into(), output.into()]
        }),
        OutputFormat::Avif => {
            decoded_by("avifdec", "libavif-bin", data, format, |input, output| {
                vec![input.into(), output.into()]
            })
        }
    }
}

/// The dimensions `program` (from the Debian `package`) decodes `data` to: it is run with
/// `args(input, output)` and writes a PNG.
fn decoded_by(
    program: &str,
    package: &str,
    data: &[u8],
    format: OutputFormat,
    args: impl FnOnce(&Path, &Path) -> Vec<std::ffi::OsString>,
) -> Option<(u32, u32)> {
    let program_path = testsupport::program(program, package)?;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join(format!("in.{}", format.extension()));
    let output = dir.path().join("out.png");
    std::fs::write(&input, data).unwrap();
    let status = Command::new(program_path)
        .args(args(&input, &output))
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{program} could not decode the {format}");
    let img = image::open(&output).unwrap();
    Some((img.width(), img.height()))
}

/// Every rendition decodes to the size it claims.
fn assert_all_decode(compressed: &Compressed) {
    for rendition in &compressed.renditions {
        if let Some(size) = decoded_size(&rendition.data, rendition.format) {
            assert_eq!(
                size,
                (rendition.width, rendition.height),
                "{}",
                rendition.format
            );
        }
    }
}

#[test]
fn the_default_renditions_are_320_and_1024_in_jpeg_and_webp() {
    let compressed = compress(&photo_jpeg(2000, 1500, 90), &CompressOptions::default()).unwrap();
    assert_eq!(
        shapes(&compressed),
        [
            (1024, 768, "jpeg"),
            (1024, 768, "webp"),
            (320, 240, "jpeg"),
            (320, 240, "webp"),
        ]
    );
    assert_eq!(compressed.primary, 0);
    let webp = &compressed.renditions[1].data;
    assert_eq!(&webp[8..16], b"WEBPVP8 ", "lossy WebP");
    assert_all_decode(&compressed);
}

/// Sizes larger than the source give the source size once; the largest size not above the
/// target (1024) is the primary one, even when it is the source size.
#[test]
fn sizes_are_never_upscaled_nor_duplicated() {
    let opts = options(&[320, 640, 1024, 2048], &[OutputFormat::Jpeg]);
    let compressed = compress(&photo_jpeg(900, 600, 90), &opts).unwrap();
    assert_eq!(
        shapes(&compressed),
        [(900, 600, "jpeg"), (640, 427, "jpeg"), (320, 213, "jpeg")]
    );
    assert_eq!(compressed.primary, 0);

    let large = compress(&photo_jpeg(3000, 2000, 90), &opts).unwrap();
    assert_eq!(
        shapes(&large),
        [
            (2048, 1365, "jpeg"),
            (1024, 683, "jpeg"),
            (640, 427, "jpeg"),
            (320, 213, "jpeg"),
        ]
    );
    assert_eq!(large.primary().width, 1024, "the largest not above 1024");
    assert_all_decode(&large);
}

/// With no size up to the target among them, the primary is still a JPEG: the smallest one
/// (configurations that allow this are refused by `ImagingConfig::validate`).
#[test]
fn the_primary_is_the_largest_jpeg_not_above_the_target() {
    let opts = CompressOptions {
        target_size: 700,
        ..options(&[2048, 640, 320], &[OutputFormat::WebP, OutputFormat::Jpeg])
    };
    let compressed = compress(&photo_jpeg(3000, 2000, 90), &opts).unwrap();
    let primary = compressed.primary();
    assert_eq!((primary.width, primary.format), (640, OutputFormat::Jpeg));
}

#[test]
fn portrait_and_exif_rotated_sources_keep_their_aspect() {
    let opts = options(&[320, 1024], &[OutputFormat::Jpeg, OutputFormat::WebP]);
    let portrait = compress(&photo_jpeg(1200, 1600, 90), &opts).unwrap();
    assert_eq!(
        shapes(&portrait),
        [
            (768, 1024, "jpeg"),
            (768, 1024, "webp"),
            (240, 320, "jpeg"),
            (240, 320, "webp"),
        ]
    );
    // Stored landscape, shown portrait (EXIF 6: turn 90° clockwise).
    let rotated = with_exif_orientation(&photo_jpeg(1600, 1200, 90), 6);
    let compressed = compress(&rotated, &opts).unwrap();
    assert_eq!(shapes(&compressed), shapes(&portrait));
    assert_eq!(
        (compressed.source_width, compressed.source_height),
        (1200, 1600)
    );
    assert_all_decode(&compressed);
    // Extreme aspect ratios keep at least a pixel.
    let strip = compress(
        &photo_jpeg(4000, 40, 90),
        &options(&[320], &[OutputFormat::Jpeg]),
    )
    .unwrap();
    assert_eq!(shapes(&strip), [(320, 3, "jpeg")]);
}

/// The same source gives the same bytes every time: keys hash them, so a re-run writes
/// nothing new.
#[test]
fn renditions_are_deterministic() {
    let source = photo_jpeg(1600, 1200, 90);
    let opts = CompressOptions::default();
    assert_eq!(
        compress(&source, &opts).unwrap(),
        compress(&source, &opts).unwrap()
    );
}

/// A smaller rendition made from a larger one looks like one made from the source.
#[test]
fn smaller_renditions_keep_their_quality() {
    let source = photo_jpeg(2400, 1800, 92);
    let chained = compress(&source, &options(&[320, 1024], &[OutputFormat::Jpeg])).unwrap();
    let direct = compress(&source, &options(&[320], &[OutputFormat::Jpeg])).unwrap();
    let decode = |data: &[u8]| image::load_from_memory(data).unwrap().to_rgb8().into_raw();
    let (a, b) = (
        decode(&chained.renditions[1].data),
        decode(&direct.renditions[0].data),
    );
    let psnr = product_pipeline_imaging::test_images::psnr(&a, &b);
    assert!(psnr >= 35.0, "PSNR {psnr:.1} dB");
}

/// AVIF renditions (feature `avif`) decode with an independent decoder to their sizes.
#[cfg(feature = "avif")]
#[test]
fn avif_renditions_decode() {
    let opts = options(&[320, 1024], &[OutputFormat::Jpeg, OutputFormat::Avif]);
    let compressed = compress(&photo_jpeg(1600, 1200, 90), &opts).unwrap();
    assert_eq!(
        shapes(&compressed),
        [
            (1024, 768, "jpeg"),
            (1024, 768, "avif"),
            (320, 240, "jpeg"),
            (320, 240, "avif"),
        ]
    );
    assert_all_decode(&compressed);
}
