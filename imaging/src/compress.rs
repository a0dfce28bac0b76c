//! The CPU pipeline for one image: probe → decode once (DCT-scaled for JPEG) → for each
//! rendition, largest first: resize → convert to sRGB → orient → encode in every format,
//! keeping the source when it is a small JPEG that re-encoding would only make bigger.
//! Synchronous; [`Imaging`](crate::Imaging) runs it on the blocking pool.

use std::borrow::Cow;

use crate::colour::ToSrgb;
use crate::config::{ImagingConfig, OutputFormat, ResizeFilter};
use crate::decode::{self, DecodeLimits, Probe};
use crate::encode;
use crate::error::ImagingError;
use crate::format::SourceFormat;
use crate::jpeg;
use crate::pixels::Pixels;
use crate::resize::{fit_within, resize};
use image::metadata::Orientation;

/// Settings of [`compress`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressOptions {
    /// The primary rendition is the largest of `renditions` not above this.
    pub target_size: u32,
    /// Longest sides of the renditions (fit inside, never upscaled).
    pub renditions: Vec<u32>,
    /// Formats each rendition is encoded in.
    pub formats: Vec<OutputFormat>,
    /// JPEG quality 1..=100.
    pub jpeg_quality: u8,
    /// Progressive instead of baseline JPEG.
    pub jpeg_progressive: bool,
    /// WebP quality 1..=100.
    pub webp_quality: u8,
    /// AVIF quality 1..=100.
    pub avif_quality: u8,
    /// AVIF encoder speed 1..=10.
    pub avif_speed: u8,
    /// Resampling filter.
    pub filter: ResizeFilter,
    /// Decode limits.
    pub limits: DecodeLimits,
}

impl CompressOptions {
    /// One JPEG that fits inside `size` × `size`, with the other settings of `self`: the
    /// single rendition the pipeline made before renditions existed.
    pub fn single_jpeg(self, size: u32) -> CompressOptions {
        CompressOptions {
            target_size: size,
            renditions: vec![size],
            formats: vec![OutputFormat::Jpeg],
            ..self
        }
    }
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
            renditions: c.renditions.clone(),
            formats: c.formats.clone(),
            jpeg_quality: c.jpeg_quality,
            jpeg_progressive: c.jpeg_progressive,
            webp_quality: c.webp_quality,
            avif_quality: c.avif_quality,
            avif_speed: c.avif_speed,
            filter: c.filter,
            limits: DecodeLimits {
                max_pixels: c.max_pixels,
                max_side: c.max_side,
                max_alloc: c.max_decode_alloc,
            },
        }
    }
}

/// One encoded rendition of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendition {
    /// Encoded bytes.
    pub data: Vec<u8>,
    /// Their format.
    pub format: OutputFormat,
    /// Width (after orientation).
    pub width: u32,
    /// Height (after orientation).
    pub height: u32,
    /// True when `data` is the source JPEG (metadata stripped, pixels untouched) because
    /// re-encoding would have made it bigger.
    pub kept_source: bool,
}

impl Rendition {
    /// The longer side: what names the rendition in its media key.
    pub fn long_side(&self) -> u32 {
        self.width.max(self.height)
    }
}

/// Every rendition of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compressed {
    /// Largest first; each size in every format of [`CompressOptions::formats`], in that order.
    pub renditions: Vec<Rendition>,
    /// Index in `renditions` of the primary rendition: the largest JPEG not above
    /// [`CompressOptions::target_size`].
    pub primary: usize,
    /// Input format.
    pub source_format: SourceFormat,
    /// Input width as displayed (after orientation).
    pub source_width: u32,
    /// Input height as displayed (after orientation).
    pub source_height: u32,
}

impl Compressed {
    /// The primary rendition.
    pub fn primary(&self) -> &Rendition {
        &self.renditions[self.primary]
    }
}

