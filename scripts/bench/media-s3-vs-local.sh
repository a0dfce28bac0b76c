#!/usr/bin/env bash
# End-to-end images/s with media on S3 (SeaweedFS, scripts/s3.sh) vs the same run with media in a
# local directory: the `pipeline` example on its embedded defaults otherwise, `loadgen` driving it,
# rounds alternating local/S3 so that both see the same machine load. Prints one line per round.
#
#   cargo build --release --features s3 --example pipeline --example loadgen
#   scripts/bench/media-s3-vs-local.sh [ROUNDS] [PRODUCTS] [IMAGES]   # defaults 3 300 3
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds="${1:-3}" products="${2:-300}" images="${3:-3}"
bin=target/release/examples
scripts/s3.sh start >&2
eval "$(scripts/s3.sh env)"
scratch="$(mktemp -d)"
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$scratch"' EXIT

run() { # name media_url
  local dir="$scratch/$1-$RANDOM" port=8097
  mkdir -p "$dir"
  (cd "$dir" && MEDIA_URL="$2" ALLOW_PRIVATE_IMAGE_HOSTS=true HTTP_ADDR="127.0.0.1:$port" \
     RUST_LOG=warn exec "$OLDPWD/$bin/pipeline" >"$dir/pipeline.log" 2>&1) &
  pid=$!
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.2; done
  local line
  line="$("$bin/loadgen" --url "http://127.0.0.1:$port" --products "$products" --images "$images" \
           --size 1600x1200 2>/dev/null | grep -E '^end to end' || true)"
  # SIGTERM: a background job of a script ignores SIGINT.
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  echo "$1: $line"
}

for round in $(seq "$rounds"); do
  run local "$scratch/media-$round"
  run s3 "$MEDIA_TEST_S3_URL/loadgen-$round-$RANDOM"
done
