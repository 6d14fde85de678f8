#!/usr/bin/env bash
# The container runtime the image test needs: buildah to build the image without a registry,
# podman with runc to run it. Installed from Debian's packages when missing. A machine that cannot
# run a container at all is an error, said plainly: the image test is part of `make test`, and CI
# fails rather than skip it.
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF=$PWD/tests/container/containers.conf

missing=()
for tool in podman buildah runc; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    echo "== installing ${missing[*]} (and slirp4netns, which gives each container its own network) from Debian's packages"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get install -y -q --no-install-recommends podman buildah runc slirp4netns uidmap \
        containernetworking-plugins >/dev/null || {
        echo "cannot install podman, buildah and runc with apt-get: the image test (tests/e2e/image.rs) needs them" >&2
        exit 1
    }
fi

if ! out=$(podman info 2>&1); then
    echo "this machine cannot run containers with podman: $out" >&2
    exit 1
fi
echo "== container runtime: $(podman --version), $(buildah --version | cut -d' ' -f1-3), $(runc --version | head -1)"