/// The distinct sizes (stored orientation) of the renditions of a `width`×`height` image,
/// largest first, and the index of the primary one. Sizes larger than the image give the
/// image's size, once.
fn rendition_sizes(width: u32, height: u32, opts: &CompressOptions) -> (Vec<(u32, u32)>, usize) {
    let mut asked = opts.renditions.clone();
    asked.sort_unstable_by(|a, b| b.cmp(a));
    asked.dedup();
    let mut sizes: Vec<(u32, u32)> = Vec::with_capacity(asked.len());
    let mut primary = None;
    for size in asked {
        let fitted = fit_within(width, height, size);
        if sizes.last() != Some(&fitted) {
            sizes.push(fitted);
        }
        if size <= opts.target_size && primary.is_none() {
            primary = Some(sizes.len() - 1);
        }
    }
    // Validation guarantees a size up to the target; without one, the smallest serves.
    let primary = primary.unwrap_or(sizes.len().saturating_sub(1));
    (sizes, primary)
}

/// The long side the decode must keep: the largest rendition's (`sizes` from
/// [`rendition_sizes`]).
fn decode_long_side(sizes: &[(u32, u32)], opts: &CompressOptions) -> u32 {
    sizes.first().map_or(opts.target_size, |&(w, h)| w.max(h))
}

/// Bytes rav1e holds while encoding an AVIF, per byte of the RGB rendition it encodes (its
/// frames, planes and analysis buffers; measured by `tests/memory_needed.rs`).
const AVIF_WORKING_MEMORY: u64 = 12;

/// Bytes libwebp holds while encoding, per byte of the RGB rendition: allocated in C, so the
/// allocation test cannot see them; measured as the growth of the peak RSS of a 2048×1536
/// encode (18.0 MiB for 9 MiB of pixels).
const WEBP_WORKING_MEMORY: u64 = 2;

/// The most memory [`compress`] holds at once for this image, in bytes, read from its header
/// alone (no pixel is decoded): what the worker reserves from its
/// [`MemoryBudget`](crate::budget::MemoryBudget) before decoding. Fails like `compress` on an
/// image that is not one or is over the dimension limits.
///
/// Counted: the decoded pixels and their conversion copy ([`decode::plan`]); for every
/// rendition, kept until the image is done: the resizer's intermediate when it resizes (rows
/// convolved first: output width × decoded height), its pixels, when the image is turned their
/// clone and the turned copy, and the encoded outputs of every format (each at most the size of
/// its pixels); the working memory of the hungriest encoder on the largest rendition (encoders
/// run one at a time); for a JPEG that needs no resizing, the copy without metadata that may be
/// kept instead; for a progressive JPEG decoded scaled down, its copy without the scans that
/// scale does not need ([`progressive`](crate::progressive)).
pub fn memory_needed(bytes: &[u8], opts: &CompressOptions) -> Result<u64, ImagingError> {
    let probe = decode::probe(bytes, &opts.limits)?;
    let (sizes, _) = rendition_sizes(probe.width, probe.height, opts);
    let plan = decode::plan_probed(bytes, &probe, Some(decode_long_side(&sizes, opts)));
    let channels = u64::from(plan.channels);
    let copies = 1
        + opts.formats.len() as u64
        + if probe.orientation == Orientation::NoTransforms {
            0
        } else {
            2
        };
    let output = |&(w, h): &(u32, u32)| u64::from(w) * u64::from(h) * channels;
    let renditions: u64 = sizes
        .iter()
        .map(|size| {
            let intermediate = if *size == (plan.width, plan.height) {
                0
            } else {
                u64::from(size.0) * u64::from(plan.height) * channels
            };
            intermediate + copies * output(size)
        })
        .sum();
    let encoder = opts
        .formats
        .iter()
        .map(|format| match format {
            OutputFormat::Jpeg => 0,
            OutputFormat::WebP => WEBP_WORKING_MEMORY,
            OutputFormat::Avif => AVIF_WORKING_MEMORY,
        })
        .max()
        .unwrap_or(0)
        * sizes.first().map_or(0, output);
    let kept_source = if probe.jpeg.is_some() && sizes.first() == Some(&(probe.width, probe.height))
    {
        bytes.len() as u64
    } else {
        0
    };
    // A progressive JPEG decoded scaled down is decoded from a copy without some of its scans.
    let reduced_copy = match probe.jpeg {
        Some(info) if info.progressive && plan.width < probe.width => bytes.len() as u64,
        _ => 0,
    };
    Ok(plan.peak_bytes + renditions + encoder + kept_source + reduced_copy)
}

