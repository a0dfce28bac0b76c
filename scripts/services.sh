#!/usr/bin/env bash
# Starts (or stops) the services the test suite talks to, and prints the environment that points
# the tests at them. Services already running are left alone; a URL already set in the
# environment wins over the local default.
#
#   scripts/services.sh start   # start what is missing, print `export ...` lines
#   scripts/services.sh stop    # stop what this script started
#   scripts/services.sh postgres # start only PostgreSQL, print its `export DATABASE_URL=...`
#   eval "$(scripts/services.sh env)"
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

: "${DATABASE_URL:=postgres://root@127.0.0.1:5432/test}"
: "${AMQP_URL:=amqp://guest:guest@127.0.0.1:5672/%2f}"
: "${KAFKA_BROKERS:=127.0.0.1:9092}"

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_for() { # name host port seconds
  local i
  for ((i = 0; i < $4 * 10; i++)); do port_open "$2" "$3" && return 0; sleep 0.1; done
  echo "services: $1 did not open $2:$3 within $4 s" >&2
  return 1
}

start_postgres() {
  port_open 127.0.0.1 5432 && return 0
  if command -v pg_ctlcluster >/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
    wait_for PostgreSQL 127.0.0.1 5432 30
  else
    echo "services: PostgreSQL is not running and not installed; set DATABASE_URL" >&2
    return 1
  fi
}

start_rabbit() {
  port_open 127.0.0.1 5672 && return 0
  if command -v rabbitmq-server >/dev/null; then
    rabbitmq-server -detached
    wait_for RabbitMQ 127.0.0.1 5672 60
  else
    echo "services: RabbitMQ is not running and not installed; set AMQP_URL" >&2
    return 1
  fi
}

start_kafka() {
  [ -x "$here/kafka.sh" ] || return 1
  # A broker that already answers belongs to someone else: `stop` must leave it running.
  if "$here/kafka.sh" status >/dev/null 2>&1; then
    return 0
  fi
  "$here/kafka.sh" start >&2 && echo "export SERVICES_STARTED_KAFKA=1"
}

# The restartable broker of the broker-restart test (kafka.sh start-s3: Tansu on S3, so topics
# and committed offsets survive a kill -9), after start_s3 since it stores its data there. The test
# connects to KAFKA_RESTART_BROKERS and runs KAFKA_RESTART_COMMAND (a shell command line) to crash
# and restart it; nothing else uses that broker, so the restart disturbs no other test. A user's own
# KAFKA_RESTART_BROKERS comes with their own KAFKA_RESTART_COMMAND and is left alone.
kafka_restart_env() {
  echo "export KAFKA_RESTART_BROKERS='127.0.0.1:${KAFKA_S3_PORT:-9094}'"
  echo "export KAFKA_RESTART_COMMAND='$(printf %q "$here/kafka.sh") restart-s3'"
}

start_kafka_s3() {
  if [ -n "${KAFKA_RESTART_BROKERS:-}" ]; then
    echo "export KAFKA_RESTART_BROKERS='$KAFKA_RESTART_BROKERS'"
    echo "export KAFKA_RESTART_COMMAND='${KAFKA_RESTART_COMMAND:-}'"
    return
  fi
  [ -x "$here/kafka.sh" ] && "$here/s3.sh" status >/dev/null 2>&1 || return 1
  # One that already answers is an earlier run's (restart-s3 fails loudly on a foreign one).
  if "$here/kafka.sh" status-s3 >/dev/null 2>&1; then
    kafka_restart_env
    return
  fi
  "$here/kafka.sh" start-s3 >&2 && echo "export SERVICES_STARTED_KAFKA_S3=1" && kafka_restart_env
}

start_s3() {
  [ -x "$here/s3.sh" ] || return 1
  # A store that already answers belongs to someone else (or an earlier run): leave it running.
  if "$here/s3.sh" status >/dev/null 2>&1; then
    "$here/s3.sh" start >&2 && "$here/s3.sh" env
    return
  fi
  "$here/s3.sh" start >&2 && echo "export SERVICES_STARTED_S3=1" && "$here/s3.sh" env
}

# rotel, an OTLP collector (PyPI wheel), which the gRPC trace test starts itself: installed into
# a virtualenv of this script's (scripts/.venv-rotel, git-ignored).
install_rotel() {
  local venv="$here/.venv-rotel" agent
  agent="$(echo "$venv"/lib/python3*/site-packages/rotel/rotel-agent)"
  if [ ! -x "$agent" ]; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check rotel==0.0.1a15 >&2
    agent="$(echo "$venv"/lib/python3*/site-packages/rotel/rotel-agent)"
  fi
  [ -x "$agent" ] && echo "export ROTEL_AGENT='$agent'"
}

print_env() {
  echo "export DATABASE_URL='$DATABASE_URL'"
  echo "export AMQP_URL='$AMQP_URL'"
  echo "export KAFKA_BROKERS='$KAFKA_BROKERS'"
}

case "${1:-}" in
  start)
    # A service that cannot be started is left out of the environment: its tests then skip with
    # a printed reason (or fail under REQUIRE_SERVICES=1).
    start_postgres >&2 && echo "export DATABASE_URL='$DATABASE_URL'"
    start_rabbit >&2 && echo "export AMQP_URL='$AMQP_URL'"
    kafka_env="$(start_kafka)" && echo "${kafka_env}${kafka_env:+
}export KAFKA_BROKERS='$KAFKA_BROKERS'"
    start_s3 || true
    start_kafka_s3 || true
    install_rotel || true
    exit 0
    ;;
  postgres)
    # Only PostgreSQL (what `scripts/fuzz-api.sh` needs).
    start_postgres >&2 && echo "export DATABASE_URL='$DATABASE_URL'"
    ;;
  stop)
    # Only stops the brokers `start` started (SERVICES_STARTED_KAFKA*, from `start`'s output).
    if [ "${SERVICES_STARTED_KAFKA:-}" = 1 ] && [ -x "$here/kafka.sh" ]; then
      env -u KAFKA_BROKERS "$here/kafka.sh" stop >&2 || true
    fi
    if [ "${SERVICES_STARTED_KAFKA_S3:-}" = 1 ] && [ -x "$here/kafka.sh" ]; then
      "$here/kafka.sh" stop-s3 >&2 || true
    fi
    if [ "${SERVICES_STARTED_S3:-}" = 1 ] && [ -x "$here/s3.sh" ]; then
      "$here/s3.sh" stop >&2 || true
    fi
    ;;
  env)
    print_env
    # Only a store that answers: a set MEDIA_TEST_S3_URL makes the S3 tests run, not skip.
    if "$here/s3.sh" status >/dev/null 2>&1; then "$here/s3.sh" env; fi
    if [ -n "${KAFKA_RESTART_BROKERS:-}" ]; then
      echo "export KAFKA_RESTART_BROKERS='$KAFKA_RESTART_BROKERS'"
      echo "export KAFKA_RESTART_COMMAND='${KAFKA_RESTART_COMMAND:-}'"
    elif "$here/kafka.sh" status-s3 >/dev/null 2>&1; then
      kafka_restart_env
    fi
    ;;
  *) echo "usage: $0 start|stop|env|postgres" >&2; exit 2 ;;
esac
