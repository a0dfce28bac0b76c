//! libjpeg-turbo (through the `turbojpeg` crate): header reading, DCT-scaled decoding, encoding,
//! and the small amount of JPEG marker parsing we need (EXIF orientation, ICC profile, metadata
//! stripping).

use image::metadata::Orientation;
use turbojpeg::{Colorspace, Compressor, Decompressor, Image, PixelFormat, ScalingFactor, Subsamp};

use crate::colour;
use crate::error::ImagingError;
use crate::libjpeg::{self, Decoded};
use crate::pixels::{Layout, Pixels};

/// What the JPEG header says, read without decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JpegInfo {
    /// Width in pixels (before orientation).
    pub width: u32,
    /// Height in pixels (before orientation).
    pub height: u32,
    /// Stored color space.
    pub colorspace: Colorspace,
    /// Lossless JPEG (cannot be DCT-scaled).
    pub lossless: bool,
    /// Arithmetic coding (poorly supported by browsers).
    pub arithmetic: bool,
    /// EXIF orientation, `NoTransforms` when absent.
    pub orientation: Orientation,
    /// Progressive JPEG (decoded from coefficients of the whole image).
    pub progressive: bool,
    /// Chroma subsampling.
    pub subsamp: Subsamp,
    /// An Adobe (APP14) marker is present: CMYK samples are stored inverted (255 = no ink).
    pub adobe: bool,
}

impl JpegInfo {
    /// Bytes of DCT coefficients libjpeg-turbo holds at once while decoding: for a progressive
    /// JPEG those of the whole image at full size, whatever the DCT scale (2 bytes each, one per
    /// pixel of each component at its sampling, blocks padded to 16 pixels); a baseline JPEG is
    /// decoded a few rows at a time, so 0.
    pub fn coefficient_bytes(&self) -> u64 {
        if !self.progressive {
            return 0;
        }
        // Per pixel, in quarter bytes: 2 bytes of luma plus the chroma planes' share.
        let quarters: u64 = match (self.is_cmyk(), self.subsamp) {
            (true, _) => 4 * 8,
            (false, Subsamp::Gray) => 4 * 2,
            (false, Subsamp::Sub2x2 | Subsamp::Sub4x1) => 4 * 3,
            (false, Subsamp::Sub2x1 | Subsamp::Sub1x2) => 4 * 4,
            (false, _) => 4 * 6,
        };
        let padded = |side: u32| u64::from(side).div_ceil(16) * 16;
        padded(self.width) * padded(self.height) * quarters / 4
    }

    /// True for CMYK and YCCK images.
    pub fn is_cmyk(&self) -> bool {
        matches!(self.colorspace, Colorspace::CMYK | Colorspace::YCCK)
    }
}

fn decode_error(e: impl std::fmt::Display) -> ImagingError {
    ImagingError::Decode {
        detail: format!("JPEG: {e}"),
    }
}

/// Reads the header and the EXIF orientation.
pub fn read_info(data: &[u8]) -> Result<JpegInfo, ImagingError> {
    let mut dec = Decompressor::new().map_err(decode_error)?;
    let h = dec.read_header(data).map_err(decode_error)?;
    Ok(JpegInfo {
        width: h.width as u32,
        height: h.height as u32,
        colorspace: h.colorspace,
        lossless: h.is_lossless,
        arithmetic: h.is_arithmetic,
        orientation: exif_orientation(data).unwrap_or(Orientation::NoTransforms),
        progressive: h.is_progressive,
        subsamp: h.subsamp,
        adobe: has_adobe_marker(data),
    })
}

/// The largest DCT reduction (1/8, 1/4, 1/2 or none) that keeps the long side at least `target`.
pub fn choose_scale(width: u32, height: u32, target: u32) -> ScalingFactor {
    let long = width.max(height) as usize;
    for factor in [
        ScalingFactor::ONE_EIGHTH,
        ScalingFactor::ONE_QUARTER,
        ScalingFactor::ONE_HALF,
    ] {
        if factor.scale(long) >= target as usize {
            return factor;
        }
    }
    ScalingFactor::ONE
}

