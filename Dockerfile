# Multi-stage build: compile with the Rust toolchain, then copy onto `scratch` exactly the files
# scripts/image-rootfs.sh stages: the binary, the shared libraries it links and the loader, the CA
# bundle, and passwd/group entries for the non-root user 65532. scripts/build-image.sh builds the
# same image without a registry (buildah), and tests/e2e/image.rs holds the two layouts equal and
# runs that image as the chart's Deployment says.
#
# Pin the build image by digest for a reproducible, tamper-evident build, e.g.
#   docker buildx imagetools inspect rust:1.95-bookworm          # prints the digest
#   docker build --build-arg BUILD_IMAGE=rust:1.95-bookworm@sha256:<digest> .
# (The digest is not committed here: this project's machines cannot reach the registries to read
# it, and a guessed digest would break the build.)
ARG BUILD_IMAGE=rust:1.95-bookworm

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY scripts/image-rootfs.sh ./scripts/
RUN cargo build --release --locked --bin alicloud-ops-operator && \
    scripts/image-rootfs.sh target/release/alicloud-ops-operator /rootfs

FROM scratch
COPY --from=build /rootfs /
USER 65532:65532
# /metrics (HTTPS) and the probes (/healthz, /readyz), as the chart names them.
EXPOSE 8443 8081
ENTRYPOINT ["/usr/local/bin/alicloud-ops-operator"]
CMD ["run"]
