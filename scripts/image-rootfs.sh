#!/usr/bin/env bash
# The operator image's whole file system, staged in a directory: the release binary, the shared
# libraries it links (and the dynamic loader), the CA bundle, and passwd/group entries for the
# non-root user 65532. The Dockerfile's build stage runs this script and its runtime stage copies
# the directory onto `scratch`; scripts/build-image.sh does the same with buildah, so that both
# images have the same layout (tests/e2e/image.rs compares the paths).
#
# Usage: scripts/image-rootfs.sh BINARY DEST
set -euo pipefail
bin=${1:?usage: $0 BINARY DEST}
dest=${2:?usage: $0 BINARY DEST}

rm -rf "$dest"
mkdir -p "$dest/usr/local/bin" "$dest/etc/ssl/certs"
install -m 0755 "$bin" "$dest/usr/local/bin/alicloud-ops-operator"

# Each library at the path the loader finds it under (its real file, not a link), and the loader
# at the path the binary names in its ELF header.
ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u |
    while read -r lib; do
        mkdir -p "$dest$(dirname "$lib")"
        install -m 0755 "$(readlink -f "$lib")" "$dest$lib"
    done

# reqwest verifies the cloud's certificates against its built-in roots; the bundle is for anything
# that reads the system's (SSL_CERT_FILE, a corporate proxy's CA mounted over it).
install -m 0644 /etc/ssl/certs/ca-certificates.crt "$dest/etc/ssl/certs/ca-certificates.crt"

# The user the chart runs as (runAsUser 65532), named as distroless names it.
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
    > "$dest/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$dest/etc/group"
chmod 0644 "$dest/etc/passwd" "$dest/etc/group"
