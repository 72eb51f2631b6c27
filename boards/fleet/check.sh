#!/usr/bin/env bash
# Checks the fleet's Prometheus folder as shipped: the configuration (with a stand-in token
# file, which a real server keeps beside it and which is never committed) and the alert
# rules' unit tests.  boards/fleet/check.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$here/prometheus" "$tmp/"
echo "check-token" >"$tmp/prometheus/kiosk.token"
promtool check config "$tmp/prometheus/prometheus.yml"
promtool check rules "$here/prometheus/rules/hydranet.rules.yml"
promtool test rules "$here/prometheus/tests/hydranet.rules.test.yml"
python3 -c "import json, sys; d = json.load(open(sys.argv[1])); print(f'grafana dashboard: {len(d[\"panels\"])} panels, uid {d[\"uid\"]}')" \
  "$here/grafana/hydranet-fleet.json"
