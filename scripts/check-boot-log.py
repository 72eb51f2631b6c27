#!/usr/bin/env python3
"""Reads the boot test's console log and passes only if frames came through V4L2 and
predictions came out: the run's summary names the v4l source, counts captured and
processed frames, and at least one JSON prediction line was printed."""
import json
import sys

log = open(sys.argv[1], encoding="utf-8", errors="replace").read().splitlines()
preds = []
summary = None
for line in log:
    line = line.strip()
    if not line.startswith("{"):
        continue
    try:
        v = json.loads(line)
    except json.JSONDecodeError:
        continue
    if "summary" in v:
        summary = v["summary"]
    elif "smoothed" in v:
        preds.append(v)
fail = []
if summary is None:
    fail.append("no summary line from edge-runtime")
else:
    if not str(summary.get("source", "")).startswith("v4l:/dev/video0"):
        fail.append(f"source is {summary.get('source')!r}, not the V4L2 camera")
    if summary.get("captured", 0) < 1 or summary.get("processed", 0) < 1:
        fail.append(f"captured {summary.get('captured')} / processed {summary.get('processed')}")
if not preds:
    fail.append("no prediction lines")
if fail:
    print("boot test FAILED: " + "; ".join(fail), file=sys.stderr)
    sys.exit(1)
last = preds[-1]["smoothed"]
print(
    f"boot test: {summary['source']}: captured {summary['captured']}, processed "
    f"{summary['processed']}, dropped {summary['dropped']}, {len(preds)} predictions, "
    f"{summary['fps']:.1f} fps in the VM; last: age {last['age']['value']:.1f}, "
    f"{last['gender']['label']}, {last['ethnicity']['label']}"
)
