//! libjpeg's own decompression API, for the one setting TurboJPEG's does not reach: block
//! smoothing, which is off here (see `csrc/jpeg_decode.c`, built by `build.rs` against the
//! libjpeg-turbo that `turbojpeg-sys` builds and links).

use std::ffi::{c_char, c_int, c_uint, c_ulong, CStr};

use turbojpeg::ScalingFactor;

/// `PP_JPEG_MESSAGE_LEN` in `csrc/jpeg_decode.c` (libjpeg's `JMSG_LENGTH_MAX`).
const MESSAGE_LEN: usize = 200;

extern "C" {
    fn pp_jpeg_decode_unsmoothed(
        data: *const u8,
        size: c_ulong,
        scale_denom: c_uint,
        components: c_int,
        out: *mut u8,
        pitch: usize,
        width: c_uint,
        height: c_uint,
        message: *mut c_char,
    ) -> c_int;
}

/// How a decode that produced pixels went.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// No warnings.
    Clean,
    /// libjpeg warned (the first warning's text): data it skipped, or a premature end whose
    /// missing part it filled in.
    Warned(String),
}

/// Decodes `jpeg` at `scale` (1/1, 1/2, 1/4 or 1/8) into `out`, `width` × `height` pixels of
/// `components` samples (1 gray, 3 RGB, 4 CMYK), rows packed, without block smoothing.
///
/// `Err` holds libjpeg's message, or says that the decoded size is not `width` × `height`.
pub fn decode_unsmoothed(
    jpeg: &[u8],
    scale: ScalingFactor,
    components: u8,
    width: usize,
    height: usize,
    out: &mut [u8],
) -> Result<Decoded, String> {
    let pitch = width * usize::from(components);
    if scale.num() != 1 || ![1, 2, 4, 8].contains(&scale.denom()) {
        return Err(format!("unsupported DCT scale {scale:?}"));
    }
    if out.len() != pitch * height {
        return Err(format!(
            "an output buffer of {} bytes for {width}x{height}x{components}",
            out.len()
        ));
    }
    let (Ok(w), Ok(h), Ok(size)) = (
        c_uint::try_from(width),
        c_uint::try_from(height),
        c_ulong::try_from(jpeg.len()),
    ) else {
        return Err(format!(
            "{width}x{height} or {} bytes is too large",
            jpeg.len()
        ));
    };
    let mut message = [0 as c_char; MESSAGE_LEN];
    // SAFETY: `jpeg` is readable for `size` bytes; `out` holds exactly `height` rows of `pitch`
    // bytes and the C side writes only after checking the decoded size is `w` × `h` with
    // `components` samples; `message` has the C side's `PP_JPEG_MESSAGE_LEN` bytes. Nothing is
    // kept after the call returns.
    let status = unsafe {
        pp_jpeg_decode_unsmoothed(
            jpeg.as_ptr(),
            size,
            scale.denom() as c_uint,
            c_int::from(components),
            out.as_mut_ptr(),
            pitch,
            w,
            h,
            message.as_mut_ptr(),
        )
    };
    // SAFETY: the C side always leaves a NUL-terminated string (at worst empty) in `message`.
    let text = unsafe { CStr::from_ptr(message.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    match status {
        0 => Ok(Decoded::Clean),
        1 => Ok(Decoded::Warned(text)),
        _ => Err(text),
    }
}

#[cfg(test)]
mod tests {
    use turbojpeg::{Decompressor, Image, PixelFormat};

    use super::*;
    use crate::pixels::{Layout, Pixels};
    use crate::progressive::without_unneeded_scans;
    use crate::test_images::{photo, photo_jpeg};

    const SCALES: [ScalingFactor; 4] = [
        ScalingFactor::ONE,
        ScalingFactor::ONE_HALF,
        ScalingFactor::ONE_QUARTER,
        ScalingFactor::ONE_EIGHTH,
    ];

    /// `jpeg` at `scale` through TurboJPEG's API (block smoothing on, libjpeg's default).
    fn turbojpeg_decode(jpeg: &[u8], scale: ScalingFactor, components: u8) -> Vec<u8> {
        let mut d = Decompressor::new().unwrap();
        let header = d.read_header(jpeg).unwrap();
        d.set_scaling_factor(scale).unwrap();
        let size = header.scaled(scale);
        let format = if components == 1 {
            PixelFormat::GRAY
        } else {
            PixelFormat::RGB
        };
        let mut pixels = vec![0u8; size.width * size.height * usize::from(components)];
        d.decompress(
            jpeg,
            Image {
                pixels: pixels.as_mut_slice(),
                width: size.width,
                pitch: size.width * usize::from(components),
                height: size.height,
                format,
            },
        )
        .unwrap();
        pixels
    }

    /// `jpeg` (`width` × `height` at full size) at `scale` through [`decode_unsmoothed`].
    fn ours(
        jpeg: &[u8],
        width: usize,
        height: usize,
        scale: ScalingFactor,
        components: u8,
    ) -> Vec<u8> {
        let (w, h) = (scale.scale(width), scale.scale(height));
        let mut out = vec![0u8; w * h * usize::from(components)];
        assert_eq!(
            decode_unsmoothed(jpeg, scale, components, w, h, &mut out),
            Ok(Decoded::Clean)
        );
        out
    }

    fn gray_progressive(width: u32, height: u32) -> Vec<u8> {
        let rgb = photo(width, height);
        let gray = Pixels {
            width,
            height,
            layout: Layout::Gray,
            data: rgb.data.chunks_exact(3).map(|p| p[1]).collect(),
        };
        crate::jpeg::encode_with(&gray, 85, true).unwrap()
    }

    #[test]
    fn complete_files_decode_exactly_as_through_turbojpeg() {
        // Same library, same IDCT and upsampling: where every coefficient is present, block
        // smoothing never runs, so the pixels are identical at every scale.
        let rgb = photo(301, 203);
        let files = [
            (photo_jpeg(301, 203, 80), 3),
            (crate::jpeg::encode_with(&rgb, 80, true).unwrap(), 3),
            (gray_progressive(301, 203), 1),
        ];
        for (jpeg, components) in &files {
            for scale in SCALES {
                assert_eq!(
                    ours(jpeg, 301, 203, scale, *components),
                    turbojpeg_decode(jpeg, scale, *components),
                    "{scale:?}"
                );
            }
        }
    }

    #[test]
    fn a_progressive_file_without_its_ac_scans_is_not_smoothed() {
        // At ⅛ a gray image uses only DC coefficients, and every DC scan is kept: unsmoothed,
        // the reduced file decodes exactly as the whole one. Smoothed, it would not (libjpeg
        // invents AC coefficients from the neighbouring DC values).
        let jpeg = gray_progressive(640, 480);
        let scale = ScalingFactor::ONE_EIGHTH;
        let reduced = without_unneeded_scans(&jpeg, scale).expect("AC scans to drop");
        let whole = turbojpeg_decode(&jpeg, scale, 1);
        assert_eq!(ours(&reduced, 640, 480, scale, 1), whole);
        assert_ne!(turbojpeg_decode(&reduced, scale, 1), whole);
    }

    #[test]
    fn damaged_data_is_a_warning_or_an_error() {
        let jpeg = photo_jpeg(64, 48, 80);
        let mut out = vec![0u8; 64 * 48 * 3];
        let decode = |data: &[u8], out: &mut [u8]| {
            decode_unsmoothed(data, ScalingFactor::ONE, 3, 64, 48, out)
        };

        let truncated = decode(&jpeg[..jpeg.len() / 2], &mut out);
        assert!(
            matches!(&truncated, Ok(Decoded::Warned(w)) if w.contains("Premature end")),
            "{truncated:?}"
        );

        // Two stray bytes between SOI and the next marker: libjpeg skips them and says so.
        let stray = [&jpeg[..2], &[0x12, 0x34], &jpeg[2..]].concat();
        let skipped = decode(&stray, &mut out);
        assert!(
            matches!(&skipped, Ok(Decoded::Warned(w)) if w.contains("extraneous bytes")),
            "{skipped:?}"
        );

        let not_jpeg = decode(b"GIF89a, not a JPEG", &mut out);
        assert!(
            matches!(&not_jpeg, Err(e) if e.contains("Not a JPEG file")),
            "{not_jpeg:?}"
        );
    }

    #[test]
    fn a_size_other_than_the_decoded_one_is_refused_before_writing() {
        let jpeg = photo_jpeg(64, 48, 80);
        let mut out = vec![7u8; 32 * 48 * 3];
        let err = decode_unsmoothed(&jpeg, ScalingFactor::ONE, 3, 32, 48, &mut out).unwrap_err();
        assert!(err.contains("expected 32x48"), "{err}");
        assert!(out.iter().all(|&b| b == 7));

        let mut short = vec![0u8; 10];
        let err = decode_unsmoothed(&jpeg, ScalingFactor::ONE, 3, 64, 48, &mut short).unwrap_err();
        assert!(err.contains("output buffer"), "{err}");
        let err =
            decode_unsmoothed(&jpeg, ScalingFactor::new(3, 4), 3, 48, 36, &mut short).unwrap_err();
        assert!(err.contains("scale"), "{err}");
    }
}
