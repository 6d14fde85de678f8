# The README's two commands: `make demo` and `make test`.
SHELL := /bin/bash
export KUBE_HARNESS_BIN := $(CURDIR)/target/kube-harness
export EMULATOR_BIN := $(CURDIR)/target/debug/alicloud-cloud-emulator
# The operator's image, built by scripts/build-image.sh into podman's local storage; the e2e
# test tests/e2e/image.rs runs it.
export OPERATOR_IMAGE ?= localhost/alicloud-ops-operator:dev
# Unit, emulator and end-to-end tests (benches run with `make bench`, in release mode).
CARGO_TEST_FLAGS ?= --lib --bins --tests

.PHONY: test prereqs tools container-runtime image fmt clippy cargo-tests conformance alerts crds harness python go-tools bench bench-cluster dashboard-png demo

test: prereqs tools fmt clippy image cargo-tests alerts
	@echo "make test: all checks passed"

prereqs:
	@./scripts/check-prereqs.sh

tools: harness python go-tools container-runtime

harness:
	@./scripts/build-harness.sh

python:
	@./scripts/setup-python.sh

# podman, buildah and runc, from Debian's packages when missing.
container-runtime:
	@./scripts/install-container-runtime.sh

# The release binary in an image without a registry (buildah), the Dockerfile's layout.
image: container-runtime
	@./scripts/build-image.sh

# helm, promtool and krew, built from the Go modules pinned in tools/<name>/go.mod.
go-tools:
	@./scripts/build-go-tools.sh

fmt:
	cargo fmt --check

clippy:
	cargo clippy --all-targets -- -D warnings

# One build: `cargo test` builds the binaries the tests run, with the dev-dependencies'
# features (tokio's test-util). A separate `cargo build --bins` would compile every dependency a
# second time without them. The official-SDK conformance test is among the tests
# (tests/sdk_conformance.rs runs pytest against the emulator this build made).
cargo-tests:
	cargo test $(CARGO_TEST_FLAGS)

conformance: python
	cargo test --test sdk_conformance

# The CRDs from the Rust types, wherever they are installed from (a test checks they are current).
crds:
	cargo run -q -- crd --out-dir crds --out-dir deploy/helm/alicloud-ops-operator/crds --bundle deploy/base/crds.yaml

# promtool checks the PrometheusRule and runs its unit tests.
alerts:
	@./scripts/check-alerts.sh

bench:
	cargo bench --bench emulator_throughput
	cargo bench --bench reconcile_scale

# The release operator at scale on the real apiserver harness (minutes; BENCH_N and the
# other knobs are in benches/cluster.rs), then a plot of Ready over time.
bench-cluster: harness python
	target/venv/bin/python -m pip install --quiet --disable-pip-version-check -r scripts/requirements-bench.txt
	cargo bench --bench cluster
	target/venv/bin/python scripts/plot-bench.py target/bench-cluster/ready.csv docs/bench-cluster.png
	if [ -s target/bench-cluster/rollout.csv ]; then target/venv/bin/python scripts/plot-rollout.py target/bench-cluster/rollout.csv docs/rollout-progress.png; fi

# The README's picture of the dashboard, from the scrapes the dashboard e2e test keeps.
dashboard-png: harness python
	target/venv/bin/python -m pip install --quiet --disable-pip-version-check -r scripts/requirements-bench.txt
	cargo test --test e2e -- the_dashboard_and_alerts_name_only_metrics_the_operator_exports
	target/venv/bin/python scripts/plot-dashboard.py target/e2e-metrics docs/dashboard.png

demo:
	@./scripts/demo.sh
