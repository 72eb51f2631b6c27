#!/usr/bin/env bash
# Over-the-air releases with the real Mender client (Debian's mender-client 3.4), offline,
# in standalone mode, on this x86 machine: the board's root file system is a folder, its
# /opt/hydranet a small tmpfs (the data partition), and the client's own paths
# (/etc/mender, /usr/share/mender/modules/v3) are bind-mounted from that folder inside a
# private mount namespace (unshare), and its state folder is given with `mender -d`, so
# the host is left alone.
#
#   tests/mender/standalone-test.sh --binary target/debug/edge-runtime --model M.onnx \
#                                   [--xtask target/debug/xtask]
# (--xtask: a built xtask, so that no cargo runs; by default `cargo xtask`).
#
# Steps (each prints its result and wall time; any surprise fails the run):
#   0. release 1.0 installed from its tarball (install.sh, as `flash --ssh` does); the
#      kiosk serves it; Mender configured by boards/mender/setup-device.sh with a
#      verification key
#   1. `mender install` a signed 2.0 artifact, then `mender commit`: 2.0 serves
#   2. an artifact whose model does not load: the update module rolls back, 2.0 serves,
#      and the board's files are exactly as before
#   3. an artifact signed with the wrong key, and an unsigned one: refused
#   4. bad input, each refused with the installed release untouched: an artifact for
#      another device type, a truncated artifact, a release whose model does not match its
#      manifest sha256, a full data partition
# and `mender-artifact validate` / `read` on every artifact made.
#
# Needs root (unshare, mount), mender-client, mender-artifact, openssl, curl, python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD

BIN= MODEL= XTASK=
while [ $# -gt 0 ]; do
  case $1 in
    --binary) BIN=$(realpath "$2"); shift 2 ;;
    --model) MODEL=$(realpath "$2"); shift 2 ;;
    --xtask) XTASK=$(realpath "$2"); shift 2 ;;
    --inside) INSIDE=$2; shift 2 ;;
    *) echo "usage: $0 --binary EDGE_RUNTIME --model MODEL.onnx" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] && [ -f "$MODEL" ] || { echo "$0: --binary and --model are required" >&2; exit 2; }
for tool in mender mender-artifact openssl curl python3 unshare; do
  command -v $tool >/dev/null || { echo "$0: $tool is not installed (scripts/setup.sh test)" >&2; exit 1; }
done

if [ -z "${INSIDE:-}" ]; then
  SUDO=
  if [ "$(id -u)" != 0 ]; then
    sudo -n true 2>/dev/null || { echo "$0: needs root or password-less sudo (a private mount namespace and a tmpfs)" >&2; exit 1; }
    SUDO="sudo -n --preserve-env=PATH,CARGO_TARGET_DIR,RUSTUP_HOME,CARGO_HOME,HOME"
  fi
  T=$(mktemp -d /tmp/hydranet-mender.XXXXXX)
  trap '$SUDO rm -rf "$T"' EXIT
  $SUDO unshare --mount --propagation private -- "$REPO/tests/mender/standalone-test.sh" \
    --binary "$BIN" --model "$MODEL" ${XTASK:+--xtask "$XTASK"} --inside "$T"
  exit $?
fi

