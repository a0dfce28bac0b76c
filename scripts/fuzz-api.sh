#!/usr/bin/env bash
# Property-based test of the HTTP API against its own OpenAPI document (schemathesis): starts the
# `pipeline` example on a throw-away SQLite database and checks that no generated request, valid
# or not, gets a 5xx, an undocumented status, content type or header, or a body that does not
# match its schema. `.ci/run` runs it after the test suite.
#
#   scripts/fuzz-api.sh            # 100 cases per operation, fixed seed
#   FUZZ_EXAMPLES=1000 FUZZ_SEED=1 scripts/fuzz-api.sh
#
# Not checked: that every schema-valid request is accepted. Some rules the schema cannot state
# (min_price ≤ max_price; an Idempotency-Key reused for another body is a 422) reject requests a
# generator considers valid.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=scripts/.venv-schemathesis
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'schemathesis==4.32.5'
fi

cargo build --quiet --example pipeline
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
DATABASE_URL="sqlite://$work/fuzz.db?mode=rwc" MEDIA_DIR="$work/media" HTTP_ADDR="127.0.0.1:$port" \
  BROKER=memory RUST_LOG=warn "$target_dir/debug/examples/pipeline" >"$work/pipeline.log" 2>&1 &
pipeline=$!
trap 'kill $pipeline 2>/dev/null || true; wait $pipeline 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done

# Run from the scratch directory: schemathesis keeps its example database in the working directory.
schemathesis=$(pwd)/$venv/bin/schemathesis
cd "$work"
"$schemathesis" run "http://127.0.0.1:$port/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --max-examples "${FUZZ_EXAMPLES:-100}" --seed "${FUZZ_SEED:-20261125}" \
  --no-color
