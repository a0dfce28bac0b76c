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
        let stride = colour + 1;
        let count = samples.len() / stride;
        // Pixel i is written at i * colour, never past where pixel i + 1 is still to be read.
        for i in 0..count {
            let alpha = samples[i * stride + colour];
            for c in 0..colour {
                samples[i * colour + c] = over_white(samples[i * stride + c], alpha);
            }
        }
        samples.truncate(count * colour);
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

/// `x / 255` rounded to the nearest integer, exact for `x` in `0..=255 * 255`.
fn div255(x: u32) -> u8 {
    let x = x + 128;
    ((x + (x >> 8)) >> 8) as u8
}

fn mul_div255(a: u32, b: u32) -> u8 {
    div255(a * b)
}

/// `c` with alpha `a` composited over white (rounded once).
pub(crate) fn over_white(c: u8, a: u8) -> u8 {
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
