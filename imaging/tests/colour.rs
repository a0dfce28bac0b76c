//! Colour: a source carrying a Display P3, Adobe RGB, ProPhoto or CMYK profile comes out in
//! sRGB. The reference is an independent converter, Little CMS's `jpgicc` (Debian's
//! `liblcms2-utils`), run on the same file: our converted pixels must match it within mean
//! ΔE2000 ≤ 1 and max ≤ 3, our JPEG output on average too, and both differ clearly from what
//! ignoring the profile gives. The profiles are the real ones Debian ships (`colord-data`, and
//! Ghostscript's `libgs-common` for CMYK); Display P3, which neither ships, is made from its
//! definition (P3 primaries, D65, the sRGB curve).

use std::path::Path;
use std::process::Command;

use product_pipeline_imaging::colour::ToSrgb;
use product_pipeline_imaging::compress::{compress, CompressOptions};
use product_pipeline_imaging::decode::{self, DecodeLimits};
use product_pipeline_imaging::pixels::{Layout, Pixels};
use product_pipeline_imaging::test_images::{photo, with_icc_profile};
use product_pipeline_imaging::{jpeg, OutputFormat};

/// Side of the test images; the single rendition has the same size, so no resampling
/// separates our output from the reference.
const WIDTH: u32 = 480;
const HEIGHT: u32 = 360;
/// JPEG quality of our output and of the reference.
const QUALITY: u8 = 100;

/// A profile file Debian installs, or the skip naming its package.
fn profile(path: &str, package: &str) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(_) => testsupport::missing_service(path, &format!("apt-get install {package}")),
    }
}

/// Display P3 as Apple defines it: DCI-P3 primaries, the D65 white point, the sRGB curve.
fn display_p3() -> Vec<u8> {
    use lcms2::{CIExyY, CIExyYTRIPLE, Locale, Profile, Tag, TagSignature, ToneCurve, MLU};
    let xy = |x, y| CIExyY { x, y, Y: 1.0 };
    let primaries = CIExyYTRIPLE {
        Red: xy(0.680, 0.320),
        Green: xy(0.265, 0.690),
        Blue: xy(0.150, 0.060),
    };
    // The sRGB curve: parametric type 4 (IEC 61966-2-1).
    let curve =
        ToneCurve::new_parametric(4, &[2.4, 1.0 / 1.055, 0.055 / 1.055, 1.0 / 12.92, 0.04045])
            .expect("the sRGB curve");
    let mut p3 = Profile::new_rgb(&xy(0.3127, 0.3290), &primaries, &[&curve, &curve, &curve])
        .expect("a Display P3 profile");
    let mut description = MLU::new(1);
    description.set_text_ascii("Display P3", Locale::none());
    assert!(p3.write_tag(TagSignature::ProfileDescriptionTag, Tag::MLU(&description)));
    p3.icc().expect("serialisable")
}

/// A photo-like JPEG whose values are meant in the colour space of `icc`, tagged with it.
fn tagged_rgb_jpeg(icc: &[u8]) -> Vec<u8> {
    let rgb = photo(WIDTH, HEIGHT);
    with_icc_profile(&near_lossless(&rgb.data, turbojpeg::PixelFormat::RGB), icc)
}

/// A JPEG at quality 100 without chroma subsampling: the source should add as little noise as
/// it can to what the comparison measures.
fn near_lossless(pixels: &[u8], format: turbojpeg::PixelFormat) -> Vec<u8> {
    let mut c = turbojpeg::Compressor::new().unwrap();
    c.set_quality(100).unwrap();
    c.set_subsamp(turbojpeg::Subsamp::None).unwrap();
    c.compress_to_vec(turbojpeg::Image {
        pixels,
        width: WIDTH as usize,
        pitch: WIDTH as usize * format.size(),
        height: HEIGHT as usize,
        format,
    })
    .unwrap()
}

/// A CMYK JPEG in Adobe's convention (inverted, with the Adobe marker libjpeg writes): the
/// photo separated naively into cyan, magenta and yellow ink, tagged with `icc`.
fn tagged_cmyk_jpeg(icc: &[u8]) -> Vec<u8> {
    let rgb = photo(WIDTH, HEIGHT);
    // Ink is 255 − value; stored inverted, that is the value itself. No black ink.
    let cmyk: Vec<u8> = rgb
        .data
        .chunks_exact(3)
        .flat_map(|p| [p[0], p[1], p[2], 255])
        .collect();
    with_icc_profile(&near_lossless(&cmyk, turbojpeg::PixelFormat::CMYK), icc)
}

