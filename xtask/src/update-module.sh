#!/bin/sh
# Mender update module `hydranet-release` (update module protocol v3), shipped in every
# HydraNet edge release as mender/hydranet-release and installed by the release's install.sh
# into /usr/share/mender/modules/v3/. The artifact (`cargo xtask bundle --format mender`)
# carries one payload file: the release tarball that `flash` installs on a single board.
#
#   ArtifactInstall   unpack the tarball, note what the board looks like now, run the
#                     release's install.sh (checksums, releases/<v>, `current` flipped,
#                     unit), restart the service and wait until it is healthy
#   ArtifactCommit    answer only once the release is healthy: the unit is active and
#                     /healthz answers 200 within HEALTH_TIMEOUT seconds
#   ArtifactRollback  put back exactly what ArtifactInstall found: the current and previous
#                     links, the unit and kiosk files, this module, and no new release folder
#
# Settings: /etc/hydranet/update-module.conf (shell assignments, all optional):
#   HEALTH_TIMEOUT=90          seconds a new release has to become healthy
#   SERVICE_CONTROL=systemctl  what runs `daemon-reload`, `restart U`, `stop U`,
#                              `is-active --quiet U` (a stand-in where there is no systemd)
#   ROOT=                      the board's root; another folder for tests
set -eu

STATE=${1:-}
FILES=${2:-}

HEALTH_TIMEOUT=90
SERVICE_CONTROL=systemctl
ROOT=
CONF=${HYDRANET_UPDATE_MODULE_CONF:-/etc/hydranet/update-module.conf}
if [ -r "$CONF" ]; then
    . "$CONF"
fi
ROOT=${ROOT%/}
MODULE_PATH=usr/share/mender/modules/v3/hydranet-release

say() {
    echo "hydranet-release: $*" >&2
}

die() {
    say "$*"
    exit 1
}

ctl() {
    # SERVICE_CONTROL may be a command with arguments: split on purpose.
    # shellcheck disable=SC2086
    $SERVICE_CONTROL "$@"
}

# link_target NAME: where $base/NAME points, or nothing.
link_target() {
    if [ -L "$base/$1" ]; then
        readlink "$base/$1"
    fi
}

# The release's identity and the paths its install.sh manages, from install.sh itself.
describe() {
    out=$(sh "$1/install.sh" --describe) || die "$1/install.sh --describe failed"
    eval "$out"
    [ -n "${VERSION:-}" ] && [ -n "${PREFIX:-}" ] && [ -n "${SERVICE:-}" ] ||
        die "$1/install.sh did not describe the release (made by an older xtask?)"
    base=$ROOT$PREFIX
}

health_url() {
    case $LISTEN in
        '') ;;
        0.0.0.0:*) echo "http://127.0.0.1:${LISTEN#0.0.0.0:}/healthz" ;;
        '[::]:'*) echo "http://[::1]:${LISTEN#\[::\]:}/healthz" ;;
        *) echo "http://$LISTEN/healthz" ;;
    esac
}

# http_status URL: the HTTP status /healthz answers, 000 for none.
http_status() {
    token=
    if [ "$TOKEN_ENV" = 1 ] && [ -r "$ROOT/etc/hydranet/kiosk.env" ]; then
        token=$(sed -n 's/^[[:space:]]*HYDRANET_KIOSK_TOKEN=//p' "$ROOT/etc/hydranet/kiosk.env" |
            tail -n 1 | tr -d "\"' \r")
    fi
    if command -v curl >/dev/null 2>&1; then
        if [ -n "$token" ]; then
            curl --noproxy '*' -s -o /dev/null -m 3 -w '%{http_code}' \
                -H "Authorization: Bearer $token" "$1" || true
        else
            curl --noproxy '*' -s -o /dev/null -m 3 -w '%{http_code}' "$1" || true
        fi
    elif command -v wget >/dev/null 2>&1; then
        # wget says only whether the answer was a success.
        if [ -n "$token" ]; then
            wget --no-proxy -q -O /dev/null -T 3 -t 1 --header "Authorization: Bearer $token" "$1" &&
                echo 200 || echo 000
        else
            wget --no-proxy -q -O /dev/null -T 3 -t 1 "$1" && echo 200 || echo 000
        fi
    else
        die "neither curl nor wget is installed: cannot ask $1 whether the release is healthy"
    fi
}

# wait_healthy: 0 once the unit is active and /healthz answers 200 (a kiosk-less release:
# once the unit has stayed active for 5 s); 1 after HEALTH_TIMEOUT s, with $why set.
wait_healthy() {
    url=$(health_url)
    waited=0
    steady=0
    why="not checked yet"
    while [ "$waited" -lt "$HEALTH_TIMEOUT" ]; do
        if ctl is-active --quiet "$SERVICE"; then
            if [ -n "$url" ]; then
                code=$(http_status "$url")
                if [ "$code" = 200 ]; then
                    say "release $VERSION is healthy: $SERVICE active, $url answered 200 after ${waited} s"
                    return 0
                fi
                why="$url answered ${code:-000} (503: no frames from the camera)"
            else
                steady=$((steady + 1))
                if [ "$steady" -ge 5 ]; then
                    say "release $VERSION is healthy: $SERVICE active for 5 s"
                    return 0
                fi
                why="$SERVICE active for only $steady s"
            fi
        else
            steady=0
            why="$SERVICE is not active (journalctl -u $SERVICE)"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    return 1
}

