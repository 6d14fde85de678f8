#!/usr/bin/env bash
# The krew archive of the release binary and its manifest: target/krew/<archive>.tar.gz, and
# target/krew/alicloud-ops.yaml, which is plugins/alicloud-ops.yaml with the archive's sha256.
# `kubectl krew install --manifest=target/krew/alicloud-ops.yaml --archive=<archive>` installs
# it; a release uploads the archive to the manifest's uri.
#   scripts/krew-archive.sh [BINARY]   (default: target/release/alicloud-ops-operator)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/alicloud-ops-operator}
[ -x "$bin" ] || { echo "no release binary at $bin: cargo build --release --bin alicloud-ops-operator" >&2; exit 1; }
manifest=plugins/alicloud-ops.yaml
uri=$(sed -n 's/^ *uri: *//p' "$manifest")
archive=target/krew/$(basename "$uri")
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
install -m 0755 "$bin" "$stage/alicloud-ops-operator"
mkdir -p target/krew
tar -C "$stage" --owner=0 --group=0 --numeric-owner -czf "$archive" alicloud-ops-operator
sum=$(sha256sum "$archive" | cut -d' ' -f1)
sed "s/^\( *sha256:\).*/\1 $sum/" "$manifest" > target/krew/alicloud-ops.yaml
echo "$archive (sha256 $sum), target/krew/alicloud-ops.yaml"
