#!/usr/bin/env bash
# Builds the Go tools the tests use that no package registry ships as a binary (helm, krew,
# promtool) from the Go modules pinned in tools/<name>/go.mod, into target/tools/<name>.
# Each is rebuilt only when its go.mod or go.sum changes (the stamp holds their hash).
#   scripts/build-go-tools.sh [name...]   (default: every tool under tools/ with a `tool` line)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$root/target/tools"
command -v go >/dev/null || { echo "error: Go (>= 1.26) is needed to build the test tools" >&2; exit 1; }
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for mod in "$root"/tools/*/go.mod; do
    grep -q '^tool ' "$mod" && names+=("$(basename "$(dirname "$mod")")")
  done
fi
for name in "${names[@]}"; do
  src="$root/tools/$name"
  out="$root/target/tools/$name"
  stamp="$out.stamp"
  pkg=$(sed -n 's/^tool //p' "$src/go.mod" | head -n1)
  [ -n "$pkg" ] || { echo "error: $src/go.mod names no tool" >&2; exit 1; }
  hash=$(cat "$src/go.mod" "$src/go.sum" | sha256sum | cut -d' ' -f1)
  if [ -x "$out" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ]; then
    echo "$name is up to date ($out)"
    continue
  fi
  echo "building $name ($pkg $(sed -n "s#^[[:space:]]*$(dirname "$(dirname "$pkg")") \(v[^ ]*\).*#\1#p" "$src/go.mod" | head -n1))..."
  start=$(date +%s)
  (cd "$src" && GOFLAGS=-mod=readonly go build -p "${TOOLS_BUILD_JOBS:-2}" -trimpath -ldflags "-s -w" -o "$out.tmp" "$pkg")
  mv "$out.tmp" "$out"
  echo "$hash" > "$stamp"
  echo "built $out in $(( $(date +%s) - start ))s"
done