/// Decodes at `scale` into gray or RGB pixels. CMYK/YCCK are converted to sRGB through `icc`,
/// the image's colour profile, when it is a CMYK one, and naively otherwise (see
/// [`colour`]).
///
/// A truncated file is an error; recoverable corruption warnings ("Corrupt JPEG data: extraneous
/// bytes") are logged and the decoded pixels kept, as browsers do.
pub fn decode_scaled(
    data: &[u8],
    info: &JpegInfo,
    scale: ScalingFactor,
    icc: Option<&[u8]>,
) -> Result<Pixels, ImagingError> {
    let scale = if info.lossless {
        ScalingFactor::ONE
    } else {
        scale
    };
    // A progressive JPEG without the scans this scale does not need decodes faster.
    let reduced = if info.progressive {
        crate::progressive::without_unneeded_scans(data, scale)
    } else {
        None
    };
    let data = reduced.as_deref().unwrap_or(data);
    let width = scale.scale(info.width as usize);
    let height = scale.scale(info.height as usize);
    let channels: u8 = match info.colorspace {
        Colorspace::Gray => 1,
        Colorspace::CMYK | Colorspace::YCCK => 4,
        _ => 3,
    };
    let mut buf = vec![0u8; width * height * usize::from(channels)];
    // libjpeg's API rather than TurboJPEG's, for block smoothing off (see `libjpeg`).
    let decoded = libjpeg::decode_unsmoothed(data, scale, channels, width, height, &mut buf);
    if let Decoded::Warned(warning) = decoded.map_err(decode_error)? {
        let lower = warning.to_ascii_lowercase();
        if lower.contains("premature end") {
            return Err(ImagingError::Decode {
                detail: "JPEG data ends early (truncated file)".into(),
            });
        }
        if !lower.contains("corrupt jpeg data") {
            return Err(decode_error(warning));
        }
        tracing::warn!(%warning, "JPEG decoded with warnings");
    }
    let (w, h) = (width as u32, height as u32);
    Ok(match channels {
        1 => Pixels {
            width: w,
            height: h,
            layout: Layout::Gray,
            data: buf,
        },
        4 => icc
            .and_then(|icc| colour::cmyk_to_srgb(icc, w, h, &buf, info.adobe))
            .unwrap_or_else(|| Pixels::from_inverted_cmyk(w, h, &buf)),
        _ => Pixels {
            width: w,
            height: h,
            layout: Layout::Rgb,
            data: buf,
        },
    })
}

/// Encodes with libjpeg-turbo: baseline, 4:2:0 (gray stays gray), optimized Huffman tables,
/// no metadata.
pub fn encode(pixels: &Pixels, quality: u8) -> Result<Vec<u8>, ImagingError> {
    encode_with(pixels, quality, false)
}

/// Like [`encode`], as a progressive JPEG when `progressive` (scans of growing detail, which a
/// browser shows coarse first; a little smaller than baseline for photos, slower to encode and
/// decode).
pub fn encode_with(
    pixels: &Pixels,
    quality: u8,
    progressive: bool,
) -> Result<Vec<u8>, ImagingError> {
    let enc_err = |e: turbojpeg::Error| ImagingError::Encode {
        detail: format!("JPEG: {e}"),
    };
    let mut c = Compressor::new().map_err(enc_err)?;
    c.set_quality(i32::from(quality)).map_err(enc_err)?;
    let (format, subsamp) = match pixels.layout {
        Layout::Gray => (PixelFormat::GRAY, Subsamp::Gray),
        Layout::Rgb => (PixelFormat::RGB, Subsamp::Sub2x2),
    };
    c.set_subsamp(subsamp).map_err(enc_err)?;
    c.set_optimize(true).map_err(enc_err)?;
    c.set_progressive(progressive).map_err(enc_err)?;
    let width = pixels.width as usize;
    c.compress_to_vec(Image {
        pixels: pixels.data.as_slice(),
        width,
        pitch: width * pixels.layout.channels(),
        height: pixels.height as usize,
        format,
    })
    .map_err(enc_err)
}

/// Walks the marker segments before the first SOS. Returns each `(marker, start, end)` span
/// (from the 0xFF of the marker to the end of its payload) and the offset where parsing stopped
/// (the SOS marker for a well-formed file).
fn segment_spans(data: &[u8]) -> (Vec<(u8, usize, usize)>, usize) {
    let mut spans = Vec::new();
    let mut pos = 2; // after SOI
    loop {
        // Skip fill bytes.
        while pos + 1 < data.len() && data[pos] == 0xFF && data[pos + 1] == 0xFF {
            pos += 1;
        }
        if pos + 4 > data.len() || data[pos] != 0xFF {
            break;
        }
        let marker = data[pos + 1];
        if marker == 0xDA || marker == 0xD9 {
            break; // start of scan / end of image
        }
        let len = usize::from(u16::from_be_bytes([data[pos + 2], data[pos + 3]]));
        if len < 2 || pos + 2 + len > data.len() {
            break;
        }
        spans.push((marker, pos, pos + 2 + len));
        pos += 2 + len;
    }
    (spans, pos)
}

/// The orientation stored in the JPEG's EXIF (APP1) segment, if any.
pub fn exif_orientation(data: &[u8]) -> Option<Orientation> {
    let (spans, _) = segment_spans(data);
    spans
        .into_iter()
        .filter(|(m, _, _)| *m == 0xE1)
        .find_map(|(_, start, end)| {
            data[start + 4..end]
                .strip_prefix(b"Exif\0\0")
                .and_then(Orientation::from_exif_chunk)
        })
}

