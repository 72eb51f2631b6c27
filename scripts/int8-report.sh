#!/usr/bin/env bash
# fp32 against int8, side by side: file size, per-head validation metrics (Candle and
# tract), latency p50 in tract and onnxruntime (batch 1, one thread, alternating rounds),
# peak RSS of the edge runtime. Every int8 form is exported from the same checkpoint.
# `int8-qdq` runs on the edge runtime's integer convolutions (the default); the row
# `int8-qdq-tract` is the same file with `--int8-kernel tract` (tract's own handling).
#
#   scripts/int8-report.sh CHECKPOINT [CALIBRATION_DIR=../shared/datasets/utkface/UTKFace]
#                          [ROUNDS=3] [METHOD=percentile] [COUNT=512]
set -euo pipefail
cd "$(dirname "$0")/.."
CK=${1:?usage: scripts/int8-report.sh CHECKPOINT [CALIBRATION_DIR] [ROUNDS] [METHOD] [COUNT]}
CAL=${2:-../shared/datasets/utkface/UTKFace}
ROUNDS=${3:-3}
METHOD=${4:-percentile}
COUNT=${5:-512}
. scripts/judge-venv.sh
cargo build --release --locked -p host-train -p edge-runtime
TARGET=${CARGO_TARGET_DIR:-target}
HT="$TARGET/release/host-train"
ER="$TARGET/release/edge-runtime"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
"$HT" export --checkpoint "$CK" --out "$OUT/fp32.onnx"
for form in qdq qlinear; do
  "$HT" export --checkpoint "$CK" --out "$OUT/int8-$form.onnx" --quantize int8 --quant-form "$form" \
    --calibration "$CAL" --calibration-count "$COUNT" --calibration-method "$METHOD"
done
"$HT" export --checkpoint "$CK" --out "$OUT/int8-weights.onnx" --quantize int8 --quant-form weights
MODELS="fp32 int8-qdq int8-qdq-tract int8-qlinear int8-weights"
# The same file, run by tract's own int8 path.
ln -s int8-qdq.onnx "$OUT/int8-qdq-tract.onnx"
kernel() { case "$1" in *-tract) echo tract ;; *) echo edge ;; esac; }

echo "== accuracy on the validation split of the checkpoint's run"
for m in $MODELS; do
  "$HT" eval --model "$OUT/$m.onnx" --data "$CAL" --split val --json | tail -1 > "$OUT/$m.candle.json"
  "$ER" eval --model "$OUT/$m.onnx" --int8-kernel "$(kernel $m)" --data "$CAL" --split val --json | tail -1 > "$OUT/$m.tract.json" \
    || echo '{"error": "edge-runtime eval failed"}' > "$OUT/$m.tract.json"
done

echo "== latency, batch 1, 1 thread, $ROUNDS alternating rounds"
for r in $(seq "$ROUNDS"); do
  for m in $MODELS; do
    "$ER" bench --model "$OUT/$m.onnx" --int8-kernel "$(kernel $m)" --batch 1 --threads 1 >> "$OUT/$m.tract.bench" \
      || echo '{"p50_ms": null}' >> "$OUT/$m.tract.bench"
    "$VENV/bin/python" scripts/ort_bench.py "$OUT/$m.onnx" --batch 1 --threads 1 >> "$OUT/$m.ort.bench" \
      || echo '{"p50_ms": null}' >> "$OUT/$m.ort.bench"
  done
done
for m in $MODELS; do
  /usr/bin/time -f "%M" -o "$OUT/$m.rss" "$ER" bench --model "$OUT/$m.onnx" --int8-kernel "$(kernel $m)" --iters 50 >/dev/null || echo 0 > "$OUT/$m.rss"
done

"$VENV/bin/python" - "$OUT" $MODELS <<'PY'
import json, os, statistics, sys
out, models = sys.argv[1], sys.argv[2:]
def last(p):
    try:
        return json.loads(open(p).read().strip().splitlines()[-1])
    except Exception:
        return {}
def p50(p):
    v = [json.loads(l).get("p50_ms") for l in open(p) if l.strip()]
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None
size0 = os.path.getsize(f"{out}/fp32.onnx")
base = {k: p50(f"{out}/fp32.{k}.bench") for k in ("tract", "ort")}
print("| model | size | % of fp32 | age MAE (Candle / tract) | gender acc | ethnicity acc | tract p50 ms | vs fp32 | onnxruntime p50 ms | vs fp32 | peak RSS MiB |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
fmt = lambda v, f="{:.2f}": "n/a" if v is None else f.format(v)
for m in models:
    size = os.path.getsize(f"{out}/{m}.onnx")
    c, t = last(f"{out}/{m}.candle.json"), last(f"{out}/{m}.tract.json")
    lt, lo = p50(f"{out}/{m}.tract.bench"), p50(f"{out}/{m}.ort.bench")
    rss = int(open(f"{out}/{m}.rss").read().strip().splitlines()[-1]) / 1024
    acc = lambda d, k: fmt(100 * d[k], "{:.2f}") if k in d else "n/a"
    print(f"| {m} | {size/1e6:.2f} MB | {100*size/size0:.1f} | {fmt(c.get('age_mae'))} / {fmt(t.get('age_mae'))} "
          f"| {acc(c,'gender_acc')} / {acc(t,'gender_acc')} | {acc(c,'ethnicity_acc')} / {acc(t,'ethnicity_acc')} "
          f"| {fmt(lt, '{:.3f}')} | {fmt(lt / base['tract'] if lt and base['tract'] else None)}x "
          f"| {fmt(lo, '{:.3f}')} | {fmt(lo / base['ort'] if lo and base['ort'] else None)}x | {rss:.1f} |")
PY
