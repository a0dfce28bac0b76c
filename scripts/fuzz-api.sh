#!/usr/bin/env bash
# Property-based test of the HTTP API against its own OpenAPI document (schemathesis): starts the
# `pipeline` example on a throw-away SQLite database, then on PostgreSQL in a throw-away schema,
# and checks that no generated request, valid or not, gets a 5xx, an undocumented status, content
# type or header, or a body that does not match its schema. Generated strings include NUL and
# the other control characters (PostgreSQL text cannot hold NUL: a run on SQLite alone would not
# see a request that reaches the database with one). `.ci/run` runs it after the test suite.
#
#   scripts/fuzz-api.sh            # 100 cases per operation on each database, fixed seed
#   FUZZ_EXAMPLES=1000 FUZZ_POSTGRES_EXAMPLES=1000 FUZZ_SEED=1 scripts/fuzz-api.sh
#   FUZZ_BACKENDS=sqlite scripts/fuzz-api.sh           # one run only (sqlite or postgres)
#   FUZZ_DATABASE_URL=postgres://user@host/db scripts/fuzz-api.sh
#
# PostgreSQL: FUZZ_DATABASE_URL, else a postgres:// DATABASE_URL, else the local test server
# (started by `scripts/services.sh postgres` when it is not running). The run fails when
# PostgreSQL cannot be reached; FUZZ_BACKENDS=sqlite skips it on purpose.
#
# Not checked: that every schema-valid request is accepted. Some rules the schema cannot state
# (min_price ≤ max_price; an Idempotency-Key reused for another body is a 422) reject requests a
# generator considers valid.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

backends=${FUZZ_BACKENDS:-sqlite postgres}
venv=scripts/.venv-schemathesis
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'schemathesis==4.32.5'
fi
schemathesis=$root/$venv/bin/schemathesis

cargo build --quiet --features postgres --example pipeline
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
pipeline_bin=$target_dir/debug/examples/pipeline

work=$(mktemp -d)
pipeline=
pg_url=
pg_schema=
cleanup() {
  if [ -n "$pipeline" ]; then
    kill "$pipeline" 2>/dev/null || true
    wait "$pipeline" 2>/dev/null || true
  fi
  if [ -n "$pg_schema" ]; then
    psql "$pg_url" -qX -v ON_ERROR_STOP=1 -c "DROP SCHEMA IF EXISTS \"$pg_schema\" CASCADE" >/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# fuzz NAME EXAMPLES ENV...: starts the API with ENV, runs schemathesis against it, stops it.
fuzz() {
  local name=$1 examples=$2
  shift 2
  local dir=$work/$name started port status=0
  mkdir -p "$dir"
  started=$(date +%s)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  env -u DATABASE_SCHEMA -u API_TOKEN "$@" MEDIA_DIR="$dir/media" HTTP_ADDR="127.0.0.1:$port" BROKER=memory RUST_LOG=warn \
    "$pipeline_bin" >"$dir/pipeline.log" 2>&1 &
  pipeline=$!
  local healthy=
  for _ in $(seq 300); do
    if curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then healthy=1; break; fi
    kill -0 "$pipeline" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$healthy" ]; then
    echo "fuzz-api: the API on $name did not come up; its log:" >&2
    cat "$dir/pipeline.log" >&2
    return 1
  fi
  echo "fuzz-api: $name, $examples examples per operation"
  # Run from the scratch directory: schemathesis keeps its example database in the working
  # directory.
  (cd "$dir" && "$schemathesis" run "http://127.0.0.1:$port/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --generation-codec utf-8 --generation-allow-x00 true \
    --max-examples "$examples" --seed "${FUZZ_SEED:-20261125}" \
    --no-color) || status=$?
  kill "$pipeline" 2>/dev/null || true
  wait "$pipeline" 2>/dev/null || true
  pipeline=
  if [ "$status" -ne 0 ] && grep -qE 'ERROR|panicked' "$dir/pipeline.log"; then
    echo "fuzz-api: errors the API logged on $name:" >&2
    grep -E 'ERROR|panicked' "$dir/pipeline.log" | tail -n 20 >&2
  fi
  echo "fuzz-api: $name took $(($(date +%s) - started)) s"
  return "$status"
}

failed=()
for backend in $backends; do
  case "$backend" in
    sqlite)
      fuzz sqlite "${FUZZ_EXAMPLES:-100}" DATABASE_URL="sqlite://$work/fuzz.db?mode=rwc" ||
        failed+=(sqlite)
      ;;
    postgres)
      pg_url=${FUZZ_DATABASE_URL:-}
      if [ -z "$pg_url" ] && [[ "${DATABASE_URL:-}" == postgres* ]]; then pg_url=$DATABASE_URL; fi
      if [ -z "$pg_url" ]; then
        pg_url=$(scripts/services.sh postgres | sed -n "s/^export DATABASE_URL='\(.*\)'$/\1/p")
      fi
      if [ -z "$pg_url" ] || ! psql "$pg_url" -qX -c 'SELECT 1' >/dev/null; then
        echo "fuzz-api: PostgreSQL is not reachable${pg_url:+ at $pg_url}; set FUZZ_DATABASE_URL, or FUZZ_BACKENDS=sqlite to skip the PostgreSQL run" >&2
        failed+=(postgres)
        continue
      fi
      pg_schema=fuzz_$(python3 -c 'import secrets; print(secrets.token_hex(4))')
      psql "$pg_url" -qX -v ON_ERROR_STOP=1 -c "CREATE SCHEMA \"$pg_schema\"" >/dev/null
      fuzz postgres "${FUZZ_POSTGRES_EXAMPLES:-${FUZZ_EXAMPLES:-100}}" DATABASE_URL="$pg_url" DATABASE_SCHEMA="$pg_schema" ||
        failed+=(postgres)
      ;;
    *)
      echo "fuzz-api: unknown backend \`$backend\` in FUZZ_BACKENDS (sqlite, postgres)" >&2
      failed+=("$backend")
      ;;
  esac
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz-api: failed on ${failed[*]}" >&2
  exit 1
fi
