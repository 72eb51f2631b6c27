#!/usr/bin/env python3
"""The independent judge: checks an ONNX file with onnx.checker (full_check) and runs it in
onnxruntime, one case at a time and all cases in one batch (symbolic batch dimension).

Usage: ort_check.py MODEL INPUTS_JSON OUTPUTS_JSON
INPUTS_JSON: {"shape": [1, 3, H, W], "inputs": [[...flat CHW...], ...]}
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main():
    model_path, inp_path, out_path = sys.argv[1:4]
    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)
    spec = json.load(open(inp_path))
    _, c, h, w = spec["shape"]
    xs = [np.asarray(x, dtype=np.float32).reshape(1, c, h, w) for x in spec["inputs"]]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    single = {n: [] for n in names}
    for x in xs:
        for n, v in zip(names, sess.run(None, {"image": x})):
            single[n].append(v.reshape(-1).tolist())
    batched_out = sess.run(None, {"image": np.concatenate(xs, axis=0)})
    batched = {n: v.tolist() for n, v in zip(names, batched_out)}
    meta = sess.get_modelmeta().custom_metadata_map
    json.dump({"checker": "ok", "outputs": single, "batched": batched, "metadata": meta,
               "ir_version": model.ir_version, "opset": [o.version for o in model.opset_import],
               "onnxruntime": ort.__version__, "onnx": onnx.__version__}, open(out_path, "w"))


if __name__ == "__main__":
    main()
