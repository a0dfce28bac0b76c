#!/usr/bin/env bash
# Ingest requests/s and end-to-end images/s with trace export on (every span sampled, sent over
# OTLP/HTTP to a real collector: rotel from PyPI, discarding what it receives) vs off: the
# `pipeline` example on its embedded defaults, `loadgen` driving it, rounds alternating which
# goes first so that both see the same machine load. Prints one line per run and, for the runs
# with export, the spans exported and dropped (from /metrics).
#
#   cargo build --release --example pipeline --example loadgen
#   scripts/bench/otel-export.sh [ROUNDS] [PRODUCTS] [IMAGES] [SIZE]   # defaults 3 600 2 1600x1200
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds="${1:-3}" products="${2:-600}" images="${3:-2}" size="${4:-1600x1200}"
bin=target/release/examples
scratch="$(mktemp -d)"
trap 'kill "${pid:-}" "${collector:-}" 2>/dev/null || true; rm -rf "$scratch"' EXIT

python3 -m venv "$scratch/venv"
"$scratch/venv/bin/pip" install -q rotel==0.0.1a15
agent="$(echo "$scratch"/venv/lib/python3*/site-packages/rotel/rotel-agent)"
"$agent" start --otlp-grpc-endpoint 127.0.0.1:14317 --otlp-http-endpoint 127.0.0.1:14318 \
  --exporter blackhole >"$scratch/rotel.log" 2>&1 &
collector=$!
until (exec 3<>/dev/tcp/127.0.0.1/14318) 2>/dev/null; do sleep 0.2; done

run() { # name [VAR=value ...]
  local name="$1" dir="$scratch/$1-$RANDOM" port=8098
  shift
  mkdir -p "$dir"
  (cd "$dir" && exec env "$@" ALLOW_PRIVATE_IMAGE_HOSTS=true HTTP_ADDR="127.0.0.1:$port" \
     RUST_LOG=warn "$OLDPWD/$bin/pipeline" >"$dir/pipeline.log" 2>&1) &
  pid=$!
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.2; done
  local out
  out="$("$bin/loadgen" --url "http://127.0.0.1:$port" --products "$products" --images "$images" \
           --size "$size" 2>/dev/null)"
  local spans=""
  if [ $# -gt 0 ]; then
    sleep 6  # the last batch (exported every 5 s)
    spans="$(curl -s "http://127.0.0.1:$port/metrics" | grep -E '^otel_spans_(exported|dropped|export_failed)_total' | tr '\n' ' ' || true)"
  fi
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  echo "$name: $(grep -E '^ingest:' <<<"$out" | tr -s ' ') | $(grep -E '^end to end:' <<<"$out" | tr -s ' ') | $(grep -E '^statuses:' <<<"$out") ${spans}"
}

on=(OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:14318 OTEL_TRACES_SAMPLER=always_on)
for round in $(seq "$rounds"); do
  if [ $((round % 2)) -eq 1 ]; then
    run off; run on "${on[@]}"
  else
    run on "${on[@]}"; run off
  fi
done
