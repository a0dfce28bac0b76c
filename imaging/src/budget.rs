//! [`MemoryBudget`]: bounds the memory a process holds for images in flight, whatever strangers
//! upload.
//!
//! CPU work is bounded by the number of cores, but bytes are not: eight products of twenty 17 MB
//! images fetched at once hold gigabytes. So every download reserves, once the response headers
//! arrive, its `Content-Length` (or the per-image limit, shrunk to what arrived, when no length
//! is announced), and every decode reserves what its buffers will take, computed from the
//! header, before decoding. A reservation that does not fit waits until others are released; one
//! larger than its whole share fails the image at once ([`ImagingError::OverBudget`]) instead of
//! waiting forever.
//!
//! The budget is split in two halves, one for downloaded bytes and one for decode buffers. A
//! downloaded image waits for decode memory while it holds its download reservation; with one
//! pool, downloads could take all of it and wait forever for decodes that cannot start. With two
//! pools always taken in the same order (download, then decode) no wait can close a cycle.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use product_pipeline_imaging::budget::{MemoryBudget, Phase};
//!
//! let budget = MemoryBudget::new(64 << 20); // 32 MiB for downloads, 32 MiB for decodes
//! let held = budget.reserve(Phase::Download, 20 << 20).await.unwrap();
//! assert_eq!(budget.available(Phase::Download), 12 << 20);
//! assert!(budget.reserve(Phase::Download, 40 << 20).await.is_err(), "over the whole share");
//! drop(held);
//! assert_eq!(budget.available(Phase::Download), 32 << 20);
//! # }
//! ```

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ImagingError;

/// Reservations are counted in KiB, so that one permit count (`u32`) covers up to 4 TiB.
const UNIT: u64 = 1024;

/// What a reservation is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Downloaded bytes, held until the image is compressed.
    Download,
    /// Decoded pixels and the buffers of resizing and encoding.
    Decode,
}

impl Phase {
    /// `"download"` or `"decode"`: the `phase` label of the metrics.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Download => "download",
            Phase::Decode => "decode",
        }
    }
}

/// One half of the budget.
#[derive(Debug)]
struct Pool {
    phase: Phase,
    units: u64,
    semaphore: Arc<Semaphore>,
}

impl Pool {
    fn new(phase: Phase, bytes: u64) -> Pool {
        // Rounded up, so that a share of exactly `max_bytes` fits a reservation of `max_bytes`.
        let units = bytes.div_ceil(UNIT).min(u64::from(u32::MAX));
        metrics::gauge!("worker_memory_budget_bytes", "phase" => phase.name())
            .set((units * UNIT) as f64);
        Pool {
            phase,
            units,
            semaphore: Arc::new(Semaphore::new(units as usize)),
        }
    }
}

/// The memory budget of one process's image pipeline; cheap to clone, every clone shares it.
/// [`MemoryBudget::unlimited`] (the `Default`) reserves nothing.
///
/// Recorded through the [`metrics`] facade with a `phase` label (`download`, `decode`):
/// `worker_memory_budget_bytes` and `worker_memory_reserved_bytes` (gauges),
/// `worker_memory_waits_total` (reservations that had to wait) and
/// `worker_memory_wait_seconds` (how long they waited).
#[derive(Debug, Clone, Default)]
pub struct MemoryBudget {
    pools: Option<Arc<[Pool; 2]>>,
}

impl MemoryBudget {
    /// A budget of `bytes` in all, half for downloads and half for decodes.
    pub fn new(bytes: u64) -> MemoryBudget {
        let half = bytes / 2;
        MemoryBudget {
            pools: Some(Arc::new([
                Pool::new(Phase::Download, half),
                Pool::new(Phase::Decode, half),
            ])),
        }
    }

    /// No budget: reservations always succeed at once.
    pub fn unlimited() -> MemoryBudget {
        MemoryBudget { pools: None }
    }

    /// The budget of `phase` in bytes (`u64::MAX` when unlimited).
    pub fn share(&self, phase: Phase) -> u64 {
        self.pool(phase).map_or(u64::MAX, |pool| pool.units * UNIT)
    }

