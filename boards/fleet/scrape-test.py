#!/usr/bin/env python3
"""Prometheus scraping real kiosks, on loopback.

Starts three `edge-runtime kiosk` processes (two on the synthetic pattern source, one on a
camera that does not exist, so its source fails), and Debian's Prometheus with
boards/fleet/prometheus/ as shipped: the same rules and scrape job, only the intervals
shortened and the targets pointed at the three ports. Then, over Prometheus' HTTP API:

- `up` is 1 for all three, `hydranet_pipeline_fps` is above zero for the two working ones;
- HydraNetCameraLost fires for the failing one only (after the rule's full minute);
- every query of the Grafana dashboard (boards/fleet/grafana/hydranet-fleet.json) returns
  data, so none of its panels names a metric the kiosk does not serve.

  boards/fleet/scrape-test.py --binary target/debug/edge-runtime --model M.onnx

Prints each step with its wall time; exits non-zero on the first failed check.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOKEN = "fleet-test-token-0123456789"
START = time.monotonic()


def say(msg):
    print(f"[{time.monotonic() - START:6.1f} s] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, token=None, timeout=3):
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read().decode()


def wait_for(what, check, timeout):
    """Calls check() until it returns a true value; fails the run after `timeout` s."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < timeout:
        try:
            v = check()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 (any failure means "not yet")
            last = e
        time.sleep(1)
    sys.exit(f"FAIL: {what} not seen within {timeout} s (last error: {last})")


class Prom:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"

    def query(self, expr):
        q = urllib.parse.urlencode({"query": expr})
        _, body = http_get(f"{self.base}/api/v1/query?{q}")
        data = json.loads(body)
        if data.get("status") != "success":
            raise RuntimeError(f"{expr}: {data}")
        return data["data"]["result"]

    def by_instance(self, expr):
        return {r["metric"].get("instance"): float(r["value"][1]) for r in self.query(expr)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", required=True, help="edge-runtime for this machine")
    ap.add_argument("--model", required=True, help="a HydraNet ONNX file")
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "/usr/bin/prometheus")
    ap.add_argument("--keep", action="store_true", help="leave the temporary folder")
    a = ap.parse_args()
    for f in (a.binary, a.model, a.prometheus):
        if not Path(f).exists():
            sys.exit(f"FAIL: {f} does not exist")

    tmp = Path(tempfile.mkdtemp(prefix="hydranet-fleet-"))
    procs = []

    def stop_all(*_):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    signal.signal(signal.SIGTERM, lambda *_: (stop_all(), sys.exit(1)))
    try:
        run(a, tmp, procs)
    finally:
        stop_all()
        if a.keep:
            say(f"kept {tmp}")


