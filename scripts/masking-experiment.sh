#!/usr/bin/env bash
# Partial labels, measured: the same run (seed, epochs, body) with ethnicity labelled on
# 100 %, 50 % and 10 % of the training images, age and gender labelled on all of them.
# The validation split keeps every label, so each run is scored on the same images.
#
#   scripts/masking-experiment.sh [UTKFACE_DIR] [OUT_DIR]
#
# Environment: EPOCHS (default 8), INPUT (64), BACKBONE (resnet10-w0.5), PERCENTS ("100 50 10").
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/datasets/utkface/UTKFace}
OUT=${2:-runs/masking}
EPOCHS=${EPOCHS:-8}
INPUT=${INPUT:-64}
BACKBONE=${BACKBONE:-resnet10-w0.5}
PERCENTS=${PERCENTS:-100 50 10}
[ -d "$DATA" ] || { echo "masking-experiment: no folder $DATA" >&2; exit 2; }
mkdir -p "$OUT"

# One manifest per fraction. Which training images keep their ethnicity label is decided
# by a hash of the name, so the 10 % set is inside the 50 % set. The validation split is
# models::dataset::is_validation (FNV-1a of the name, 10 %), reproduced here.
python3 - "$DATA" "$OUT" $PERCENTS <<'EOF'
import os, re, sys
data, out, percents = sys.argv[1], sys.argv[2], [int(p) for p in sys.argv[3:]]
def fnv(s):
    h = 0xcbf29ce484222325
    for b in s.encode():
        h ^= b
        h = (h * 0x100000001b3) % (1 << 64)
    return h
name_re = re.compile(r"^(\d+)_([01])_([0-4])_\d+\.jpg\.chip\.jpg$")
rows = []
for n in sorted(os.listdir(data)):
    m = name_re.match(n)
    if m and 1 <= int(m.group(1)) <= 116:
        rows.append((n, m.group(1), m.group(2), m.group(3)))
for p in percents:
    kept = 0
    with open(os.path.join(out, f"eth{p}.csv"), "w") as f:
        f.write("path,age,gender,ethnicity\n")
        for n, a, g, e in rows:
            val = fnv(n) % 1_000_000 < 100_000
            keep = val or fnv("mask:" + n) % 100 < p
            kept += keep and not val
            f.write(f"{n},{a},{g},{e if keep else ''}\n")
    print(f"eth{p}.csv: ethnicity on {kept} training images")
EOF

scripts/setup.sh build
cargo build --release --locked -q -p host-train -p edge-runtime
B=${CARGO_TARGET_DIR:-target}/release
for p in $PERCENTS; do
  start=$(date +%s)
  "$B/host-train" train --data "$DATA" --manifest "$OUT/eth$p.csv" \
    --backbone "$BACKBONE" --input-size "$INPUT" --epochs "$EPOCHS" --seed 7 \
    --out "$OUT/eth$p" >"$OUT/eth$p.log" 2>&1
  "$B/host-train" eval --checkpoint "$OUT/eth$p/best.safetensors" --data "$DATA" \
    --manifest "$OUT/eth$p.csv" --split val --json | tail -1 >"$OUT/eth$p.json"
  python3 - "$OUT/eth$p.json" "$p" "$(($(date +%s) - start))" <<'EOF'
import json, sys
v = json.load(open(sys.argv[1]))
print("ethnicity on %3s %%: age MAE %.2f, gender %.1f %%, ethnicity %.1f %% (F1 %.3f), n=%d, %s s"
      % (sys.argv[2], v["age_mae"], 100 * v["gender_acc"], 100 * v["ethnicity_acc"],
         v["ethnicity_f1"], v["n"], sys.argv[3]))
EOF
done
