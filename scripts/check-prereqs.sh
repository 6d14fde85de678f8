#!/usr/bin/env bash
# Checks the tools the README's two commands need, with a clear message for each missing one.
set -uo pipefail
fail=0
need() { # name, command, hint
  if ! command -v "$2" >/dev/null 2>&1; then
    echo "missing: $1 ($2 not on PATH). $3" >&2
    fail=1
  fi
}
need "Rust toolchain (>= 1.89, with rustfmt and clippy)" cargo "Install it with rustup: https://rustup.rs"
need "Go (>= 1.26, builds the test kube-apiserver)" go "Install Go 1.26 or newer from the Go downloads page or your package manager."
need "Python 3 (>= 3.9, runs the official-SDK conformance test)" python3 "Install python3 and python3-venv."
need "make" make "Install GNU make."
need "a C compiler (ring and jemalloc are built from C)" cc "Install gcc (apt-get install build-essential)."
if command -v go >/dev/null 2>&1; then
  gv=$(go env GOVERSION | sed 's/^go//')
  major=${gv%%.*}; rest=${gv#*.}; minor=${rest%%.*}
  if [ "$major" -lt 1 ] || { [ "$major" -eq 1 ] && [ "$minor" -lt 26 ]; }; then
    echo "too old: Go $gv; the harness needs Go >= 1.26" >&2; fail=1
  fi
fi
if command -v cargo >/dev/null 2>&1; then
  cargo fmt --version >/dev/null 2>&1 || { echo "missing: rustfmt (rustup component add rustfmt)" >&2; fail=1; }
  cargo clippy --version >/dev/null 2>&1 || { echo "missing: clippy (rustup component add clippy)" >&2; fail=1; }
fi
if command -v python3 >/dev/null 2>&1; then
  python3 -c 'import venv, ensurepip' 2>/dev/null || { echo "missing: python3 venv/ensurepip (apt-get install python3-venv)" >&2; fail=1; }
fi
[ "$fail" -eq 0 ] && echo "prerequisites: ok"
exit "$fail"
