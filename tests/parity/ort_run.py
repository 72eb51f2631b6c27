#!/usr/bin/env python3
"""The judge for a model that is not a HydraNet (the face detector): runs it in onnxruntime
as it is, one case at a time, and answers every output by name.

Usage: ort_run.py MODEL INPUTS_JSON OUTPUTS_JSON
INPUTS_JSON: {"shape": [...], "inputs": [[...flat...], ...]}
"""
import json
import sys

import numpy as np
import onnxruntime as ort


def main():
    model_path, inp_path, out_path = sys.argv[1:4]
    spec = json.load(open(inp_path))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    outputs = {o.name: [] for o in sess.get_outputs()}
    for x in spec["inputs"]:
        x = np.asarray(x, dtype=np.float32).reshape(spec["shape"])
        for o, v in zip(sess.get_outputs(), sess.run(None, {name: x})):
            outputs[o.name].append(v.reshape(-1).tolist())
    json.dump({"outputs": outputs, "onnxruntime": ort.__version__}, open(out_path, "w"))


if __name__ == "__main__":
    main()
