#!/usr/bin/env bash
# Thousands of slow and idle connections from 127.0.0.1 against the `pipeline` example, while a
# well-behaved client on 127.0.0.2 sends GET /healthz every half second and one POST /users:
# prints its failures and worst latency, and the server's connection metrics.
#
#   cargo build --release --example pipeline
#   scripts/bench/slow-clients.sh [CONNECTIONS] [SECONDS]      # defaults 12000 25
#   PIPELINE=/tmp/pipeline-base scripts/bench/slow-clients.sh   # another build, e.g. without the limits
# (needs `ulimit -n` above CONNECTIONS for the attacking Python process)
set -euo pipefail
cd "$(dirname "$0")/../.."
connections="${1:-12000}" seconds="${2:-25}" port=8093
scratch="$(mktemp -d)"
trap 'kill "${pid:-}" "${attacker:-}" 2>/dev/null || true; rm -rf "$scratch"' EXIT
(cd "$scratch" && ALLOW_PRIVATE_IMAGE_HOSTS=true HTTP_ADDR="127.0.0.1:$port" RUST_LOG=error \
   exec "${PIPELINE:-$OLDPWD/target/release/examples/pipeline}" >"$scratch/pipeline.log" 2>&1) &
pid=$!
until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.2; done
python3 scripts/bench/slow-clients.py "$port" "$connections" "$seconds" &
attacker=$!
sleep 3
worst=0 failures=0 requests=$(( (seconds - 5) * 2 ))
for _ in $(seq "$requests"); do
  read -r code took < <(curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 5 \
    --interface 127.0.0.2 "http://127.0.0.1:$port/healthz" || echo "000 5")
  [ "$code" = 200 ] || failures=$((failures + 1))
  worst=$(awk -v a="$worst" -v b="$took" 'BEGIN {print (b > a) ? b : a}')
  sleep 0.5
done
post=$(curl -s -o /dev/null -w '%{http_code} in %{time_total} s' --max-time 5 --interface 127.0.0.2 \
  -H 'content-type: application/json' -d '{"name":"A","mobile":"+4915112345678","latitude":1,"longitude":2}' \
  "http://127.0.0.1:$port/users")
echo "well-behaved client (127.0.0.2): $requests GET /healthz, $failures failed, worst ${worst} s; POST /users: $post"
wait "$attacker" || true
curl -s "http://127.0.0.1:$port/metrics" | grep -E '^http_connections'
