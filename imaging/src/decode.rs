//! Decoding with limits: the format is sniffed from magic bytes, the dimensions are read from the
//! header and checked *before* any pixel buffer is allocated, then the image is decoded — JPEG
//! through libjpeg-turbo at a DCT-reduced scale when that is enough for the target size, the
//! other formats through the `image` crate with explicit [`image::Limits`].

use std::io::Cursor;

use image::metadata::Orientation;
use image::{ColorType, DynamicImage, ImageDecoder, ImageReader, Limits};
use turbojpeg::{Colorspace, ScalingFactor};

use crate::error::ImagingError;
use crate::format::{sniff, SourceFormat};
use crate::jpeg::{self, JpegInfo};
use crate::pixels::Pixels;
use crate::png;

/// Decode limits (see [`ImagingConfig`](crate::ImagingConfig)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Most pixels (width × height).
    pub max_pixels: u64,
    /// Most pixels a side.
    pub max_side: u32,
    /// Most bytes one decode may allocate.
    pub max_alloc: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_pixels: 50_000_000,
            max_side: 16_384,
            max_alloc: 512 * 1024 * 1024,
        }
    }
}

impl DecodeLimits {
    /// Refuses dimensions over the limits (and zero-sized images).
    pub fn check(&self, width: u32, height: u32) -> Result<(), ImagingError> {
        if width == 0 || height == 0 {
            return Err(ImagingError::Decode {
                detail: format!("the header says {width}×{height} pixels"),
            });
        }
        if width > self.max_side
            || height > self.max_side
            || u64::from(width) * u64::from(height) > self.max_pixels
        {
            return Err(ImagingError::DimensionsTooLarge {
                width,
                height,
                max_side: self.max_side,
                max_pixels: self.max_pixels,
            });
        }
        Ok(())
    }

    /// The equivalent `image::Limits`.
    pub fn image_limits(&self) -> Limits {
        let mut limits = Limits::default();
        limits.max_image_width = Some(self.max_side);
        limits.max_image_height = Some(self.max_side);
        limits.max_alloc = Some(self.max_alloc);
        limits
    }
}

/// What the header says, before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Sniffed format.
    pub format: SourceFormat,
    /// Stored width (before orientation).
    pub width: u32,
    /// Stored height (before orientation).
    pub height: u32,
    /// EXIF orientation (`NoTransforms` when absent).
    pub orientation: Orientation,
    /// JPEG details, for JPEG sources.
    pub jpeg: Option<JpegInfo>,
    /// For the other formats, the samples their decoder produces (palettes and `tRNS`
    /// transparency expanded).
    pub color: Option<ColorType>,
}

impl Probe {
    /// Dimensions after applying the orientation.
    pub fn oriented_dimensions(&self) -> (u32, u32) {
        if swaps_axes(self.orientation) {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }
}

/// True when the orientation turns the image by 90° or 270°.
pub fn swaps_axes(o: Orientation) -> bool {
    matches!(
        o,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// A decoded image, possibly already reduced (JPEG DCT scaling), not yet oriented.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// Header information of the source.
    pub probe: Probe,
    /// The pixels (gray or RGB, alpha flattened onto white).
    pub pixels: Pixels,
    /// The embedded ICC profile the pixels are still in, to be converted to sRGB
    /// ([`ToSrgb`](crate::colour::ToSrgb)); `None` without one, and for CMYK JPEGs, whose
    /// profile the decode applied already.
    pub icc: Option<Vec<u8>>,
}

fn image_error(e: image::ImageError) -> ImagingError {
    match e {
        image::ImageError::Limits(l) => ImagingError::Decode {
            detail: format!("decoding would exceed the memory limit ({l})"),
        },
        other => ImagingError::Decode {
            detail: other.to_string(),
        },
    }
}

fn image_format(f: SourceFormat) -> image::ImageFormat {
    match f {
        SourceFormat::Jpeg => image::ImageFormat::Jpeg,
        SourceFormat::Png => image::ImageFormat::Png,
        SourceFormat::WebP => image::ImageFormat::WebP,
        SourceFormat::Gif => image::ImageFormat::Gif,
    }
}

fn open_decoder<'a>(
    bytes: &'a [u8],
    format: SourceFormat,
    limits: &DecodeLimits,
) -> Result<impl ImageDecoder + 'a, ImagingError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), image_format(format));
    // Dimensions are checked by us right after the header, with a clearer error; the allocation
    // limit applies from the start.
    let mut header_limits = Limits::default();
    header_limits.max_alloc = Some(limits.max_alloc);
    reader.limits(header_limits);
    reader.into_decoder().map_err(image_error)
}

/// Sniffs the format and reads the dimensions and orientation from the header, refusing images
/// over `limits`. Allocates no pixel buffer.
pub fn probe(bytes: &[u8], limits: &DecodeLimits) -> Result<Probe, ImagingError> {
    let format = sniff(bytes).map_err(|detail| ImagingError::NotAnImage { detail })?;
    let probe = if format == SourceFormat::Jpeg {
        let info = jpeg::read_info(bytes)?;
        Probe {
            format,
            width: info.width,
            height: info.height,
            orientation: info.orientation,
            jpeg: Some(info),
            color: None,
        }
    } else {
        let mut decoder = open_decoder(bytes, format, limits)?;
        let (width, height) = decoder.dimensions();
        let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
        Probe {
            format,
            width,
            height,
            orientation,
            jpeg: None,
            color: Some(decoder.color_type()),
        }
    };
    limits.check(probe.width, probe.height)?;
    Ok(probe)
}

