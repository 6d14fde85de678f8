# The README's two commands: `make demo` and `make test`.
SHELL := /bin/bash
export KUBE_HARNESS_BIN := $(CURDIR)/target/kube-harness
export EMULATOR_BIN := $(CURDIR)/target/debug/alicloud-ops-operator
CARGO_TEST_FLAGS ?= --all-targets

.PHONY: test prereqs tools fmt clippy unit conformance harness python crds bench demo

test: prereqs tools fmt clippy unit conformance
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

unit:
	cargo build --bin alicloud-ops-operator
	cargo test $(CARGO_TEST_FLAGS)

conformance:
	cargo build --bin alicloud-ops-operator
	target/venv/bin/python -m pytest -q tests/conformance

bench:
	cargo bench --bench emulator_throughput

demo:
	@./scripts/demo.sh
