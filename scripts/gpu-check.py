#!/usr/bin/env python3
"""Helper of scripts/gpu-check.sh (standard library only): picks the UTKFace subset, finds
the CUDA libraries of a Python environment, and reads host-train's and PyTorch's outputs
into the comparisons and the summary the check prints.

  gpu-check.py select SRC DEST BUDGET_BYTES MAX_IMAGES   copy a deterministic subset
  gpu-check.py libdirs                                   folders of the nvidia wheels' libs
  gpu-check.py trajectory OUT RUN=DIR...                 per-step losses side by side
  gpu-check.py evals OUT NAME=FILE...                    eval --json lines side by side
  gpu-check.py bench OUT FILE                            img/s table from bench lines
  gpu-check.py full OUT RUN_DIR EVAL_JSON WALL_S         the full run's metrics
  gpu-check.py meta OUT KEY=VALUE...                     facts about the machine and run
  gpu-check.py summary OUT                               everything, as text and JSON
OUT is the results folder: each step writes OUT/<step>.json, `summary` reads them back.
"""
import hashlib
import json
import os
import re
import shutil
import sys

NAME = re.compile(r"^(\d+)_([01])_([0-4])_\d+\.jpg\.chip\.jpg$")


def select(src, dest, budget, max_images):
    """Copies the files with the smallest name hash (spread over ages, not sorted by them)
    while the total stays within `budget` bytes. Prints the count and bytes."""
    names = []
    for f in os.listdir(src):
        m = NAME.match(f)
        if m and 1 <= int(m[1]) <= 116:
            names.append(f)
    names.sort(key=lambda f: hashlib.sha1(f"gpu-check:{f}".encode()).hexdigest())
    os.makedirs(dest, exist_ok=True)
    used = count = 0
    for f in names:
        if count >= max_images:
            break
        size = os.path.getsize(os.path.join(src, f))
        if used + size > budget:
            break
        shutil.copyfile(os.path.join(src, f), os.path.join(dest, f))
        used += size
        count += 1
    print(count, used)


def libdirs():
    """Folders under the `nvidia` package (PyTorch's CUDA wheels) holding the libraries the
    cuda binary loads besides the driver's libcuda.so.1: cublas (with cublasLt) and curand,
    at the major versions it was built with."""
    import importlib

    try:
        nvidia = importlib.import_module("nvidia")
    except ImportError:
        return
    wanted = re.compile(r"^lib(cublas|cublasLt)\.so\.13$|^libcurand\.so\.10$")
    found = {}
    for root in list(nvidia.__path__):
        for d, _, files in os.walk(root):
            for f in files:
                if wanted.match(f):
                    found.setdefault(f, d)
    for lib in ["libcublas.so.13", "libcublasLt.so.13", "libcurand.so.10"]:
        if lib not in found:
            print(f"missing {lib}", file=sys.stderr)
    print(":".join(sorted(set(found.values()))))


def jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip().startswith("{")]


def save(out, step, value):
    with open(os.path.join(out, f"{step}.json"), "w") as f:
        json.dump(value, f, indent=1)


def rel(a, b):
    return abs(a - b) / max(abs(a), 1e-12)


def trajectory(out, runs):
    """Per-step total losses of each run (log.jsonl `step` events) side by side; every run
    is compared with the first."""
    names, losses = [], []
    for spec in runs:
        name, d = spec.split("=", 1)
        steps = [r for r in jsonl(os.path.join(d, "log.jsonl")) if r.get("event") == "step"]
        names.append(name)
        losses.append([r["loss"] for r in steps])
    n = min(len(l) for l in losses)
    if n == 0:
        sys.exit("trajectory: a run logged no steps")
    print("step " + " ".join(f"{x:>14}" for x in names))
    for i in range(n):
        print(f"{i + 1:>4} " + " ".join(f"{l[i]:>14.6f}" for l in losses))
    ref = losses[0]
    result = {"steps": n, "runs": names, "losses": {k: l[:n] for k, l in zip(names, losses)},
              "vs_" + names[0]: {}}
    for name, l in zip(names[1:], losses[1:]):
        diffs = [rel(ref[i], l[i]) for i in range(n)]
        result["vs_" + names[0]][name] = {"first_step_rel": diffs[0], "max_rel": max(diffs)}
        print(f"{name} vs {names[0]}: step 1 (same weights, no update yet) differs by "
              f"{diffs[0]:.2e} relative, the worst of {n} steps by {max(diffs):.2e}")
    save(out, "trajectory", result)


def evals(out, specs):
    """Headline metrics of `eval --json` runs (the last JSON line of each file)."""
    rows = {}
    for spec in specs:
        name, path = spec.split("=", 1)
        lines = jsonl(path)
        if not lines:
            sys.exit(f"evals: no JSON in {path}")
        v = lines[-1]
        rows[name] = {k: v[k] for k in sorted(v) if k == "n" or re.search(r"_(mae|acc|f1)$", k)}
    keys = sorted({k for r in rows.values() for k in r})
    w = max(len(n) for n in rows) + 1
    print(f"{'':{w}}" + "".join(f"{k:>15}" for k in keys))
    for name, r in rows.items():
        print(f"{name:{w}}" + "".join(f"{r.get(k, float('nan')):>15.4f}" for k in keys))
    save(out, "evals", rows)