    /// Bytes of `phase` not reserved now (`u64::MAX` when unlimited).
    pub fn available(&self, phase: Phase) -> u64 {
        self.pool(phase).map_or(u64::MAX, |pool| {
            pool.semaphore.available_permits() as u64 * UNIT
        })
    }

    fn pool(&self, phase: Phase) -> Option<&Pool> {
        let pools = self.pools.as_ref()?;
        Some(&pools[phase as usize])
    }

    /// Reserves `bytes` of `phase`, waiting while they do not fit. Fails at once when they are
    /// more than the whole share of `phase`.
    pub async fn reserve(&self, phase: Phase, bytes: u64) -> Result<Reservation, ImagingError> {
        let Some(pool) = self.pool(phase) else {
            return Ok(Reservation::none());
        };
        let units = bytes.div_ceil(UNIT);
        if units > pool.units {
            return Err(ImagingError::OverBudget {
                phase: phase.name(),
                needed: bytes,
                budget: pool.units * UNIT,
            });
        }
        // `units` ≤ `pool.units` ≤ `u32::MAX`.
        let count = units as u32;
        let semaphore = pool.semaphore.clone();
        let permit = match semaphore.clone().try_acquire_many_owned(count) {
            Ok(permit) => permit,
            Err(_) => {
                let started = Instant::now();
                metrics::counter!("worker_memory_waits_total", "phase" => phase.name())
                    .increment(1);
                let permit = semaphore.acquire_many_owned(count).await.map_err(|e| {
                    ImagingError::Interrupted {
                        detail: e.to_string(),
                    }
                })?;
                metrics::histogram!("worker_memory_wait_seconds", "phase" => phase.name())
                    .record(started.elapsed());
                permit
            }
        };
        Ok(Reservation::held(pool.phase, permit))
    }
}

/// Memory reserved from a [`MemoryBudget`], released when dropped.
#[derive(Debug)]
#[must_use = "the memory is released when the reservation is dropped"]
pub struct Reservation {
    held: Option<(Phase, OwnedSemaphorePermit)>,
}

impl Reservation {
    /// Nothing reserved (an unlimited budget).
    pub(crate) fn none() -> Reservation {
        Reservation { held: None }
    }

    fn held(phase: Phase, permit: OwnedSemaphorePermit) -> Reservation {
        reserved_gauge(phase).increment((permit.num_permits() as u64 * UNIT) as f64);
        Reservation {
            held: Some((phase, permit)),
        }
    }

    /// Bytes reserved (0 from an unlimited budget).
    pub fn bytes(&self) -> u64 {
        self.held
            .as_ref()
            .map_or(0, |(_, permit)| permit.num_permits() as u64 * UNIT)
    }

