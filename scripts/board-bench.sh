#!/usr/bin/env bash
# The board figures, measured on the board itself: what a Raspberry Pi 4 / Pi 5 / Jetson
# owner runs (as any user; nothing is installed) to replace the forecasts in
# docs/measurements.md ("arm64 int8 kernels") with real numbers.
#
#   scripts/board-bench.sh [--bin PATH] [--model FILE]... [--camera /dev/videoN] [--out FILE]
#
# Defaults: the installed release (/opt/hydranet/current/bin/edge-runtime and its
# model/model.onnx), plus models/utkface/*.onnx when run from a checkout of the repository.
# It prints, and writes as JSON lines to --out (default board-figures-<host>-<date>.jsonl):
#   - the CPU (model, part number, features: dotprod, i8mm, ...);
#   - `edge-runtime kernels`: the integer convolution's tiles on the body's layers, each
#     tile this CPU runs, 1 thread and all cores;
#   - `edge-runtime bench` for each model, 1 thread and all cores, and for int8 files once
#     per tile (HYDRANET_INT8_TILE) and once on tract's own int8 path: latency p50/p90,
#     images per second, peak RSS;
#   - with a camera (default /dev/video0 if present): `edge-runtime run` for 300 frames,
#     whose progress lines give the pipeline's FPS and stage times.
# Keep the board cool and idle (no desktop session loading the cores) while it runs.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=/opt/hydranet/current/bin/edge-runtime
MODELS=()
CAMERA=
OUT="board-figures-$(hostname)-$(date +%Y%m%d-%H%M).jsonl"
while (($#)); do
  case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --model) MODELS+=("$2"); shift 2 ;;
    --camera) CAMERA=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ -x $BIN ]] || { echo "no edge-runtime binary at $BIN (give --bin PATH)" >&2; exit 1; }
if ((${#MODELS[@]} == 0)); then
  for m in /opt/hydranet/current/model/model.onnx models/utkface/hydranet-utkface.onnx \
    models/utkface/hydranet-utkface-int8.onnx; do
    [[ -f $m ]] && MODELS+=("$m")
  done
fi
((${#MODELS[@]})) || { echo "no model found: give --model FILE" >&2; exit 1; }
if [[ -z $CAMERA && -e /dev/video0 ]]; then CAMERA=/dev/video0; fi
CORES=$(nproc)
: >"$OUT"
emit() { echo "$1" | tee -a "$OUT"; }

cpu_field() { grep -m1 "^$1" /proc/cpuinfo | cut -d: -f2 | xargs || true; }
emit "{\"board\":\"$(tr -d '\0' </proc/device-tree/model 2>/dev/null || hostname)\",\"cpu_part\":\"$(cpu_field 'CPU part')\",\"features\":\"$(cpu_field Features)\",\"cores\":$CORES,\"kernel\":\"$(uname -r)\",\"binary\":\"$BIN\",\"version\":\"$("$BIN" --version)\"}"

echo "== the integer convolution's tiles on the body's layers (1 and $CORES threads)" >&2
"$BIN" kernels --threads "1,$CORES" | tee -a "$OUT"

# Which tiles this CPU runs: the names `kernels` printed.
TILES=$(grep -o '"tile":"[a-z0-9]*"' "$OUT" | sort -u | cut -d'"' -f4)
bench() { # MODEL THREADS [ENV...]
  local model=$1 threads=$2
  shift 2
  env "$@" "$BIN" bench --model "$model" --threads "$threads" --iters 200 | tee -a "$OUT"
}
for model in "${MODELS[@]}"; do
  for threads in 1 "$CORES"; do
    echo "== $model, $threads thread(s)" >&2
    if "$BIN" info --model "$model" | grep -q '"quantization": {'; then
      for tile in $TILES; do bench "$model" "$threads" HYDRANET_INT8_TILE="$tile"; done
      "$BIN" bench --model "$model" --threads "$threads" --iters 200 --int8-kernel tract | tee -a "$OUT"
    else
      bench "$model" "$threads"
    fi
  done
done

if [[ -n $CAMERA ]]; then
  echo "== pipeline: $CAMERA -> ${MODELS[0]}, 300 frames (progress lines carry FPS)" >&2
  "$BIN" run --model "${MODELS[0]}" --source "v4l:$CAMERA" --frames 300 --progress 5 --all \
    2> >(tee -a "$OUT.log" >&2) | tail -1 >/dev/null || echo "(the camera run failed: see $OUT.log)" >&2
fi
echo "== written: $OUT" >&2
