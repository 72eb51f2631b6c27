#!/usr/bin/env bash
# Edge inference side by side: tract (edge-runtime bench) and onnxruntime on the same ONNX
# file, same batch and threads, alternating ROUNDS times so machine noise hits both; then the
# release binary's size and the peak RSS of `edge-runtime bench`.
#
#   scripts/bench-edge.sh MODEL.onnx [BATCH=1] [THREADS=1] [ROUNDS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:?usage: scripts/bench-edge.sh MODEL.onnx [BATCH] [THREADS] [ROUNDS]}
BATCH=${2:-1}
THREADS=${3:-1}
ROUNDS=${4:-3}
. scripts/judge-venv.sh

cargo build --release --locked -p host-train -p edge-runtime
TARGET=${CARGO_TARGET_DIR:-target}
BIN="$TARGET/release/edge-runtime"

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "== latency, batch $BATCH, $THREADS thread(s), $ROUNDS rounds each (JSON per run)"
for r in $(seq "$ROUNDS"); do
  "$BIN" bench --model "$MODEL" --batch "$BATCH" --threads "$THREADS" | tee -a /tmp/bench-edge.$$.tract
  "$VENV/bin/python" scripts/ort_bench.py "$MODEL" --batch "$BATCH" --threads "$THREADS" | tee -a /tmp/bench-edge.$$.ort
done
"$VENV/bin/python" - /tmp/bench-edge.$$.tract /tmp/bench-edge.$$.ort <<'PY'
import json, statistics, sys
rows = {k: [json.loads(l) for l in open(p)] for k, p in zip(["tract", "onnxruntime"], sys.argv[1:])}
med = {k: statistics.median(r["p50_ms"] for r in v) for k, v in rows.items()}
for k, v in med.items():
    print(f"{k:12s} p50 (median of rounds) {v:8.3f} ms")
print(f"tract / onnxruntime p50 = {med['tract'] / med['onnxruntime']:.2f}x (below 1 = tract faster)")
PY
rm -f /tmp/bench-edge.$$.tract /tmp/bench-edge.$$.ort

echo "== edge-runtime release binary"
ls -l "$BIN" | awk '{printf "size %d bytes (%.1f MiB)\n", $5, $5/1048576}'
echo "== peak RSS of edge-runtime bench (kernel's max resident set)"
/usr/bin/time -f "max RSS %M KiB" "$BIN" bench --model "$MODEL" --batch "$BATCH" --threads "$THREADS" --iters 50 >/dev/null
echo "model file $(stat -c %s "$MODEL") bytes"
