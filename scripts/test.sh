#!/usr/bin/env bash
# The test command: starts the services the tests need, then runs every test of the workspace
# (unit, conformance, repository, imaging and end-to-end tests, and doc tests), then those of
# tests/embedding, a user's crate outside the workspace.
#
# With REQUIRE_SERVICES=1 a test whose service is missing fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/services.sh start)"
trap 'scripts/services.sh stop' EXIT
cargo test --workspace --all-features "$@"

# Arguments (a filter, `-p mq-core`) select workspace tests only.
[ $# -eq 0 ] || exit 0
# The user's crate resolves from the workspace's lock file and shares its target directory: it
# rebuilds only what its feature set changes (the facade's defaults, not --all-features).
cp Cargo.lock tests/embedding/Cargo.lock
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}" cargo test --manifest-path tests/embedding/Cargo.toml
