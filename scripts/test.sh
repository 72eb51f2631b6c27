#!/usr/bin/env bash
# The whole test suite, installing what it needs. Run from anywhere:  scripts/test.sh
#
# Needs ../shared (the UTKFace folder) beside the repository; set HYDRANET_UTKFACE to use
# another copy. CARGO_TARGET_DIR may point outside the clone to reuse a build cache.
#
# --cuda (or HYDRANET_TEST_CUDA=1) also compile-checks host-train's `cuda` feature with
# scripts/build-cuda.sh --check (CUDA wheels and its own target folder under
# ~/.cache/hydranet-edge; ~15 min cold on 2 cores, so not part of the default run or CI).
set -euo pipefail
cd "$(dirname "$0")/.."
CUDA="${HYDRANET_TEST_CUDA:-0}"
for arg in "$@"; do
  case "$arg" in
    --cuda) CUDA=1 ;;
    *) echo "unknown option $arg (scripts/test.sh [--cuda])" >&2; exit 2 ;;
  esac
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# Each step's heading carries the seconds since the start, so a log shows what costs most.
step() { echo "== [${SECONDS}s] $*"; }

step "setup: Debian packages, rustup components and targets, Python venv (scripts/setup.sh test)"
scripts/setup.sh test
cargo --version
. scripts/judge-venv.sh >/dev/null

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "models: the no_std core (contract, decoding, smoothing, defmt) for a microcontroller"
cargo build --locked -q -p models --no-default-features --features defmt --target thumbv7em-none-eabihf

step "tests (x86_64)"
# Examples are compiled (and linted) by clippy --all-targets above; building them again
# here in debug would only cost links. No crate has doc tests.
HYDRANET_REQUIRE_BROWSER=1 cargo test --workspace --locked --lib --bins --tests

step "parity on aarch64 under qemu-aarch64 -cpu cortex-a72 (gnu, then musl): the HydraNet fixture, the int8 kernels (portable on arm64), the face detector fixture"
# One target after the other: building both in one cargo call was measured slower cold
# (17.3 min against 14.5: the two compete for the same two cores and the memory).
AARCH64=(--locked --profile cross --no-default-features -p edge-runtime --test fixture --test int8_kernel)
for libc in gnu musl; do
  log="$CARGO_TARGET_DIR/parity-aarch64-$libc.log"
  cargo test "${AARCH64[@]}" --target "aarch64-unknown-linux-$libc" -- --nocapture >"$log" 2>&1 ||
    { cat "$log"; exit 1; }
  grep -E "vs tract|vs onnxruntime|fixture images|test result" "$log"
done
log="$CARGO_TARGET_DIR/qconv-aarch64.log"
cargo test --locked --profile cross --no-default-features --target aarch64-unknown-linux-gnu -p edge-runtime \
  --lib qconv >"$log" 2>&1 || { cat "$log"; exit 1; }
grep -E "test result" "$log"

step "boot test: the rpi4 bundle (with the face detector) on an emulated arm64 board with a V4L2 camera (vivid)"
BOOT=$(mktemp -d)
trap 'rm -rf "$BOOT"' EXIT
cargo xtask bundle --board rpi4 --model tests/fixtures/parity-v1/model.onnx \
  --binary "$CARGO_TARGET_DIR/aarch64-unknown-linux-musl/cross/edge-runtime" --out "$BOOT"
boards/qemu/boot-test.sh --bundle "$BOOT"/hydranet-edge-rpi4-*.tar.gz --log "$BOOT/console.log"
scripts/check-boot-log.py "$BOOT/console.log" --detector

if [[ $CUDA == 1 ]]; then
  step "cuda: compile check of host-train --features cuda (scripts/build-cuda.sh --check)"
  scripts/build-cuda.sh --check
fi
step "done"
