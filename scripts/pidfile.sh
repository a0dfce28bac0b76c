# Sourced by the scripts that run a test service in the background (kafka.sh, s3.sh): the pid file
# that says which process this script started, and stopping it. Needs `PID_FILE` set and a `log`
# function defined by the sourcing script.

# The pid in $PID_FILE when that process still runs.
running_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# Stops the process of $PID_FILE: SIGTERM, then SIGKILL after $2 seconds. $1 names it in messages.
stop_started() { # name grace_seconds
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$PID_FILE"
        log "$1 is not running (started by this script)"
        return 0
    fi
    kill "$pid" 2>/dev/null || true
    for _ in $(seq $(($2 * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$1 (pid $pid) ignored SIGTERM; killing it"
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE"
    log "$1 stopped"
}
