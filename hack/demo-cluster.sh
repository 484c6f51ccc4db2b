#!/usr/bin/env bash
# `make demo` on a machine that can run the one-node cluster (root on Linux): the injector installed with its
# chart, and a pod whose injected log shipper prints the lines the app writes. Then everything is removed again:
# the release, the demo namespace and, when this script started it, the cluster (also on failure and Ctrl-C).
#
# Needs what `make demo` builds first: bin/ cluster binaries, bin/helm, bin/images (the e2e images and the
# injector's image tagged e2e). DEMO_KEEP=1 leaves the cluster and the release running (KUBECONFIG=bin/kubeconfig).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN_DIR=${BIN_DIR:-$ROOT/bin}
HELM=${HELM:-$BIN_DIR/helm}
KUBECTL=${KUBECTL:-kubectl}
export KUBECONFIG=$BIN_DIR/kubeconfig

if [[ -t 1 ]]; then B=$'\e[1m' N=$'\e[0m'; else B='' N=''; fi
step() { printf '\n%s==> %s%s\n' "$B" "$*" "$N"; }
info() { printf '    %s\n' "$*"; }

t0=$SECONDS
started=
if ! "$ROOT/hack/cluster.sh" status >/dev/null; then started=1; fi
cleanup() {
  local rc=$?
  [[ ${DEMO_KEEP:-} == 1 ]] && { info "DEMO_KEEP=1: the cluster and the release stay (KUBECONFIG=$KUBECONFIG)"; return; }
  step "Cleaning up"
  "$KUBECTL" delete namespace demo --ignore-not-found --wait=false >/dev/null 2>&1 || true
  "$HELM" uninstall sidecar-injector -n sidecar-injector --wait >/dev/null 2>&1 || true
  [[ -z $started ]] || "$ROOT/hack/cluster.sh" down
  info "done in $((SECONDS - t0))s (exit $rc)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "Starting the one-node cluster (hack/cluster.sh up)"
"$ROOT/hack/cluster.sh" up

step "Installing the chart with the image built from this checkout (helm install --wait)"
"$HELM" upgrade --install sidecar-injector "$ROOT/charts/sidecar-injector" -n sidecar-injector --create-namespace \
  --set image.repository=localhost/sidecar-injector --set image.tag=e2e --wait --timeout 3m >/dev/null
"$KUBECTL" get pods -n sidecar-injector -o wide | sed 's/^/    /'

step "A SidecarTemplate: a log shipper that follows the app's log file through a shared emptyDir"
"$KUBECTL" create namespace demo >/dev/null
cat <<'EOF' | tee /dev/stderr | "$KUBECTL" apply -f - >/dev/null
apiVersion: sidecar.dev/v1alpha1
kind: SidecarTemplate
metadata: {name: log-shipper, namespace: demo}
spec:
  containers:
  - name: log-shipper
    image: localhost/sidecar-e2e/logshipper:v1
    imagePullPolicy: Never
    args: [-file, /var/log/app/app.log]
    volumeMounts: [{name: app-logs, mountPath: /var/log/app, readOnly: true}]
  volumes: [{name: app-logs, emptyDir: {}}]
  volumeMounts: [{name: app-logs, mountPath: /var/log/app}]
EOF

step "A pod that asks for it and writes 3 lines to /var/log/app/app.log"
for i in $(seq 1 50); do
  # The webhook sees a new template within a second or two; a pod created before that is denied, so retry.
  if "$KUBECTL" apply -f - >/dev/null 2>&1 <<'EOF'
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: demo, annotations: {sidecar.dev/inject: log-shipper}}
spec:
  containers:
  - {name: app, image: localhost/sidecar-e2e/app:v1, imagePullPolicy: Never, args: [write, -lines, "3", -stay]}
EOF
  then break; fi
  sleep 0.2
done
info "containers after injection: $("$KUBECTL" get pod app -n demo -o jsonpath='{.spec.containers[*].name}')"
"$KUBECTL" wait pod/app -n demo --for=condition=Ready --timeout=90s >/dev/null

step "The log shipper's log (kubectl logs app -c log-shipper)"
for i in $(seq 1 50); do
  out=$("$KUBECTL" logs app -n demo -c log-shipper 2>/dev/null || true)
  [[ $out == *"line 3 of app"* ]] && break
  sleep 0.2
done
printf '%s\n' "$out" | sed 's/^/    /'
[[ $out == *"shipped: line 3 of app app"* ]] || { echo "demo: the log shipper did not ship the app's lines" >&2; exit 1; }
info "shown in $((SECONDS - t0))s"
