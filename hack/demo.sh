#!/usr/bin/env bash
# `make demo`: a local API server, the injector, one pod injected and one pod denied, then everything cleaned up.
#
# Needs bin/etcd and bin/kube-apiserver (`make control-plane`), bin/sidecar-injector (`make build`), kubectl and
# openssl. Starts etcd, kube-apiserver and `sidecar-injector serve` on 127.0.0.1, all state in one temporary
# directory that is removed on exit (also on failure and Ctrl-C). Your own kubeconfig is never read or written.
#
# Ports (override with the environment variables):
#   DEMO_ETCD_PORT (12379)  DEMO_ETCD_PEER_PORT (12380)  DEMO_APISERVER_PORT (16443)
#   DEMO_WEBHOOK_PORT (19443)  DEMO_HEALTH_PORT (18081)  DEMO_METRICS_PORT (18080)
# DEMO_KEEP=1 keeps the temporary directory (logs, certificates, kubeconfig) for inspection.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN_DIR=${BIN_DIR:-$ROOT/bin}
KUBECTL=${KUBECTL:-kubectl}
ETCD_PORT=${DEMO_ETCD_PORT:-12379}
ETCD_PEER_PORT=${DEMO_ETCD_PEER_PORT:-12380}
APISERVER_PORT=${DEMO_APISERVER_PORT:-16443}
WEBHOOK_PORT=${DEMO_WEBHOOK_PORT:-19443}
HEALTH_PORT=${DEMO_HEALTH_PORT:-18081}
METRICS_PORT=${DEMO_METRICS_PORT:-18080}
INJECTOR_NS=sidecar-injector
DEMO_NS=demo

if [[ -t 1 ]]; then B=$'\e[1m' G=$'\e[32m' R=$'\e[31m' N=$'\e[0m'; else B='' G='' R='' N=''; fi
step() { printf '\n%s==> %s%s\n' "$B" "$*" "$N"; }
info() { printf '    %s\n' "$*"; }
die() { printf '%sdemo: ERROR: %s%s\n' "$R" "$*" "$N" >&2; exit 1; }

# --- Preconditions -------------------------------------------------------------------------------------------

for bin in etcd kube-apiserver sidecar-injector; do
  [[ -x "$BIN_DIR/$bin" ]] || die "$BIN_DIR/$bin not found or not executable; run 'make demo' (it builds it), or 'make build control-plane'"
done
# need CMD PACKAGE...: CMD must be on PATH. On a fresh Debian machine where we are root, install the first of
# the packages that apt has (kubectl is packaged as kubectl or kubernetes-client); elsewhere say what to do.
apt_updated=
need() {
  local cmd=$1; shift
  command -v "$cmd" >/dev/null && return 0
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    [[ -n $apt_updated ]] || { info "updating the apt package lists to install $cmd"; apt-get update -qq >/dev/null; apt_updated=1; }
    local pkg
    for pkg in "$@"; do
      if apt-cache show "$pkg" >/dev/null 2>&1; then
        info "installing $cmd (Debian package $pkg)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null && command -v "$cmd" >/dev/null && return 0
      fi
    done
  fi
  die "$cmd not found; install it (Debian/Ubuntu: apt-get install $*)"
}
if [[ "$KUBECTL" == kubectl ]]; then need kubectl kubectl kubernetes-client; else
  command -v "$KUBECTL" >/dev/null || die "KUBECTL=$KUBECTL not found"; fi
need openssl openssl
need curl curl
need diff diffutils

