//! Tests that need a service: skipped with a printed reason when it is not configured, failed
//! when `REQUIRE_SERVICES=1`.

use std::io::Write;

/// Whether a missing service fails the test instead of skipping it: `REQUIRE_SERVICES=1`, as
/// `.ci/run` sets, so that no test passes without running.
pub fn services_required() -> bool {
    std::env::var("REQUIRE_SERVICES").is_ok_and(|value| value == "1")
}

/// `None`, after printing that the test is skipped because `what` is missing and `how` to
/// provide it; a panic saying the same when [`services_required`].
///
/// ```
/// # std::env::remove_var("REQUIRE_SERVICES");
/// let config: Option<u32> = testsupport::missing_service("KAFKA_BROKERS", "scripts/kafka.sh start");
/// assert!(config.is_none());
/// ```
pub fn missing_service<T>(what: &str, how: &str) -> Option<T> {
    assert!(
        !services_required(),
        "REQUIRE_SERVICES=1 but {what} is not set ({how})"
    );
    // Straight to stderr: the test harness captures `eprintln!` of passing tests, and a skip
    // must be seen.
    let _ = writeln!(std::io::stderr(), "skipped: {what} is not set ({how})");
    None
}

/// The value of the environment variable `var` when it is set and not empty, else
/// [`missing_service`]`(var, how)`.
pub fn service_var(var: &str, how: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ => missing_service(var, how),
    }
}

/// The path of the program `name` on `PATH`, else [`missing_service`] with the Debian
/// `package` that installs it (for tests that check our output with an independent tool).
pub fn program(name: &str, package: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    });
    found.or_else(|| missing_service(name, &format!("apt-get install {package}")))
}
