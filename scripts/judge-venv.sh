# Sourced by the scripts that need onnx + onnxruntime (setup.sh test, the parity judge, the
# onnxruntime benchmarks): creates or updates the venv and sets VENV and HYDRANET_PYTHON.
VENV=${HYDRANET_VENV:-$HOME/.cache/hydranet-edge/venv}
if [ ! -x "$VENV/bin/python" ]; then
  echo "venv: creating $VENV"
  if ! python3 -m venv "$VENV"; then
    # Debian's own python3 keeps ensurepip in a separate package.
    rm -rf "$VENV"
    SUDO=""
    [[ $(id -u) == 0 ]] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv "$VENV"
  fi
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/parity/requirements.txt
export HYDRANET_PYTHON="$VENV/bin/python"