    /// Gives back what is reserved beyond `bytes` (a download that turned out smaller than
    /// reserved); never grows.
    pub fn shrink_to(&mut self, bytes: u64) {
        let Some((phase, permit)) = &mut self.held else {
            return;
        };
        let keep = bytes.div_ceil(UNIT) as usize;
        let excess = permit.num_permits().saturating_sub(keep);
        if let Some(released) = permit.split(excess) {
            reserved_gauge(*phase).decrement((released.num_permits() as u64 * UNIT) as f64);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some((phase, permit)) = &self.held {
            reserved_gauge(*phase).decrement((permit.num_permits() as u64 * UNIT) as f64);
        }
    }
}

fn reserved_gauge(phase: Phase) -> metrics::Gauge {
    metrics::gauge!("worker_memory_reserved_bytes", "phase" => phase.name())
}

/// Blocks from this size up come straight from the kernel and go back to it when freed, once
/// [`return_freed_buffers_to_the_kernel`] is called.
pub const DIRECT_FROM_KERNEL: usize = 1 << 20;

/// Makes the C allocator (glibc's malloc, which Rust's default allocator is) hand out blocks
/// of [`DIRECT_FROM_KERNEL`] bytes and more as their own mappings and unmap them when they are
/// freed (`mallopt(M_MMAP_THRESHOLD)`), so that the resident memory of a process follows what
/// its [`MemoryBudget`] admits.
///
/// By default glibc raises that threshold to the size of every large block freed, up to
/// 32 MiB: from the first image on, pixel buffers come from its per-thread arenas, which keep
/// them for reuse after they are freed, each arena at its own peak. With many workers the
/// arenas' peaks add up past the budget: `tests/e2e/memory_budget.rs` measured peak RSS growth
/// of +106 to +131 MiB for a 96 MiB budget that way, and +43 to +48 MiB with this call. The
/// cost is a fresh mapping, and its page faults, per large buffer: about 4 % fewer images per
/// second on real photos (docs/BENCHMARKS.md, "Worker memory budget").
///
/// Process-wide; [`Imaging::new`](crate::Imaging::new) calls it when its configuration has a
/// memory budget. Returns false and changes nothing where the allocator is not glibc's, or when the
/// environment sets `MALLOC_MMAP_THRESHOLD_` (an operator's own tuning wins).
pub fn return_freed_buffers_to_the_kernel() -> bool {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
        return false;
    }
    set_mmap_threshold(DIRECT_FROM_KERNEL)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_mmap_threshold(bytes: usize) -> bool {
    let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only changes a tuning parameter of the allocator; it is thread-safe and
    // affects no block already allocated.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, bytes) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_mmap_threshold(_bytes: usize) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MIB: u64 = 1 << 20;

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_takes_the_threshold() {
        let tuned_by_the_environment = std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some();
        assert_eq!(
            return_freed_buffers_to_the_kernel(),
            !tuned_by_the_environment
        );
    }

    #[tokio::test]
    async fn a_reservation_that_does_not_fit_waits_for_a_release() {
        let budget = MemoryBudget::new(20 * MIB);
        let first = budget.reserve(Phase::Decode, 8 * MIB).await.unwrap();
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(Phase::Decode, 4 * MIB).await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "8 + 4 MiB do not fit in 10 MiB");
        // The other phase has its own half.
        let download = budget.reserve(Phase::Download, 10 * MIB).await.unwrap();
        drop(first);
        let second = waiting.await.unwrap();
        assert_eq!(second.bytes(), 4 * MIB);
        assert_eq!(budget.available(Phase::Decode), 6 * MIB);
        drop((second, download));
        assert_eq!(budget.available(Phase::Decode), 10 * MIB);
        assert_eq!(budget.available(Phase::Download), 10 * MIB);
    }

    #[tokio::test]
    async fn more_than_a_whole_share_fails_at_once_with_the_numbers() {
        let budget = MemoryBudget::new(20 * MIB);
        let error = budget
            .reserve(Phase::Decode, 10 * MIB + 1)
            .await
            .unwrap_err();
        assert!(!error.is_transient());
        assert_eq!(error.kind(), "over_budget");
        let message = error.to_string();
        assert!(message.contains("10485761 bytes"), "{message}");
        assert!(message.contains("10485760"), "{message}");
        let _fits = budget
            .reserve(Phase::Decode, 10 * MIB)
            .await
            .expect("exactly the share fits");
    }

    #[tokio::test]
    async fn shrinking_releases_the_excess() {
        let budget = MemoryBudget::new(64 * MIB);
        let mut held = budget.reserve(Phase::Download, 25 * MIB).await.unwrap();
        held.shrink_to(3 * MIB + 1);
        assert_eq!(held.bytes(), 3 * MIB + UNIT, "rounded up to whole KiB");
        assert_eq!(budget.available(Phase::Download), 29 * MIB - UNIT);
        held.shrink_to(10 * MIB);
        assert_eq!(held.bytes(), 3 * MIB + UNIT, "never grows");
    }

    #[tokio::test]
    async fn an_unlimited_budget_reserves_nothing() {
        let budget = MemoryBudget::unlimited();
        let held = budget.reserve(Phase::Decode, u64::MAX).await.unwrap();
        assert_eq!(held.bytes(), 0);
        assert_eq!(budget.available(Phase::Decode), u64::MAX);
    }
}
