#!/usr/bin/env bash
# MACs per cycle of each arm64 inner loop, from LLVM's scheduling models (llvm-mca): the
# edge runtime's int8 tiles as rustc compiles them, and tract's own fp32 8x8 kernel (what
# tract runs for this body's convolutions on a Cortex-A72/A76), read from the tract-linalg
# sources cargo has fetched.
#
#   boards/analysis/mca.sh        (installs Debian's llvm-19 if llvm-mca-19 is missing)
#
# Models: -mcpu=cortex-a72 (LLVM models the A72 with its Cortex-A57 model: two 128-bit
# NEON pipes, F0 and F1) for the Pi 4; -mcpu=neoverse-n1 for the Pi 5's Cortex-A76 (LLVM
# has no A76 model of its own: -mcpu=cortex-a76 falls back to the A57 model too; the
# Neoverse N1 is the A76's server sibling with the same core).
set -euo pipefail
cd "$(dirname "$0")/../.."
MCA=/usr/lib/llvm-19/bin/llvm-mca
if [[ ! -x $MCA ]]; then
  sudo=$([[ $(id -u) == 0 ]] || echo sudo)
  $sudo apt-get install -y -q llvm-19 >/dev/null
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# The release code generation (opt-level 3, no debug assertions) for the library alone.
cargo rustc -q --locked --profile cross --no-default-features --target aarch64-unknown-linux-gnu \
  -p edge-runtime --lib -- --emit asm -C opt-level=3 -C codegen-units=1 -C debug-assertions=off \
  -C overflow-checks=off
LISTING=$(ls -t "$CARGO_TARGET_DIR"/aarch64-unknown-linux-gnu/cross/deps/edge_runtime-*.s | head -1)
python3 boards/analysis/loops.py "$LISTING" 5arm644sdot17h >"$WORK/sdot.s"
python3 boards/analysis/loops.py "$LISTING" 5arm6410smull_tile >"$WORK/smull.s"

LINALG=$(ls -d ~/.cargo/registry/src/*/tract-linalg-0.23.9 | head -1)
NAIVE=$LINALG/arm64/arm64simd/arm64simd_mmm_f32_8x8/packed_packed_loop1/naive.S.raw
# The "gen" core's loop: four copies of the naive step per iteration (..._8x8_core.S.j2).
{
  for _ in 1 2 3 4; do sed 's/{{/{/g; s/}}/}/g' "$NAIVE"; done
  printf 'sub x3, x3, #4\ncmp x3, #4\nb.ge .Lloop\n'
} | grep -v '^\s*$' >"$WORK/tract_f32_8x8.s"

# MACs per loop iteration, from the instructions themselves.
macs() {
  awk '$1=="sdot"||$1=="udot"{m+=16} $1=="smull"||$1=="smull2"{m+=8}
       $1=="fmla"&&/\.4s/{m+=4} END{print m+0}' "$1"
}
printf '%-16s %-12s %6s %6s %9s %10s\n' loop model insns MACs cycles MACs/cycle
for f in sdot smull tract_f32_8x8; do
  for cpu in cortex-a72 neoverse-n1; do
    [[ $f == sdot && $cpu == cortex-a72 ]] && continue # the A72 has no dot product
    total=$("$MCA" -mtriple=aarch64 -mcpu=$cpu -mattr=+dotprod -iterations=1000 "$WORK/$f.s" |
      awk '/^Total Cycles:/{print $3}')
    n=$(grep -c . "$WORK/$f.s")
    m=$(macs "$WORK/$f.s")
    awk -v f=$f -v c=$cpu -v n="$n" -v m="$m" -v t="$total" \
      'BEGIN{printf "%-16s %-12s %6d %6d %9.2f %10.2f\n", f, c, n, m, t/1000, m/(t/1000)}'
  done
done
