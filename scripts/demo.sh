#!/usr/bin/env bash
# `make demo`: a real kube-apiserver (the project's harness), the Alibaba Cloud emulator and
# the operator, all on this machine; applies examples/ and shows the four kinds reaching
# Ready with the emulator's resulting cloud state. Runs until Ctrl-C.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
demo="$root/target/demo"
rm -rf "$demo" && mkdir -p "$demo"
pids=()
cleanup() {
  echo; echo "stopping the demo..."
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

./scripts/check-prereqs.sh
./scripts/build-harness.sh
./scripts/setup-python.sh
cargo build --bin alicloud-ops-operator --bin alicloud-cloud-emulator
bin="$root/target/debug/alicloud-ops-operator"
emulator_bin="$root/target/debug/alicloud-cloud-emulator"
kubectl="$root/target/venv/bin/kubectl"
emulator_port=${DEMO_EMULATOR_PORT:-9180}
metrics_port=${DEMO_METRICS_PORT:-8443}

echo "== starting kube-apiserver (embedded etcd) ..."
"$root/target/kube-harness" --dir "$demo/cluster" --exit-with-parent > "$demo/harness.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 180); do [ -f "$demo/cluster/kubeconfig" ] && break; sleep 1; done
[ -f "$demo/cluster/kubeconfig" ] || { echo "kube-apiserver did not start; see $demo/harness.log" >&2; exit 1; }
export KUBECONFIG="$demo/cluster/kubeconfig"

echo "== starting the Alibaba Cloud emulator on 127.0.0.1:$emulator_port ..."
# A few seconds of settling, as the real cloud takes: a share shows after 5 s, and desktops
# show EnterMaintenance for 3 s before UnderMaintenance.
"$emulator_bin" --listen "127.0.0.1:$emulator_port" \
  --settle ModifyImageShareStatus=5 --settle SetDesktopMaintenance=3 > "$demo/emulator.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$emulator_port/_emulator/healthz" >/dev/null && break; sleep 0.2; done

echo "== installing CRDs and applying examples/ ..."
"$kubectl" apply -f crds/ > /dev/null
"$kubectl" wait --for=condition=Established crd --all --timeout=60s > /dev/null
"$kubectl" apply -f examples/

echo "== starting the operator (logs: $demo/operator.log) ..."
ALIBABA_CLOUD_ACCESS_KEY_ID=LTAI5tEmulatorDefault \
ALIBABA_CLOUD_ACCESS_KEY_SECRET=emulator-secret-do-not-use-in-production \
RUST_LOG=info,kube_client=error \
  "$bin" run --endpoint "http://127.0.0.1:$emulator_port" --metrics-addr "127.0.0.1:$metrics_port" \
  --health-addr "127.0.0.1:${DEMO_HEALTH_PORT:-8081}" \
  --leader-election=false --default-credentials-namespaces default --metrics-auth none > "$demo/operator.log" 2>&1 &
pids+=($!)

# The category every kind's CRD carries.
kinds=alicloud-ops
if ! "$kubectl" wait --for=condition=Ready "$kinds" --all -n default --timeout=120s > /dev/null; then
  echo "not everything became Ready; see $demo/operator.log" >&2
  "$kubectl" get "$kinds" -n default -o wide >&2
  exit 1
fi
echo
"$kubectl" get "$kinds" -n default
echo
echo "== the emulated cloud now:"
curl -s "http://127.0.0.1:$emulator_port/_emulator/state" | python3 "$root/scripts/summarize-state.py"
cat <<MSG

The demo keeps running until Ctrl-C. In another terminal:
  export KUBECONFIG=$KUBECONFIG
  $kubectl get $kinds -A
  $kubectl explain desktopmaintenancewindow.spec.recurring
  $kubectl patch imageshare app-image-to-ecs --type merge -p '{"spec":{"shared":false}}'
  curl -s http://127.0.0.1:$emulator_port/_emulator/requests      # cloud calls so far
  curl -sk https://127.0.0.1:$metrics_port/metrics | grep alicloud_ops_
  $bin plan -f examples/ --endpoint http://127.0.0.1:$emulator_port   # needs the ALIBABA_CLOUD_* keys above; reads the live objects
  $bin status -A                                                    # or, as a kubectl plugin: kubectl alicloud-ops status -A
  $bin reconcile imageshare/app-image-to-ecs
MSG
wait "${pids[2]}"
