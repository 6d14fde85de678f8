#!/usr/bin/env bash
# Regenerates go.mod/go.sum for a Kubernetes version, using only the Go module proxy.
# k8s.io/kubernetes requires its staging modules at v0.0.0 and maps them to ./staging;
# a consumer must replace exactly those modules with the published v0.<minor>.<patch> tags.
set -euo pipefail
KV=${1:-1.37.2}
cd "$(dirname "$0")"
export GOFLAGS=-mod=mod
go mod download -json "k8s.io/kubernetes@v$KV" >/dev/null
MOD=$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/v$KV.mod
rm -f go.mod go.sum
go mod init kube-harness.local/harness >/dev/null 2>&1
go mod edit -go=1.26
godebug=$(sed -n 's/^godebug \(.*\)$/\1/p' "$MOD")
[ -n "$godebug" ] && go mod edit -godebug="$godebug"
for m in $(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => \./staging/.*#\1#p' "$MOD"); do
  go mod edit -replace="$m=$m@v0.${KV#1.}"
done
go mod edit -require="k8s.io/kubernetes@v$KV"
etcd=$(sed -n 's#^[[:space:]]*go.etcd.io/etcd/server/v3 \(v[^ ]*\).*#\1#p' "$MOD")
go mod edit -require="go.etcd.io/etcd/server/v3@$etcd"
go mod tidy
echo "go.mod generated for k8s.io/kubernetes v$KV (etcd server $etcd)"
