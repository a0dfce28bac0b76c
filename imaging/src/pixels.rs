//! [`Pixels`]: an 8-bit gray or RGB raster, the common currency between decode, resize, orient
//! and encode; and the conversions into it (alpha flattened onto white, CMYK → RGB).

use image::metadata::Orientation;
use image::{DynamicImage, GrayImage, RgbImage};

/// Channel layout of [`Pixels`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One byte per pixel (luma).
    Gray,
    /// Three bytes per pixel, R G B.
    Rgb,
}

impl Layout {
    /// Bytes per pixel.
    pub fn channels(self) -> usize {
        match self {
            Layout::Gray => 1,
            Layout::Rgb => 3,
        }
    }
}

/// A tightly packed 8-bit raster (`data.len() == width * height * channels`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pixels {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Gray or RGB.
    pub layout: Layout,
    /// Row-major pixel bytes.
    pub data: Vec<u8>,
}

impl Pixels {
    /// Converts any decoded image: 16-bit and float are reduced to 8 bits, alpha is flattened
    /// onto white, gray stays gray.
    pub fn from_dynamic(img: DynamicImage) -> Pixels {
        let (width, height) = (img.width(), img.height());
        let has_alpha = img.color().has_alpha();
        let gray = !img.color().has_color();
        match (gray, has_alpha) {
            (true, false) => Pixels {
                width,
                height,
                layout: Layout::Gray,
                data: img.into_luma8().into_raw(),
            },
            (true, true) => {
                let samples = img.into_luma_alpha8().into_raw();
                Pixels::from_alpha_in_place(width, height, Layout::Gray, samples)
            }
            (false, false) => Pixels {
                width,
                height,
                layout: Layout::Rgb,
                data: img.into_rgb8().into_raw(),
            },
            (false, true) => {
                let samples = img.into_rgba8().into_raw();
                Pixels::from_alpha_in_place(width, height, Layout::Rgb, samples)
            }
        }
    }

    /// `layout` pixels from `samples` that follow each pixel's colour with an alpha sample
    /// (gray + alpha, or RGBA), flattened onto white in the same buffer: no second image is
    /// allocated.
    pub fn from_alpha_in_place(
        width: u32,
        height: u32,
        layout: Layout,
        mut samples: Vec<u8>,
    ) -> Pixels {
        let colour = layout.channels();
        let (opaque_row, alpha_row) = (width as usize * colour, width as usize * (colour + 1));
        let mut row = Vec::with_capacity(alpha_row);
        // Row r is written at r * opaque_row, never past where row r + 1 is still to be read.
        for r in 0..height as usize {
            row.clear();
            row.extend_from_slice(&samples[r * alpha_row..(r + 1) * alpha_row]);
            flatten_onto_white(
                layout,
                &row,
                &mut samples[r * opaque_row..(r + 1) * opaque_row],
            );
        }
        samples.truncate(height as usize * opaque_row);
        samples.shrink_to_fit();
        Pixels {
            width,
            height,
            layout,
            data: samples,
        }
    }

    /// Converts CMYK samples as stored in Adobe-style JPEGs (inverted: 255 = no ink) to RGB.
    pub fn from_inverted_cmyk(width: u32, height: u32, cmyk: &[u8]) -> Pixels {
        let mut data = Vec::with_capacity(cmyk.len() / 4 * 3);
        for p in cmyk.chunks_exact(4) {
            let k = u32::from(p[3]);
            data.extend_from_slice(&[
                mul_div255(u32::from(p[0]), k),
                mul_div255(u32::from(p[1]), k),
                mul_div255(u32::from(p[2]), k),
            ]);
        }
        Pixels {
            width,
            height,
            layout: Layout::Rgb,
            data,
        }
    }

    /// Applies an EXIF orientation (rotation/flip); width and height swap for 90° turns.
    pub fn oriented(self, orientation: Orientation) -> Pixels {
        if orientation == Orientation::NoTransforms {
            return self;
        }
        let (w, h) = (self.width, self.height);
        let mut img = match self.layout {
            Layout::Gray => DynamicImage::ImageLuma8(
                GrayImage::from_raw(w, h, self.data).expect("buffer size matches dimensions"),
            ),
            Layout::Rgb => DynamicImage::ImageRgb8(
                RgbImage::from_raw(w, h, self.data).expect("buffer size matches dimensions"),
            ),
        };
        img.apply_orientation(orientation);
        let (width, height) = (img.width(), img.height());
        let data = match img {
            DynamicImage::ImageLuma8(g) => g.into_raw(),
            DynamicImage::ImageRgb8(c) => c.into_raw(),
            other => other.into_rgb8().into_raw(),
        };
        Pixels {
            width,
            height,
            layout: self.layout,
            data,
        }
    }
}