T=$INSIDE
ROOT=$T/board
RUN=$T/run
START=$(date +%s.%N)
now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }
say() { echo "[$(secs "$START") s] $*"; }
fail() { echo "FAIL: $*" >&2; tail -n 30 "$RUN"/*.log >&2 2>/dev/null || true; exit 1; }
cleanup() {
  tests/mender/service-standin.sh --root "$ROOT" --state "$RUN" stop hydranet-edge 2>/dev/null || true
}
trap cleanup EXIT

# --- the board -----------------------------------------------------------------------
mkdir -p "$ROOT"/{etc/mender,etc/hydranet,var/lib/mender,opt/hydranet,usr/share/mender/modules/v3} "$RUN"
# The data partition: small enough to fill, large enough for three releases.
BIN_KIB=$(( $(stat -c %s "$BIN") / 1024 ))
DATA_MIB=$(( BIN_KIB * 3 / 1024 + 64 ))
mount -t tmpfs -o size=${DATA_MIB}m hydranet-data "$ROOT/opt/hydranet"
# The client's state (/var/lib/mender, on Debian a link to /data/mender) is this board's
# folder through `mender -d` instead.
for d in etc/mender usr/share/mender/modules/v3; do
  mount --bind "$ROOT/$d" "/$d"
done
mkdir -p /etc/hydranet && mount --bind "$ROOT/etc/hydranet" /etc/hydranet

PORT=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
BOARDS=$T/boards
mkdir -p "$BOARDS"
cp boards/*.toml "$BOARDS/"
sed -i "s|^listen = \"127.0.0.1:8080\"|listen = \"127.0.0.1:$PORT\"|" "$BOARDS/rpi4.toml"
# A few frames a second are enough to be healthy, and leave the CPU to the rest of the suite.
sed -i "s|^fps = 30|fps = 4|" "$BOARDS/rpi4.toml"
grep -q "127.0.0.1:$PORT" "$BOARDS/rpi4.toml" || fail "could not set the kiosk port in rpi4.toml"
DEVICE_TYPE=$(sed -n 's/^device_type = "\(.*\)"/\1/p' "$BOARDS/rpi4.toml")

openssl ecparam -genkey -name prime256v1 -noout -out "$T/key.pem"
openssl pkey -in "$T/key.pem" -pubout -out "$T/key.pub"
openssl ecparam -genkey -name prime256v1 -noout -out "$T/wrong.pem"

boards/mender/setup-device.sh --root "$ROOT" --no-install --device-type "$DEVICE_TYPE" \
  --verify-key "$T/key.pub" --mode standalone
cat >"$ROOT/etc/hydranet/update-module.conf" <<EOF
ROOT='$ROOT'
SERVICE_CONTROL='$REPO/tests/mender/service-standin.sh --root $ROOT --state $RUN --source pattern'
HEALTH_TIMEOUT=${HYDRANET_MENDER_HEALTH_TIMEOUT:-60}
EOF

# --- releases ------------------------------------------------------------------------
# The kiosk binary without its debug sections: the same program, a release-sized file.
objcopy --strip-debug "$BIN" "$T/edge-runtime"
# A model that passes the bundle's checks (an ONNX file with the contract) but does not
# load: its weights are gone, as from an export cut short.
python3 - "$MODEL" "$T/broken.onnx" <<'EOF'
import sys
def varint(b, i):
    v = s = 0
    while True:
        c = b[i]; i += 1; v |= (c & 0x7F) << s; s += 7
        if c < 0x80: return v, i
def enc(v):
    out = bytearray()
    while True:
        c = v & 0x7F; v >>= 7
        if v: out.append(c | 0x80)
        else: out.append(c); return bytes(out)
def fields(b):
    i = 0
    while i < len(b):
        s = i; key, i = varint(b, i); wt = key & 7
        if wt == 0: _, i = varint(b, i); yield key >> 3, b[s:i], None
        elif wt == 2:
            n, j = varint(b, i); i = j + n; yield key >> 3, b[s:i], b[j:i]
        elif wt == 5: i += 4; yield key >> 3, b[s:i], None
        elif wt == 1: i += 8; yield key >> 3, b[s:i], None
        else: raise SystemExit(f"wire type {wt}")
m = open(sys.argv[1], "rb").read()
out = bytearray()
for num, raw, payload in fields(m):
    if num == 7:  # ModelProto.graph: drop GraphProto.initializer (5)
        g = b"".join(r for n, r, _ in fields(payload) if n != 5)
        out += b"\x3a" + enc(len(g)) + g
    else:
        out += raw
open(sys.argv[2], "wb").write(bytes(out))
EOF

if [ -n "$XTASK" ]; then XT=("$XTASK"); else XT=(cargo xtask); fi
bundle() { # VERSION MODEL BOARD [xtask args...]
  local v=$1 model=$2 board=$3
  shift 3
  "${XT[@]}" --boards-dir "$BOARDS" bundle --board "$board" --binary "$T/edge-runtime" \
    --skip-arch-check --no-detector --model "$model" --version "$v" --out "$T/out" "$@" >"$T/bundle.log" 2>&1 ||
    { cat "$T/bundle.log"; fail "bundling $v"; }
}
artifact() { echo "$T/out/hydranet-edge-$2-$1.mender"; }
check_artifact() { # FILE [PUBLIC-KEY]: validates (with the key it was signed with), and what it holds
  mender-artifact validate ${2:+-k "$2"} "$1" >/dev/null 2>&1 || fail "mender-artifact validate $1"
  mender-artifact read "$1" >"$T/read.txt" 2>&1 || fail "mender-artifact read $1"
  grep -q "Type: *hydranet-release" "$T/read.txt" || fail "$1 has no hydranet-release payload"
  printf '    %s: %s, device type %s, %s\n' "$(basename "$1")" \
    "$(sed -n 's/^ *Name: *//p' "$T/read.txt" | head -n 1)" \
    "$(sed -n 's/^ *Compatible devices: *//p' "$T/read.txt" | head -n 1)" \
    "$(sed -n 's/^ *Signature: *//p' "$T/read.txt" | head -n 1)"
}

