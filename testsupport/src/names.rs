//! Names no other test run uses at the same time.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// `prefix` followed by the process id, a counter and the clock's nanoseconds: unique among the
/// tests of this run and of the runs beside it (on one server, each run is one process). Made of
/// ASCII letters, digits and `_` when `prefix` is, so it is a valid SQL identifier, topic and
/// queue name.
///
/// ```
/// let (a, b) = (testsupport::unique_name("t"), testsupport::unique_name("t"));
/// assert!(a.starts_with("t_") && a != b);
/// ```
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
