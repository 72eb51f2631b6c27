#!/usr/bin/env python3
"""onnxruntime's latency on an ONNX file, printed as the same JSON line `edge-runtime bench`
prints, so scripts/bench-edge.sh can put the two side by side.

Usage: ort_bench.py MODEL [--batch 1] [--threads 1] [--warmup 10] [--iters 200]
"""
import argparse
import json
import os
import resource
import time

import numpy as np
import onnxruntime as ort


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--iters", type=int, default=200)
    a = p.parse_args()
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    t = time.perf_counter()
    sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    load_s = time.perf_counter() - t
    inp = sess.get_inputs()[0]
    shape = [a.batch] + [int(d) for d in inp.shape[1:]]
    n = int(np.prod(shape))
    # The same sine pattern edge-runtime bench feeds.
    x = (np.sin(np.arange(n, dtype=np.float32) * np.float32(0.37)) * 1.5).reshape(shape)
    feed = {inp.name: x.astype(np.float32)}
    for _ in range(a.warmup):
        sess.run(None, feed)
    lat = []
    t0 = time.perf_counter()
    for _ in range(max(a.iters, 1)):
        t = time.perf_counter()
        sess.run(None, feed)
        lat.append((time.perf_counter() - t) * 1e3)
    wall = time.perf_counter() - t0
    lat.sort()

    def q(p):
        rank = int(np.ceil(p * len(lat)))
        return lat[max(rank - 1, 0)]

    print(json.dumps({
        "runtime": f"onnxruntime {ort.__version__}",
        "model": a.model,
        "model_bytes": os.path.getsize(a.model),
        "batch": a.batch,
        "threads": a.threads,
        "iters": len(lat),
        "p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99),
        "mean_ms": sum(lat) / len(lat),
        "img_per_s": len(lat) * a.batch / wall,
        "load_s": load_s,
        # ru_maxrss is KiB on Linux; includes the Python interpreter and numpy.
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }))


if __name__ == "__main__":
    main()
