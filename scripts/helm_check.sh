#!/usr/bin/env bash
# Chart gate run by `make test` (after pytest) with .tools/bin on PATH. Fails loudly on the first problem.
#   1. charts/ltr-serving/crds/ is identical to crds/ (scripts/sync_crd.py --check)
#   2. helm lint --strict, default values and every charts/ltr-serving/ci/*-values.yaml
#   3. helm template --include-crds of the same value sets, validated by kubernetes-validate --strict
#      (ServiceMonitor is a CRD kind without a bundled schema: its shape is checked in tests/chart)
#   4. every tests/chart/invalid-values/*.yaml is rejected by helm with its "# error:" text
#   5. default render: no privileged container, no privilege escalation, no wildcard RBAC
# The detailed checks (RBAC == operator code, examples vs CRD, image lint) are in tests/chart/.
set -euo pipefail
cd "$(dirname "$0")/.."

CHART=charts/ltr-serving
RELEASE=ltr
NAMESPACE=ltr-system
K8S_VERSION=1.37.0
VENV_BIN=.venv/bin
PY="${PYTHON:-$VENV_BIN/python}"
KV="$VENV_BIN/kubernetes-validate"

fail() { echo "helm_check: FAIL: $*" >&2; exit 1; }
step() { echo "helm_check: $*"; }

command -v helm >/dev/null || fail "helm not on PATH (run \`make tools\`; make test adds .tools/bin)"
[[ -x "$PY" ]] || fail "$PY not found (run \`make venv\`)"
[[ -x "$KV" ]] || fail "$KV not found (kubernetes-validate is a test dependency)"
[[ -f "$CHART/Chart.yaml" ]] || fail "$CHART/Chart.yaml missing"
step "$(helm version --short)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

step "CRD copy in sync with crds/"
"$PY" scripts/sync_crd.py --check || fail "chart CRD drifted from crds/ (run: python scripts/sync_crd.py)"

value_sets=("")
for f in "$CHART"/ci/*-values.yaml; do
  [[ -e "$f" ]] || fail "no $CHART/ci/*-values.yaml (non-default values to check)"
  value_sets+=("$f")
done

for values in "${value_sets[@]}"; do
  label="${values:-default values}"
  args=()
  [[ -n "$values" ]] && args=(-f "$values")

  step "lint --strict: $label"
  helm lint --strict "$CHART" --namespace "$NAMESPACE" "${args[@]}" >"$work/lint.txt" 2>&1 \
    || { cat "$work/lint.txt" >&2; fail "helm lint --strict ($label)"; }

  step "template + kubernetes-validate --strict: $label"
  out="$work/rendered.yaml"
  helm template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --include-crds "${args[@]}" >"$out" \
    || fail "helm template ($label)"
  [[ -s "$out" ]] || fail "helm template rendered nothing ($label)"
  "$KV" --strict --quiet -k "$K8S_VERSION" "$out" >"$work/kv.txt" 2>&1 \
    || { cat "$work/kv.txt" >&2; fail "kubernetes-validate --strict ($label)"; }
  # A WARN means "no schema for this kind": only the ServiceMonitor may be unvalidated here.
  if grep -v "kind ServiceMonitor with api version monitoring.coreos.com/v1" "$work/kv.txt" | grep -q "WARN"; then
    cat "$work/kv.txt" >&2
    fail "kubernetes-validate could not validate some kinds ($label)"
  fi
done

step "values that break values.schema.json are rejected"
shopt -s nullglob
invalid=(tests/chart/invalid-values/*.yaml)
((${#invalid[@]} >= 5)) || fail "expected at least 5 invalid values files in tests/chart/invalid-values/"
for f in "${invalid[@]}"; do
  expected="$(sed -n '1s/^# error: //p' "$f")"
  [[ -n "$expected" ]] || fail "$f: first line must be '# error: <expected helm message>'"
  if helm template "$RELEASE" "$CHART" --namespace "$NAMESPACE" -f "$f" >/dev/null 2>"$work/err.txt"; then
    fail "helm accepted invalid values $f"
  fi
  grep -qF -- "$expected" "$work/err.txt" || { cat "$work/err.txt" >&2; fail "$f: helm error lacks '$expected'"; }
done

step "default render: no privileged pods, no privilege escalation, no wildcard RBAC"
helm template "$RELEASE" "$CHART" --namespace "$NAMESPACE" >"$work/default.yaml"
"$PY" - "$work/default.yaml" <<'PYEOF' || fail "security check of the default render"
import sys
import yaml

problems = []
for doc in yaml.safe_load_all(open(sys.argv[1])):
    if not doc:
        continue
    name = f"{doc['kind']}/{doc['metadata']['name']}"
    for rule in doc.get("rules", []) if doc["kind"] in ("ClusterRole", "Role") else []:
        if any("*" in rule.get(k, []) for k in ("apiGroups", "resources", "verbs")):
            problems.append(f"{name}: wildcard rule {rule}")
    pod = doc.get("spec", {}).get("template", {}).get("spec")
    if not pod:
        continue
    if pod.get("securityContext", {}).get("runAsNonRoot") is not True:
        problems.append(f"{name}: pod may run as root")
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        if sc.get("privileged") or sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}/{c['name']}: privileged or may escalate")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}/{c['name']}: writable root filesystem")
print("\n".join(problems), file=sys.stderr)
sys.exit(1 if problems else 0)
PYEOF

step "OK"