/// What [`decode`] will allocate for an image, read from its header alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodePlan {
    /// Header information of the source.
    pub probe: Probe,
    /// Width of the decoded pixels (after JPEG DCT scaling).
    pub width: u32,
    /// Height of the decoded pixels.
    pub height: u32,
    /// Bytes per pixel of the decoded [`Pixels`]: 1 (gray) or 3 (RGB).
    pub channels: u8,
    /// The most bytes the decode holds at once: the decoder's output; where the pixels are
    /// converted into another buffer (CMYK; 16 bits of formats other than PNG) the converted
    /// copy; for an interlaced PNG the whole image as decoded ([`png::peak_bytes`]); for a
    /// progressive JPEG its coefficients ([`JpegInfo::coefficient_bytes`]).
    pub peak_bytes: u64,
}

/// Plans a [`decode`] with the same `min_long_side`, without decoding.
pub fn plan(
    bytes: &[u8],
    limits: &DecodeLimits,
    min_long_side: Option<u32>,
) -> Result<DecodePlan, ImagingError> {
    Ok(plan_probed(bytes, &probe(bytes, limits)?, min_long_side))
}

/// [`plan`] for an image already probed.
pub fn plan_probed(bytes: &[u8], probe: &Probe, min_long_side: Option<u32>) -> DecodePlan {
    let probe = *probe;
    let (width, height, channels, peak_bytes) = match (probe.jpeg, probe.color) {
        (Some(info), _) => {
            let scale = jpeg_scale(&info, min_long_side);
            let (width, height) = (
                scale.scale(info.width as usize) as u32,
                scale.scale(info.height as usize) as u32,
            );
            let (channels, per_pixel) = match info.colorspace {
                Colorspace::Gray => (1, 1),
                // CMYK is decoded as such, then converted to RGB.
                Colorspace::CMYK | Colorspace::YCCK => (3, 4 + 3),
                _ => (3, 3),
            };
            let pixels = u64::from(width) * u64::from(height) * per_pixel;
            (width, height, channels, pixels + info.coefficient_bytes())
        }
        (None, color) => {
            let color = color.unwrap_or(ColorType::Rgba16);
            let channels = if color.has_color() { 3 } else { 1 };
            let samples = color.channel_count();
            let sample_bytes = color.bytes_per_pixel() / samples;
            let peak = if probe.format == SourceFormat::Png {
                // Rows become 8-bit and opaque as they are decoded.
                png::peak_bytes(
                    probe.width,
                    probe.height,
                    channels,
                    samples,
                    sample_bytes,
                    png::is_interlaced(bytes),
                )
            } else {
                // `Pixels::from_dynamic` converts to 8 bits (a copy unless already 8-bit); alpha
                // is flattened in that buffer.
                let native = u64::from(color.bytes_per_pixel());
                let eight_bit = u64::from(samples);
                let converted = if native == eight_bit { 0 } else { eight_bit };
                u64::from(probe.width) * u64::from(probe.height) * (native + converted)
            };
            (probe.width, probe.height, channels, peak)
        }
    };
    DecodePlan {
        probe,
        width,
        height,
        channels,
        peak_bytes,
    }
}

/// The DCT scale [`decode`] uses for a JPEG: the smallest whose long side is still at least
/// `min_long_side`; full size for lossless JPEGs, which cannot be scaled.
fn jpeg_scale(info: &JpegInfo, min_long_side: Option<u32>) -> ScalingFactor {
    match min_long_side {
        Some(target) if !info.lossless => jpeg::choose_scale(info.width, info.height, target),
        _ => ScalingFactor::ONE,
    }
}

/// Decodes the image. `min_long_side` allows JPEG DCT scaling: the result's long side is then
/// at least that (or the full size); pass `None` for a full-size decode.
pub fn decode(
    bytes: &[u8],
    limits: &DecodeLimits,
    min_long_side: Option<u32>,
) -> Result<Decoded, ImagingError> {
    decode_probed(bytes, probe(bytes, limits)?, limits, min_long_side)
}

/// [`decode`] for an image already probed.
pub fn decode_probed(
    bytes: &[u8],
    probe: Probe,
    limits: &DecodeLimits,
    min_long_side: Option<u32>,
) -> Result<Decoded, ImagingError> {
    let (pixels, icc) = match (probe.jpeg, probe.format) {
        (Some(info), _) => {
            let icc = jpeg::icc_profile(bytes);
            let scale = jpeg_scale(&info, min_long_side);
            let pixels = jpeg::decode_scaled(bytes, &info, scale, icc.as_deref())?;
            (pixels, icc.filter(|_| !info.is_cmyk()))
        }
        (None, SourceFormat::Png) => png::decode(bytes, limits)?,
        (None, format) => {
            let mut decoder = open_decoder(bytes, format, limits)?;
            decoder
                .set_limits(limits.image_limits())
                .map_err(image_error)?;
            let icc = decoder.icc_profile().unwrap_or_else(|error| {
                tracing::warn!(%error, "the image's colour profile is unreadable; ignored");
                None
            });
            // For GIF (and animated WebP) this is the first frame.
            let img = DynamicImage::from_decoder(decoder).map_err(image_error)?;
            (Pixels::from_dynamic(img), icc)
        }
    };
    Ok(Decoded { probe, pixels, icc })
}
