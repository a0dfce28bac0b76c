//! Compress local image files the way the worker does, and report sizes and timings.
//!
//! ```text
//! cargo run --release -p product-pipeline-imaging --example compress -- <files or dirs>... --out <dir>
//!     [--size 1024] [--quality 80] [--catmull-rom] [--progressive]
//!     [--renditions 320,1024] [--formats jpeg,webp]
//! ```
//!
//! By default each file becomes one JPEG that fits inside `--size` (`<name>.jpg`), as the
//! worker made before renditions existed, so figures stay comparable. `--renditions` and
//! `--formats` make what the worker makes now (`<name>-<long side>.<ext>` each).
//!
//! Directories are walked recursively for .jpg/.jpeg/.png/.webp/.gif files. One file at a time on
//! one thread, so the milliseconds are single-core figures.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use product_pipeline_imaging::{
    compress, CompressOptions, ImagingConfig, OutputFormat, ResizeFilter,
};

const USAGE: &str = "usage: compress <files or dirs>... --out <dir> [--size N] [--quality Q] \
                     [--catmull-rom] [--progressive] [--renditions N,N...] [--formats jpeg,webp]";

/// A comma-separated list, or the exit with the usage.
fn list<T: std::str::FromStr>(name: &str, value: &str) -> Vec<T> {
    value
        .split(',')
        .map(|item| {
            item.trim().parse().unwrap_or_else(|_| {
                eprintln!("{name}: `{item}` is not valid\n{USAGE}");
                std::process::exit(2)
            })
        })
        .collect()
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let Ok(entries) = std::fs::read_dir(path) else {
            eprintln!("cannot read directory {}", path.display());
            return;
        };
        let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                collect(&p, out);
            } else if matches!(
                p.extension()
                    .and_then(|e| e.to_str())
                    .map(|e| e.to_ascii_lowercase())
                    .as_deref(),
                Some("jpg" | "jpeg" | "png" | "webp" | "gif")
            ) {
                out.push(p);
            }
        }
    } else {
        out.push(path.to_path_buf());
    }
}

fn main() -> ExitCode {
    let mut inputs = Vec::new();
    let mut out_dir: Option<PathBuf> = None;
    let mut config = ImagingConfig {
        formats: vec![OutputFormat::Jpeg],
        ..ImagingConfig::default()
    };
    let mut renditions: Option<Vec<u32>> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> String {
            args.next().unwrap_or_else(|| {
                eprintln!("{name} needs a value\n{USAGE}");
                std::process::exit(2)
            })
        };
        match arg.as_str() {
            "--out" => out_dir = Some(value("--out").into()),
            "--size" => config.target_size = value("--size").parse().expect("--size: a number"),
            "--quality" => {
                let q = value("--quality").parse().expect("--quality: 1..=100");
                config.jpeg_quality = q;
                config.webp_quality = q;
            }
            "--catmull-rom" => config.filter = ResizeFilter::CatmullRom,
            "--renditions" => renditions = Some(list("--renditions", &value("--renditions"))),
            "--formats" => config.formats = list("--formats", &value("--formats")),
            "--progressive" => config.jpeg_progressive = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other if other.starts_with("--") => {
                eprintln!("unknown option {other}\n{USAGE}");
                return ExitCode::from(2);
            }
            other => collect(Path::new(other), &mut inputs),
        }
    }
    config.renditions = renditions.unwrap_or_else(|| vec![config.target_size]);
    let single = config.renditions.len() == 1 && config.formats.len() == 1;
    let Some(out_dir) = out_dir else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    if let Err(e) = config.validate() {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    if inputs.is_empty() {
        eprintln!("no input images\n{USAGE}");
        return ExitCode::from(2);
    }
    std::fs::create_dir_all(&out_dir).expect("create the output directory");
    let options = CompressOptions::from(&config);

    let (mut ok, mut failed) = (0usize, 0usize);
    let (mut total_in, mut total_out) = (0u64, 0u64);
    let mut total_ms = 0f64;
    let mut used_names = HashSet::new();
    for path in &inputs {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                println!("{}: cannot read: {e}", path.display());
                failed += 1;
                continue;
            }
        };
        let started = Instant::now();
        let result = compress(&bytes, &options);
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        match result {
            Ok(c) => {
                let stem = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("image")
                    .to_string();
                let mut stem_used = stem.clone();
                let mut n = 1;
                while !used_names.insert(stem_used.clone()) {
                    n += 1;
                    stem_used = format!("{stem}-{n}");
                }
                let mut bytes_out = 0;
                for rendition in &c.renditions {
                    let ext = rendition.format.extension();
                    let name = if single {
                        format!("{stem_used}.{ext}")
                    } else {
                        format!("{stem_used}-{}.{ext}", rendition.long_side())
                    };
                    std::fs::write(out_dir.join(&name), &rendition.data).expect("write output");
                    bytes_out += rendition.data.len();
                }
                let primary = c.primary();
                println!(
                    "{}: {} {}x{} -> {}x{} ({} outputs)  {} -> {} bytes ({:.1}%)  {:.1} ms{}",
                    path.display(),
                    c.source_format.name(),
                    c.source_width,
                    c.source_height,
                    primary.width,
                    primary.height,
                    c.renditions.len(),
                    bytes.len(),
                    bytes_out,
                    100.0 * bytes_out as f64 / bytes.len() as f64,
                    ms,
                    if primary.kept_source {
                        "  (source kept)"
                    } else {
                        ""
                    }
                );
                ok += 1;
                total_in += bytes.len() as u64;
                total_out += bytes_out as u64;
                total_ms += ms;
            }
            Err(e) => {
                println!(
                    "{}: FAILED ({}) {e}  {:.1} ms",
                    path.display(),
                    if e.is_transient() {
                        "transient"
                    } else {
                        "permanent"
                    },
                    ms
                );
                failed += 1;
            }
        }
    }
    println!(
        "summary: {ok} compressed, {failed} failed; {total_in} -> {total_out} bytes ({:.1}%); \
         {:.0} ms total, {:.1} ms/image, {:.1} images/s on one core",
        if total_in > 0 {
            100.0 * total_out as f64 / total_in as f64
        } else {
            0.0
        },
        total_ms,
        if ok > 0 { total_ms / ok as f64 } else { 0.0 },
        if total_ms > 0.0 {
            ok as f64 * 1000.0 / total_ms
        } else {
            0.0
        },
    );
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