t=$(now)
bundle 1.0 "$MODEL" rpi4
bundle 2.0 "$MODEL" rpi4 --format mender --sign-key "$T/key.pem"
bundle 3.0-broken "$T/broken.onnx" rpi4 --format mender --sign-key "$T/key.pem"
bundle 4.0-wrongkey "$MODEL" rpi4 --format mender --sign-key "$T/wrong.pem"
bundle 4.1-unsigned "$MODEL" rpi4 --format mender
bundle 5.0-rpi5 "$MODEL" rpi5 --format mender --sign-key "$T/key.pem"
bundle 6.0 "$MODEL" rpi4 --format mender --sign-key "$T/key.pem"
# A release whose model was changed after bundling: its manifest sha256 no longer matches.
mkdir -p "$T/tamper" && tar -xzf "$T/out/hydranet-edge-rpi4-6.0.tar.gz" -C "$T/tamper"
printf 'X' >>"$T/tamper/hydranet-edge-rpi4-6.0/model/model.onnx"
tar -czf "$T/tamper/hydranet-edge-rpi4-6.1-tampered.tar.gz" -C "$T/tamper" hydranet-edge-rpi4-6.0
mender-artifact write module-image -T hydranet-release -t "$DEVICE_TYPE" -n hydranet-edge-rpi4-6.1-tampered \
  -f "$T/tamper/hydranet-edge-rpi4-6.1-tampered.tar.gz" -k "$T/key.pem" -o "$(artifact 6.1-tampered rpi4)" >/dev/null
# Cut short in transfer.
head -c $(( $(stat -c %s "$(artifact 6.0 rpi4)") / 2 )) "$(artifact 6.0 rpi4)" >"$T/out/truncated.mender"
say "bundles and artifacts made in $(secs "$t") s; mender-artifact validate + read:"
openssl pkey -in "$T/wrong.pem" -pubout -out "$T/wrong.pub"
for v in 2.0 3.0-broken 6.0 6.1-tampered; do check_artifact "$(artifact $v rpi4)" "$T/key.pub"; done
check_artifact "$(artifact 5.0-rpi5 rpi5)" "$T/key.pub"
check_artifact "$(artifact 4.0-wrongkey rpi4)" "$T/wrong.pub"
check_artifact "$(artifact 4.1-unsigned rpi4)"
if mender-artifact validate -k "$T/key.pub" "$(artifact 4.0-wrongkey rpi4)" >/dev/null 2>&1; then
  fail "an artifact signed with the wrong key validates with the right one"
