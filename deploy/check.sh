#!/usr/bin/env bash
# Static checks of deploy/: Prometheus config and rules (syntax and unit
# tests), the dashboard's JSON and PromQL, the YAML files, and the kustomize
# rendering. Needs promtool (Debian: apt-get install --no-install-recommends
# prometheus) and python3 with PyYAML (python3-yaml); `make deploy-check`
# installs them first (.ci/tools.sh). kubectl is optional. A check whose
# tool is missing is skipped with a line saying so, and the last line
# names every skipped check.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
skipped=()
skip() { echo "== SKIPPED: $1"; skipped+=("$2"); }
have_promtool=false; command -v promtool >/dev/null && have_promtool=true
have_yaml=false; python3 -c 'import yaml' >/dev/null 2>&1 && have_yaml=true

if $have_promtool; then
  echo "== promtool check rules / test rules"
  promtool check rules prometheus/antaca-rules.yaml
  (cd prometheus && promtool test rules antaca-rules.test.yaml)

  echo "== promtool check config (rule path as mounted by compose, rewritten to the local file)"
  sed "s#/etc/prometheus/rules/antaca-rules.yaml#$PWD/prometheus/antaca-rules.yaml#" \
    prometheus/prometheus.yml >"$tmp/prometheus.yml"
  promtool check config "$tmp/prometheus.yml"
else
  skip "promtool not found (Debian: apt-get install --no-install-recommends prometheus): rules, rule tests and config not checked" "promtool"
fi

if ! $have_yaml; then
  skip "python3 with PyYAML not found (Debian: apt-get install python3-yaml): YAML files and dashboard not checked" "yaml+dashboard"
else
  echo "== YAML files parse"
python3 - <<'EOF'
import glob, yaml
files = ["compose.yaml"] + glob.glob("prometheus/*.y*ml") + glob.glob("grafana/provisioning/*/*.yaml") \
    + glob.glob("k8s/*.yaml") + glob.glob("k8s/examples/*.yaml")
for f in sorted(files):
    with open(f) as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d is not None]
    print(f"ok {f} ({len(docs)} document(s))")
EOF

  echo "== dashboard: JSON, and every query parses as PromQL"
python3 - "$tmp/dashboard-rules.yaml" <<'EOF'
import json, sys, yaml
d = json.load(open("grafana/antaca-dashboard.json"))
assert d["schemaVersion"] >= 39 and d["uid"], "schemaVersion/uid"
rules = []
for p in d["panels"]:
    for t in p.get("targets", []):
        assert t["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
        expr = t["expr"].replace("$__rate_interval", "1m").replace("$instance", ".*")
        rules.append({"record": "dashboard:query_%d" % (len(rules) + 1), "expr": expr})
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(sys.argv[1], "w"))
print(f"ok {len(d['panels'])} panels, {len(rules)} queries")
EOF
  if $have_promtool; then
    promtool check rules "$tmp/dashboard-rules.yaml"
  else
    skip "promtool not found: dashboard queries not parsed as PromQL" "dashboard-promql"
  fi
fi # have_yaml

if command -v kubectl >/dev/null; then
  echo "== kubectl kustomize k8s"
  kubectl kustomize k8s >"$tmp/k8s.yaml"
  grep -c '^kind:' "$tmp/k8s.yaml" | sed 's/^/objects rendered: /'
else
  skip "kubectl not found (optional): kustomize rendering of k8s/ not checked" "kustomize"
fi
if [ ${#skipped[@]} -gt 0 ]; then
  echo "deploy checks passed, except the skipped: ${skipped[*]}"
else
  echo "deploy checks passed"
fi