/// `jpgicc`'s conversion of `source` (its embedded profile to sRGB), decoded.
fn reference(jpgicc: &Path, source: &[u8]) -> image::RgbImage {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.jpg"), dir.path().join("out.jpg"));
    std::fs::write(&input, source).unwrap();
    let status = Command::new(jpgicc)
        .arg(format!("-q{QUALITY}"))
        .arg(&input)
        .arg(&output)
        .status()
        .unwrap();
    assert!(status.success(), "jpgicc failed");
    image::open(&output).unwrap().to_rgb8()
}

/// Our decode and colour conversion of `source`, before any encoding: the pixels our
/// renditions are resized from.
fn converted(source: &[u8]) -> image::RgbImage {
    let decoded = decode::decode(source, &DecodeLimits::default(), None).unwrap();
    let mut pixels = decoded.pixels;
    if let Some(to_srgb) = decoded.icc.as_deref().and_then(ToSrgb::for_rgb) {
        to_srgb.apply(&mut pixels);
    }
    assert_eq!(pixels.layout, Layout::Rgb);
    image::RgbImage::from_raw(pixels.width, pixels.height, pixels.data).unwrap()
}

/// Our output for `source`: one JPEG at its own size.
fn ours(source: &[u8]) -> image::RgbImage {
    let options = CompressOptions {
        jpeg_quality: QUALITY,
        ..CompressOptions::default().single_jpeg(WIDTH)
    };
    let compressed = compress(source, &options).unwrap();
    let primary = compressed.primary();
    assert_eq!(primary.format, OutputFormat::Jpeg);
    assert!(!primary.kept_source, "a converted image is re-encoded");
    assert_eq!(
        jpeg::icc_profile(&primary.data),
        None,
        "the output carries no profile"
    );
    image::load_from_memory(&primary.data).unwrap().to_rgb8()
}

/// `img` at half size, each pixel the mean of a 2×2 block: the resolution at which both JPEGs
/// (4:2:0, chroma at half resolution) hold colour, so that the comparison measures the colour
/// conversion rather than where two encoders put chroma detail.
fn chroma_resolution(img: &image::RgbImage) -> image::RgbImage {
    image::RgbImage::from_fn(img.width() / 2, img.height() / 2, |x, y| {
        let mut sum = [0u32; 3];
        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            let p = img.get_pixel(2 * x + dx, 2 * y + dy);
            for c in 0..3 {
                sum[c] += u32::from(p[c]);
            }
        }
        image::Rgb(sum.map(|v| ((v + 2) / 4) as u8))
    })
}

/// Mean and max CIEDE2000 difference between two sRGB images of one size, compared at
/// [`chroma_resolution`].
fn delta_e(a: &image::RgbImage, b: &image::RgbImage) -> (f32, f32) {
    assert_eq!(a.dimensions(), b.dimensions());
    let (a, b) = (chroma_resolution(a), chroma_resolution(b));
    let (mut sum, mut max) = (0f64, 0f32);
    for (p, q) in a.pixels().zip(b.pixels()) {
        let d = empfindung::cie00::diff(
            rgb::RGB8::new(p[0], p[1], p[2]),
            rgb::RGB8::new(q[0], q[1], q[2]),
        );
        sum += f64::from(d);
        max = max.max(d);
    }
    ((sum / f64::from(a.width() * a.height())) as f32, max)
}

/// The source's values read as sRGB: what a pipeline that drops the profile shows.
fn profile_ignored(source: &[u8]) -> image::RgbImage {
    let stripped = jpeg::strip_metadata(source).unwrap();
    let info = jpeg::read_info(&stripped).unwrap();
    let Pixels {
        width,
        height,
        layout,
        data,
    } = jpeg::decode_scaled(&stripped, &info, turbojpeg::ScalingFactor::ONE, None).unwrap();
    assert_eq!(layout, Layout::Rgb);
    image::RgbImage::from_raw(width, height, data).unwrap()
}