fi
if mender-artifact validate "$T/out/truncated.mender" >/dev/null 2>&1; then fail "a truncated artifact validates"; fi
echo "    truncated.mender: refused by mender-artifact validate"

# --- 0: the first release, from its tarball ------------------------------------------
t=$(now)
mkdir -p "$T/r1" && tar -xzf "$T/out/hydranet-edge-rpi4-1.0.tar.gz" -C "$T/r1"
sh "$T/r1/hydranet-edge-rpi4-1.0/install.sh" --root "$ROOT" >/dev/null
[ -x "$ROOT/usr/share/mender/modules/v3/hydranet-release" ] || fail "install.sh did not install the update module"
echo "artifact_name=hydranet-edge-rpi4-1.0" >"$ROOT/etc/mender/artifact_info"
. "$ROOT/etc/hydranet/update-module.conf"
$SERVICE_CONTROL restart hydranet-edge
healthz() { curl -s -o "$T/healthz.json" -m 3 -w '%{http_code}' "http://127.0.0.1:$PORT/healthz" || true; }
serving() { # VERSION: the kiosk answers 200 from that release
  local i
  for i in $(seq 1 120); do
    if [ "$(healthz)" = 200 ] && [ "$(readlink "$ROOT/opt/hydranet/current")" = "releases/$1" ] &&
      grep -q "$ROOT/opt/hydranet/current/" "/proc/$(cat "$RUN/hydranet-edge.pid")/cmdline" 2>/dev/null; then
      return 0
    fi
    sleep 0.5
  done
  return 1
}
serving 1.0 || fail "release 1.0 does not serve"
say "0. release 1.0 installed from its tarball, serving /healthz 200 ($(secs "$t") s)"

M="mender -d $ROOT/var/lib/mender --no-syslog -l info"
snapshot() { # the board's files (not the client's database), with content hashes
  (cd "$ROOT" && find opt etc/systemd etc/xdg usr/share/mender -printf '%p %y %m %l\n' 2>/dev/null | sort &&
    find opt etc/systemd etc/xdg usr/share/mender -type f -print0 2>/dev/null | sort -z | xargs -0 sha256sum)
}
untouched() { # STEP: the board's files are as in before.txt, and 2.0 still serves
  snapshot >"$T/after.txt"
  diff -u "$T/before.txt" "$T/after.txt" >"$T/diff.txt" || { cat "$T/diff.txt" >&2; fail "$1 changed the board's files"; }
  serving 2.0 || fail "$1: release 2.0 no longer serves"
}
why() { # PATTERN: the first message of mender's log that matches
  grep -- "$1" "$T/mender.log" | head -n 1 | sed -e 's/^.*msg="//' -e 's/"$//' -e 's/\\"/"/g' | cut -c1-220
}
refused() { # STEP ARTIFACT EXPECTED-MESSAGE: mender install fails, with that message
  local t0
  t0=$(now)
  if $M install "$2" >"$T/mender.log" 2>&1; then cat "$T/mender.log"; fail "$1 was installed"; fi
  grep -q -- "$3" "$T/mender.log" || { cat "$T/mender.log"; fail "$1: no '$3' in mender's output"; }
  untouched "$1"
  say "$1: refused in $(secs "$t0") s; files untouched, 2.0 serves. mender: $(why "$3")"
}

