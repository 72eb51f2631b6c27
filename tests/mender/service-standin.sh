#!/bin/sh
# A stand-in for systemctl where there is no systemd (this machine's containers): the
# Mender update module's SERVICE_CONTROL in tests/mender/standalone-test.sh.
#
#   service-standin.sh --root DIR --state DIR --source SRC  daemon-reload | restart U |
#                                                          stop U | is-active [--quiet] U
#
# `restart` runs the ExecStart= of DIR/etc/systemd/system/U.service, the unit the release
# installed, with its paths under DIR and its camera swapped for SRC (there is no camera
# here); `is-active` is true while that process lives. Nothing else of systemd is imitated:
# the update module's own logic (links, health over HTTP, rollback) runs unchanged.
set -eu
root=
state=
source=pattern
while [ $# -gt 0 ]; do
    case $1 in
        --root) root=$2; shift 2 ;;
        --state) state=$2; shift 2 ;;
        --source) source=$2; shift 2 ;;
        *) break ;;
    esac
done
[ -n "$root" ] && [ -n "$state" ] || { echo "service-standin: --root and --state are required" >&2; exit 2; }
mkdir -p "$state"
cmd=${1:-}
[ $# -gt 0 ] && shift
[ "${1:-}" = --quiet ] && shift
unit=${1:-}
unit=${unit%.service}
pidfile=$state/$unit.pid

alive() {
    [ -f "$pidfile" ] && pid=$(cat "$pidfile") && kill -0 "$pid" 2>/dev/null &&
        ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null
}

stop() {
    if alive; then
        kill -TERM "$pid" 2>/dev/null || true
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

case $cmd in
    daemon-reload) ;;
    is-active) alive ;;
    stop) stop ;;
    restart)
        file=$root/etc/systemd/system/$unit.service
        [ -f "$file" ] || { echo "service-standin: no unit $file" >&2; exit 5; }
        exec_start=$(sed -n 's/^ExecStart=//p' "$file")
        stop
        # The unit's paths are the board's (/opt/hydranet/...): here they live under $root.
        line=$(printf '%s\n' "$exec_start" | sed -e "s| /| $root/|g" -e "s|^/|$root/|" \
            -e "s|--source [^ ]*|--source $source|" -e 's|--camera-format [^ ]*||')
        # shellcheck disable=SC2086
        setsid $line >>"$state/$unit.log" 2>&1 </dev/null &
        echo $! >"$pidfile"
        ;;
    *) echo "service-standin: unknown command '$cmd'" >&2; exit 2 ;;
esac
