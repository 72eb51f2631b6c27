#!/usr/bin/env bash
# Builds the shipped model folder from a finished training run: the fp32 and int8 ONNX
# files, each scored on the run's validation split in Candle (host-train report: metrics,
# fairness table, plots) and in tract (edge-runtime eval), and their latency in tract.
#
#   scripts/ship-model.sh RUN_DIR [OUT_DIR]      (OUT_DIR default: models/utkface)
#
# HYDRANET_TEST_TIME_FLIP=1 exports both files with the test-time flip in the graph.
# HYDRANET_CHECKPOINT=FILE ships that checkpoint instead of RUN_DIR/best.safetensors (e.g.
# `host-train average`'s output); RUN_DIR still gives the training curves.
#
# The model card (OUT_DIR/MODEL_CARD.md) is written by hand from what this prints and
# leaves in OUT_DIR/reports.
set -euo pipefail
cd "$(dirname "$0")/.."

run=${1:?usage: scripts/ship-model.sh RUN_DIR [OUT_DIR]}
out=${2:-models/utkface}
data=${HYDRANET_UTKFACE:-../shared/datasets/utkface/UTKFace}
name=${HYDRANET_MODEL_NAME:-hydranet-utkface}
bin=${CARGO_TARGET_DIR:-target}/release

checkpoint=${HYDRANET_CHECKPOINT:-$run/best.safetensors}
[ -f "$checkpoint" ] || { echo "no checkpoint $checkpoint" >&2; exit 2; }
[ -d "$data" ] || { echo "no UTKFace folder at $data (set HYDRANET_UTKFACE)" >&2; exit 2; }

# HYDRANET_NO_BUILD=1 uses the binaries already in $bin.
[ "${HYDRANET_NO_BUILD:-0}" = 1 ] || cargo build --release --locked -p host-train -p edge-runtime
mkdir -p "$out/reports"
flip=()
[ "${HYDRANET_TEST_TIME_FLIP:-0}" = 1 ] && flip=(--test-time-flip)
fp32="$out/$name.onnx"
int8="$out/$name-int8.onnx"

"$bin/host-train" export --checkpoint "$checkpoint" --out "$fp32" "${flip[@]}"
# Calibration images come from the run's training split (the export leaves out the
# validation files by name).
"$bin/host-train" export --checkpoint "$checkpoint" --out "$int8" \
    --quantize int8 --calibration "$data" --calibration-count 512 "${flip[@]}"

for f in "$fp32" "$int8"; do
    tag=$(basename "$f" .onnx)
    echo "== $tag: $(stat -c %s "$f") bytes"
    "$bin/host-train" report --run "$run" --model "$f" --data "$data" --split val \
        --out "$out/reports/$tag"
    "$bin/edge-runtime" eval --model "$f" --data "$data" --split val --json \
        | tail -n 1 | tee "$out/reports/$tag/edge-eval.json"
    "$bin/edge-runtime" bench --model "$f" --batch 1 --threads 1 --iters 300 \
        | tee "$out/reports/$tag/edge-bench.txt"
done
