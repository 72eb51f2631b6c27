#!/usr/bin/env bash
# Training throughput, host-train (Candle) and the PyTorch reference, one right after the
# other on the same machine (ratios mean more than seconds on a shared machine), for the
# four configurations of issue 24 (CONFIGS=body:size:batch ...; KERNELS=candle,fast adds
# Candle's own kernels).
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
# The anchor itself for resnet18 at its own sizes; scripts/torch_peer.py (the anchor's
# heads, loss and optimiser on a torchvision-layout body of any width) for the rest.
CONFIGS=${CONFIGS:-"resnet18:64:32 resnet18:112:64 resnet10-w0.5:64:32 resnet10-w0.5:112:64"}
for cfg in $CONFIGS; do
  IFS=: read -r body size batch <<<"$cfg"
  "$BIN" --threads "$THREADS" bench --backbone "$body" --size "$size" --batch "$batch" --steps 5 --warmup 3 --kernels "${KERNELS:-fast}"
  if [ "$body" = resnet18 ]; then
    "$PYTHON" "$ANCHOR" --bench --size "$size" --batch "$batch" --threads "$THREADS"
  else
    "$PYTHON" scripts/torch_peer.py --backbone "$body" --size "$size" --batch "$batch" --threads "$THREADS"
  fi
done
