# Multi-stage build: compile with the Rust toolchain, ship on distroless (glibc, non-root).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin alicloud-ops-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/alicloud-ops-operator /usr/local/bin/alicloud-ops-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/alicloud-ops-operator"]
CMD ["run"]
