//! PNG decoding straight into the buffer the SIMD resizer reads: the `png` crate (with its fast
//! inflate) hands over one row at a time, and each row is made opaque 8-bit gray or RGB as it
//! arrives — 16-bit samples rounded to 8 bits, alpha flattened onto white — so no full-size
//! image of the PNG's own layout (RGBA, 16 bits) is ever held, and the pixels are converted
//! while they are still in cache.
//!
//! Every PNG colour type is decoded: palettes, low bit depths and `tRNS` transparency are
//! expanded by the decoder. An Adam7-interlaced PNG cannot be streamed by rows and is decoded
//! whole first. The header (dimensions, colour type, orientation) is read by
//! [`decode::probe`](crate::decode::probe) before anything is allocated.

use std::io::Cursor;

use png::{BitDepth, ColorType, Transformations};

use crate::buffer;
use crate::decode::DecodeLimits;
use crate::error::ImagingError;
use crate::pixels::{flatten_onto_white, Layout, Pixels};

/// Bytes the decode of a `width`×`height` PNG holds at its peak: the output pixels
/// (`channels` bytes each: 1 for gray, 3 for RGB); for an interlaced one also the whole image
/// as the decoder produces it, `samples_per_pixel` samples of `bytes_per_sample` each; and a
/// few rows of that layout.
pub fn peak_bytes(
    width: u32,
    height: u32,
    channels: u8,
    samples_per_pixel: u8,
    bytes_per_sample: u8,
    interlaced: bool,
) -> u64 {
    let pixels = u64::from(width) * u64::from(height);
    let native_row = u64::from(width) * u64::from(samples_per_pixel) * u64::from(bytes_per_sample);
    let native = if interlaced {
        native_row * u64::from(height)
    } else {
        0
    };
    // The decoder's current and previous row (unfiltering), and ours.
    pixels * u64::from(channels) + native + 3 * (native_row + 1)
}

/// Whether the PNG's header says it is Adam7-interlaced (false for bytes that are not a PNG).
pub fn is_interlaced(bytes: &[u8]) -> bool {
    png::Decoder::new(Cursor::new(bytes))
        .read_header_info()
        .is_ok_and(|info| info.interlaced)
}

fn decode_error(e: png::DecodingError) -> ImagingError {
    match e {
        png::DecodingError::LimitsExceeded => ImagingError::Decode {
            detail: "PNG: decoding would exceed the memory limit".into(),
        },
        other => ImagingError::Decode {
            detail: format!("PNG: {other}"),
        },
    }
}

/// Decodes a PNG into opaque gray or RGB pixels and returns its embedded ICC profile (`iCCP`)
/// with them. An animated PNG gives its default image.
pub fn decode(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<(Pixels, Option<Vec<u8>>), ImagingError> {
    let max_alloc = usize::try_from(limits.max_alloc).unwrap_or(usize::MAX);
    let mut decoder =
        png::Decoder::new_with_limits(Cursor::new(bytes), png::Limits { bytes: max_alloc });
    decoder.set_transformations(Transformations::EXPAND);
    decoder.set_ignore_text_chunk(true);
    let mut reader = decoder.read_info().map_err(decode_error)?;
    let info = reader.info();
    let (width, height) = (info.width, info.height);
    let interlaced = info.interlaced;
    let icc = info.icc_profile.as_ref().map(|profile| profile.to_vec());
    let (color, depth) = reader.output_color_type();
    let layout = match color {
        ColorType::Grayscale | ColorType::GrayscaleAlpha => Layout::Gray,
        _ => Layout::Rgb,
    };
    let row_convert = RowConversion {
        layout,
        alpha: matches!(color, ColorType::GrayscaleAlpha | ColorType::Rgba),
        sixteen_bit: depth == BitDepth::Sixteen,
    };
    let overflow = |what: &str| ImagingError::Decode {
        detail: format!("PNG: the {what} size overflows"),
    };
    let out_row = width as usize * layout.channels();
    let mut data =
        buffer::with_capacity(out_row * height as usize).map_err(|_| ImagingError::Decode {
            detail: "PNG: no memory for the decoded pixels".into(),
        })?;
    let native_row = reader
        .output_line_size(width)
        .ok_or_else(|| overflow("row"))?;
    let mut scratch = Vec::new();
    if interlaced {
        // Adam7 passes fill rows out of order: the whole image first, then row by row.
        let size = reader
            .output_buffer_size()
            .ok_or_else(|| overflow("image"))?;
        let mut whole = vec![0; size];
        reader.next_frame(&mut whole).map_err(decode_error)?;
        for row in whole.chunks_exact(native_row) {
            row_convert.append(row, &mut scratch, &mut data);
        }
    } else {
        let mut row = vec![0; native_row];
        while reader.read_row(&mut row).map_err(decode_error)?.is_some() {
            row_convert.append(&row, &mut scratch, &mut data);
        }
    }
    Ok((
        Pixels {
            width,
            height,
            layout,
            data,
        },
        icc,
    ))
}

/// How one decoded row becomes opaque 8-bit samples.
struct RowConversion {
    layout: Layout,
    alpha: bool,
    sixteen_bit: bool,
}

impl RowConversion {
    /// Appends `row` (as the decoder produced it) to `out` converted; `scratch` holds the 8-bit
    /// copy of a 16-bit row.
    fn append(&self, row: &[u8], scratch: &mut Vec<u8>, out: &mut Vec<u8>) {
        let row = if self.sixteen_bit {
            scratch.clear();
            scratch.extend(
                row.chunks_exact(2)
                    .map(|be| to_eight_bits(u16::from_be_bytes([be[0], be[1]]))),
            );
            &scratch[..]
        } else {
            row
        };
        if !self.alpha {
            out.extend_from_slice(row);
            return;
        }
        let start = out.len();
        let colour = self.layout.channels();
        out.resize(start + row.len() / (colour + 1) * colour, 0);
        flatten_onto_white(self.layout, row, &mut out[start..]);
    }
}

/// A 16-bit sample rounded to the nearest 8-bit value (`v / 257`), as the `image` crate does.
fn to_eight_bits(v: u16) -> u8 {
    ((u32::from(v) * 255 + 32_767) / 65_535) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_bits_round_to_the_nearest_eight_bit_value() {
        for v in 0..=u16::MAX {
            let expect = (f64::from(v) / 257.0).round() as u8;
            assert_eq!(to_eight_bits(v), expect, "{v}");
        }
    }
}
