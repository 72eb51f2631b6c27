# Sourced by the scripts that need onnx + onnxruntime (the parity judge, the onnxruntime
# benchmarks): creates or updates the venv and sets VENV and HYDRANET_PYTHON.
VENV=${HYDRANET_VENV:-$HOME/.cache/hydranet-edge/venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/parity/requirements.txt
export HYDRANET_PYTHON="$VENV/bin/python"
