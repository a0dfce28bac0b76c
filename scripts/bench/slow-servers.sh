#!/usr/bin/env bash
# Hostile slow image servers, end to end: the `pipeline` example on its embedded defaults, driven
# by `loadgen` with GOOD ordinary products, once alone and once with SLOW products among them
# whose first image is served one byte a second. Prints both runs' end-to-end latency of the
# good products; the target is p95 with the slow ones ≤ 1.2× p95 without.
#
#   cargo build --release --example pipeline --example loadgen
#   scripts/bench/slow-servers.sh [ROUNDS] [GOOD] [SLOW] [WORKER_CONCURRENCY]   # 1 200 8 default
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds="${1:-1}" good="${2:-200}" slow="${3:-8}" concurrency="${4:-}"
bin=target/release/examples
scratch="$(mktemp -d)"
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$scratch"' EXIT

run() { # name slow
  local name=$1 slow=$2 dir="$scratch/$1-$RANDOM" port=8097
  mkdir -p "$dir"
  (cd "$dir" && exec env ALLOW_PRIVATE_IMAGE_HOSTS=true ${concurrency:+WORKER_CONCURRENCY=$concurrency} \
     HTTP_ADDR="127.0.0.1:$port" RUST_LOG=warn "$OLDPWD/$bin/pipeline" >"$dir/pipeline.log" 2>&1) &
  pid=$!
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.2; done
  local out
  out="$("$bin/loadgen" --url "http://127.0.0.1:$port" --products $((good + slow)) --images 3 \
    --slow "$slow" 2>/dev/null)"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  echo "== $name (WORKER_CONCURRENCY ${concurrency:-default})"
  grep -E '^(end to end|statuses|slow|end-to-end)' <<<"$out"
}

for round in $(seq "$rounds"); do
  run "$good good" 0
  run "$good good + $slow slow" "$slow"
done