/// `with_alpha`, pixels of `layout`'s colour samples each followed by an alpha sample,
/// composited onto white into `opaque` (`layout`'s samples only).
pub(crate) fn flatten_onto_white(layout: Layout, with_alpha: &[u8], opaque: &mut [u8]) {
    match layout {
        Layout::Gray => flatten_steps::<1, 2>(with_alpha, opaque),
        Layout::Rgb => flatten_steps::<3, 4>(with_alpha, opaque),
    }
}

/// Pixels per step of [`flatten_steps`]: a fixed count lets the compiler vectorize the loops
/// over a step (the channel shuffle of an opaque step, the arithmetic of another).
const STEP: usize = 16;

/// [`flatten_onto_white`] for `C` colour samples (`S = C + 1` with alpha). A step of pixels
/// that are all opaque is only copied.
fn flatten_steps<const C: usize, const S: usize>(pixels: &[u8], opaque: &mut [u8]) {
    let mut steps_in = pixels.chunks_exact(S * STEP);
    let mut steps_out = opaque.chunks_exact_mut(C * STEP);
    for (input, output) in (&mut steps_in).zip(&mut steps_out) {
        let all_opaque = (0..STEP).fold(u8::MAX, |acc, i| acc & input[i * S + C]) == u8::MAX;
        if all_opaque {
            for i in 0..STEP {
                output[i * C..i * C + C].copy_from_slice(&input[i * S..i * S + C]);
            }
        } else {
            for i in 0..STEP {
                let alpha = input[i * S + C];
                for c in 0..C {
                    output[i * C + c] = over_white(input[i * S + c], alpha);
                }
            }
        }
    }
    let rest = steps_out.into_remainder().chunks_exact_mut(C);
    for (output, input) in rest.zip(steps_in.remainder().chunks_exact(S)) {
        for c in 0..C {
            output[c] = over_white(input[c], input[C]);
        }
    }
}

/// `x / 255` rounded to the nearest integer, exact for `x` in `0..=255 * 255`.
fn div255(x: u32) -> u8 {
    let x = x + 128;
    ((x + (x >> 8)) >> 8) as u8
}

fn mul_div255(a: u32, b: u32) -> u8 {
    div255(a * b)
}

/// `c` with alpha `a` composited over white (rounded once).
fn over_white(c: u8, a: u8) -> u8 {
    let a = u32::from(a);
    div255(u32::from(c) * a + 255 * (255 - a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mul_div255_is_exact() {
        for a in 0..=255u32 {
            for b in 0..=255u32 {
                let expect = ((a * b) as f64 / 255.0).round() as u8;
                assert_eq!(mul_div255(a, b), expect, "{a}*{b}");
            }
        }
    }

    #[test]
    fn flattens_alpha_onto_white() {
        assert_eq!(over_white(0, 0), 255);
        assert_eq!(over_white(0, 255), 0);
        assert_eq!(over_white(200, 255), 200);
        assert_eq!(over_white(0, 128), 127);
        let rgba = image::RgbaImage::from_raw(2, 1, vec![255, 0, 0, 128, 10, 20, 30, 0]).unwrap();
        let px = Pixels::from_dynamic(DynamicImage::ImageRgba8(rgba));
        assert_eq!(px.layout, Layout::Rgb);
        assert_eq!(px.data, vec![255, 127, 127, 255, 255, 255]);
    }

    #[test]
    fn gray16_becomes_gray8() {
        let g = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(1, 1, vec![65535u16]).unwrap();
        let px = Pixels::from_dynamic(DynamicImage::ImageLuma16(g));
        assert_eq!((px.layout, px.data), (Layout::Gray, vec![255]));
    }

    #[test]
    fn inverted_cmyk() {
        let px = Pixels::from_inverted_cmyk(2, 1, &[255, 0, 0, 255, 255, 255, 255, 0]);
        assert_eq!(px.data, vec![255, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn orientation_swaps_dimensions() {
        let px = Pixels {
            width: 2,
            height: 1,
            layout: Layout::Gray,
            data: vec![1, 2],
        };
        let r = px.oriented(Orientation::Rotate90);
        assert_eq!((r.width, r.height, r.data), (1, 2, vec![1, 2]));
    }
}
