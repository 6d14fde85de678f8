#!/usr/bin/env bash
# Builds tools/kube-harness (embedded etcd + kube-apiserver from Go modules) into
# target/kube-harness. Rebuilds only when the harness sources change: the stamp holds
# a hash of main.go, go.mod and go.sum.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src="$root/tools/kube-harness"
out="$root/target/kube-harness"
stamp="$root/target/kube-harness.stamp"
KV=$(sed -n 's#^[[:space:]]*k8s.io/kubernetes \(v[0-9.]*\).*#\1#p' "$src/go.mod" | head -n1)
minor=$(echo "$KV" | cut -d. -f2)
hash=$(cat "$src/main.go" "$src/go.mod" "$src/go.sum" | sha256sum | cut -d' ' -f1)
if [ -x "$out" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ]; then
  echo "kube-harness is up to date ($out)"
  exit 0
fi
command -v go >/dev/null || { echo "error: Go (>= 1.26) is needed to build the test harness" >&2; exit 1; }
mkdir -p "$root/target"
echo "building kube-harness for Kubernetes $KV (the first build takes 10-25 minutes on 2 cores)..."
start=$(date +%s)
(cd "$src" && GOFLAGS=-mod=readonly go build -p "${HARNESS_BUILD_JOBS:-2}" -trimpath \
  -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KV -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
  -o "$out.tmp" .)
mv "$out.tmp" "$out"
echo "$hash" > "$stamp"
echo "built $out in $(( $(date +%s) - start ))s"