def bench(out, path):
    """`host-train bench` and `pytorch_hydranet.py --bench` lines of one file, paired by
    (size, batch)."""
    ours, torch = {}, {}
    for v in jsonl(path):
        key = (v["size"], v["batch"])
        if v.get("peer") == "pytorch":
            torch[key] = v
        elif v.get("impl") == "candle":
            ours[key] = v
    rows = []
    print(f"{'size':>5} {'batch':>6} {'host-train img/s':>17} {'PyTorch img/s':>14} {'ratio':>6}")
    for key in sorted(set(ours) | set(torch)):
        a = ours.get(key, {}).get("img_per_s")
        b = torch.get(key, {}).get("img_per_s")
        ratio = a / b if a and b else None
        rows.append({"size": key[0], "batch": key[1], "host_train_img_s": a, "pytorch_img_s": b,
                     "ratio": ratio, "device": ours.get(key, torch.get(key, {})).get("device"),
                     "torch": torch.get(key, {}).get("torch")})
        fmt = lambda x, f: format(x, f) if x is not None else "-"
        print(f"{key[0]:>5} {key[1]:>6} {fmt(a, '>17.0f')} {fmt(b, '>14.0f')} {fmt(ratio, '>6.2f')}")
    save(out, "bench", rows)


def full(out, run_dir, eval_json, wall):
    log = jsonl(os.path.join(run_dir, "log.jsonl"))
    epochs = [r for r in log if "epoch" in r and "event" not in r]
    v = jsonl(eval_json)[-1]
    metrics = {k: v[k] for k in sorted(v) if k == "n" or re.search(r"_(mae|acc|f1)$", k)}
    result = {"wall_s": float(wall), "epochs": len(epochs),
              "img_per_s": [round(r["img_per_s"]) for r in epochs],
              "val_loss": [r["val_loss"] for r in epochs], "val": metrics}
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    result["config"] = {k: config[k] for k in ["backbone", "input_size", "batch", "epochs", "device"]}
    print(json.dumps(result))
    save(out, "full", result)


def meta(out, pairs):
    p = os.path.join(out, "meta.json")
    m = json.load(open(p)) if os.path.exists(p) else {}
    for kv in pairs:
        k, v = kv.split("=", 1)
        m[k] = v
    save(out, "meta", m)


def summary(out):
    def get(step):
        p = os.path.join(out, f"{step}.json")
        return json.load(open(p)) if os.path.exists(p) else None

    meta = get("meta") or {}
    lines = [f"== gpu-check summary ({meta.get('mode', '?')})",
             f"GPU: {meta.get('gpu', 'none')}; {meta.get('cores', '?')} cores; binary: {meta.get('version', '?')}; "
             f"torch {meta.get('torch', '-')}"]
    t = get("trajectory")
    if t:
        lines.append(f"loss trajectory, {t['steps']} steps ({meta.get('trajectory_setup', '')}):")
        base = t["runs"][0]
        for name, d in t["vs_" + base].items():
            # Step 1 is one forward pass on the same weights: only rounding may differ. Later
            # steps compound it (the CPU kernel paths differ by ~1e-7 over the same steps).
            same = d["first_step_rel"] <= 1e-4 and d["max_rel"] <= 1e-2
            lines.append(f"  {name} vs {base}: step 1 {d['first_step_rel']:.1e}, worst step {d['max_rel']:.1e} "
                         f"(relative): {'same math' if same else 'DIFFERENT (limits: 1e-4 at step 1, 1e-2 after)'}")
    e = get("evals")
    if e:
        lines.append("the same checkpoints evaluated on each device (validation split):")
        for name, r in e.items():
            lines.append(f"  {name}: " + "  ".join(f"{k} {v:.4f}" for k, v in r.items() if k != "n"))
    b = get("bench")
    if b:
        lines.append("training throughput, ResNet18 + 3 heads (img/s):")
        for r in b:
            ratio = f"{r['ratio']:.2f}x PyTorch, goal 0.5x: {'met' if r['ratio'] >= 0.5 else 'NOT met'}" if r["ratio"] else "-"
            a = f"{r['host_train_img_s']:.0f}" if r["host_train_img_s"] else "-"
            p = f"{r['pytorch_img_s']:.0f}" if r["pytorch_img_s"] else "-"
            lines.append(f"  {r['size']}x{r['size']} batch {r['batch']}: host-train {a}, PyTorch {p} ({ratio})")
    f = get("full")
    if f:
        c = f["config"]
        lines.append(f"full training: {c['backbone']} {c['input_size']}x{c['input_size']} batch {c['batch']}, "
                     f"{f['epochs']} epochs on {c['device']}, wall {f['wall_s']:.0f} s "
                     f"({', '.join(map(str, f['img_per_s']))} img/s per epoch)")
        lines.append("  validation: " + "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                                for k, v in f["val"].items()))
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(out, "summary.txt"), "w") as fh:
        fh.write(text + "\n")
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump({k: get(k) for k in ["meta", "trajectory", "evals", "bench", "full"]}, fh, indent=1)


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "select":
        select(args[0], args[1], int(args[2]), int(args[3]))
    elif cmd == "libdirs":
        libdirs()
    elif cmd == "trajectory":
        trajectory(args[0], args[1:])
    elif cmd == "evals":
        evals(args[0], args[1:])
    elif cmd == "bench":
        bench(args[0], args[1])
    elif cmd == "full":
        full(*args)
    elif cmd == "meta":
        meta(args[0], args[1:])
    elif cmd == "summary":
        summary(args[0])
    else:
        sys.exit(f"unknown command {cmd}\n{__doc__}")


if __name__ == "__main__":
    main(sys.argv)