# The folders install.sh may create, deepest first, each with the parents that are missing.
missing_dirs() {
    for d in $MANAGED_DIRS; do
        p=$d
        while [ "$p" != . ] && [ "$p" != / ] && [ ! -e "$ROOT/$p" ]; do
            printf '%s\n' "$p"
            p=$(dirname "$p")
        done
    done
}

# KiB free where $1 (or its nearest existing parent) lives.
free_kib() {
    p=$1
    while [ ! -e "$p" ]; do
        p=$(dirname "$p")
    done
    df -Pk "$p" | awk 'NR == 2 { print $4 }'
}

artifact_install() {
    set -- "$FILES"/files/*.tar.gz
    [ $# -eq 1 ] && [ -f "$1" ] ||
        die "the artifact must hold one release tarball (hydranet-edge-*.tar.gz), it holds: $(ls "$FILES/files" | tr '\n' ' ')"
    tarball=$1
    work=$FILES/tmp
    rm -rf "$work/release"
    mkdir -p "$work/release"
    tar -xzf "$tarball" -C "$work/release" 2>"$work/tar.err" ||
        die "$(basename "$tarball") is not a complete release tarball: $(tail -n 1 "$work/tar.err")"
    set -- "$work"/release/*/install.sh
    [ $# -eq 1 ] && [ -f "$1" ] || die "$(basename "$tarball") holds no release folder with install.sh"
    release=$(dirname "$1")
    describe "$release"

    # What the board looks like now, for a rollback that restores exactly that.
    old_current=$(link_target current)
    old_previous=$(link_target previous)
    existed=0
    if [ -e "$base/releases/$VERSION" ]; then
        existed=1
    fi
    present=
    for p in $MANAGED; do
        if [ -e "$ROOT/$p" ] || [ -L "$ROOT/$p" ]; then
            present="$present $p"
        fi
    done
    # shellcheck disable=SC2086
    tar -cf "$work/before.tar" -C "$ROOT/" $present 2>"$work/tar.err" ||
        die "could not save the installed files for a rollback: $(tail -n 1 "$work/tar.err")"
    {
        echo "VERSION='$VERSION'"
        echo "PREFIX='$PREFIX'"
        echo "SERVICE='$SERVICE'"
        echo "LISTEN='$LISTEN'"
        echo "TOKEN_ENV='$TOKEN_ENV'"
        echo "MANAGED='$MANAGED'"
        echo "old_current='$old_current'"
        echo "old_previous='$old_previous'"
        echo "existed=$existed"
        echo "created_dirs='$(missing_dirs | tr '\n' ' ')'"
    } >"$work/state"

    # A full data partition fails here, before anything is touched, with the numbers.
    need=$(du -sk "$release" | cut -f 1)
    need=$((need + 256))
    have=$(free_kib "$base")
    [ "$have" -ge "$need" ] ||
        die "release $VERSION needs $need KiB under $base, only $have KiB are free there"

    sh "$release/install.sh" --root "${ROOT:-/}" --no-restart >&2 ||
        die "install.sh of release $VERSION failed (above); the installed release is unchanged"
    say "installed $VERSION under $base (was: ${old_current:-none})"
    ctl daemon-reload || say "$SERVICE_CONTROL daemon-reload failed"
    ctl restart "$SERVICE" || say "$SERVICE did not restart"
    wait_healthy || die "release $VERSION is not healthy after $HEALTH_TIMEOUT s: $why"
}

artifact_commit() {
    [ -f "$FILES/tmp/state" ] || die "no install to commit (state missing from $FILES/tmp)"
    . "$FILES/tmp/state"
    base=$ROOT$PREFIX
    [ "$(link_target current)" = "releases/$VERSION" ] ||
        die "release $VERSION is not the current one under $base"
    wait_healthy || die "release $VERSION is not healthy after $HEALTH_TIMEOUT s: $why"
}

artifact_rollback() {
    if [ ! -f "$FILES/tmp/state" ]; then
        say "nothing was installed: nothing to roll back"
        return 0
    fi
    . "$FILES/tmp/state"
    base=$ROOT$PREFIX
    for p in $MANAGED; do
        rm -f "$ROOT/$p"
    done
    if [ -f "$FILES/tmp/before.tar" ]; then
        tar -xpf "$FILES/tmp/before.tar" -C "$ROOT/"
    fi
    rm -rf "$base/releases/$VERSION.partial" "$base/releases/$VERSION.replaced"
    if [ "$existed" = 0 ]; then
        rm -rf "$base/releases/$VERSION"
    fi
    for d in $created_dirs; do
        rmdir "$ROOT/$d" 2>/dev/null || true
    done
    say "rolled back to ${old_current:-no release} (previous: ${old_previous:-none})"
    ctl daemon-reload || say "$SERVICE_CONTROL daemon-reload failed"
    if [ -n "$old_current" ]; then
        VERSION=${old_current#releases/}
        ctl restart "$SERVICE" || say "$SERVICE did not restart"
        if wait_healthy; then
            :
        else
            say "the release rolled back to is not healthy either: $why"
        fi
    else
        ctl stop "$SERVICE" || true
    fi
}

case $STATE in
    NeedsArtifactReboot)
        echo No
        ;;
    SupportsRollback)
        echo Yes
        ;;
    ArtifactInstall)
        artifact_install
        ;;
    ArtifactCommit)
        artifact_commit
        ;;
    ArtifactRollback)
        artifact_rollback
        ;;
    Download | ArtifactReboot | ArtifactVerifyReboot | ArtifactRollbackReboot | \
        ArtifactVerifyRollbackReboot | ArtifactFailure | Cleanup)
        ;;
    *)
        # Newer clients may ask more; an unknown state is not an error (protocol v3).
        ;;
esac
exit 0
