#!/usr/bin/env bash
# The worker memory budget, end to end: the `pipeline` example on its embedded defaults, driven
# by `loadgen`, with WORKER_MEMORY_BUDGET at its default (512MiB) and unbounded (0).
#
#   large:    8 products × 20 generated images of random pixels (2650×2650, ≈ 17 MB each), all
#             posted at once: the pipeline's peak RSS (VmHWM) with and without the budget;
#   ordinary: PRODUCTS products × 3 real photos of 1–4.5 MB (plasma-workspace-wallpapers and
#             gnome-backgrounds): images/s with and without the budget.
#
#   apt-get install plasma-workspace-wallpapers gnome-backgrounds
#   cargo build --release --example pipeline --example loadgen
#   scripts/bench/memory-budget.sh [ROUNDS] [PRODUCTS]      # defaults 1 100
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds="${1:-1}" products="${2:-100}"
bin=target/release/examples
scratch="$(mktemp -d)"
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$scratch"' EXIT

photos="$scratch/photos"
mkdir -p "$photos"
find /usr/share/wallpapers /usr/share/backgrounds -type f \
  \( -name '*.jpg' -o -name '*.jpeg' -o -name '*.png' -o -name '*.webp' \) \
  -size +1M -size -4500k 2>/dev/null | while read -r file; do
  ln -s "$file" "$photos/$(echo "$file" | tr / _)"
done
[ -n "$(ls "$photos")" ] || { echo "no photos: apt-get install plasma-workspace-wallpapers gnome-backgrounds" >&2; exit 1; }

run() { # name budget loadgen-args...
  local name=$1 budget=$2 dir="$scratch/$1-$RANDOM" port=8098
  shift 2
  mkdir -p "$dir"
  (cd "$dir" && WORKER_MEMORY_BUDGET="$budget" ALLOW_PRIVATE_IMAGE_HOSTS=true \
     HTTP_ADDR="127.0.0.1:$port" RUST_LOG=warn exec "$OLDPWD/$bin/pipeline" >"$dir/pipeline.log" 2>&1) &
  pid=$!
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.2; done
  local line statuses
  line="$("$bin/loadgen" --url "http://127.0.0.1:$port" "$@" 2>/dev/null)"
  statuses="$(grep -E '^statuses' <<<"$line" || true)"
  local hwm
  hwm="$(awk '/VmHWM/ {printf "%.0f MiB", $2 / 1024}' "/proc/$pid/status")"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  echo "$name budget=$budget: peak RSS $hwm; $(grep -E '^end to end' <<<"$line" || true); $statuses"
}

for round in $(seq "$rounds"); do
  run large 512MiB --products 8 --images 20 --concurrency 8 --noise --size 2650x2650
  run large 0 --products 8 --images 20 --concurrency 8 --noise --size 2650x2650
  run ordinary 512MiB --products "$products" --images 3 --images-dir "$photos"
  run ordinary 0 --products "$products" --images 3 --images-dir "$photos"
done
