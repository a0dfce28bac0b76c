//! SIMD resizing with `fast_image_resize`, and the fit-inside-a-box arithmetic.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::config::ResizeFilter;
use crate::error::ImagingError;
use crate::pixels::{Layout, Pixels};

/// Dimensions of `width`×`height` scaled to fit inside `target`×`target`, keeping the aspect
/// ratio; never larger than the input (no upscaling), never zero.
pub fn fit_within(width: u32, height: u32, target: u32) -> (u32, u32) {
    let long = width.max(height);
    if long <= target {
        return (width, height);
    }
    let scale = |side: u32| -> u32 {
        let v = (u64::from(side) * u64::from(target) + u64::from(long) / 2) / u64::from(long);
        (v as u32).clamp(1, target)
    };
    if width >= height {
        (target, scale(height))
    } else {
        (scale(width), target)
    }
}

/// `src` resized to exactly `width`×`height` (a copy when it is that size already).
pub fn resize(
    src: &Pixels,
    width: u32,
    height: u32,
    filter: ResizeFilter,
) -> Result<Pixels, ImagingError> {
    if src.width == width && src.height == height {
        return Ok(src.clone());
    }
    let pixel_type = match src.layout {
        Layout::Gray => PixelType::U8,
        Layout::Rgb => PixelType::U8x3,
    };
    let err = |e: &dyn std::fmt::Display| ImagingError::Encode {
        detail: format!("resize: {e}"),
    };
    let src_view =
        ImageRef::new(src.width, src.height, &src.data, pixel_type).map_err(|e| err(&e))?;
    let mut dst = Image::new(width, height, pixel_type);
    let filter = match filter {
        ResizeFilter::Lanczos3 => FilterType::Lanczos3,
        ResizeFilter::CatmullRom => FilterType::CatmullRom,
    };
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(filter));
    Resizer::new()
        .resize(&src_view, &mut dst, &options)
        .map_err(|e| err(&e))?;
    Ok(Pixels {
        width,
        height,
        layout: src.layout,
        data: dst.into_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_without_upscaling() {
        assert_eq!(fit_within(5120, 2880, 1024), (1024, 576));
        assert_eq!(fit_within(2880, 5120, 1024), (576, 1024));
        assert_eq!(fit_within(1000, 1000, 1024), (1000, 1000));
        assert_eq!(fit_within(1, 1, 1024), (1, 1));
        assert_eq!(fit_within(16000, 1, 1024), (1024, 1));
        assert_eq!(fit_within(4000, 3000, 1024), (1024, 768));
    }

    #[test]
    fn resizes_gray_and_rgb() {
        let src = Pixels {
            width: 4,
            height: 4,
            layout: Layout::Rgb,
            data: vec![200; 48],
        };
        let out = resize(&src, 2, 2, ResizeFilter::Lanczos3).unwrap();
        assert_eq!((out.width, out.height, out.data.len()), (2, 2, 12));
        assert!(out.data.iter().all(|&v| v == 200));
        let gray = Pixels {
            width: 3,
            height: 1,
            layout: Layout::Gray,
            data: vec![0, 0, 0],
        };
        let out = resize(&gray, 1, 1, ResizeFilter::CatmullRom).unwrap();
        assert_eq!(out.data, vec![0]);
    }
}
