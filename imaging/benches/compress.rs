//! Criterion: one core, 1024 px q80 output, per input file:
//! `imaging` (our pipeline) vs `image_crate` (decode + Lanczos3 + encode with `image` alone) vs
//! `huffman_floor` (DCT-scaled decode at 1/8, the lower bound).
//!
//! `cargo bench -p product-pipeline-imaging --bench compress` (add `-- imaging` to run only ours).
//! The comparison with libvips (CPU time of a child process) is in `--bench vs_vips`.

mod support;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use product_pipeline_imaging::{compress, CompressOptions};

fn bench(c: &mut Criterion) {
    let gen_dir = std::env::temp_dir().join("imaging-bench-inputs");
    let mut inputs = support::wallpapers();
    inputs.truncate(3);
    inputs.extend(support::generated_jpegs(&gen_dir));
    let options = CompressOptions::default().single_jpeg(1024);

    let mut group = c.benchmark_group("jpeg_to_1024_q80");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(1));
    for path in &inputs {
        let bytes = std::fs::read(path).unwrap();
        let name = support::short_name(path);
        group.bench_with_input(BenchmarkId::new("imaging", &name), &bytes, |b, bytes| {
            b.iter(|| compress(bytes, &options).unwrap())
        });
        group.bench_with_input(
            BenchmarkId::new("huffman_floor", &name),
            &bytes,
            |b, bytes| b.iter(|| support::huffman_floor(bytes)),
        );
        group.bench_with_input(
            BenchmarkId::new("image_crate", &name),
            &bytes,
            |b, bytes| b.iter(|| support::image_crate_pipeline(bytes, 1024)),
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
