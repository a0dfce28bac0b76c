//! Colour management: a source's embedded ICC profile is applied and its pixels converted to
//! sRGB with Little CMS (the `lcms2` crate, built from its bundled source), because the outputs
//! carry no profile and a browser shows untagged pixels as sRGB. Without the conversion a photo
//! shot in Display P3 or Adobe RGB looks washed out, a CMYK file garish.
//!
//! What is converted: RGB sources whose profile is not sRGB already (matrix/TRC profiles such
//! as Display P3, Adobe RGB, ProPhoto, and LUT-based ones), and CMYK JPEGs with a profile. Gray
//! sources keep their values (a gray profile differs from sRGB's gray by at most a gamma
//! nuance); CMYK JPEGs without a profile keep the naive conversion of
//! [`Pixels::from_inverted_cmyk`]. A profile Little CMS cannot read is ignored with a warning,
//! as browsers ignore it: the image is still worth showing.
//!
//! The rendering intent is perceptual, the ICC default (`jpgicc`'s too); for matrix/TRC profiles
//! it is the same as relative colorimetric.

use lcms2::{ColorSpaceSignature, InfoType, Intent, Locale, PixelFormat, Profile, Transform};

use crate::pixels::{Layout, Pixels};

/// A conversion of RGB pixels from a source profile to sRGB, made once per image and applied
/// to each of its renditions.
pub struct ToSrgb {
    transform: Transform<[u8; 3], [u8; 3]>,
}

impl std::fmt::Debug for ToSrgb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToSrgb").finish_non_exhaustive()
    }
}

impl ToSrgb {
    /// The conversion for RGB pixels tagged with `icc`, or `None` when there is nothing to do:
    /// the profile describes sRGB already, is not an RGB profile, or cannot be read.
    pub fn for_rgb(icc: &[u8]) -> Option<ToSrgb> {
        let source = readable(icc)?;
        if source.color_space() != ColorSpaceSignature::RgbData || is_srgb(&source) {
            return None;
        }
        let transform = Transform::new(
            &source,
            PixelFormat::RGB_8,
            &Profile::new_srgb(),
            PixelFormat::RGB_8,
            Intent::Perceptual,
        );
        match transform {
            Ok(transform) => Some(ToSrgb { transform }),
            Err(error) => {
                tracing::warn!(%error, "the image's colour profile cannot be applied; ignored");
                None
            }
        }
    }

    /// Converts `pixels` in place; gray pixels are left as they are.
    pub fn apply(&self, pixels: &mut Pixels) {
        if pixels.layout != Layout::Rgb {
            return;
        }
        let (rgb, rest) = pixels.data.as_chunks_mut::<3>();
        debug_assert!(rest.is_empty());
        self.transform.transform_in_place(rgb);
    }
}

/// Converts CMYK samples to sRGB through the source's profile `icc`; `None` when the profile
/// is not a readable CMYK profile (the caller falls back to the naive conversion).
///
/// `inverted` is how Adobe's applications write CMYK JPEGs (255 = no ink), which is what the
/// Adobe (APP14) marker announces; without it, 0 is no ink.
pub fn cmyk_to_srgb(
    icc: &[u8],
    width: u32,
    height: u32,
    cmyk: &[u8],
    inverted: bool,
) -> Option<Pixels> {
    let source = readable(icc)?;
    if source.color_space() != ColorSpaceSignature::CmykData {
        return None;
    }
    let input = if inverted {
        PixelFormat::CMYK_8_REV
    } else {
        PixelFormat::CMYK_8
    };
    let transform: Transform<[u8; 4], [u8; 3]> = match Transform::new(
        &source,
        input,
        &Profile::new_srgb(),
        PixelFormat::RGB_8,
        Intent::Perceptual,
    ) {
        Ok(transform) => transform,
        Err(error) => {
            tracing::warn!(%error, "the image's CMYK profile cannot be applied; ignored");
            return None;
        }
    };
    let (samples, _) = cmyk.as_chunks::<4>();
    let mut rgb = vec![[0u8; 3]; samples.len()];
    transform.transform_pixels(samples, &mut rgb);
    Some(Pixels {
        width,
        height,
        layout: Layout::Rgb,
        data: rgb.into_flattened(),
    })
}

/// The profile, or `None` (with a warning) when Little CMS cannot read it.
fn readable(icc: &[u8]) -> Option<Profile> {
    match Profile::new_icc(icc) {
        Ok(profile) => Some(profile),
        Err(error) => {
            tracing::warn!(%error, bytes = icc.len(), "the image's colour profile is unreadable; ignored");
            None
        }
    }
}

/// Whether the profile is one of the sRGB profiles cameras and editors embed ("sRGB
/// IEC61966-2.1", "sRGB built-in", "sRGB v4 ICC preference"...): converting would change
/// nothing but cost time.
fn is_srgb(profile: &Profile) -> bool {
    profile
        .info(InfoType::Description, Locale::none())
        .is_some_and(|description| description.to_ascii_lowercase().contains("srgb"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn icc(profile: &Profile) -> Vec<u8> {
        profile.icc().expect("serialisable profile")
    }

    #[test]
    fn srgb_and_unreadable_profiles_are_left_alone() {
        assert!(ToSrgb::for_rgb(&icc(&Profile::new_srgb())).is_none());
        assert!(ToSrgb::for_rgb(b"not an ICC profile").is_none());
        assert!(cmyk_to_srgb(b"junk", 1, 1, &[0, 0, 0, 0], true).is_none());
    }

    /// A wide-gamut red (Rec. 2020's primaries, sRGB's curve) is more saturated than sRGB can
    /// show: converted, it clips to sRGB's red; a mid gray stays gray.
    #[test]
    fn a_wide_gamut_profile_is_converted() {
        use lcms2::{CIExyY, CIExyYTRIPLE, ToneCurve};
        let white = CIExyY {
            x: 0.3127,
            y: 0.3290,
            Y: 1.0,
        };
        let primaries = CIExyYTRIPLE {
            Red: CIExyY {
                x: 0.708,
                y: 0.292,
                Y: 1.0,
            },
            Green: CIExyY {
                x: 0.170,
                y: 0.797,
                Y: 1.0,
            },
            Blue: CIExyY {
                x: 0.131,
                y: 0.046,
                Y: 1.0,
            },
        };
        let curve = ToneCurve::new(2.2);
        let wide = Profile::new_rgb(&white, &primaries, &[&curve, &curve, &curve]).unwrap();
        let convert = ToSrgb::for_rgb(&icc(&wide)).expect("a conversion");
        let mut pixels = Pixels {
            width: 2,
            height: 1,
            layout: Layout::Rgb,
            data: vec![200, 40, 40, 128, 128, 128],
        };
        convert.apply(&mut pixels);
        let (red, gray) = (&pixels.data[0..3], &pixels.data[3..6]);
        assert!(red[0] > 230 && red[1] < 20 && red[2] < 40, "{red:?}");
        assert!(gray.iter().all(|&v| v.abs_diff(128) <= 2), "{gray:?}");
    }
}