# port_in_use PORT: true when something listens on PORT (any address).
port_in_use() {
  if command -v ss >/dev/null; then
    [[ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}
declare -A seen_ports=()
busy=0
for spec in "etcd client:DEMO_ETCD_PORT:$ETCD_PORT" "etcd peer:DEMO_ETCD_PEER_PORT:$ETCD_PEER_PORT" \
            "kube-apiserver:DEMO_APISERVER_PORT:$APISERVER_PORT" "webhook:DEMO_WEBHOOK_PORT:$WEBHOOK_PORT" \
            "health probes:DEMO_HEALTH_PORT:$HEALTH_PORT" "metrics:DEMO_METRICS_PORT:$METRICS_PORT"; do
  IFS=: read -r what var port <<<"$spec"
  [[ "$port" =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) || die "$var=$port is not a TCP port number"
  if [[ -n "${seen_ports[$port]:-}" ]]; then
    die "$var and ${seen_ports[$port]} are both $port; give each a different port"
  fi
  seen_ports[$port]=$var
  if port_in_use "$port"; then
    printf '%sdemo: port %s (%s) is already in use%s\n' "$R" "$port" "$what" "$N" >&2
    command -v ss >/dev/null && ss -Hltnp "sport = :$port" 2>/dev/null | sed 's/^/      /' >&2 || true
    printf '      choose another with %s=<port>, e.g. %s=%s make demo\n' "$var" "$var" "$((port + 1000))" >&2
    busy=1
  fi
done
((busy == 0)) || exit 1

# --- Cleanup: everything this script starts or writes goes away on exit ---------------------------------------

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sidecar-injector-demo.XXXXXX")
PIDS=() # started processes, in start order
NAMES=()
SHOW_LOGS= # set when a process died or did not become ready: the cleanup then prints the ends of the logs

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local i waited
  # One at a time, in reverse start order (injector, API server, etcd): the API server shuts down promptly only
  # while etcd is still there.
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[i]}" 2>/dev/null || true
    waited=0
    while kill -0 "${PIDS[i]}" 2>/dev/null && ((waited < 150)); do sleep 0.1; waited=$((waited + 1)); done
    if kill -0 "${PIDS[i]}" 2>/dev/null; then
      printf 'demo: %s (pid %s) did not stop within 15s of SIGTERM; killing it\n' "${NAMES[i]}" "${PIDS[i]}" >&2
      kill -KILL "${PIDS[i]}" 2>/dev/null || true
    fi
    wait "${PIDS[i]}" 2>/dev/null || true
  done
  if [[ -n "$SHOW_LOGS" && -d "$TMP" ]]; then
    for log in "$TMP"/*.log; do
      [[ -s "$log" ]] || continue
      printf '\n%s--- last lines of %s%s\n' "$B" "$(basename "$log")" "$N" >&2
      tail -n 15 "$log" >&2
    done
  fi
  if [[ "${DEMO_KEEP:-}" == 1 ]]; then
    printf '\ndemo: kept %s\n' "$TMP" >&2
  else
    rm -rf "$TMP"
  fi
  if ((rc == 0)); then
    printf '\n%sdemo: done in %ds; stopped everything it started and removed its temporary files.%s\n' "$G" "$SECONDS" "$N"
  else
    printf '\n%sdemo: failed (exit %d); stopped everything it started%s.%s\n' "$R" "$rc" \
      "$([[ "${DEMO_KEEP:-}" == 1 ]] || echo ' and removed its temporary files')" "$N" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME LOG CMD...: runs CMD in the background, output to LOG, and remembers its pid for cleanup.
start() {
  local name=$1 log=$2; shift 2
  "$@" >"$log" 2>&1 &
  PIDS+=("$!")
  NAMES+=("$name")
}

# wait_for WHAT SECONDS CMD...: polls CMD until it succeeds; fails early when a started process has died.
wait_for() {
  local what=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs)) i
  until "$@" >/dev/null 2>&1; do
    for i in "${!PIDS[@]}"; do
      if ! kill -0 "${PIDS[i]}" 2>/dev/null; then
        SHOW_LOGS=1
        die "${NAMES[i]} exited while waiting for $what (its log is below)"
      fi
    done
    if ((SECONDS >= deadline)); then
      SHOW_LOGS=1
      die "$what not ready after ${secs}s (logs below)"
    fi
    sleep 0.2
  done
}

# --- Certificates ----------------------------------------------------------------------------------------------

step "Generating a CA, serving certificates for 127.0.0.1 and an admin client certificate (openssl)"
PKI=$TMP/pki
mkdir -p "$PKI" "$TMP/webhook-certs"
cat >"$PKI/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[serving]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
EOF
ossl() { openssl "$@" >>"$TMP/openssl.out" 2>&1 || { tail -n 20 "$TMP/openssl.out" >&2; die "openssl $1 failed (output above)"; }; }
ossl req -x509 -newkey rsa:2048 -nodes -days 1 -config "$PKI/openssl.cnf" -extensions ca \
  -subj "/CN=sidecar-injector-demo-ca" -keyout "$PKI/ca.key" -out "$PKI/ca.crt"
# sign NAME SUBJECT EXTENSIONS: a key and a certificate signed by the demo CA.
sign() {
  ossl req -new -newkey rsa:2048 -nodes -config "$PKI/openssl.cnf" -subj "$2" -keyout "$PKI/$1.key" -out "$PKI/$1.csr"
  ossl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days 1 \
    -extfile "$PKI/openssl.cnf" -extensions "$3" -out "$PKI/$1.crt"
}
sign apiserver "/CN=kube-apiserver" serving
sign webhook "/CN=sidecar-injector" serving
sign admin "/O=system:masters/CN=demo-admin" client
cp "$PKI/webhook.crt" "$TMP/webhook-certs/tls.crt"
cp "$PKI/webhook.key" "$TMP/webhook-certs/tls.key"
ossl genrsa -out "$PKI/sa.key" 2048
ossl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"
info "in $TMP"

# --- Control plane -------------------------------------------------------------------------------------------

step "Starting etcd on 127.0.0.1:$ETCD_PORT"
start etcd "$TMP/etcd.log" "$BIN_DIR/etcd" --name demo --data-dir "$TMP/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "demo=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync --log-level warn
wait_for etcd 30 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

step "Starting kube-apiserver on https://127.0.0.1:$APISERVER_PORT"
# The flag set envtest uses, with cert authentication: the admin certificate is in group system:masters.
# There is no controller-manager, so no default ServiceAccount: the ServiceAccount admission plugin is off.
mkdir -p "$TMP/apiserver"
start kube-apiserver "$TMP/kube-apiserver.log" "$BIN_DIR/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --endpoint-reconciler-type none --secure-port "$APISERVER_PORT" \
  --cert-dir "$TMP/apiserver" --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
  --client-ca-file "$PKI/ca.crt" --authorization-mode RBAC \
  --service-cluster-ip-range 10.0.0.0/24 \
  --service-account-issuer "https://127.0.0.1:$APISERVER_PORT" \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --disable-admission-plugins ServiceAccount --allow-privileged=true
CURL_ADMIN=(curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key")
wait_for kube-apiserver 90 "${CURL_ADMIN[@]}" "https://127.0.0.1:$APISERVER_PORT/readyz"

export KUBECONFIG=$TMP/kubeconfig
{
  "$KUBECTL" config set-cluster demo --server "https://127.0.0.1:$APISERVER_PORT" --certificate-authority "$PKI/ca.crt" --embed-certs
  "$KUBECTL" config set-credentials demo-admin --client-certificate "$PKI/admin.crt" --client-key "$PKI/admin.key" --embed-certs
  "$KUBECTL" config set-context demo --cluster demo --user demo-admin
  "$KUBECTL" config use-context demo
} >/dev/null
k() { "$KUBECTL" "$@"; }
wait_for "the default namespace" 30 k get namespace default
info "kubeconfig: $KUBECONFIG"

step "Installing the SidecarTemplate CRD and the namespaces $INJECTOR_NS and $DEMO_NS"
k create -f "$ROOT/config/crd/bases/sidecar.dev_sidecartemplates.yaml" >/dev/null ||
  die "the API server refused the CRD config/crd/bases/sidecar.dev_sidecartemplates.yaml (its answer is above)"
k wait --for condition=established --timeout 30s crd/sidecartemplates.sidecar.dev >/dev/null
k create namespace "$INJECTOR_NS" >/dev/null
k create namespace "$DEMO_NS" >/dev/null
info "ok"

# --- The injector ----------------------------------------------------------------------------------------------

step "Starting sidecar-injector serve (webhook on :$WEBHOOK_PORT, health on 127.0.0.1:$HEALTH_PORT)"
serve_flags=(--kubeconfig "$KUBECONFIG" --cert-dir "$TMP/webhook-certs" --webhook-port "$WEBHOOK_PORT"
  --metrics-bind-address "127.0.0.1:$METRICS_PORT" --health-probe-bind-address "127.0.0.1:$HEALTH_PORT"
  --namespace "$INJECTOR_NS")
# Listen on loopback only when this build has a flag for the webhook's address.
if "$BIN_DIR/sidecar-injector" serve --help 2>&1 | grep -q -- '--webhook-host'; then
  serve_flags+=(--webhook-host 127.0.0.1)
fi
start sidecar-injector "$TMP/sidecar-injector.log" "$BIN_DIR/sidecar-injector" serve "${serve_flags[@]}"
wait_for "sidecar-injector /readyz" 60 curl -fsS "http://127.0.0.1:$HEALTH_PORT/readyz"
info "ready"

step "Applying the sample SidecarTemplates (config/samples)"
k apply -k "$ROOT/config/samples" | sed 's/^/    /'

# The demo pod, as a user writes it.
cat >"$TMP/pod.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: $DEMO_NS
  annotations:
    sidecar.dev/inject: log-shipper
spec:
  containers:
  - name: app
    image: nginx:1.27
EOF

# server_view FILE: the pod as the API server returns it, without the fields that differ on every run.
server_view() {
  awk '/^status:/ { exit } /^  (creationTimestamp|resourceVersion|uid):/ { next } { print }' "$1"
}
# Before the webhook is registered: the manifest as the API server stores it (with its defaults), not stored.
k create --dry-run=server -f "$TMP/pod.yaml" -o yaml >"$TMP/before.raw.yaml"
server_view "$TMP/before.raw.yaml" >"$TMP/before.yaml"

step "Registering the MutatingWebhookConfiguration for https://127.0.0.1:$WEBHOOK_PORT/mutate-v1-pod"
CA_BUNDLE=$(base64 <"$PKI/ca.crt" | tr -d '\n')
cat >"$TMP/webhook.yaml" <<EOF
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: sidecar-injector
webhooks:
- name: inject.sidecar.dev
  admissionReviewVersions: ["v1"]
  clientConfig:
    url: https://127.0.0.1:$WEBHOOK_PORT/mutate-v1-pod
    caBundle: $CA_BUNDLE
  rules:
  - operations: ["CREATE"]
    apiGroups: [""]
    apiVersions: ["v1"]
    resources: ["pods"]
  failurePolicy: Fail
  sideEffects: None
  reinvocationPolicy: IfNeeded
  timeoutSeconds: 10
EOF
k create -f "$TMP/webhook.yaml" | sed 's/^/    /'
# The API server picks up webhook configurations asynchronously, and the injector's template cache fills from a
# watch: wait until a dry-run of the demo pod comes back injected.
injected_dry_run() {
  k create --dry-run=server -f "$TMP/pod.yaml" -o jsonpath='{.metadata.annotations.sidecar\.dev/status}' | grep -q log-shipper
}
wait_for "the webhook to be called" 30 injected_dry_run

# --- Inject ----------------------------------------------------------------------------------------------------

step "Creating a pod that asks for log-shipper"
sed 's/^/    /' "$TMP/pod.yaml"
k create -f "$TMP/pod.yaml" -o yaml >"$TMP/after.raw.yaml"
server_view "$TMP/after.raw.yaml" >"$TMP/after.yaml"

step "What the webhook changed (diff -u: the pod without the webhook, then as the API server stored it)"
diff -u --label "before: $DEMO_NS/web without the webhook (manifest + API server defaults)" \
  --label "after:  $DEMO_NS/web as stored by the API server" "$TMP/before.yaml" "$TMP/after.yaml" >"$TMP/pod.diff" || true
[[ -s "$TMP/pod.diff" ]] || die "the pod was stored exactly as sent: nothing was injected"
if [[ -t 1 ]]; then
  sed -e "s/^-.*/$R&$N/" -e "s/^+.*/$G&$N/" "$TMP/pod.diff"
else
  cat "$TMP/pod.diff"
fi

step "Its sidecar.dev/status annotation"
k get pod -n "$DEMO_NS" web -o jsonpath='{.metadata.annotations.sidecar\.dev/status}' >"$TMP/status.json"
[[ -s "$TMP/status.json" ]] || die "the pod has no sidecar.dev/status annotation"
if command -v jq >/dev/null; then
  jq . "$TMP/status.json" | sed 's/^/    /'
elif command -v python3 >/dev/null; then
  python3 -m json.tool "$TMP/status.json" | sed 's/^/    /'
else
  # No JSON pretty-printer installed: break the record after each template.
  sed -e 's/},{/},\n  {/g' "$TMP/status.json" | sed 's/^/    /'
  echo
fi

# --- Deny ------------------------------------------------------------------------------------------------------

step "Creating a pod that conflicts: it already has a container named log-shipper"
cat >"$TMP/clash.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: clash
  namespace: $DEMO_NS
  annotations:
    sidecar.dev/inject: log-shipper
spec:
  containers:
  - name: log-shipper
    image: registry.example/my-own-log-shipper:1
EOF
sed 's/^/    /' "$TMP/clash.yaml"
if k create -f "$TMP/clash.yaml" >"$TMP/clash.out" 2>&1; then
  die "the conflicting pod was admitted; the webhook should have denied it: $(cat "$TMP/clash.out")"
fi
info "The API server answered:"
printf '    %s%s%s\n' "$R" "$(cat "$TMP/clash.out")" "$N"
grep -q 'denied the request' "$TMP/clash.out" || die "the pod was refused, but not by the webhook"
