//! `compress::memory_needed` is an upper bound of what `compress` allocates: a counting global
//! allocator measures the heap peak of each compression, for every source layout the decoders
//! produce. (libjpeg-turbo's own working memory is allocated in C and not seen here; its largest
//! part, a progressive JPEG's coefficients, is counted by `JpegInfo::coefficient_bytes`.)

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use image::{DynamicImage, ImageBuffer, Luma, Rgba};
use product_pipeline_imaging::compress::{compress, memory_needed, CompressOptions};
use product_pipeline_imaging::test_images::{photo, photo_jpeg, with_exif_orientation};

/// The system allocator, counting bytes in use and their peak.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let now = IN_USE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(now, Ordering::SeqCst);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        IN_USE.fetch_sub(layout.size(), Ordering::SeqCst);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Held by every test of this file: allocations of one test would count in another's peak.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Bytes `compress` allocates at its peak beyond what was in use before it.
fn measured_peak(bytes: &[u8], opts: &CompressOptions) -> usize {
    let before = IN_USE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let compressed = compress(bytes, opts).unwrap();
    let peak = PEAK.load(Ordering::SeqCst) - before;
    drop(compressed);
    peak
}

#[test]
fn the_estimate_bounds_what_compression_allocates() {
    let _alone = ONE_AT_A_TIME.lock().unwrap();
    let opts = CompressOptions::default();
    let rgba = DynamicImage::ImageRgba8(ImageBuffer::from_fn(1800, 1200, |x, y| {
        Rgba([(x % 256) as u8, (y % 256) as u8, 90, (x ^ y) as u8])
    }));
    let gray16 = DynamicImage::ImageLuma16(ImageBuffer::from_fn(1500, 1500, |x, y| {
        Luma([(x * 40 + y) as u16])
    }));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("large RGB JPEG (DCT-scaled)", photo_jpeg(4000, 3000, 90)),
        ("small JPEG (kept or re-encoded)", photo_jpeg(800, 600, 85)),
        (
            "progressive JPEG (decoded without its final scans)",
            product_pipeline_imaging::jpeg::encode_with(&photo(4000, 3000), 90, true).unwrap(),
        ),
        (
            "EXIF-rotated JPEG (every rendition turned)",
            with_exif_orientation(&photo_jpeg(2400, 1800, 90), 6),
        ),
        (
            "small EXIF-rotated JPEG (not resized)",
            with_exif_orientation(&photo_jpeg(900, 700, 90), 8),
        ),
        ("CMYK JPEG", cmyk_jpeg(2000, 1400)),
        (
            "RGB PNG",
            png_of(&DynamicImage::ImageRgb8(halves(
                2000,
                1500,
                [200, 10, 10],
                [10, 10, 200],
            ))),
        ),
        ("RGBA PNG", png_of(&rgba)),
        (
            "interlaced RGBA PNG (decoded whole)",
            interlaced_png(rgba.as_rgba8().unwrap()),
        ),
        (
            "16-bit RGBA PNG",
            png_of(&DynamicImage::ImageRgba16(rgba.to_rgba16())),
        ),
        ("16-bit gray PNG", png_of(&gray16)),
        (
            "WebP",
            webp_of(&halves(1600, 1600, [10, 200, 10], [250, 250, 250])),
        ),
        ("GIF", animated_gif(900, [1, 2, 3], [4, 5, 6])),
    ];
    for (what, bytes) in cases {
        assert_bounds(what, &bytes, &opts);
    }
}

/// The estimate for `bytes` is at least what `compress` allocates, and not so pessimistic that
/// it starves the budget: the margin is the encoded output, assumed as large as its pixels, and
/// the kept source copy. (A progressive JPEG's coefficients are allocated by libjpeg-turbo in
/// C, which this count cannot see.)
fn assert_bounds(what: &str, bytes: &[u8], opts: &CompressOptions) {
    let estimate = memory_needed(bytes, opts).unwrap();
    let peak = measured_peak(bytes, opts) as u64;
    eprintln!("{what}: estimate {estimate} bytes, measured peak {peak} bytes");
    assert!(
        estimate >= peak,
        "{what}: estimated {estimate} bytes, but compress allocated {peak} at its peak"
    );
    let unseen =
        product_pipeline_imaging::jpeg::read_info(bytes).map_or(0, |info| info.coefficient_bytes());
    assert!(
        estimate - unseen <= 3 * peak + (4 << 20),
        "{what}: estimated {estimate} bytes ({unseen} of them in C) for a peak of {peak}"
    );
}

/// rav1e's working memory is counted when AVIF is among the formats.
#[cfg(feature = "avif")]
#[test]
fn avif_encoding_is_counted() {
    let _alone = ONE_AT_A_TIME.lock().unwrap();
    let opts = CompressOptions {
        formats: vec![
            product_pipeline_imaging::OutputFormat::Jpeg,
            product_pipeline_imaging::OutputFormat::Avif,
        ],
        ..CompressOptions::default()
    };
    for (what, bytes) in [
        ("large JPEG with AVIF", photo_jpeg(3000, 2000, 90)),
        ("small JPEG with AVIF", photo_jpeg(500, 400, 90)),
    ] {
        assert_bounds(what, &bytes, &opts);
    }
}

#[test]
fn progressive_jpegs_count_their_coefficients() {
    let _alone = ONE_AT_A_TIME.lock().unwrap();
    let pixels = photo(3000, 2000);
    let mut compressor = turbojpeg::Compressor::new().unwrap();
    compressor.set_quality(90).unwrap();
    compressor.set_subsamp(turbojpeg::Subsamp::Sub2x2).unwrap();
    let baseline = compressor
        .compress_to_vec(turbojpeg_image(&pixels))
        .unwrap();
    let progressive = {
        let mut c = turbojpeg::Compressor::new().unwrap();
        c.set_quality(90).unwrap();
        c.set_subsamp(turbojpeg::Subsamp::Sub2x2).unwrap();
        c.set_progressive(true).unwrap();
        c.compress_to_vec(turbojpeg_image(&pixels)).unwrap()
    };
    let info = product_pipeline_imaging::jpeg::read_info(&progressive).unwrap();
    assert!(info.progressive);
    // 4:2:0: 1.5 coefficients a pixel, 2 bytes each.
    assert_eq!(info.coefficient_bytes(), 3008 * 2000 * 3);
    let opts = CompressOptions::default();
    let extra =
        memory_needed(&progressive, &opts).unwrap() - memory_needed(&baseline, &opts).unwrap();
    // And the copy without the scans the reduced decode skips (`progressive`).
    assert_eq!(extra, info.coefficient_bytes() + progressive.len() as u64);
}

fn turbojpeg_image(pixels: &product_pipeline_imaging::pixels::Pixels) -> turbojpeg::Image<&[u8]> {
    turbojpeg::Image {
        pixels: pixels.data.as_slice(),
        width: pixels.width as usize,
        pitch: pixels.width as usize * 3,
        height: pixels.height as usize,
        format: turbojpeg::PixelFormat::RGB,
    }
}
