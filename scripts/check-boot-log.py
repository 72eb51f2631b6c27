#!/usr/bin/env python3
"""Reads the boot test's console log and passes only if frames came through V4L2 and
predictions came out: the run's summary names the v4l source, counts captured and
processed frames, and at least one JSON prediction line was printed. When a second run
used the face detector (a bundle that ships it), its frames must have gone through the
detector too: frame lines with a face count, and a summary with detector time."""
import json
import sys

log = open(sys.argv[1], encoding="utf-8", errors="replace").read().splitlines()
# --detector: the bundle shipped the face detector, so its run must be in the log.
need_detector = "--detector" in sys.argv[2:]
preds = []
summaries = []
detected = []
for line in log:
    line = line.strip()
    if not line.startswith("{"):
        continue
    try:
        v = json.loads(line)
    except json.JSONDecodeError:
        continue
    if "summary" in v:
        summaries.append(v["summary"])
    elif "track" in v or "faces" in v:
        detected.append(v)
    elif "smoothed" in v:
        preds.append(v)
fail = []
summary = summaries[0] if summaries else None
detect_summary = next((s for s in summaries if s.get("stages", {}).get("detect_ms", 0) > 0), None)
if detected and detect_summary is None:
    fail.append("frame lines from the detector run, but no summary with detector time")
if need_detector and detect_summary is None:
    fail.append("no run with the face detector (the bundle ships one)")
if len(summaries) > 1 and not detected:
    fail.append("a second run (with the detector) printed no frame lines")
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
if detect_summary is not None:
    faces = sum(1 for d in detected if "track" in d)
    print(
        f"boot test, with the face detector: processed {detect_summary['processed']}, "
        f"{len(detected)} lines ({faces} with a face), detector "
        f"{detect_summary['stages']['detect_ms']:.0f} ms/frame, {detect_summary['fps']:.1f} fps in the VM"
    )
