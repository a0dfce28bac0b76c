//! The harness of the benches that compare one of our adapters with the raw client doing the same
//! work: payload sizes, paired rounds, wall-clock and process CPU time, medians, the report.
//!
//! Paired rounds run ours and the baseline alternately, the order swapped every round, so that
//! both see the same background load on a shared machine; the report gives the ratio of the
//! medians and the median and range of the per-round ratios.
//!
//! ```
//! use testsupport::bench::{paired_rounds, Side, Stopwatch};
//!
//! let paired = paired_rounds(3, |side| {
//!     let stopwatch = Stopwatch::start();
//!     let n = if side == Side::Ours { 2_000 } else { 1_000 };
//!     std::hint::black_box((0..n).sum::<u64>());
//!     stopwatch.stop().sample(n as usize)
//! });
//! assert_eq!(paired.ours.len(), 3);
//! println!("{}", paired.report("sum", "ours", "baseline"));
//! ```

use std::time::{Duration, Instant};

/// The payload sizes every throughput bench measures, in bytes.
pub const PAYLOAD_SIZES: [usize; 3] = [16, 256, 4096];

/// [`PAYLOAD_SIZES`], or those that `PAIRED_SIZES` (say `256,4096`) names.
pub fn selected_sizes() -> Vec<usize> {
    let only = std::env::var("PAIRED_SIZES").unwrap_or_default();
    PAYLOAD_SIZES
        .into_iter()
        .filter(|size| only.is_empty() || only.split(',').any(|s| s.trim() == size.to_string()))
        .collect()
}

/// The environment variable `name` as a number, `default` when it is unset or not a number.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// The median of `values` (the upper one of an even count); sorts them.
///
/// # Panics
///
/// When `values` is empty.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// User + system CPU time of this process so far, every thread included (`getrusage`,
/// microsecond resolution).
pub fn process_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `getrusage` fills the struct it is given; RUSAGE_SELF cannot fail.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

/// A running measurement of wall-clock and process CPU time.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch {
    wall: Instant,
    cpu: Duration,
}

impl Stopwatch {
    /// Starts measuring.
    pub fn start() -> Stopwatch {
        Stopwatch {
            wall: Instant::now(),
            cpu: process_cpu(),
        }
    }

    /// What was spent since [`start`](Self::start).
    pub fn stop(&self) -> Timed {
        Timed {
            elapsed: self.wall.elapsed(),
            cpu: process_cpu().saturating_sub(self.cpu),
        }
    }
}

/// The timed part of a run: wall-clock time, and the CPU time the whole process (every thread,
/// a C client's included) spent in it.
#[derive(Debug, Clone, Copy)]
pub struct Timed {
    /// Wall-clock time.
    pub elapsed: Duration,
    /// Process CPU time.
    pub cpu: Duration,
}

impl Timed {
    /// The rate and CPU cost of a run that handled `messages` messages.
    pub fn sample(&self, messages: usize) -> Sample {
        Sample {
            rate: messages as f64 / self.elapsed.as_secs_f64(),
            cpu_micros: self.cpu.as_secs_f64() * 1e6 / messages as f64,
        }
    }
}

/// One side of one round.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Messages per second.
    pub rate: f64,
    /// Process CPU time per message, in microseconds.
    pub cpu_micros: f64,
}

/// Which side a round runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Our adapter.
    Ours,
    /// The raw client doing the same work.
    Baseline,
}

/// The samples of paired rounds, in round order.
#[derive(Debug, Clone, Default)]
pub struct Paired {
    /// Our side's.
    pub ours: Vec<Sample>,
    /// The baseline's.
    pub baseline: Vec<Sample>,
}

/// Runs `rounds` paired rounds: `run(side)` once per side and round, ours first in even rounds,
/// the baseline first in odd ones.
pub fn paired_rounds(rounds: usize, mut run: impl FnMut(Side) -> Sample) -> Paired {
    let mut paired = Paired::default();
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [Side::Ours, Side::Baseline]
        } else {
            [Side::Baseline, Side::Ours]
        };
        for side in order {
            let sample = run(side);
            match side {
                Side::Ours => paired.ours.push(sample),
                Side::Baseline => paired.baseline.push(sample),
            }
        }
    }
    paired
}

impl Paired {
    /// One line: the median rates of both sides (named `ours` and `baseline`) and their ratio,
    /// the median and range of the per-round ratios, and the median CPU per message of each side
    /// (baseline ÷ ours: above 1, ours needs less).
    ///
    /// # Panics
    ///
    /// When no round ran.
    pub fn report(&self, case: &str, ours: &str, baseline: &str) -> String {
        let column = |side: &[Sample], pick: fn(&Sample) -> f64| {
            median(&mut side.iter().map(pick).collect::<Vec<_>>())
        };
        let (rate_o, rate_b) = (
            column(&self.ours, |s| s.rate),
            column(&self.baseline, |s| s.rate),
        );
        let (cpu_o, cpu_b) = (
            column(&self.ours, |s| s.cpu_micros),
            column(&self.baseline, |s| s.cpu_micros),
        );
        let mut ratios: Vec<f64> = self
            .ours
            .iter()
            .zip(&self.baseline)
            .map(|(o, b)| o.rate / b.rate)
            .collect();
        let median_ratio = median(&mut ratios);
        format!(
            "paired {case}: {ours} {rate_o:.0}/s  {baseline} {rate_b:.0}/s  \
             ratio of medians {:.2}  median of round ratios {median_ratio:.2}  \
             (round ratios {:.2}..{:.2})  CPU/msg {ours} {cpu_o:.2} µs  {baseline} {cpu_b:.2} µs  \
             ({baseline}/{ours} {:.2})",
            rate_o / rate_b,
            ratios[0],
            ratios[ratios.len() - 1],
            cpu_b / cpu_o,
        )
    }
}
