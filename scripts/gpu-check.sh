#!/usr/bin/env bash
# The CUDA build checked on a GPU machine that has no Rust toolchain and no network, but an
# NVIDIA driver and PyTorch built for CUDA 13.0 (whose nvidia wheels provide cublas, curand
# and nvrtc for our binary too).
#
# Here (with the repository):
#   scripts/build-cuda.sh                      # the host-train-cuda binary
#   scripts/gpu-check.sh --prepare [DIR]       # DIR (default gpu-check/, git-ignored) gets the
#                                              # gzipped binary, a UTKFace subset, the PyTorch
#                                              # reference and these scripts, < 64 MiB in all
# There (copy DIR over, then):
#   DIR/gpu-check.sh [--python PY] [--gpu cuda:N] [--steps N] [--epochs E] [--out RESULTS]
#                    [--libs DIR[:DIR]]
# The binary loads libcuda.so.1 (the driver's), libcublas.so.13, libcublasLt.so.13 and
# libcurand.so.10: the last three are looked up in PY's nvidia wheels (PyTorch's). A PyTorch
# without nvidia-curand (2.15+cu132 has none) needs --libs with a folder holding
# libcurand.so.10 (wheel nvidia-curand 10.4.0.35: 133 MB, too big for the bundle).
#
# The run (results under DIR/results unless --out; summary.txt and summary.json at the end):
#   a) loss trajectory: the first N training steps (ResNet18, 64x64, batch 32, same seed) on
#      the GPU, on the CPU with the fast kernels and on the CPU with Candle's ops, per-step
#      losses side by side; then the GPU-trained and the CPU-trained checkpoints evaluated
#      on both devices (a checkpoint from either device must score the same on the other);
#   b) img/s of a training step, ResNet18 + 3 heads at 64x64 and 128x128, batch 64 and 256:
#      `host-train bench --device cuda` beside `pytorch_hydranet.py --bench --device cuda`;
#   c) a short full training on the subset on the GPU: validation metrics and wall time.
# --cpu-only runs the same logic with every GPU part moved to the CPU and made small (for
# checking the script on a machine without a GPU: give the stub libcuda's and the wheels'
# library folders with --libs, the LD_LIBRARY_PATH scripts/build-cuda.sh prints).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUDGET=$((64 * 1024 * 1024))

die() { echo "gpu-check: $*" >&2; exit 1; }

