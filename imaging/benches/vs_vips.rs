//! CPU-time comparison on the same files in the same run. First one 1024 px q80 JPEG: our
//! pipeline vs `vipsthumbnail` (libvips, `VIPS_CONCURRENCY=1`) vs the `image` crate alone, plus
//! the decode floor (a JPEG's Huffman decode at ⅛ scale, other formats' full decode), with
//! output sizes and PSNR against a full-resolution Lanczos3
//! reference, so speed is not bought with quality. Then the default renditions (320 and 1024
//! px, JPEG and WebP at q80): our one call vs the four `vipsthumbnail` runs that make the same
//! outputs.
//!
//! ```text
//! cargo bench -p product-pipeline-imaging --bench vs_vips                       # wallpapers + generated photos
//! cargo bench -p product-pipeline-imaging --bench vs_vips -- --reps 20 a.jpg b.jpg
//! ```
//!
//! CPU time is measured with `CLOCK_THREAD_CPUTIME_ID` for in-process work and
//! `getrusage(RUSAGE_CHILDREN)` for vipsthumbnail (one invocation per file with the file repeated
//! `reps` times; the CPU time of an invocation on a tiny image — process start and libvips
//! init — is subtracted), so other processes on the machine disturb the figures little.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use image::imageops::FilterType;
use product_pipeline_imaging::test_images::psnr;
use product_pipeline_imaging::{compress, CompressOptions};

fn thread_cpu_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
}

