//! Output encoding: JPEG through libjpeg-turbo, or lossy WebP (feature `webp`).

use crate::config::OutputFormat;
use crate::error::ImagingError;
use crate::jpeg;
use crate::pixels::{Layout, Pixels};

/// Encodes `pixels` as `format` at `quality` (1..=100). Metadata is never written.
pub fn encode(pixels: &Pixels, format: OutputFormat, quality: u8) -> Result<Vec<u8>, ImagingError> {
    match format {
        OutputFormat::Jpeg => jpeg::encode(pixels, quality),
        OutputFormat::WebP => encode_webp(pixels, quality),
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
        setting: "webp",
        reason: "WebP output needs the `webp` feature of the imaging crate".into(),
    })
}
