#!/usr/bin/env bash
# The whole test suite, installing what it needs. Run from anywhere:  scripts/test.sh
#
# Needs ../shared (the UTKFace folder) beside the repository; set HYDRANET_UTKFACE to use
# another copy. CARGO_TARGET_DIR may point outside the clone to reuse a build cache.
#
# --cuda (or HYDRANET_TEST_CUDA=1) also compile-checks host-train's `cuda` feature with
# scripts/build-cuda.sh --check (CUDA wheels and its own target folder under
# ~/.cache/hydranet-edge; ~15 min cold on 2 cores, so not part of the default run or CI).
#
# --gnu (or HYDRANET_TEST_GNU=1) also runs the aarch64 parity on the gnu target. The default
# run tests musl only (every board profile's default, and the boot test's binary): the
# second cross build of every dependency was ~10 min of a cold CI run.
set -euo pipefail
cd "$(dirname "$0")/.."
CUDA="${HYDRANET_TEST_CUDA:-0}"
GNU="${HYDRANET_TEST_GNU:-0}"
for arg in "$@"; do
  case "$arg" in
    --cuda) CUDA=1 ;;
    --gnu) GNU=1 ;;
    *) echo "unknown option $arg (scripts/test.sh [--cuda] [--gnu])" >&2; exit 2 ;;
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

step "fleet (in the background while the aarch64 steps build): promtool on boards/fleet, Prometheus scraping 3 kiosks, Mender installs and rollbacks (tests/mender)"
# Mostly waiting (alerts take their minute, releases their health checks): it runs beside
# the CPU-bound cross builds, with built binaries, so it takes no cargo lock.
FLEET_LOG="$CARGO_TARGET_DIR/fleet.log"
(
  set -e
  boards/fleet/check.sh
  boards/fleet/scrape-test.py --binary "$CARGO_TARGET_DIR/debug/edge-runtime" \
    --model tests/fixtures/parity-v1/model.onnx
  tests/mender/standalone-test.sh --binary "$CARGO_TARGET_DIR/debug/edge-runtime" \
    --model tests/fixtures/parity-v1/model.onnx --xtask "$CARGO_TARGET_DIR/debug/xtask"
) >"$FLEET_LOG" 2>&1 &
FLEET_PID=$!
trap 'kill $FLEET_PID 2>/dev/null || true' EXIT

LIBCS=(musl)
[[ $GNU == 1 ]] && LIBCS=(gnu musl)
step "parity on aarch64 under qemu-aarch64 -cpu cortex-a72 (${LIBCS[*]}): the HydraNet fixture, the int8 kernels (arm64 tiles), the face detector fixture"
# One target after the other: building both in one cargo call was measured slower cold
# (17.3 min against 14.5: the two compete for the same two cores and the memory).
AARCH64=(--locked --profile cross --no-default-features -p edge-runtime --test fixture --test int8_kernel)
for libc in "${LIBCS[@]}"; do
  log="$CARGO_TARGET_DIR/parity-aarch64-$libc.log"
  cargo test "${AARCH64[@]}" --target "aarch64-unknown-linux-$libc" -- --nocapture >"$log" 2>&1 ||
    { cat "$log"; exit 1; }
  grep -E "vs tract|vs onnxruntime|fixture images|test result" "$log"
done
# The integer convolution's arm64 tiles, each on an emulated CPU that has what it needs:
# smull + sadalp on the Pi 4's Cortex-A72 (no dot product), sdot on the Pi 5's Cortex-A76
# (the fixture test above ran the A72's tile; here it runs again on the A76's).
# HYDRANET_EXPECT_TILES fails the run if QEMU's CPU does not offer the tile it is meant to
# test.
qemu_cpu() { # CPU EXPECTED-TILES CARGO-TEST-ARGS...
  local cpu=$1 tiles=$2 log="$CARGO_TARGET_DIR/qconv-aarch64-$1.log"
  shift 2
  HYDRANET_EXPECT_TILES=$tiles CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER="qemu-aarch64 -cpu $cpu" \
    cargo test --locked --profile cross --no-default-features --target aarch64-unknown-linux-musl -p edge-runtime \
    "$@" -- --nocapture >"$log" 2>&1 || { cat "$log"; exit 1; }
  echo "-cpu $cpu $*:"
  grep -E "tiles on|fixture images|test result" "$log"
}
qemu_cpu cortex-a72 smull --lib qconv
qemu_cpu cortex-a76 sdot,smull --lib qconv
qemu_cpu cortex-a76 sdot,smull --test int8_kernel

step "fleet results ($FLEET_LOG)"
if ! wait $FLEET_PID; then
  cat "$FLEET_LOG"
  echo "fleet tests failed" >&2
  exit 1
fi
cat "$FLEET_LOG"

step "boot test: the rpi4 bundle (with the face detector) on an emulated arm64 board with a V4L2 camera (vivid)"
BOOT=$(mktemp -d)
trap 'rm -rf "$BOOT"; kill $FLEET_PID 2>/dev/null || true' EXIT
cargo xtask bundle --board rpi4 --model tests/fixtures/parity-v1/model.onnx \
  --binary "$CARGO_TARGET_DIR/aarch64-unknown-linux-musl/cross/edge-runtime" --out "$BOOT"
boards/qemu/boot-test.sh --bundle "$BOOT"/hydranet-edge-rpi4-*.tar.gz --log "$BOOT/console.log"
scripts/check-boot-log.py "$BOOT/console.log" --detector

if [[ $CUDA == 1 ]]; then
  step "cuda: compile check of host-train --features cuda (scripts/build-cuda.sh --check)"
  scripts/build-cuda.sh --check
fi
step "done"
