//! Output encoding: JPEG through libjpeg-turbo, or lossy WebP (feature `webp`).

use crate::compress::CompressOptions;
use crate::config::OutputFormat;
use crate::error::ImagingError;
use crate::jpeg;
use crate::pixels::{Layout, Pixels};

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
    }
}

#[cfg(feature = "webp")]
fn encode_webp(pixels: &Pixels, quality: u8) -> Result<Vec<u8>, ImagingError> {
    // libwebp takes RGB; expand gray.
    let rgb;
    let data = match pixels.layout {
        Layout::Rgb => &pixels.data,
        Layout::Gray => {
            rgb = pixels
                .data
                .iter()
                .flat_map(|&g| [g, g, g])
                .collect::<Vec<u8>>();
            &rgb
        }
    };
    let encoder = webp::Encoder::from_rgb(data, pixels.width, pixels.height);
    let mem = encoder
        .encode_simple(false, f32::from(quality))
        .map_err(|e| ImagingError::Encode {
            detail: format!("WebP: {e:?}"),
        })?;
    Ok(mem.to_vec())
}

#[cfg(not(feature = "webp"))]
fn encode_webp(_pixels: &Pixels, _quality: u8) -> Result<Vec<u8>, ImagingError> {
    let _ = Layout::Rgb;
    Err(ImagingError::Config {
        setting: "formats",
        reason: "WebP output needs the `webp` feature of the product-pipeline-imaging crate".into(),
    })
}

#[cfg(all(test, feature = "webp"))]
mod tests {
    use super::*;

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
