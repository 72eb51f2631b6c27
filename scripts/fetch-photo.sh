#!/usr/bin/env bash
# One real photograph for the face detector's tests: skimage/data/astronaut.png (Eileen
# Collins, NASA; "No known copyright restrictions, released into the public domain", says
# skimage.data.astronaut's docstring), taken from inside the scikit-image 0.25.2 wheel on
# PyPI with `pip download`, pinned by the wheel's and the image's sha256, with the wheel's
# LICENSE.txt and the docstring's words kept beside it. Never committed (tests/photos/ is
# git-ignored).
#
#   scripts/fetch-photo.sh [DIR]     default DIR: tests/photos (HYDRANET_PHOTO_DIR)
#
# Does nothing when the image is there with its hash; one there with another hash is an
# error naming it.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-${HYDRANET_PHOTO_DIR:-tests/photos}}
VERSION=0.25.2
# The same file whatever Python runs this: the platform and version are spelled out.
WHEEL=scikit_image-$VERSION-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
WHEEL_SHA256=24cc986e1f4187a12aa319f777b36008764e856e5013666a4a83f8df083c2641
PNG_SHA256=88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5
PY=${PYTHON:-python3}

sha() { sha256sum "$1" | cut -d' ' -f1; }
png="$DEST/astronaut.png"
if [ -e "$png" ]; then
  got=$(sha "$png")
  if [ "$got" != "$PNG_SHA256" ]; then
    echo "photo: $png has sha256 $got, expected $PNG_SHA256 (tampered or corrupt): remove it and run $0 again" >&2
    exit 1
  fi
  if [ -f "$DEST/LICENSE.txt" ]; then
    echo "photo: $png up to date (scikit-image $VERSION)"
    exit 0
  fi
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" -m pip download --quiet --no-deps --only-binary :all: --platform manylinux_2_17_x86_64 \
  --python-version 3.11 --implementation cp "scikit-image==$VERSION" -d "$work" ||
  { echo "photo: pip download scikit-image==$VERSION failed" >&2; exit 1; }
[ -f "$work/$WHEEL" ] || { echo "photo: pip did not write $WHEEL" >&2; exit 1; }
got=$(sha "$work/$WHEEL")
if [ "$got" != "$WHEEL_SHA256" ]; then
  echo "photo: $WHEEL has sha256 $got, expected $WHEEL_SHA256" >&2
  exit 1
fi
"$PY" - "$work/$WHEEL" "$work" <<'PYEOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for m in ("skimage/data/astronaut.png", "scikit_image-0.25.2.dist-info/LICENSE.txt"):
        z.extract(m, sys.argv[2])
PYEOF
got=$(sha "$work/skimage/data/astronaut.png")
if [ "$got" != "$PNG_SHA256" ]; then
  echo "photo: astronaut.png in $WHEEL has sha256 $got, expected $PNG_SHA256" >&2
  exit 1
fi
mkdir -p "$DEST"
cp "$work/skimage/data/astronaut.png" "$DEST/.astronaut.png.partial"
mv "$DEST/.astronaut.png.partial" "$png"
cp "$work/scikit_image-$VERSION.dist-info/LICENSE.txt" "$DEST/LICENSE.txt"
{
  echo "astronaut.png: skimage/data/astronaut.png from the PyPI wheel $WHEEL"
  echo "(sha256 $WHEEL_SHA256); image sha256 $PNG_SHA256."
  echo "Eileen Collins, NASA Great Images database <https://flic.kr/p/r9qvLn>:"
  echo "\"No known copyright restrictions, released into the public domain.\" (skimage.data.astronaut)"
  echo "LICENSE.txt is scikit-image's own. Fetched by scripts/fetch-photo.sh; not part of the repository."
} >"$DEST/SOURCE.txt"
echo "photo: $png (scikit-image $VERSION)"
