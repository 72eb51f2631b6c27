#!/usr/bin/env bash
# The whole test suite, installing what it needs. Run from anywhere:  scripts/test.sh
#
# Needs ../shared (the UTKFace folder) beside the repository; set HYDRANET_UTKFACE to use
# another copy. CARGO_TARGET_DIR may point outside the clone to reuse a build cache.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== toolchain"
if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust with rustup first" >&2
  exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo --version

echo "== python judge (onnx, onnxruntime) for the parity tests"
. scripts/judge-venv.sh

echo "== format"
cargo fmt --all -- --check

echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== models builds for the boards (aarch64)"
rustup target add aarch64-unknown-linux-gnu >/dev/null
cargo check -p models --target aarch64-unknown-linux-gnu --locked

echo "== tests"
cargo test --workspace --locked
