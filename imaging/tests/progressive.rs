//! The progressive-JPEG fast path (`jpeg::decode_scaled`, which decodes the file without the
//! scans `progressive::without_unneeded_scans` drops, block smoothing off) against TurboJPEG's
//! decode of the whole file at the same scale: PSNR ≥ 40 dB at ⅛, ¼ and ½, on the real
//! progressive photos of Debian's `plasma-workspace-wallpapers` and on generated ones.

use product_pipeline_imaging::jpeg::{decode_scaled, read_info};
use product_pipeline_imaging::progressive::without_unneeded_scans;
use product_pipeline_imaging::test_images::psnr;
use turbojpeg::{Decompressor, Image, PixelFormat, ScalingFactor};

/// The JPEG decoded at `scale` to RGB.
fn decode(jpeg: &[u8], scale: ScalingFactor) -> Vec<u8> {
    let mut d = Decompressor::new().unwrap();
    let header = d.read_header(jpeg).unwrap();
    d.set_scaling_factor(scale).unwrap();
    let size = header.scaled(scale);
    let mut pixels = vec![0u8; size.width * size.height * 3];
    d.decompress(
        jpeg,
        Image {
            pixels: pixels.as_mut_slice(),
            width: size.width,
            pitch: size.width * 3,
            height: size.height,
            format: PixelFormat::RGB,
        },
    )
    .unwrap();
    pixels
}

/// Checks the fast path on `jpeg` at every reduced scale.
fn check(name: &str, jpeg: &[u8]) {
    for scale in [
        ScalingFactor::ONE_EIGHTH,
        ScalingFactor::ONE_QUARTER,
        ScalingFactor::ONE_HALF,
    ] {
        let reduced = without_unneeded_scans(jpeg, scale).expect("scans to drop");
        assert!(reduced.len() < jpeg.len());
        let fast = decode_scaled(jpeg, &read_info(jpeg).unwrap(), scale, None).unwrap();
        let quality = psnr(&decode(jpeg, scale), &fast.data);
        eprintln!(
            "{name} at {scale:?}: {} of {} bytes kept, PSNR {quality:.2} dB",
            reduced.len(),
            jpeg.len()
        );
        assert!(quality >= 40.0, "{name} at {scale:?}: PSNR {quality:.2} dB");
    }
    assert_eq!(without_unneeded_scans(jpeg, ScalingFactor::ONE), None);
}

#[test]
fn real_progressive_photos() {
    let photos = [
        "/usr/share/wallpapers/Flow/contents/images/5120x2880.jpg",
        "/usr/share/wallpapers/Volna/contents/images/5120x2880.jpg",
    ];
    for path in photos {
        let Ok(jpeg) = std::fs::read(path) else {
            let _: Option<()> =
                testsupport::missing_service(path, "apt-get install plasma-workspace-wallpapers");
            return;
        };
        check(path, &jpeg);
    }
}

#[test]
fn generated_progressive_photos() {
    for quality in [75, 92] {
        let pixels = product_pipeline_imaging::test_images::photo(2400, 1600);
        let jpeg = product_pipeline_imaging::jpeg::encode_with(&pixels, quality, true).unwrap();
        check(&format!("generated q{quality}"), &jpeg);
    }
}
