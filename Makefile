# The README's two commands: `make demo` and `make test`.
SHELL := /bin/bash
export KUBE_HARNESS_BIN := $(CURDIR)/target/kube-harness
export EMULATOR_BIN := $(CURDIR)/target/debug/alicloud-cloud-emulator
# Unit, emulator and end-to-end tests (benches run with `make bench`, in release mode).
CARGO_TEST_FLAGS ?= --lib --bins --tests

.PHONY: test prereqs tools fmt clippy cargo-tests conformance harness python bench demo

test: prereqs tools fmt clippy cargo-tests conformance
	@echo "make test: all checks passed"

prereqs:
	@./scripts/check-prereqs.sh

tools: harness python

harness:
	@./scripts/build-harness.sh

python:
	@./scripts/setup-python.sh

fmt:
	cargo fmt --check

clippy:
	cargo clippy --all-targets -- -D warnings

cargo-tests:
	cargo build --bins
	cargo test $(CARGO_TEST_FLAGS)

conformance:
	cargo build --bin alicloud-cloud-emulator
	target/venv/bin/python -m pytest -q tests/conformance

bench:
	cargo bench --bench emulator_throughput
	cargo bench --bench reconcile_scale

demo:
	@./scripts/demo.sh
