#!/usr/bin/env bash
# pgbench running the store's product + outbox transaction (pgbench_create_product.sql).
#
#   benches/pgbench.sh DATABASE_URL SCHEMA USER_ID [SECONDS]
#
# SCHEMA must hold the store's tables (the criterion bench creates one and calls this script)
# and USER_ID an existing user. Prints one line per client count: "clients=N tps=X".
set -euo pipefail
url=$1 schema=$2 uid=$3 seconds=${4:-10}
here=$(cd "$(dirname "$0")" && pwd)
for clients in 1 8; do
  jobs=$(( clients < 2 ? 1 : 2 ))
  out=$(PGOPTIONS="-c search_path=$schema" pgbench -n -M prepared -c "$clients" -j "$jobs" \
        -T "$seconds" -D uid="$uid" -f "$here/pgbench_create_product.sql" "$url" 2>&1) || {
    echo "$out" >&2
    exit 1
  }
  tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -n1)
  echo "clients=$clients tps=$tps"
done