/// Our conversion matches `jpgicc`'s (mean ΔE2000 ≤ 1, max ≤ 3), and so does our output
/// after its JPEG encoding on average (its max allows for the encoding: 4:2:0 alone moves
/// single pixels by up to ΔE 3); ignoring the profile is clearly further off.
fn check(name: &str, source: &[u8], jpgicc: &Path) {
    let reference = reference(jpgicc, source);
    let (mean, max) = delta_e(&converted(source), &reference);
    let (output_mean, output_max) = delta_e(&ours(source), &reference);
    let (ignored_mean, _) = delta_e(&profile_ignored(source), &reference);
    eprintln!(
        "{name}: ΔE2000 against jpgicc: converted pixels mean {mean:.2}, max {max:.2}; output \
         mean {output_mean:.2}, max {output_max:.2}; profile ignored mean {ignored_mean:.2}"
    );
    assert!(mean <= 1.0 && max <= 3.0, "{name}: mean {mean}, max {max}");
    assert!(
        output_mean <= 1.0 && output_max <= 5.0,
        "{name}: output mean {output_mean}, max {output_max}"
    );
    assert!(
        ignored_mean >= 2.0 && ignored_mean >= 4.0 * output_mean,
        "{name}: ignoring the profile is not clearly worse ({ignored_mean} vs {output_mean})"
    );
}

#[test]
fn rgb_profiles_are_converted_to_srgb() {
    let Some(jpgicc) = testsupport::program("jpgicc", "liblcms2-utils") else {
        return;
    };
    check("Display P3", &tagged_rgb_jpeg(&display_p3()), &jpgicc);
    for (name, path) in [
        ("Adobe RGB", "/usr/share/color/icc/colord/AdobeRGB1998.icc"),
        ("ProPhoto", "/usr/share/color/icc/colord/ProPhotoRGB.icc"),
    ] {
        let Some(icc) = profile(path, "colord-data") else {
            return;
        };
        check(name, &tagged_rgb_jpeg(&icc), &jpgicc);
    }
}

/// A PNG's profile (its `iCCP` chunk) is applied as a JPEG's is: the same pixels tagged Display
/// P3 come out as `jpgicc` converts them in a JPEG.
#[test]
fn a_png_profile_is_applied() {
    use image::ImageEncoder;
    let Some(jpgicc) = testsupport::program("jpgicc", "liblcms2-utils") else {
        return;
    };
    let p3 = display_p3();
    let rgb = photo(WIDTH, HEIGHT);
    let mut png = Vec::new();
    let mut encoder = image::codecs::png::PngEncoder::new(&mut png);
    encoder.set_icc_profile(p3.clone()).unwrap();
    encoder
        .write_image(&rgb.data, WIDTH, HEIGHT, image::ExtendedColorType::Rgb8)
        .unwrap();
    let reference = reference(&jpgicc, &tagged_rgb_jpeg(&p3));
    let (mean, max) = delta_e(&converted(&png), &reference);
    let (output_mean, _) = delta_e(&ours(&png), &reference);
    eprintln!(
        "PNG, Display P3: converted mean {mean:.2}, max {max:.2}; output mean {output_mean:.2}"
    );
    assert!(mean <= 1.0 && max <= 3.0 && output_mean <= 1.0);
}

#[test]
fn cmyk_profiles_are_converted_to_srgb() {
    let Some(jpgicc) = testsupport::program("jpgicc", "liblcms2-utils") else {
        return;
    };
    let Some(icc) = profile(
        "/usr/share/color/icc/ghostscript/default_cmyk.icc",
        "libgs-common",
    ) else {
        return;
    };
    check(
        "CMYK (Ghostscript default)",
        &tagged_cmyk_jpeg(&icc),
        &jpgicc,
    );
}

/// An sRGB profile changes nothing, and costs nothing: the pixels are not converted, so a
/// small JPEG can still be kept as it is.
#[test]
fn an_srgb_profile_is_left_alone() {
    let Some(icc) = profile("/usr/share/color/icc/colord/sRGB.icc", "colord-data") else {
        return;
    };
    let plain = jpeg::encode(&photo(300, 200), 60).unwrap();
    let tagged = with_icc_profile(&plain, &icc);
    let compressed = compress(&tagged, &CompressOptions::default().single_jpeg(1024)).unwrap();
    assert!(compressed.primary().kept_source);
    assert_eq!(compressed.primary().data, plain);
}
