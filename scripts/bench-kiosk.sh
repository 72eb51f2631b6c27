#!/usr/bin/env bash
# Kiosk under load on loopback: 50 video + 50 event clients for 30 s against the pattern
# source, with hostile requests, pipeline FPS with/without clients and RSS before/after.
#
#   scripts/bench-kiosk.sh MODEL.onnx [SOURCE_FPS (30; 0 = unpaced)] [CLIENTS (50)] [SECONDS (30)]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:?usage: scripts/bench-kiosk.sh MODEL.onnx [SOURCE_FPS] [CLIENTS] [SECONDS]}
FPS=${2:-30}
CLIENTS=${3:-50}
SECONDS_LOADED=${4:-30}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked -q -p edge-runtime --bin edge-runtime --example kiosk_load
B="$CARGO_TARGET_DIR/release"
PORT=$((20000 + RANDOM % 20000))
"$B/edge-runtime" kiosk --model "$MODEL" --source pattern --fps "$FPS" --listen "127.0.0.1:$PORT" \
	--header-timeout 5 --write-timeout 3 --max-clients 64 2>/tmp/bench-kiosk.$$.log &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -f /tmp/bench-kiosk.$$.log' EXIT
for _ in $(seq 100); do curl -fs "127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
sleep 3
"$B/examples/kiosk_load" --addr "127.0.0.1:$PORT" --pid "$PID" --clients "$CLIENTS" --seconds "$SECONDS_LOADED"