/// Whether the JPEG has an Adobe (APP14) segment.
fn has_adobe_marker(data: &[u8]) -> bool {
    let (spans, _) = segment_spans(data);
    spans
        .into_iter()
        .any(|(m, start, end)| m == 0xEE && data[start + 4..end].starts_with(b"Adobe"))
}

/// The embedded ICC profile: the payloads of the `ICC_PROFILE` APP2 segments joined in their
/// sequence order. `None` when there is none or its chunks are incomplete.
pub fn icc_profile(data: &[u8]) -> Option<Vec<u8>> {
    const TAG: &[u8] = b"ICC_PROFILE\0";
    let (spans, _) = segment_spans(data);
    let mut chunks: Vec<(u8, &[u8])> = spans
        .into_iter()
        .filter(|(m, _, _)| *m == 0xE2)
        .filter_map(|(_, start, end)| {
            let payload = data[start + 4..end].strip_prefix(TAG)?;
            match payload {
                [sequence, _count, chunk @ ..] => Some((*sequence, chunk)),
                _ => None,
            }
        })
        .collect();
    if chunks.is_empty() {
        return None;
    }
    chunks.sort_by_key(|(sequence, _)| *sequence);
    // Sequence numbers run 1..=count without gaps; anything else is a damaged profile.
    let complete = chunks
        .iter()
        .enumerate()
        .all(|(i, (sequence, _))| usize::from(*sequence) == i + 1);
    complete.then(|| {
        chunks
            .into_iter()
            .flat_map(|(_, chunk)| chunk)
            .copied()
            .collect()
    })
}

/// A copy of the JPEG without metadata segments (EXIF/XMP/ICC/IPTC APPn and comments).
/// JFIF (APP0) and Adobe (APP14, needed for color transforms) are kept. Entropy-coded data is
/// copied unchanged, so this is lossless. Returns `None` if the marker structure is not understood.
pub fn strip_metadata(data: &[u8]) -> Option<Vec<u8>> {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let (spans, stop) = segment_spans(data);
    let rest = &data[stop..];
    if rest.len() < 2 || rest[0] != 0xFF || rest[1] != 0xDA {
        return None;
    }
    let mut out = Vec::with_capacity(data.len());
    out.extend_from_slice(&data[..2]);
    for (marker, start, end) in spans {
        if !matches!(marker, 0xE1..=0xED | 0xEF | 0xFE) {
            out.extend_from_slice(&data[start..end]);
        }
    }
    out.extend_from_slice(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_keeps_long_side_at_least_target() {
        assert_eq!(choose_scale(5120, 2880, 1024), ScalingFactor::ONE_QUARTER);
        assert_eq!(choose_scale(4000, 3000, 1024), ScalingFactor::ONE_HALF);
        assert_eq!(choose_scale(8192, 100, 1024), ScalingFactor::ONE_EIGHTH);
        assert_eq!(choose_scale(1500, 1000, 1024), ScalingFactor::ONE);
        assert_eq!(choose_scale(800, 600, 1024), ScalingFactor::ONE);
        assert_eq!(choose_scale(2048, 2048, 1024), ScalingFactor::ONE_HALF);
    }

    fn sample_jpeg() -> Vec<u8> {
        let px: Vec<u8> = (0..16 * 8 * 3).map(|i| (i * 7 % 256) as u8).collect();
        encode(
            &Pixels {
                width: 16,
                height: 8,
                layout: Layout::Rgb,
                data: px,
            },
            80,
        )
        .unwrap()
    }

    #[test]
    fn reads_and_strips_exif() {
        let plain = sample_jpeg();
        assert_eq!(exif_orientation(&plain), None);
        let tagged = crate::test_images::with_exif_orientation(&plain, 6);
        assert_eq!(exif_orientation(&tagged), Some(Orientation::Rotate90));
        let stripped = strip_metadata(&tagged).unwrap();
        assert_eq!(exif_orientation(&stripped), None);
        assert!(stripped.len() < tagged.len());
        // Same pixels.
        let info = read_info(&stripped).unwrap();
        let a = decode_scaled(&plain, &info, ScalingFactor::ONE, None).unwrap();
        let b = decode_scaled(&stripped, &info, ScalingFactor::ONE, None).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn reads_an_icc_profile_split_over_segments() {
        let plain = sample_jpeg();
        assert_eq!(icc_profile(&plain), None);
        let profile: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
        let tagged = crate::test_images::with_icc_profile(&plain, &profile);
        assert_eq!(icc_profile(&tagged), Some(profile));
        assert_eq!(icc_profile(&strip_metadata(&tagged).unwrap()), None);
    }
}
