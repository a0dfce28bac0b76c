#!/usr/bin/env bash
# The test command: starts the services the tests need, then runs every test of the workspace
# (unit, conformance, repository, imaging and end-to-end tests, and doc tests).
#
# With REQUIRE_SERVICES=1 a test whose service is missing fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/services.sh start)"
trap 'scripts/services.sh stop' EXIT
cargo test --workspace --all-features "$@"