# --- 1: install and commit -------------------------------------------------------------
t=$(now)
$M install "$(artifact 2.0 rpi4)" >"$T/mender.log" 2>&1 || { cat "$T/mender.log"; fail "mender install 2.0"; }
t_install=$(secs "$t")
$M commit >>"$T/mender.log" 2>&1 || { cat "$T/mender.log"; fail "mender commit 2.0"; }
serving 2.0 || fail "release 2.0 does not serve after commit"
[ "$($M show-artifact 2>/dev/null)" = hydranet-edge-rpi4-2.0 ] || fail "mender show-artifact is not 2.0"
[ "$(readlink "$ROOT/opt/hydranet/previous")" = releases/1.0 ] || fail "previous is not 1.0"
say "1. mender install 2.0 (${t_install} s, healthy) + commit: 2.0 serves, previous 1.0, show-artifact $($M show-artifact 2>/dev/null) ($(secs "$t") s)"

# --- 2: a broken release rolls back ---------------------------------------------------------
snapshot >"$T/before.txt"
t=$(now)
if $M install "$(artifact 3.0-broken rpi4)" >"$T/mender.log" 2>&1; then
  # The module waits for health during install already; a commit would be refused too.
  $M commit >>"$T/mender.log" 2>&1 && fail "the broken release was committed"
fi
grep -q "not healthy" "$T/mender.log" || { cat "$T/mender.log"; fail "no health failure reported for 3.0-broken"; }
grep -q "Rolling back\|rolled back" "$T/mender.log" || { cat "$T/mender.log"; fail "3.0-broken was not rolled back"; }
untouched "2. broken release"
[ "$($M show-artifact 2>/dev/null)" = hydranet-edge-rpi4-2.0 ] || fail "show-artifact is not 2.0 after the rollback"
[ ! -e "$ROOT/opt/hydranet/releases/3.0-broken" ] || fail "releases/3.0-broken is left behind"
say "2. broken release (model does not load): rolled back in $(secs "$t") s; files exactly as before, 2.0 serves"
grep "hydranet-release:" "$T/mender.log" | sed -e 's/^.*msg="//' -e 's/"$//' -e 's/^/    /' | cut -c1-200

# --- 3: signatures --------------------------------------------------------------------------------
refused "3a. signed with the wrong key" "$(artifact 4.0-wrongkey rpi4)" "invalid signature"
refused "3b. unsigned" "$(artifact 4.1-unsigned rpi4)" "expecting signed artifact"

# --- 4: bad input -----------------------------------------------------------------------------------
refused "4a. another device type ($(sed -n 's/^device_type = "\(.*\)"/\1/p' "$BOARDS/rpi5.toml"))" \
  "$(artifact 5.0-rpi5 rpi5)" "not compatible with device"
refused "4b. truncated artifact" "$T/out/truncated.mender" "Download failed\|failed to read Artifact"
refused "4c. model sha256 differs from the manifest" "$(artifact 6.1-tampered rpi4)" "does not match its sha256"
# 4d: fill the data partition, leaving less than a release needs.
avail=$(df -Pk "$ROOT/opt/hydranet" | awk 'NR == 2 { print $4 }')
fill=$(( avail - 2048 ))
[ "$fill" -gt 0 ] && dd if=/dev/zero of="$ROOT/opt/hydranet/.filler" bs=1024 count="$fill" status=none 2>/dev/null || true
snapshot >"$T/before.txt"
refused "4d. full data partition ($(df -Pk "$ROOT/opt/hydranet" | awk 'NR == 2 { print $4 }') KiB free)" \
  "$(artifact 6.0 rpi4)" "KiB are free"
rm -f "$ROOT/opt/hydranet/.filler"
# With room again, the same artifact installs: nothing of the refusals was left behind.
t=$(now)
$M install "$(artifact 6.0 rpi4)" >"$T/mender.log" 2>&1 && $M commit >>"$T/mender.log" 2>&1 ||
  { cat "$T/mender.log"; fail "6.0 did not install once there was room"; }
serving 6.0 || fail "6.0 does not serve"
say "4e. with room again, 6.0 installs and commits: serving 6.0, previous $(readlink "$ROOT/opt/hydranet/previous") ($(secs "$t") s)"
say "PASS"
