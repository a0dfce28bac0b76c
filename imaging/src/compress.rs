//! The CPU pipeline for one image: probe → decode (DCT-scaled for JPEG) → resize → orient →
//! encode, keeping the source when it is a small JPEG that re-encoding would only make bigger.
//! Synchronous; [`Imaging`](crate::Imaging) runs it on the blocking pool.

use crate::config::{ImagingConfig, OutputFormat, ResizeFilter};
use crate::decode::{self, DecodeLimits};
use crate::encode;
use crate::error::ImagingError;
use crate::format::SourceFormat;
use crate::jpeg;
use crate::resize::{fit_within, resize};
use image::metadata::Orientation;

/// Settings of [`compress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressOptions {
    /// Fit inside `target_size` × `target_size`, never upscale.
    pub target_size: u32,
    /// JPEG quality 1..=100.
    pub jpeg_quality: u8,
    /// Progressive instead of baseline JPEG.
    pub jpeg_progressive: bool,
    /// WebP quality 1..=100.
    pub webp_quality: u8,
    /// Output format.
    pub format: OutputFormat,
    /// Resampling filter.
    pub filter: ResizeFilter,
    /// Decode limits.
    pub limits: DecodeLimits,
}

impl Default for CompressOptions {
    fn default() -> Self {
        CompressOptions::from(&ImagingConfig::default())
    }
}

impl From<&ImagingConfig> for CompressOptions {
    fn from(c: &ImagingConfig) -> Self {
        CompressOptions {
            target_size: c.target_size,
            jpeg_quality: c.jpeg_quality,
            jpeg_progressive: c.jpeg_progressive,
            webp_quality: c.webp_quality,
            format: c.output_format(),
            filter: c.filter,
            limits: DecodeLimits {
                max_pixels: c.max_pixels,
                max_side: c.max_side,
                max_alloc: c.max_decode_alloc,
            },
        }
    }
}

/// A compressed image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compressed {
    /// Encoded bytes.
    pub data: Vec<u8>,
    /// Their format.
    pub format: OutputFormat,
    /// Output width (after orientation).
    pub width: u32,
    /// Output height (after orientation).
    pub height: u32,
    /// Input format.
    pub source_format: SourceFormat,
    /// Input width as displayed (after orientation).
    pub source_width: u32,
    /// Input height as displayed (after orientation).
    pub source_height: u32,
    /// True when `data` is the source JPEG (metadata stripped, pixels untouched) because
    /// re-encoding would have made it bigger.
    pub kept_source: bool,
}

/// The most memory [`compress`] holds at once for this image, in bytes, read from its header
/// alone (no pixel is decoded): what the worker reserves from its
/// [`MemoryBudget`](crate::budget::MemoryBudget) before decoding. Fails like `compress` on an
/// image that is not one or is over the dimension limits.
///
/// Counted: the decoded pixels and their conversion copy ([`decode::plan`]); the resizer's
/// intermediate (rows convolved first: output width × decoded height) and output images; an
/// oriented copy; the encoded output (at most the size of its pixels); for a JPEG that needs no
/// resizing, the copy without metadata that may be kept instead of re-encoding.
pub fn memory_needed(bytes: &[u8], opts: &CompressOptions) -> Result<u64, ImagingError> {
    let plan = decode::plan(bytes, &opts.limits, Some(opts.target_size))?;
    let (fit_w, fit_h) = fit_within(plan.probe.width, plan.probe.height, opts.target_size);
    let channels = u64::from(plan.channels);
    let output = u64::from(fit_w) * u64::from(fit_h) * channels;
    let intermediate = u64::from(fit_w) * u64::from(plan.height) * channels;
    let same_size = (fit_w, fit_h) == (plan.probe.width, plan.probe.height);
    let kept_source = if plan.probe.jpeg.is_some() && same_size {
        bytes.len() as u64
    } else {
        0
    };
    Ok(plan.peak_bytes + intermediate + 3 * output + kept_source)
}

/// Compresses one image held in memory.
pub fn compress(bytes: &[u8], opts: &CompressOptions) -> Result<Compressed, ImagingError> {
    let decoded = decode::decode(bytes, &opts.limits, Some(opts.target_size))?;
    let probe = decoded.probe;
    let (source_width, source_height) = probe.oriented_dimensions();
    // Fit computed on the full-size stored dimensions, so the result does not depend on the DCT
    // scale chosen.
    let (fit_w, fit_h) = fit_within(probe.width, probe.height, opts.target_size);
    let pixels = resize(decoded.pixels, fit_w, fit_h, opts.filter)?;
    let pixels = pixels.oriented(probe.orientation);
    let (width, height) = (pixels.width, pixels.height);

    let data = encode::encode(&pixels, opts)?;

    // Keep the source if it is already a browser-friendly JPEG of the right size and scan mode
    // and would not shrink: same pixels, no generation loss.
    if opts.format == OutputFormat::Jpeg && (fit_w, fit_h) == (probe.width, probe.height) {
        if let Some(info) = probe.jpeg {
            let keepable = info.orientation == Orientation::NoTransforms
                && !info.is_cmyk()
                && !info.lossless
                && !info.arithmetic
                && info.progressive == opts.jpeg_progressive;
            if keepable {
                if let Some(stripped) = jpeg::strip_metadata(bytes) {
                    if stripped.len() <= data.len() {
                        return Ok(Compressed {
                            data: stripped,
                            format: OutputFormat::Jpeg,
                            width,
                            height,
                            source_format: probe.format,
                            source_width,
                            source_height,
                            kept_source: true,
                        });
                    }
                }
            }
        }
    }

    Ok(Compressed {
        data,
        format: opts.format,
        width,
        height,
        source_format: probe.format,
        source_width,
        source_height,
        kept_source: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_images;

    /// Whether `jpeg` has progressive scans, as its header says.
    fn is_progressive(jpeg: &[u8]) -> bool {
        let plan = decode::plan(jpeg, &DecodeLimits::default(), None).unwrap();
        plan.probe.jpeg.expect("a JPEG").progressive
    }

    #[test]
    fn jpeg_progressive_writes_progressive_jpegs_and_baseline_stays_the_default() {
        let source = test_images::photo_jpeg(1600, 1200, 92);
        let baseline = compress(&source, &CompressOptions::default()).unwrap();
        assert!(!is_progressive(&baseline.data));
        let options = CompressOptions {
            jpeg_progressive: true,
            ..CompressOptions::default()
        };
        let progressive = compress(&source, &options).unwrap();
        assert!(is_progressive(&progressive.data));
        let decoded = image::load_from_memory(&progressive.data).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (1024, 768));
    }

    /// A small baseline JPEG is kept as it is by default, but not when progressive output is
    /// asked for: the output is progressive either way.
    #[test]
    fn a_kept_source_has_the_scan_mode_asked_for() {
        let source = test_images::photo_jpeg(300, 200, 60);
        let kept = compress(&source, &CompressOptions::default()).unwrap();
        assert!(kept.kept_source);
        let options = CompressOptions {
            jpeg_progressive: true,
            ..CompressOptions::default()
        };
        let progressive = compress(&source, &options).unwrap();
        assert!(!progressive.kept_source);
        assert!(is_progressive(&progressive.data));
    }
}
