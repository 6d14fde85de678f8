#!/usr/bin/env bash
# The operator's image, built here without a registry: the same release binary and the same file
# layout as the Dockerfile (both stage it with scripts/image-rootfs.sh), committed with buildah
# from `scratch` into podman's local storage as $OPERATOR_IMAGE. Then the image is started once,
# as the chart starts it, to print its version: a machine that cannot run it fails here, plainly.
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF=$PWD/tests/container/containers.conf
image=${OPERATOR_IMAGE:-localhost/alicloud-ops-operator:dev}

cargo build --release --locked --bin alicloud-ops-operator
rootfs=target/image/rootfs
scripts/image-rootfs.sh target/release/alicloud-ops-operator "$rootfs"

ctr=$(buildah from scratch)
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
buildah copy --quiet "$ctr" "$rootfs" / >/dev/null
# The Dockerfile's runtime stage, line for line (tests/e2e/image.rs compares the two).
buildah config --user 65532:65532 --port 8443 --port 8081 \
    --entrypoint '["/usr/local/bin/alicloud-ops-operator"]' --cmd run "$ctr"
buildah commit --quiet --rm "$ctr" "$image" >/dev/null
trap - EXIT

if ! version=$(podman run --rm --network none --read-only --user 65532:65532 --cap-drop ALL \
    --security-opt no-new-privileges --ulimit host "$image" --version 2>&1); then
    echo "this machine cannot run the image with podman: $version" >&2
    exit 1
fi
size=$(podman image inspect --format '{{.Size}}' "$image")
echo "== image $image: $version, $((size / 1024 / 1024)) MiB ($size bytes)"
