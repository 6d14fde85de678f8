#!/usr/bin/env bash
# promtool checks the PrometheusRule's alerts and runs their unit tests
# (deploy/prometheus/tests.yaml). promtool reads plain rule files, so the rule groups are
# extracted from the PrometheusRule's spec first, next to a copy of the tests.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
promtool="$root/target/tools/promtool"
[ -x "$promtool" ] || { echo "error: $promtool is not built; run scripts/build-go-tools.sh promtool" >&2; exit 1; }
work="$root/target/prometheus"
mkdir -p "$work"
"$root/target/venv/bin/python" - "$root/deploy/prometheus/prometheusrule.yaml" "$work/rules.yaml" <<'PY'
import sys, yaml
rule = yaml.safe_load(open(sys.argv[1]))
assert rule["kind"] == "PrometheusRule", rule["kind"]
yaml.safe_dump(rule["spec"], open(sys.argv[2], "w"), sort_keys=False)
PY
cp "$root/deploy/prometheus/tests.yaml" "$work/tests.yaml"
"$promtool" check rules "$work/rules.yaml"
"$promtool" test rules "$work/tests.yaml"