/// Compresses one image held in memory into every rendition of `opts`.
///
/// The source is decoded once, at the scale the largest rendition needs. Each smaller rendition
/// is resized from the previous one when that is at least twice its size (so the resampling
/// stays as sharp as from the source), else from the decode.
pub fn compress(bytes: &[u8], opts: &CompressOptions) -> Result<Compressed, ImagingError> {
    let probe = decode::probe(bytes, &opts.limits)?;
    let (sizes, primary_size) = rendition_sizes(probe.width, probe.height, opts);
    let long_side = decode_long_side(&sizes, opts);
    let decoded = decode::decode_probed(bytes, probe, &opts.limits, Some(long_side))?;
    let to_srgb = decoded.icc.as_deref().and_then(ToSrgb::for_rgb);
    let (source_width, source_height) = probe.oriented_dimensions();

    let mut renditions = Vec::with_capacity(sizes.len() * opts.formats.len());
    let mut primary = 0;
    // The previous rendition's pixels: sRGB already, not oriented yet.
    let mut previous: Option<Pixels> = None;
    for (i, &(width, height)) in sizes.iter().enumerate() {
        let pixels = match previous.take() {
            Some(larger) if larger.width.max(larger.height) >= 2 * width.max(height) => {
                resize(&larger, width, height, opts.filter)?
            }
            _ => {
                let mut pixels = resize(&decoded.pixels, width, height, opts.filter)?;
                if let Some(to_srgb) = &to_srgb {
                    to_srgb.apply(&mut pixels);
                }
                pixels
            }
        };
        let shown = if probe.orientation == Orientation::NoTransforms {
            Cow::Borrowed(&pixels)
        } else {
            Cow::Owned(pixels.clone().oriented(probe.orientation))
        };
        for &format in &opts.formats {
            if i == primary_size && format == OutputFormat::Jpeg {
                primary = renditions.len();
            }
            let data = encode::encode(&shown, format, opts)?;
            let full_size = (width, height) == (probe.width, probe.height);
            let rendition = Rendition {
                data,
                format,
                width: shown.width,
                height: shown.height,
                kept_source: false,
            };
            renditions.push(if format == OutputFormat::Jpeg && full_size {
                keep_source_if_smaller(bytes, &probe, rendition, opts, to_srgb.is_some())
            } else {
                rendition
            });
        }
        previous = Some(pixels);
    }
    Ok(Compressed {
        renditions,
        primary,
        source_format: probe.format,
        source_width,
        source_height,
    })
}

/// The source itself instead of `encoded`, a full-size JPEG rendition, when the source is
/// already a browser-friendly JPEG of the scan mode asked for and re-encoding would not shrink
/// it: same pixels, no generation loss. Not when its colours were `converted` to sRGB: stripping
/// its profile would leave them wrong.
fn keep_source_if_smaller(
    bytes: &[u8],
    probe: &Probe,
    encoded: Rendition,
    opts: &CompressOptions,
    converted: bool,
) -> Rendition {
    let Some(info) = probe.jpeg else {
        return encoded;
    };
    let keepable = info.orientation == Orientation::NoTransforms
        && !info.is_cmyk()
        && !info.lossless
        && !info.arithmetic
        && info.progressive == opts.jpeg_progressive
        && !converted;
    match jpeg::strip_metadata(bytes) {
        Some(stripped) if keepable && stripped.len() <= encoded.data.len() => Rendition {
            data: stripped,
            kept_source: true,
            ..encoded
        },
        _ => encoded,
    }
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
        assert!(!is_progressive(&baseline.primary().data));
        let options = CompressOptions {
            jpeg_progressive: true,
            ..CompressOptions::default()
        };
        let progressive = compress(&source, &options).unwrap();
        assert!(is_progressive(&progressive.primary().data));
        let decoded = image::load_from_memory(&progressive.primary().data).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (1024, 768));
    }

    /// A small baseline JPEG is kept as it is by default, but not when progressive output is
    /// asked for: the output is progressive either way.
    #[test]
    fn a_kept_source_has_the_scan_mode_asked_for() {
        let source = test_images::photo_jpeg(300, 200, 60);
        let kept = compress(&source, &CompressOptions::default()).unwrap();
        assert!(kept.primary().kept_source);
        let options = CompressOptions {
            jpeg_progressive: true,
            ..CompressOptions::default()
        };
        let progressive = compress(&source, &options).unwrap();
        assert!(!progressive.primary().kept_source);
        assert!(is_progressive(&progressive.primary().data));
    }
}
