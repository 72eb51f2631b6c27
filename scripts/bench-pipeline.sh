#!/usr/bin/env bash
# Frame pipeline throughput: pattern source (YUYV 640x480, converted like a camera frame)
# → guide box → model → JSON, end to end. Pinned to one core (capture and inference share
# it, as on a busy board), then on every core; with the model alone (`bench`) beside it.
#
#   scripts/bench-pipeline.sh MODEL.onnx [FRAMES]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:?usage: scripts/bench-pipeline.sh MODEL.onnx [FRAMES]}
FRAMES=${2:-2000}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
# Same targets as bench-kiosk.sh, so one build serves both.
cargo build --release --locked -q -p edge-runtime --bin edge-runtime --example kiosk_load
B="$CARGO_TARGET_DIR/release/edge-runtime"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

run() { # name, cpu list ("" = all)
	local pin=()
	[[ -n $2 ]] && pin=(taskset -c "$2")
	"${pin[@]}" "$B" run --model "$MODEL" --source pattern --width 640 --height 480 --fps 0 \
		--frames "$FRAMES" --all --progress 0 >/dev/null 2>"$OUT/$1.err" ||
		{ cat "$OUT/$1.err" >&2; exit 1; }
	grep '"summary"' "$OUT/$1.err" >"$OUT/$1.json"
}
run one-core 0
run all-cores ""
taskset -c 0 "$B" bench --model "$MODEL" --batch 1 --threads 1 --iters 300 >"$OUT/bench.json"

python3 - "$OUT" "$MODEL" "$(nproc)" <<'PY'
import json, sys, pathlib
out, model, ncpu = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
bench = json.loads((out / "bench.json").read_text())
print(f"model: {model}")
print(f"model alone (edge-runtime bench, 1 thread, one core): p50 {bench['p50_ms']:.2f} ms "
      f"= {1000 / bench['p50_ms']:.0f} runs/s")
print(f"{'pipeline':<22}{'fps':>8}{'captured':>10}{'processed':>10}{'dropped':>9}"
      f"{'capture':>9}{'preproc':>9}{'infer':>8}{'output':>8}  (mean ms per frame)")
for name, label in [("one-core", "pinned to 1 core"), ("all-cores", f"all {ncpu} cores")]:
    s = json.loads((out / f"{name}.json").read_text())["summary"]
    st = s["stages"]
    print(f"{label:<22}{s['fps']:>8.1f}{s['captured']:>10}{s['processed']:>10}{s['dropped']:>9}"
          f"{st['capture_ms']:>9.2f}{st['preprocess_ms']:>9.2f}{st['inference_ms']:>8.2f}{st['output_ms']:>8.3f}")
PY
