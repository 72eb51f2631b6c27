#!/usr/bin/env bash
# The README's "Your own heads" example, end to end: two heads a user declares (an 8-class
# `age_group` and a binary `is_adult`), labelled by two CSV manifests that each cover half
# of the UTKFace images (partial labels), trained, exported to fp32 and int8 ONNX, and run
# by the edge runtime.
#
#   scripts/heads-example.sh [UTKFACE_DIR] [OUT_DIR]
#
# Environment: EPOCHS (default 8), INPUT (64), BACKBONE (resnet10-w0.5), LIMIT (all images).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/datasets/utkface/UTKFace}
OUT=${2:-runs/heads-example}
EPOCHS=${EPOCHS:-8}
INPUT=${INPUT:-64}
BACKBONE=${BACKBONE:-resnet10-w0.5}
[ -d "$DATA" ] || { echo "heads-example: no folder $DATA (give the UTKFace folder)" >&2; exit 2; }
mkdir -p "$OUT"

cat >"$OUT/faces.toml" <<'EOF'
# Two heads of our own. Each name is also its ONNX output and its manifest column.
[[head]]
name = "age_group"
kind = "multiclass"
labels = ["0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60+"]

[[head]]
name = "is_adult"
kind = "binary"
labels = ["minor", "adult"]  # class 0, class 1
EOF

# The labels, derived from the age field of each file name and written as a user's CSVs
# would be: every other image (in name order) is labelled for one head only.
find "$DATA" -maxdepth 1 -type f -name '*.jpg' -printf '%f\n' | LC_ALL=C sort | awk -F_ -v out="$OUT" '
  BEGIN {
    print "path,age_group" > (out "/groups.csv")
    print "path,is_adult" > (out "/adults.csv")
  }
  $1 !~ /^[0-9]+$/ { next }
  {
    age = $1 + 0
    if (n++ % 2 == 0) {
      g = age < 3 ? "0-2" : age < 10 ? "3-9" : age < 20 ? "10-19" : age < 30 ? "20-29" : \
          age < 40 ? "30-39" : age < 50 ? "40-49" : age < 60 ? "50-59" : "60+"
      print $0 "," g >> (out "/groups.csv")
    } else {
      print $0 "," (age >= 18 ? "adult" : "minor") >> (out "/adults.csv")
    }
  }'
echo "heads-example: $(($(wc -l <"$OUT/groups.csv") - 1)) images labelled for age_group, $(($(wc -l <"$OUT/adults.csv") - 1)) for is_adult"

scripts/setup.sh build
cargo build --release --locked -q -p host-train -p edge-runtime
B=${CARGO_TARGET_DIR:-target}/release
LIMIT_ARGS=()
[ -n "${LIMIT:-}" ] && LIMIT_ARGS=(--limit "$LIMIT")
"$B/host-train" train --heads "$OUT/faces.toml" --data "$DATA" \
  --manifest "$OUT/groups.csv" --manifest "$OUT/adults.csv" \
  --backbone "$BACKBONE" --input-size "$INPUT" --epochs "$EPOCHS" "${LIMIT_ARGS[@]}" \
  --out "$OUT/run" --export "$OUT/faces.onnx" --quantize int8

# The edge needs nothing but the file: its contract names the heads.
FACE=$(find "$DATA" -maxdepth 1 -name '30_1_0_*.jpg.chip.jpg' | LC_ALL=C sort | head -1)
"$B/edge-runtime" predict --model "$OUT/faces-int8.onnx" "$FACE"
"$B/edge-runtime" eval --model "$OUT/faces-int8.onnx" --data "$DATA" \
  --manifest "$OUT/groups.csv" --manifest "$OUT/adults.csv" --split val
echo "heads-example: the kiosk on this model: $B/edge-runtime kiosk --model $OUT/faces-int8.onnx --source dir:$DATA"
