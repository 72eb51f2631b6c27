#!/usr/bin/env bash
# The main job on a fresh machine, no download needed: build, make a synthetic face set,
# train a small HydraNet on it, evaluate the best checkpoint, export it to ONNX and score the
# whole synthetic set with the edge runtime (tract).
# Real results need UTKFace: see README.md ("Real data").
# Installs what the build needs first (scripts/setup.sh build: Debian's libclang-dev + clang).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/quickstart}
DATA=${DATA:-runs/synth-faces}
scripts/setup.sh build
cargo build --release --locked -p host-train -p edge-runtime
BIN=${CARGO_TARGET_DIR:-target}/release/host-train
EDGE=${CARGO_TARGET_DIR:-target}/release/edge-runtime
if [ ! -d "$DATA" ]; then
  "$BIN" synth --out "$DATA" --count 2000 --seed 0
fi
"$BIN" train --data "$DATA" --out "$RUN" --backbone resnet10-w0.5 --input-size 48 \
  --batch 32 --epochs 4 --lr 3e-3
"$BIN" eval --checkpoint "$RUN/best.safetensors" --data "$DATA" --split val
"$BIN" export --checkpoint "$RUN/best.safetensors" --out "$RUN/model.onnx"
"$EDGE" eval --model "$RUN/model.onnx" --data "$DATA" --threads 2
