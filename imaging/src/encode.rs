//! Output encoding: JPEG through libjpeg-turbo, lossy WebP through libwebp (feature `webp`),
//! AVIF through rav1e (feature `avif`).

use crate::compress::CompressOptions;
use crate::config::OutputFormat;
use crate::error::ImagingError;
use crate::jpeg;
use crate::pixels::Pixels;

/// Encodes `pixels` as `format`, in the quality and (for JPEG) scan mode of `opts`. Metadata
/// is never written.
pub fn encode(
    pixels: &Pixels,
    format: OutputFormat,
    opts: &CompressOptions,
) -> Result<Vec<u8>, ImagingError> {
    match format {
        OutputFormat::Jpeg => jpeg::encode_with(pixels, opts.jpeg_quality, opts.jpeg_progressive),
        OutputFormat::WebP => encode_webp(pixels, opts.webp_quality),
        OutputFormat::Avif => encode_avif(pixels, opts.avif_quality, opts.avif_speed),
    }
}

/// The setting error for a format this build cannot encode.
#[cfg(any(not(feature = "webp"), not(feature = "avif")))]
fn not_built_in(format: OutputFormat) -> ImagingError {
    ImagingError::Config {
        setting: "formats",
        reason: format.not_built_in(),
    }
}

/// The pixels as RGB, gray expanded (the WebP and AVIF encoders take RGB only).
#[cfg(any(feature = "webp", feature = "avif"))]
fn rgb(pixels: &Pixels) -> std::borrow::Cow<'_, [u8]> {
    use crate::pixels::Layout;
    match pixels.layout {
        Layout::Rgb => std::borrow::Cow::Borrowed(&pixels.data),
        Layout::Gray => pixels.data.iter().flat_map(|&g| [g, g, g]).collect(),
    }
}

#[cfg(feature = "webp")]
fn encode_webp(pixels: &Pixels, quality: u8) -> Result<Vec<u8>, ImagingError> {
    let data = rgb(pixels);
    let encoder = webp::Encoder::from_rgb(&data, pixels.width, pixels.height);
    let mem = encoder
        .encode_simple(false, f32::from(quality))
        .map_err(|e| ImagingError::Encode {
            detail: format!("WebP: {e:?}"),
        })?;
    Ok(mem.to_vec())
}

#[cfg(not(feature = "webp"))]
fn encode_webp(_pixels: &Pixels, _quality: u8) -> Result<Vec<u8>, ImagingError> {
    Err(not_built_in(OutputFormat::WebP))
}

/// 8-bit 4:2:0 AVIF, one thread (the CPU pool runs one job per core already).
#[cfg(feature = "avif")]
fn encode_avif(pixels: &Pixels, quality: u8, speed: u8) -> Result<Vec<u8>, ImagingError> {
    let data = rgb(pixels);
    let (rgb, _) = data.as_chunks::<3>();
    let rgb: Vec<ravif::RGB8> = rgb
        .iter()
        .map(|&[r, g, b]| ravif::RGB8 { r, g, b })
        .collect();
    let image = ravif::Img::new(
        rgb.as_slice(),
        pixels.width as usize,
        pixels.height as usize,
    );
    let encoded = ravif::Encoder::new()
        .with_quality(f32::from(quality))
        .with_speed(speed)
        .with_bit_depth(ravif::BitDepth::Eight)
        .with_num_threads(Some(1))
        .encode_rgb(image)
        .map_err(|e| ImagingError::Encode {
            detail: format!("AVIF: {e}"),
        })?;
    Ok(encoded.avif_file)
}

#[cfg(not(feature = "avif"))]
fn encode_avif(_pixels: &Pixels, _quality: u8, _speed: u8) -> Result<Vec<u8>, ImagingError> {
    Err(not_built_in(OutputFormat::Avif))
}

#[cfg(all(test, feature = "avif"))]
mod avif_tests {
    use super::*;

    #[test]
    fn avif_output_is_an_avif_file() {
        let pixels = crate::test_images::photo(64, 48);
        let out = encode(&pixels, OutputFormat::Avif, &CompressOptions::default()).unwrap();
        assert_eq!(&out[4..12], b"ftypavif", "an AVIF brand");
    }
}

#[cfg(all(test, feature = "webp"))]
mod tests {
    use super::*;
    use crate::pixels::Layout;

    #[test]
    fn webp_output_is_lossy_webp() {
        let pixels = Pixels {
            width: 64,
            height: 48,
            layout: Layout::Rgb,
            data: (0..64 * 48 * 3).map(|i| (i % 251) as u8).collect(),
        };
        let webp = OutputFormat::WebP;
        let options = CompressOptions::default();
        let out = encode(&pixels, webp, &options).unwrap();
        assert_eq!(&out[0..4], b"RIFF");
        assert_eq!(&out[8..16], b"WEBPVP8 ", "lossy bitstream");
        let back = image::load_from_memory(&out).unwrap();
        assert_eq!((back.width(), back.height()), (64, 48));
        let gray = Pixels {
            width: 8,
            height: 8,
            layout: Layout::Gray,
            data: vec![128; 64],
        };
        assert!(encode(&gray, webp, &options).is_ok());
    }
}
