#!/usr/bin/env bash
# Ingest requests/s of the `pipeline` example (embedded defaults: SQLite, in-memory broker) with
# the serving limits (header timeout, connection caps, load shedding, and a write rate limit set
# high enough never to trigger) against a build without them, rounds alternating. Products have
# one small image, so that the worker running alongside takes little of the CPU.
#
#   # the baseline: the commit before the limits (8ab0245^), built into its own target dir
#   git worktree add /tmp/base 8ab0245^ && (cd /tmp/base && CARGO_TARGET_DIR=/tmp/base-target \
#     cargo build --release --example pipeline) && cp /tmp/base-target/release/examples/pipeline /tmp/pipeline-base
#   cargo build --release --example pipeline --example loadgen
#   scripts/bench/ingest-limits.sh /tmp/pipeline-base [ROUNDS] [PRODUCTS]    # defaults 3 5000
set -euo pipefail
cd "$(dirname "$0")/../.."
base="${1:?the baseline pipeline binary}" rounds="${2:-3}" products="${3:-5000}"
bin=target/release/examples
scratch="$(mktemp -d)"
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$scratch"' EXIT

run() { # name binary [env...]
  local name=$1 binary=$2 dir="$scratch/$1-$RANDOM" port=8096
  shift 2
  mkdir -p "$dir"
  (cd "$dir" && exec env "$@" HTTP_ADDR="127.0.0.1:$port" RUST_LOG=error \
     ALLOW_PRIVATE_IMAGE_HOSTS=true "$binary" >"$dir/pipeline.log" 2>&1) &
  pid=$!
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { cat "$dir/pipeline.log" >&2; exit 1; }
    sleep 0.2
  done
  local line
  # Only ingest is measured: stop waiting for processing at once (loadgen then exits 1).
  line="$("$bin/loadgen" --url "http://127.0.0.1:$port" --products "$products" --images 1 \
           --size 320x240 --timeout 0 2>/dev/null | grep -E '^ingest:' || true)"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  echo "$name: $line"
}

for round in $(seq "$rounds"); do
  run without "$base" NOTHING=1
  run with "$PWD/$bin/pipeline" RATE_LIMIT_WRITES=1000000,1000000
done
