#!/usr/bin/env bash
# Dynamic instruction counts of one inference on each arm64 path, under qemu-aarch64 with
# this folder's TCG plugin (insn_count.c): all instructions, and the multiply kinds.
# One inference = (the count for 3 runs - the count for 1 run) / 2, so loading the file and
# planning drop out. Exact (TCG counts what executes), independent of the host's speed.
#
#   boards/analysis/insn-counts.sh [EDGE-RUNTIME-AARCH64-BINARY]
#
# Default binary: an aarch64 gnu release build (built here if missing, ~10 min cold):
#   cargo build --release --target aarch64-unknown-linux-gnu -p edge-runtime --no-default-features
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
BIN=${1:-$CARGO_TARGET_DIR/aarch64-unknown-linux-gnu/release/edge-runtime}
if [[ $# == 0 ]]; then
  cargo build -q --release --locked --target aarch64-unknown-linux-gnu -p edge-runtime --no-default-features
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
gcc -O2 -shared -fPIC -Wall -o "$WORK/libinsn_count.so" boards/analysis/insn_count.c

count() { # CPU ITERS MODEL [ENV...] -> the plugin's JSON line
  local cpu=$1 iters=$2 model=$3
  shift 3
  env "$@" qemu-aarch64 -cpu "$cpu" -L /usr/aarch64-linux-gnu -plugin "$WORK/libinsn_count.so" -d plugin \
    "$BIN" bench --model "$model" --iters "$iters" --warmup 0 2>&1 >/dev/null | grep '^{"insns"'
}
INT8=models/utkface/hydranet-utkface-int8.onnx
FP32=models/utkface/hydranet-utkface.onnx
DET=models/blazeface/face_detection_back_256x256_barracuda.onnx
rows=(
  "cortex-a72|int8, smull tile (Pi 4's path)|$INT8|HYDRANET_INT8_TILE=smull"
  "cortex-a72|int8, portable loop|$INT8|HYDRANET_INT8_TILE=portable"
  "cortex-a76|int8, sdot tile (Pi 5's path)|$INT8|HYDRANET_INT8_TILE=sdot"
  "cortex-a72|fp32, tract's own kernels|$FP32|X=1"
)
[[ -f $DET ]] && rows+=("cortex-a76|face detector (fp32), tract|$DET|X=1")
printf '| -cpu | path | instructions / inference | sdot | smull+smull2 | sadalp | fmla | rest |\n|---|---|---|---|---|---|---|---|\n'
for row in "${rows[@]}"; do
  IFS='|' read -r cpu what model env <<<"$row"
  one=$(count "$cpu" 1 "$model" "$env")
  three=$(count "$cpu" 3 "$model" "$env")
  python3 - "$cpu" "$what" "$one" "$three" <<'PY'
import json, sys
cpu, what, a, b = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
d = {k: (b[k] - a[k]) / 2 for k in a}
mac = d["sdot"] + d["smull"] + d["smull2"] + d["sadalp"] + d["fmla"]
print(f"| {cpu} | {what} | {d['insns']/1e6:.1f} M | {d['sdot']/1e6:.2f} M | {(d['smull']+d['smull2'])/1e6:.2f} M "
      f"| {d['sadalp']/1e6:.2f} M | {d['fmla']/1e6:.2f} M | {(d['insns']-mac)/1e6:.1f} M |")
PY
done
