#!/usr/bin/env bash
# Starts an API and N workers at the same moment on a fresh PostgreSQL schema, ROUNDS times, and
# counts the processes that did not become ready (what `docker compose up` or a rollout does).
#
#   scripts/start-storm.sh [ROUNDS] [WORKERS]      (default 20 rounds, 5 workers)
#
# Needs PostgreSQL and RabbitMQ (scripts/services.sh start) and the example binaries of a
# `cargo test --workspace --all-features` or `cargo build --examples --features rabbit,postgres`
# build (EXAMPLES=target/debug/examples by default).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-20}
workers=${2:-5}
examples=${EXAMPLES:-${CARGO_TARGET_DIR:-target}/debug/examples}
export DATABASE_URL=${DATABASE_URL:-postgres://root@127.0.0.1:5432/test}
export AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
export BROKER=rabbit RUST_LOG=${RUST_LOG:-warn}
work=$(mktemp -d)
pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}
trap 'stop_all; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

failed=0
for round in $(seq 1 "$rounds"); do
  schema="storm_$(printf '%08x' $((RANDOM * 32768 + RANDOM)))"
  export DATABASE_SCHEMA=$schema TOPIC_PREFIX="$schema." MEDIA_DIR="$work/media"
  ports=()
  port=$(free_port); ports+=("$port")
  HTTP_ADDR=127.0.0.1:$port "$examples/api" >/dev/null 2>"$work/api.log" &
  pids+=($!)
  for i in $(seq 1 "$workers"); do
    port=$(free_port); ports+=("$port")
    METRICS_ADDR=127.0.0.1:$port "$examples/worker" 2>"$work/worker$i.log" &
    pids+=($!)
  done
  ready=0
  for port in "${ports[@]}"; do
    for _ in $(seq 1 300); do
      if curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then ready=$((ready + 1)); break; fi
      sleep 0.1
    done
  done
  alive=0
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=$((alive + 1)); done
  total=${#ports[@]}
  if [ "$ready" -ne "$total" ] || [ "$alive" -ne "$total" ]; then
    failed=$((failed + 1))
    echo "round $round: $ready of $total ready, $alive alive"
    grep -h -i "error" "$work"/*.log | head -5 || true
  fi
  stop_all
  PGOPTIONS="-c client_min_messages=warning" psql -q "$DATABASE_URL" -c "DROP SCHEMA IF EXISTS \"$schema\" CASCADE" >/dev/null
done
echo "$failed of $rounds rounds had a process that did not start ($workers workers + 1 API each)"
[ "$failed" -eq 0 ]
