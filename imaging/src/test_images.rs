//! Generated test images (feature `testkit`), the same for the tests and the benches: a
//! photo-like picture (gradients, soft shapes, sensor-like noise, so it compresses like a photo,
//! not like a flat test card), EXIF orientation tags and embedded ICC profiles.

use crate::pixels::{Layout, Pixels};

/// A deterministic photo-like RGB image: smooth gradients, a soft blob, a ripple and mild
/// noise.
///
/// ```
/// let photo = product_pipeline_imaging::test_images::photo(64, 48);
/// assert_eq!((photo.width, photo.height, photo.data.len()), (64, 48, 64 * 48 * 3));
/// ```
pub fn photo(width: u32, height: u32) -> Pixels {
    let mut data = Vec::with_capacity(width as usize * height as usize * 3);
    let mut seed: u32 = 0x9E37_79B9;
    for y in 0..height {
        for x in 0..width {
            // xorshift32: cheap, deterministic noise.
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

/// A baseline JPEG of [`photo`] at `quality`.
pub fn photo_jpeg(width: u32, height: u32, quality: u8) -> Vec<u8> {
    crate::jpeg::encode(&photo(width, height), quality).expect("encoding a generated photo")
}

/// `jpeg` with an EXIF APP1 segment right after SOI whose orientation tag is `orientation`
/// (1–8), padded as cameras write them (maker notes and the like).
///
/// ```
/// use product_pipeline_imaging::test_images::{photo_jpeg, with_exif_orientation};
///
/// let tagged = with_exif_orientation(&photo_jpeg(16, 8, 80), 6);
/// assert_eq!(&tagged[2..4], &[0xFF, 0xE1]);
/// ```
pub fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    // Big-endian TIFF header, then one IFD with one entry: tag 0x0112, type SHORT, count 1.
    let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes());
    tiff.extend_from_slice(&0x0112u16.to_be_bytes());
    tiff.extend_from_slice(&3u16.to_be_bytes());
    tiff.extend_from_slice(&1u32.to_be_bytes());
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]);
    // No next IFD.
    tiff.extend_from_slice(&0u32.to_be_bytes());
    tiff.extend_from_slice(&[0u8; 600]);
    let mut app1 = vec![0xFF, 0xE1];
    app1.extend_from_slice(&((2 + 6 + tiff.len()) as u16).to_be_bytes());
    app1.extend_from_slice(b"Exif\0\0");
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// `jpeg` with `icc` embedded as cameras and editors do: `ICC_PROFILE` APP2 segments right
/// after SOI, split into chunks of at most 65 519 bytes numbered from 1.
///
/// ```
/// use product_pipeline_imaging::{jpeg::icc_profile, test_images::{photo_jpeg, with_icc_profile}};
///
/// let tagged = with_icc_profile(&photo_jpeg(16, 8, 80), b"a profile");
/// assert_eq!(icc_profile(&tagged).as_deref(), Some(&b"a profile"[..]));
/// ```
pub fn with_icc_profile(jpeg: &[u8], icc: &[u8]) -> Vec<u8> {
    const TAG: &[u8] = b"ICC_PROFILE\0";
    // A segment holds at most 65 533 payload bytes; the tag and two counters take 14.
    let chunks: Vec<&[u8]> = icc.chunks(65_533 - TAG.len() - 2).collect();
    let mut out = jpeg[..2].to_vec();
    for (i, chunk) in chunks.iter().enumerate() {
        out.extend_from_slice(&[0xFF, 0xE2]);
        out.extend_from_slice(&((2 + TAG.len() + 2 + chunk.len()) as u16).to_be_bytes());
        out.extend_from_slice(TAG);
        out.extend_from_slice(&[(i + 1) as u8, chunks.len() as u8]);
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// Peak signal-to-noise ratio in dB between two 8-bit rasters of one size (infinite when they
/// are equal): how the tests and benches judge a faster path against a reference.
///
/// ```
/// use product_pipeline_imaging::test_images::psnr;
/// assert_eq!(psnr(&[10, 20], &[10, 20]), f64::INFINITY);
/// assert!((psnr(&[0; 4], &[1; 4]) - 48.13).abs() < 0.01);
/// ```
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len(), "rasters of one size");
    let mse = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}