fn children_cpu_ms() -> f64 {
    // SAFETY: zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU ms per call of `f`, best of three rounds of `reps` calls.
fn cpu_per_call<T>(reps: usize, mut f: impl FnMut() -> T) -> f64 {
    std::hint::black_box(f()); // warm-up
    (0..3)
        .map(|_| {
            let t = thread_cpu_ms();
            for _ in 0..reps {
                std::hint::black_box(f());
            }
            (thread_cpu_ms() - t) / reps as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// A `vipsthumbnail` output: the long side and the format.
#[derive(Clone, Copy)]
struct VipsOutput {
    size: u32,
    webp: bool,
}

impl VipsOutput {
    const JPEG_1024: VipsOutput = VipsOutput {
        size: 1024,
        webp: false,
    };

    /// The file vipsthumbnail writes for `stem` into `out_dir`.
    fn file(self, out_dir: &Path, stem: &str) -> PathBuf {
        out_dir.join(format!("{stem}-{}.{}", self.size, self.extension()))
    }

    fn extension(self) -> &'static str {
        if self.webp {
            "webp"
        } else {
            "jpg"
        }
    }
}

/// CPU ms of one vipsthumbnail invocation on `files`, making `output` of each.
fn vips_cpu(files: &[&Path], out_dir: &Path, output: VipsOutput) -> f64 {
    let options = if output.webp {
        "Q=80,strip"
    } else {
        "Q=80,optimize_coding,strip"
    };
    let before = children_cpu_ms();
    let status = Command::new("vipsthumbnail")
        .env("VIPS_CONCURRENCY", "1")
        .args(files)
        .args(["-s", &output.size.to_string(), "-o"])
        .arg(format!(
            "{}/%s-{}.{}[{options}]",
            out_dir.display(),
            output.size,
            output.extension()
        ))
        .status()
        .expect("run vipsthumbnail (Debian package libvips-tools)");
    assert!(status.success(), "vipsthumbnail failed");
    children_cpu_ms() - before
}

fn decode_rgb(bytes: &[u8]) -> image::RgbImage {
    image::load_from_memory(bytes).unwrap().to_rgb8()
}

fn main() {
    let mut reps = 8usize;
    let mut files: Vec<PathBuf> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--reps" => reps = args.next().and_then(|v| v.parse().ok()).expect("--reps N"),
            s if s.starts_with("--") => {} // cargo bench passes --bench
            s => files.push(s.into()),
        }
    }
    let work = std::env::temp_dir().join("imaging-vs-vips");
    let vips_out = work.join("vips");
    std::fs::create_dir_all(&vips_out).unwrap();
    if files.is_empty() {
        files = support::wallpapers();
        files.extend(support::wallpaper_pngs());
        files.extend(support::generated_jpegs(&work.join("inputs")));
    }
    // libvips start-up cost, subtracted from each invocation.
    let tiny = work.join("tiny.jpg");
    std::fs::write(
        &tiny,
        product_pipeline_imaging::test_images::photo_jpeg(16, 16, 80),
    )
    .unwrap();
    let startup = (0..3)
        .map(|_| vips_cpu(&[tiny.as_path()], &vips_out, VipsOutput::JPEG_1024))
        .fold(f64::INFINITY, f64::min);

    let options = CompressOptions::default().single_jpeg(1024);
    println!(
        "reps={reps}, vipsthumbnail start-up {startup:.1} ms CPU (subtracted)\n\n\
         | file | ours ms | vips ms | image ms | floor ms | ours/vips | image/ours | ours/floor | ours bytes | vips bytes | size vips/ours | PSNR ours | PSNR vips |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let mut sum = [0f64; 4];
    let mut classes: std::collections::BTreeMap<&str, (f64, f64, usize)> = Default::default();
    let (mut ours_bytes, mut vips_bytes) = (0usize, 0usize);
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        let ours_out = compress(&bytes, &options).unwrap();
        let ours = cpu_per_call(reps, || compress(&bytes, &options).unwrap());
        let floor = cpu_per_call(reps, || support::decode_floor(&bytes));
        let img = cpu_per_call(1, || support::image_crate_pipeline(&bytes, 1024));
        let repeated: Vec<&Path> = std::iter::repeat_n(path.as_path(), reps).collect();
        let vips = (0..2)
            .map(|_| {
                (vips_cpu(&repeated, &vips_out, VipsOutput::JPEG_1024) - startup) / reps as f64
            })
            .fold(f64::INFINITY, f64::min);
        let stem = path.file_stem().unwrap().to_string_lossy();
        let vips_file = std::fs::read(VipsOutput::JPEG_1024.file(&vips_out, &stem)).unwrap();

        // Quality: PSNR against a full-resolution decode resized with Lanczos3 in the `image`
        // crate, when both outputs have its dimensions.
        let ours_px = decode_rgb(&ours_out.primary().data);
        let vips_px = decode_rgb(&vips_file);
        let reference = image::load_from_memory(&bytes)
            .unwrap()
            .resize_exact(ours_px.width(), ours_px.height(), FilterType::Lanczos3)
            .to_rgb8();
        let p_ours = psnr(reference.as_raw(), ours_px.as_raw());
        let p_vips = if vips_px.dimensions() == reference.dimensions() {
            format!("{:.2}", psnr(reference.as_raw(), vips_px.as_raw()))
        } else {
            format!("{:?}", vips_px.dimensions())
        };

        let name = support::short_name(path);
        println!(
            "| {name} | {ours:.1} | {vips:.1} | {img:.1} | {floor:.1} | {:.2} | {:.1} | {:.2} | {} | {} | {:.3} | {p_ours:.2} | {p_vips} |",
            ours / vips,
            img / ours,
            ours / floor,
            ours_out.primary().data.len(),
            vips_file.len(),
            vips_file.len() as f64 / ours_out.primary().data.len() as f64,
        );
        for (s, v) in sum.iter_mut().zip([ours, vips, img, floor]) {
            *s += v;
        }
        let class = classes.entry(support::file_class(&bytes)).or_default();
        *class = (class.0 + ours, class.1 + vips, class.2 + 1);
        ours_bytes += ours_out.primary().data.len();
        vips_bytes += vips_file.len();
    }
    let [ours, vips, img, floor] = sum;
    println!(
        "| **total** | {ours:.1} | {vips:.1} | {img:.1} | {floor:.1} | **{:.2}** | **{:.1}** | **{:.2}** | {ours_bytes} | {vips_bytes} | **{:.3}** | | |",
        ours / vips,
        img / ours,
        ours / floor,
        vips_bytes as f64 / ours_bytes as f64
    );
    println!("\n| class | files | ours ms | vips ms | ours/vips |\n|---|---:|---:|---:|---:|");
    for (class, (ours, vips, n)) in &classes {
        println!(
            "| {class} | {n} | {ours:.1} | {vips:.1} | {:.2} |",
            ours / vips
        );
    }
    println!(
        "\nours: {:.1} images/s per core ({} files); output size ours/vips = {:.3}",
        files.len() as f64 * 1000.0 / ours,
        files.len(),
        ours_bytes as f64 / vips_bytes as f64
    );
    default_renditions(&files, reps, startup, &vips_out);
}

/// The default renditions (320 and 1024 px, JPEG and WebP): CPU and bytes of our one call
/// against the four vipsthumbnail runs that make the same four outputs.
fn default_renditions(files: &[PathBuf], reps: usize, startup: f64, vips_out: &Path) {
    let options = CompressOptions::default();
    let outputs: Vec<VipsOutput> = [1024, 320]
        .into_iter()
        .flat_map(|size| [false, true].map(|webp| VipsOutput { size, webp }))
        .collect();
    println!(
        "\ndefault renditions (320 + 1024, JPEG + WebP, q80)\n\n\
         | file | ours ms | vips ms (4 runs) | ours/vips | ours bytes | vips bytes | bytes ours/vips |\n\
         |---|---:|---:|---:|---:|---:|---:|"
    );
    let (mut ours_sum, mut vips_sum) = (0f64, 0f64);
    let (mut ours_bytes_sum, mut vips_bytes_sum) = (0usize, 0usize);
    for path in files {
        let bytes = std::fs::read(path).unwrap();
        let ours_out = compress(&bytes, &options).unwrap();
        let ours = cpu_per_call(reps, || compress(&bytes, &options).unwrap());
        let repeated: Vec<&Path> = std::iter::repeat_n(path.as_path(), reps).collect();
        let stem = path.file_stem().unwrap().to_string_lossy();
        let mut vips = 0.0;
        let mut vips_bytes = 0;
        for &output in &outputs {
            vips += (0..2)
                .map(|_| (vips_cpu(&repeated, vips_out, output) - startup) / reps as f64)
                .fold(f64::INFINITY, f64::min);
            vips_bytes += std::fs::metadata(output.file(vips_out, &stem))
                .unwrap()
                .len() as usize;
        }
        let ours_bytes: usize = ours_out.renditions.iter().map(|r| r.data.len()).sum();
        println!(
            "| {} | {ours:.1} | {vips:.1} | {:.2} | {ours_bytes} | {vips_bytes} | {:.3} |",
            support::short_name(path),
            ours / vips,
            ours_bytes as f64 / vips_bytes as f64
        );
        ours_sum += ours;
        vips_sum += vips;
        ours_bytes_sum += ours_bytes;
        vips_bytes_sum += vips_bytes;
    }
    println!(
        "| **total** | {ours_sum:.1} | {vips_sum:.1} | **{:.2}** | {ours_bytes_sum} | {vips_bytes_sum} | **{:.3}** |",
        ours_sum / vips_sum,
        ours_bytes_sum as f64 / vips_bytes_sum as f64
    );
}