prepare() {
  local dir=$1 max_images=$2
  local root
  root=$(cd "$HERE/.." && pwd)
  local bin="${HYDRANET_CUDA_BIN:-$HOME/.cache/hydranet-edge/target-cuda/release/host-train-cuda}"
  local faces="${HYDRANET_UTKFACE:-$root/../shared/datasets/utkface/UTKFace}"
  local anchor="${HYDRANET_PYTORCH_ANCHOR:-$root/../shared/anchors/pytorch_hydranet.py}"
  [[ -x "$bin" ]] || die "$bin not found: run scripts/build-cuda.sh first (or set HYDRANET_CUDA_BIN)"
  [[ -d "$faces" ]] || die "UTKFace folder $faces not found (set HYDRANET_UTKFACE)"
  [[ -f "$anchor" ]] || die "PyTorch reference $anchor not found (set HYDRANET_PYTORCH_ANCHOR)"
  rm -rf "$dir"
  mkdir -p "$dir"
  gzip -9 -c "$bin" >"$dir/host-train-cuda.gz"
  cp "$anchor" "$dir/pytorch_hydranet.py"
  cp "$HERE/gpu-check.sh" "$HERE/gpu-check.py" "$dir/"
  {
    echo "gpu-check bundle, prepared $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "repository: $(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)"
    echo "binary: $(basename "$bin") $(stat -c %s "$bin") bytes, sha256 $(sha256sum "$bin" | cut -d' ' -f1)"
    echo "        needs $(objdump -T "$bin" | grep -oE 'GLIBC_[0-9.]+' | sort -uV | tail -1)," \
      "links $(readelf -d "$bin" | sed -nE 's/.*Shared library: \[(.*)\]/\1/p' | tr '\n' ' ')"
    echo "pytorch_hydranet.py: copied from ../shared/anchors (not part of the repository)"
    echo "utkface/: a subset of UTKFace (non-commercial research use only; never commit it)"
  } >"$dir/MANIFEST.txt"
  local used
  used=$(du -cb "$dir"/* | tail -1 | cut -f1)
  # What is left under 64 MiB, less 2 MiB for the manifest's last line and the folder
  # entries (the image folder's own entry is ~0.75 MB for 10k names).
  read -r n bytes < <(python3 "$HERE/gpu-check.py" select "$faces" "$dir/utkface" \
    $((BUDGET - used - 2 * 1024 * 1024)) "$max_images")
  echo "utkface/: $n images, $bytes bytes" >>"$dir/MANIFEST.txt"
  local total
  total=$(du -sb "$dir" | cut -f1)
  ((total < BUDGET)) || die "$dir is $total bytes, over 64 MiB"
  cat "$dir/MANIFEST.txt"
  echo "prepared $dir: $((total / 1024 / 1024)) MiB ($total bytes) in all; copy it to the GPU machine and run $(basename "$dir")/gpu-check.sh"
}

# ---- options
MODE=run
DIR=""
PY=python3
GPU=cuda
STEPS=20
EPOCHS=10
OUT=""
MAX_IMAGES=100000
EXTRA_LIBS=""
CPU_ONLY=0
while (($#)); do
  case "$1" in
    --prepare) MODE=prepare; if [[ $# -gt 1 && $2 != --* ]]; then DIR=$2; shift; fi ;;
    --images) MAX_IMAGES=$2; shift ;;
    --python) PY=$2; shift ;;
    --libs) EXTRA_LIBS=$2; shift ;;
    --gpu) GPU=$2; shift ;;
    --steps) STEPS=$2; shift ;;
    --epochs) EPOCHS=$2; shift ;;
    --out) OUT=$2; shift ;;
    --cpu-only) CPU_ONLY=1 ;;
    -h | --help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done

if [[ $MODE == prepare ]]; then
  prepare "${DIR:-$(cd "$HERE/.." && pwd)/gpu-check}" "$MAX_IMAGES"
  exit 0
fi

# ---- run (from the prepared folder)
[[ -f "$HERE/host-train-cuda.gz" && -d "$HERE/utkface" ]] ||
  die "no prepared bundle beside this script: run scripts/gpu-check.sh --prepare first and run DIR/gpu-check.sh"
OUT=${OUT:-$HERE/results}
rm -rf "$OUT"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
HELP="$HERE/gpu-check.py"
FACES="$HERE/utkface"
BIN="$OUT/host-train-cuda"
gzip -dc "$HERE/host-train-cuda.gz" >"$BIN"
chmod +x "$BIN"
T0=$SECONDS
stage() { echo; echo "== $* ($((SECONDS - T0)) s)"; }

# The libraries: libcuda.so.1 from the driver (the system's loader path); libcublas.so.13
# (with cublasLt) and libcurand.so.10 from the nvidia wheels of PyTorch's Python environment.
# Only host-train gets this path: PyTorch keeps its own (other versions of the same libraries
# ahead of its own slowed it 30x on CPU in a dry run, and could break it).
LIBS=$("$PY" "$HELP" libdirs 2>"$OUT/libdirs.err" || true)
HT_LD="${LD_LIBRARY_PATH:-}"
for d in "$LIBS" "$EXTRA_LIBS"; do # --libs ends up first
  if [[ -n "$d" ]]; then HT_LD="$d${HT_LD:+:$HT_LD}"; fi
done
if [[ -s "$OUT/libdirs.err" ]]; then
  sed "s/^/$(basename "$PY")'s nvidia wheels: /" "$OUT/libdirs.err" >&2
fi
ht() { LD_LIBRARY_PATH="$HT_LD" "$BIN" "$@"; }
if ! ht --version >/dev/null 2>"$OUT/start.err"; then
  cat "$OUT/start.err" >&2
  LD_LIBRARY_PATH="$HT_LD" ldd "$BIN" | grep "not found" >&2 || true
  die "host-train-cuda does not start: libcuda.so.1 comes with the NVIDIA driver, libcublas.so.13 and
libcurand.so.10 from $PY's nvidia wheels or a folder given with --libs (LD_LIBRARY_PATH=$HT_LD)"
fi
echo "libraries: $(LD_LIBRARY_PATH="$HT_LD" ldd "$BIN" | grep -E 'libcuda|libcublas|libcurand' | sed -E 's/^\s+//; s/ \(0x.*//' | tr '\n' ';')"

if ((CPU_ONLY)); then
  DEV=cpu
  TRAJ=(--backbone resnet10-w0.25 --input-size 32 --batch 16 --limit 256)
  BENCH_SIZES=(32)
  BENCH_BATCHES=(8 16)
  BENCH_STEPS=(--steps 1 --warmup 0)
  FULL=(--backbone resnet10-w0.25 --input-size 32 --batch 32 --limit 512)
  EPOCHS=$((EPOCHS < 2 ? EPOCHS : 2))
  STEPS=$((STEPS < 6 ? STEPS : 6))
else
  DEV=$GPU
  TRAJ=(--backbone resnet18 --input-size 64 --batch 32 --limit 2048)
  BENCH_SIZES=(64 128)
  BENCH_BATCHES=(64 256)
  BENCH_STEPS=(--steps 5 --warmup 2)
  FULL=(--backbone resnet18 --input-size 64 --batch 64)
fi

TORCH=$("$PY" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "available" if torch.cuda.is_available() else "unavailable")' 2>/dev/null || echo "not importable")
GPUINFO=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1 || true)
python3 "$HELP" meta "$OUT" mode="$([[ $CPU_ONLY == 1 ]] && echo "CPU-only dry run, not a GPU check" || echo "GPU $DEV")" \
  gpu="${GPUINFO:-none found}" version="$(ht --version)" torch="$TORCH" cores="$(nproc)" \
  trajectory_setup="${TRAJ[*]}"
stage "machine: ${GPUINFO:-no nvidia-smi}; $(nproc) cores; torch: $TORCH"
((CPU_ONLY)) || ht bench --device "$DEV" --backbone resnet10-w0.25 --size 32 --batch 4 --steps 1 --warmup 0 --kernels candle >/dev/null ||
  die "host-train cannot use $DEV (its error is above)"

# ---- a) the loss trajectory, and checkpoints across devices
stage "a) first $STEPS training steps, same seed: $DEV, CPU (fast kernels), CPU (Candle's ops)"
traj() { # run-name device kernels
  ht train --data "$FACES" --out "$OUT/traj-$1" "${TRAJ[@]}" --epochs 1 --seed 0 \
    --device "$2" --kernels "$3" --max-steps "$STEPS" --log-steps >"$OUT/traj-$1.log" 2>&1 ||
    { tail -20 "$OUT/traj-$1.log"; die "training on $2 failed (log: $OUT/traj-$1.log)"; }
}
# Without a GPU (--cpu-only) the device run is the CPU run repeated: it must match exactly.
DEVRUN=$([[ $DEV == cpu ]] && echo cpu-again || echo "$DEV")
traj dev "$DEV" fast
traj cpu cpu fast
traj cpu-candle cpu candle
python3 "$HELP" trajectory "$OUT" "cpu=$OUT/traj-cpu" "$DEVRUN=$OUT/traj-dev" "cpu-candle-ops=$OUT/traj-cpu-candle"

stage "a) the $DEV-trained and the CPU-trained checkpoints, each evaluated on both devices"
evals=()
eval_devs=("$DEV")
[[ $DEV == cpu ]] || eval_devs+=(cpu)
for run in dev cpu; do
  trained=$([[ $run == dev ]] && echo "$DEVRUN" || echo cpu)
  for dev in "${eval_devs[@]}"; do
    name="$run-on-${dev/:/}"
    ht eval --checkpoint "$OUT/traj-$run/last.safetensors" --data "$FACES" --split val --json \
      --device "$dev" >"$OUT/eval-$name.json" 2>"$OUT/eval-$name.err" ||
      { cat "$OUT/eval-$name.err"; die "eval on $dev failed"; }
    evals+=("$trained-trained, eval on $dev=$OUT/eval-$name.json")
  done
done
python3 "$HELP" evals "$OUT" "${evals[@]}"

# ---- b) throughput beside PyTorch
stage "b) training-step throughput on $DEV: host-train bench beside pytorch_hydranet.py --bench"
: >"$OUT/bench.jsonl"
for size in "${BENCH_SIZES[@]}"; do
  for batch in "${BENCH_BATCHES[@]}"; do
    ht bench --device "$DEV" --backbone resnet18 --size "$size" --batch "$batch" "${BENCH_STEPS[@]}" \
      --kernels "$([[ $DEV == cpu ]] && echo fast || echo candle)" 2>>"$OUT/bench.err" | tee -a "$OUT/bench.jsonl" ||
      echo "host-train bench $size/$batch failed (see $OUT/bench.err)"
    if [[ $TORCH != "not importable" ]]; then
      (cd "$HERE" && "$PY" pytorch_hydranet.py --bench --device "$DEV" --size "$size" --batch "$batch" \
        --threads "$(nproc)") 2>>"$OUT/bench.err" | grep '^{' | tee -a "$OUT/bench.jsonl" ||
        echo "PyTorch bench $size/$batch failed (see $OUT/bench.err)"
    fi
  done
done
python3 "$HELP" bench "$OUT" "$OUT/bench.jsonl"

# ---- c) a short full training
stage "c) full training on the subset: $EPOCHS epochs on $DEV"
t=$(date +%s.%N)
ht train --data "$FACES" --out "$OUT/full" "${FULL[@]}" --epochs "$EPOCHS" --seed 0 --device "$DEV" \
  2>"$OUT/full.err" | tee "$OUT/full.log" || { tail -20 "$OUT/full.err"; die "full training failed"; }
wall=$(python3 -c "import sys; print(round($(date +%s.%N) - $t, 1))")
ht eval --checkpoint "$OUT/full/best.safetensors" --data "$FACES" --split val --json --device "$DEV" \
  >"$OUT/eval-full.json" 2>>"$OUT/full.err" || { tail -5 "$OUT/full.err"; die "eval of the full run failed"; }
python3 "$HELP" full "$OUT" "$OUT/full" "$OUT/eval-full.json" "$wall" >/dev/null

stage "done"
python3 "$HELP" summary "$OUT"
echo "results: $OUT (summary.txt, summary.json, logs and run folders)"
