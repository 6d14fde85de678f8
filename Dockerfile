# Multi-stage build: compile with the Rust toolchain, ship on distroless (glibc, non-root).
# Only the operator's binary goes in the image; the emulator is a binary of its own.
#
# Pin both base images by digest for a reproducible, tamper-evident build, e.g.
#   docker buildx imagetools inspect rust:1.95-bookworm          # prints the digest
#   docker build --build-arg BUILD_IMAGE=rust:1.95-bookworm@sha256:<digest> \
#                --build-arg RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot@sha256:<digest> .
# (The digests are not committed here: this project's machines cannot reach the registries
# to read them, and a guessed digest would break the build.)
ARG BUILD_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin alicloud-ops-operator

FROM ${RUNTIME_IMAGE}
COPY --from=build /src/target/release/alicloud-ops-operator /usr/local/bin/alicloud-ops-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/alicloud-ops-operator"]
CMD ["run"]