def run(a, tmp, procs):
    kiosks = {
        "shop-a": "pattern",
        "shop-b": "pattern",
        # No such device: edge-runtime reports the camera lost and keeps reopening it.
        "shop-c": "v4l:/dev/video-hydranet-missing",
    }
    ports = {}
    for shop, source in kiosks.items():
        port = free_port()
        ports[shop] = port
        log = open(tmp / f"kiosk-{shop}.log", "w")
        cmd = [a.binary, "kiosk", "--model", a.model, "--source", source,
               "--fps", "10", "--listen", f"127.0.0.1:{port}"]
        env = dict(os.environ, HYDRANET_KIOSK_TOKEN=TOKEN, RUST_LOG="warn")
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env))
        say(f"kiosk {shop} on 127.0.0.1:{port}, source {source}")
    for shop, port in ports.items():
        # /healthz answers 200 or 503 once the server is up; both are fine here.
        def answers(port=port):
            try:
                return http_get(f"http://127.0.0.1:{port}/healthz", TOKEN)[0]
            except urllib.error.HTTPError as e:
                return e.code
        code = wait_for(f"kiosk {shop}'s /healthz", answers, 120)
        say(f"kiosk {shop} answers /healthz: {code}")

    # The shipped configuration, with test intervals and these three targets.
    conf = tmp / "prometheus"
    shutil.copytree(HERE / "prometheus", conf)
    for f in (conf / "targets").glob("*.yml"):
        f.unlink()
    targets = [{"targets": [f"127.0.0.1:{p}"], "labels": {"shop": shop, "board": "x86-test"}}
               for shop, p in ports.items()]
    (conf / "targets" / "test.yml").write_text(json.dumps(targets, indent=2) + "\n")
    (conf / "kiosk.token").write_text(TOKEN + "\n")
    (conf / "kiosk.token").chmod(0o600)
    yml = conf / "prometheus.yml"
    text = yml.read_text()
    for old, new in (("scrape_interval: 15s", "scrape_interval: 2s"),
                     ("evaluation_interval: 15s", "evaluation_interval: 2s"),
                     ("scrape_timeout: 5s", "scrape_timeout: 2s"),
                     ("refresh_interval: 1m", "refresh_interval: 5s")):
        if old not in text:
            sys.exit(f"FAIL: {old!r} is no longer in prometheus.yml; update this test")
        text = text.replace(old, new)
    yml.write_text(text)

    port = free_port()
    plog = open(tmp / "prometheus.log", "w")
    procs.append(subprocess.Popen(
        [a.prometheus, f"--config.file={yml}", f"--storage.tsdb.path={tmp / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"], stdout=plog, stderr=subprocess.STDOUT))
    prom = Prom(port)
    say(f"prometheus on 127.0.0.1:{port}")
    wait_for("prometheus ready", lambda: http_get(f"{prom.base}/-/ready")[0] == 200, 60)
    say("prometheus ready")

    inst = {shop: f"127.0.0.1:{p}" for shop, p in ports.items()}
    up = wait_for("up == 1 for the three kiosks", lambda: (
        lambda u: u if len(u) == 3 and all(v == 1 for v in u.values()) else None)(
        prom.by_instance('up{job="hydranet-kiosk"}')), 60)
    say(f"up: {fmt(up, inst)}")

    def fps_ok():
        f = prom.by_instance("hydranet_pipeline_fps")
        ok = len(f) == 3 and f[inst["shop-a"]] > 0 and f[inst["shop-b"]] > 0
        return f if ok and f[inst["shop-c"]] == 0 else None
    fps = wait_for("FPS above 0 on the working kiosks and 0 on the failing one", fps_ok, 60)
    say(f"hydranet_pipeline_fps: {fmt(fps, inst)}")
    src = prom.by_instance("hydranet_source_up")
    say(f"hydranet_source_up: {fmt(src, inst)}")
    if src != {inst["shop-a"]: 1, inst["shop-b"]: 1, inst["shop-c"]: 0}:
        sys.exit("FAIL: hydranet_source_up should be 1, 1, 0")
    rec = prom.by_instance("hydranet_source_reconnects_total")
    say(f"hydranet_source_reconnects_total: {fmt(rec, inst)}")

    def pending():
        return [r for r in prom.query('ALERTS{alertname="HydraNetCameraLost"}')
                if r["metric"]["alertstate"] == "pending"]
    wait_for("HydraNetCameraLost pending", pending, 30)
    t_pending = time.monotonic()
    say("HydraNetCameraLost pending (it fires after 1 minute)")

    def firing():
        r = prom.query('ALERTS{alertname="HydraNetCameraLost", alertstate="firing"}')
        return r or None
    fired = wait_for("HydraNetCameraLost firing", firing, 120)
    who = sorted(r["metric"]["instance"] for r in fired)
    shops = {v: k for k, v in inst.items()}
    say(f"HydraNetCameraLost firing for {[f'{shops.get(w, w)} ({w})' for w in who]} "
        f"after {time.monotonic() - t_pending:.0f} s pending")
    if who != [inst["shop-c"]]:
        sys.exit(f"FAIL: the alert should fire for {inst['shop-c']} only, fires for {who}")
    _, body = http_get(f"{prom.base}/api/v1/alerts")
    alerts = json.loads(body)["data"]["alerts"]
    firing_names = sorted({(x["labels"]["alertname"], x["labels"]["instance"])
                           for x in alerts if x["state"] == "firing"})
    say(f"/api/v1/alerts firing: {firing_names}")
    if any(name != "HydraNetCameraLost" for name, _ in firing_names):
        sys.exit("FAIL: another alert fires on healthy kiosks")

    dash = json.loads((HERE / "grafana" / "hydranet-fleet.json").read_text())
    n = 0
    for p in dash["panels"]:
        for t in p.get("targets", []):
            expr = (t["expr"].replace("$shop", ".*").replace("$instance", ".*")
                    .replace("$__rate_interval", "30s"))
            res = prom.query(expr)
            if not res:
                sys.exit(f"FAIL: panel {p['title']!r}: {t['expr']} returns no data")
            n += 1
    say(f"all {n} dashboard queries of {len(dash['panels'])} panels return data")
    say("PASS")


def fmt(values, inst):
    names = {v: k for k, v in inst.items()}
    return ", ".join(f"{names.get(i, i)}={v:g}" for i, v in sorted(values.items(), key=lambda kv: names.get(kv[0], kv[0])))


if __name__ == "__main__":
    main()
