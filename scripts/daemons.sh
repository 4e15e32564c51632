# Sourced by setup.sh and test.sh. Without systemd as PID 1 nobody starts libvirt's
# daemons: start the ones that are not running and remember them, so that
# stop_started_daemons ends exactly those (by PID) and nothing else.
STARTED_DAEMON_PIDFILES=()

_daemon_running() {  # pidfile
    [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

start_daemons() {
    if [[ -d /run/systemd/system ]]; then
        systemctl start virtlogd.socket libvirtd.socket 2>/dev/null || true
        return 0
    fi
    local name pidfile
    for name in virtlogd libvirtd; do
        pidfile=/run/$name.pid
        command -v "$name" >/dev/null || continue
        if ! _daemon_running "$pidfile"; then
            "$name" -d
            STARTED_DAEMON_PIDFILES+=("$pidfile")
        fi
    done
    # libvirtd answers once its socket exists
    for _ in $(seq 100); do
        [[ -S /run/libvirt/libvirt-sock ]] && return 0
        sleep 0.1
    done
    echo "libvirtd did not create /run/libvirt/libvirt-sock" >&2
    return 1
}

stop_started_daemons() {
    local pidfile pid
    for pidfile in "${STARTED_DAEMON_PIDFILES[@]}"; do
        [[ -f $pidfile ]] || continue
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
    STARTED_DAEMON_PIDFILES=()
}
