#!/usr/bin/env bash
# Training throughput, host-train (Candle) and the PyTorch reference, one right after the
# other on the same machine (ratios mean more than seconds on a shared machine).
# Needs a venv with torch + torchvision: PYTHON=/path/to/venv/bin/python (default:
# ~/.cache/hydranet-edge/torch-venv, created here when missing: a large download).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
PYTHON=${PYTHON:-$HOME/.cache/hydranet-edge/torch-venv/bin/python}
if [ ! -x "$PYTHON" ]; then
  python3 -m venv "$(dirname "$(dirname "$PYTHON")")"
  "$(dirname "$PYTHON")/pip" install --quiet torch torchvision
fi
cargo build --release --locked -p host-train -p edge-runtime
BIN=${CARGO_TARGET_DIR:-target}/release/host-train
ANCHOR=../shared/anchors/pytorch_hydranet.py
for cfg in "64 32" "32 64"; do
  set -- $cfg
  "$BIN" --threads "$THREADS" bench --backbone resnet18 --size "$1" --batch "$2" --steps 5 --warmup 3
  "$PYTHON" "$ANCHOR" --bench --size "$1" --batch "$2" --threads "$THREADS"
done
