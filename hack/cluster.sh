#!/usr/bin/env bash
# A real one-node Kubernetes cluster on this machine, for test/e2e and `make demo`:
#
#   hack/cluster.sh up      start it (idempotent: a running cluster is left as it is); prints the time to Ready
#   hack/cluster.sh down    stop it and remove everything it created but the images and certificates
#   hack/cluster.sh status  say whether it runs
#
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy (iptables mode), kubelet and
# containerd v2 from bin/ (`make cluster-binaries`), runc and the CNI bridge + host-local plugins from Debian
# packages (installed when missing; Debian's containerd 1.6 too when bin/ has none, and it works as well). Every image in bin/images/*.tar (`make image e2e-images`) is imported into the node's
# containerd; no registry is ever contacted.
#
# Network: pods get addresses from 198.18.0.0/24 on the bridge sie2e0 (198.18.0.1, the node's address, where the
# API server listens on :6443), Services from 198.19.0.0/24; both inside 198.18.0.0/15, which is reserved for
# network tests. Nothing is masqueraded to the outside and IP forwarding is left as it is: pods reach the node,
# each other and Services, never another host.
#
# State: everything lives under $CLUSTER_DIR (default bin/cluster): etcd's data, containerd's root, state, socket
# and the pods' network namespaces (netns_mounts_under_state_dir), the kubelet's root dir, pod logs, CNI state.
# The admin kubeconfig is bin/kubeconfig. `down` kills every process `up` started, every container, unmounts
# everything under $CLUSTER_DIR, deletes the bridge, kube-proxy's iptables rules, the pods' cgroups and the
# kubelet's /var/log/containers links; it keeps $CLUSTER_DIR/pki and containerd's image store for the next `up`.
#
# Needs root on Linux with the cgroup controllers cpu, memory and pids, and the ports 6443, 10248, 10249, 10250,
# 10256, 10257, 10259, 22379 and 22380 free.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN_DIR=${BIN_DIR:-$ROOT/bin}
CLUSTER_DIR=${CLUSTER_DIR:-$BIN_DIR/cluster}
KUBECONFIG_OUT=${CLUSTER_KUBECONFIG:-$BIN_DIR/kubeconfig}
IMAGE_DIR=${IMAGE_DIR:-$BIN_DIR/images}
CNI_BIN_DIR=${CNI_BIN_DIR:-/usr/lib/cni}

NODE_NAME=e2e-node
BRIDGE=sie2e0
NODE_IP=198.18.0.1
POD_CIDR=198.18.0.0/24
SERVICE_CIDR=198.19.0.0/24
SERVICE_IP=198.19.0.1
ETCD_PORT=22379
ETCD_PEER_PORT=22380
API_PORT=6443
PORTS=(6443 10248 10249 10250 10256 10257 10259 "$ETCD_PORT" "$ETCD_PEER_PORT")
PAUSE_IMAGE=localhost/sidecar-e2e/pause:v1
# Processes in start order; `down` stops them in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kube-proxy kubelet)

PKI=$CLUSTER_DIR/pki
RUN=$CLUSTER_DIR/run
LOGS=$CLUSTER_DIR/logs
CTRD=$CLUSTER_DIR/containerd
SOCK=$CTRD/containerd.sock

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] ERROR: %s\n' "$*" >&2; exit 1; }

# has PATTERN: stdin has a line matching PATTERN. Unlike `cmd | grep -q`, it reads all of stdin, so that under
# pipefail a long output (iptables-save) does not fail the pipeline with SIGPIPE when grep stops early.
has() { [[ $(grep -c -- "$1") -gt 0 ]]; }
# ctr: bin/ctr (built with containerd), else Debian's.
ctr() { if [[ -x $BIN_DIR/ctr ]]; then "$BIN_DIR/ctr" "$@"; else command ctr "$@"; fi; }
pid_of() { local f=$RUN/$1.pid; [[ -f $f ]] && kill -0 "$(cat "$f")" 2>/dev/null && cat "$f"; }
# api PATH: GET from the API server as the admin (curl, so that up needs no kubectl).
api() { curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "https://$NODE_IP:$API_PORT$1"; }

# --- preconditions -------------------------------------------------------------------------------------------

preflight() {
  [[ $(uname -s) == Linux ]] || die "the cluster runs on Linux only (this is $(uname -s)); use kind or minikube (README)"
  [[ $(id -u) -eq 0 ]] || die "the cluster needs root (containerd, kubelet, network namespaces, cgroups); run as root, or use kind or minikube (README)"
  local c
  for c in cpu memory pids; do
    [[ -d /sys/fs/cgroup/$c || " $(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null) " == *" $c "* ]] ||
      die "the cgroup controller '$c' is not mounted (neither /sys/fs/cgroup/$c nor in /sys/fs/cgroup/cgroup.controllers); the kubelet needs cpu, memory and pids"
  done
  for c in etcd kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet; do
    [[ -x $BIN_DIR/$c ]] || die "$BIN_DIR/$c is missing; run 'make cluster-binaries'"
  done
  for c in pause app logshipper proxy; do
    [[ -f $IMAGE_DIR/e2e-$c.tar ]] || die "$IMAGE_DIR/e2e-$c.tar is missing; run 'make e2e-images'"
  done
  install_node_packages
}

# install_node_packages: containerd, runc, the CNI plugins, iptables and openssl from Debian, when missing.
install_node_packages() {
  local want=()
  # containerd comes from bin/ (`make cluster-binaries`); Debian's 1.6 is the fallback when it is not there.
  [[ -x $BIN_DIR/containerd ]] || command -v containerd >/dev/null || want+=(containerd)
  command -v runc >/dev/null || want+=(runc)
  [[ -x $CNI_BIN_DIR/bridge && -x $CNI_BIN_DIR/host-local && -x $CNI_BIN_DIR/loopback ]] || want+=(containernetworking-plugins)
  command -v iptables >/dev/null || want+=(iptables)
  command -v conntrack >/dev/null || want+=(conntrack)
  command -v openssl >/dev/null || want+=(openssl)
  [[ ${#want[@]} -gt 0 ]] || return 0
  command -v apt-get >/dev/null || die "missing ${want[*]} and no apt-get to install them; install them (CNI plugins into $CNI_BIN_DIR)"
  log "installing ${want[*]} with apt-get"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
  # Debian starts containerd after installing it where systemd runs; ours uses its own socket and directories.
}

check_ports() {
  local p busy=()
  for p in "${PORTS[@]}"; do
    if ss -Hltn "sport = :$p" 2>/dev/null | has .; then busy+=("$p"); fi
  done
  [[ ${#busy[@]} -eq 0 ]] || die "port(s) ${busy[*]} are taken by another process ($(ss -Hltnp "sport = :${busy[0]}" | sed -n 's/.*users:((\("[^"]*"\).*/\1/p' | head -1)); stop it, or 'hack/cluster.sh down' if it is a cluster of ours"
}

# --- certificates and kubeconfigs ----------------------------------------------------------------------------

# cert NAME CN [O] [SANS]: a client (or, with SANS, serving) certificate signed by the cluster's CA.
cert() {
  local name=$1 cn=$2 o=${3:-} sans=${4:-}
  [[ -f $PKI/$name.crt ]] && return 0
  local subj="/CN=$cn"; [[ -z $o ]] || subj="/O=$o$subj"
  local ext=$PKI/$name.ext
  { echo "basicConstraints=CA:FALSE"; echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [[ -n $sans ]]; then echo "extendedKeyUsage=serverAuth,clientAuth"; echo "subjectAltName=$sans"
    else echo "extendedKeyUsage=clientAuth"; fi; } >"$ext"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days 3650 \
    -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$ext"
}

pki() {
  mkdir -p "$PKI"
  if [[ ! -f $PKI/ca.crt ]]; then
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -out "$PKI/ca.crt" -days 3650 \
      -subj "/CN=sidecar-e2e-ca" 2>/dev/null
  fi
  [[ -f $PKI/sa.key ]] || { openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null; openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null; }
  cert apiserver kube-apiserver "" "IP:$NODE_IP,IP:$SERVICE_IP,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost"
  cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
  cert admin admin system:masters
  cert kube-controller-manager system:kube-controller-manager
  cert kube-scheduler system:kube-scheduler
  cert kube-proxy system:kube-proxy
  cert kubelet "system:node:$NODE_NAME" system:nodes
  cert etcd etcd "" "IP:127.0.0.1,DNS:localhost"
  local n
  for n in admin kube-controller-manager kube-scheduler kube-proxy kubelet; do kubeconfig "$n" "$CLUSTER_DIR/$n.kubeconfig"; done
  cp "$CLUSTER_DIR/admin.kubeconfig" "$KUBECONFIG_OUT"
}

kubeconfig() { # NAME FILE
  cat >"$2" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: sidecar-e2e
  cluster: {server: "https://$NODE_IP:$API_PORT", certificate-authority: "$PKI/ca.crt"}
users:
- name: $1
  user: {client-certificate: "$PKI/$1.crt", client-key: "$PKI/$1.key"}
contexts:
- name: sidecar-e2e
  context: {cluster: sidecar-e2e, user: $1}
current-context: sidecar-e2e
EOF
}

# --- network -------------------------------------------------------------------------------------------------

# The bridge exists before the API server starts, because the node's address (where it listens) is on it. The
# CNI bridge plugin adopts it.
network() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$NODE_IP/24" dev "$BRIDGE"
  fi
  ip link set "$BRIDGE" up
  # The node itself reaches Service addresses through the bridge, with the node's address as source, whether
  # or not the machine has a default route; kube-proxy's rules then send them to a pod or to the API server.
  ip route replace "$SERVICE_CIDR" dev "$BRIDGE" src "$NODE_IP"
  mkdir -p "$CLUSTER_DIR/cni/net.d"
  cat >"$CLUSTER_DIR/cni/net.d/10-sie2e.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "sie2e",
  "plugins": [{
    "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": {"type": "host-local", "dataDir": "$CLUSTER_DIR/cni/ipam",
             "ranges": [[{"subnet": "$POD_CIDR", "rangeStart": "198.18.0.10", "gateway": "$NODE_IP"}]],
             "routes": [{"dst": "0.0.0.0/0"}]}
  }]
}
EOF
}

# --- processes -----------------------------------------------------------------------------------------------

# start NAME ARGS...: runs bin/NAME (or NAME on PATH) in its own session, logging to $LOGS/NAME.log.
start() {
  local name=$1; shift
  if pid_of "$name" >/dev/null; then return 0; fi
  local exe=$BIN_DIR/$name; [[ -x $exe ]] || exe=$(command -v "$name")
  mkdir -p "$RUN" "$LOGS"
  setsid "$exe" "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

# wait_for WHAT SECONDS COMMAND...: retries COMMAND until it succeeds, or dies naming the log to read.
wait_for() {
  local what=$1 secs=$2; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS > end)); then die "$what not ready after ${secs}s; see $LOGS/$what.log (last lines: $(tail -3 "$LOGS/$what.log" 2>/dev/null | tr '\n' ' '))"; fi
    if ! pid_of "$what" >/dev/null; then die "$what exited; see $LOGS/$what.log (last lines: $(tail -5 "$LOGS/$what.log" 2>/dev/null | tr '\n' ' '))"; fi
    sleep 0.5
  done
}


control_plane() {
  start etcd --name e2e --data-dir "$CLUSTER_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "e2e=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync --quota-backend-bytes=4294967296
  start kube-apiserver --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$API_PORT" \
    --service-cluster-ip-range "$SERVICE_CIDR" --allow-privileged=true \
    --client-ca-file "$PKI/ca.crt" --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$PKI/sa.pub" \
    --service-account-signing-key-file "$PKI/sa.key" --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction --kubelet-preferred-address-types InternalIP,Hostname
  wait_for kube-apiserver 120 api /readyz
  start kube-controller-manager --kubeconfig "$CLUSTER_DIR/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig "$CLUSTER_DIR/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig "$CLUSTER_DIR/kube-controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --allocate-node-cidrs=false
  start kube-scheduler --kubeconfig "$CLUSTER_DIR/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig "$CLUSTER_DIR/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig "$CLUSTER_DIR/kube-scheduler.kubeconfig" --bind-address 127.0.0.1 --leader-elect=false
}

containerd_up() {
  mkdir -p "$CTRD"
  # restrict_oom_score_adj: root here may lack CAP_SYS_RESOURCE, and runc then fails every sandbox with "can't
  # get final child's PID from pipe" (oom_score_adj: Permission denied).
  cat >"$CTRD/config.toml" <<EOF
version = 2
root = "$CTRD/root"
state = "$CTRD/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$CTRD/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$CLUSTER_DIR/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$CTRD/runc"
EOF
  # PATH: containerd finds its runc shim (containerd-shim-runc-v2) next to it in bin/.
  PATH=$BIN_DIR:$PATH start containerd --config "$CTRD/config.toml"
  wait_for containerd 60 ctr --address "$SOCK" version
  local f
  for f in "$IMAGE_DIR"/*.tar; do import_image "$f"; done
}

# import_image TAR: into containerd's k8s.io namespace, where the kubelet finds it; all platforms, because an
# image whose index has no entry for this platform would be skipped silently.
import_image() { ctr --address "$SOCK" -n k8s.io images import --all-platforms "$1" >/dev/null; }

node() {
  mkdir -p "$CLUSTER_DIR/kubelet" "$CLUSTER_DIR/pod-logs"
  cat >"$CLUSTER_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$PKI/ca.crt"}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
podLogsDir: $CLUSTER_DIR/pod-logs
volumePluginDir: $CLUSTER_DIR/kubelet-plugins
resolvConf: /etc/resolv.conf
# The images come from bin/images and cannot be pulled again: never collect them, never evict for disk space.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: "1%", imagefs.available: "1%"}
serializeImagePulls: false
maxPods: 250
EOF
  start kubelet --config "$CLUSTER_DIR/kubelet.yaml" --kubeconfig "$CLUSTER_DIR/kubelet.kubeconfig" \
    --root-dir "$CLUSTER_DIR/kubelet" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
    --cert-dir "$CLUSTER_DIR/kubelet/pki"
  cat >"$CLUSTER_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
clientConnection: {kubeconfig: "$CLUSTER_DIR/kube-proxy.kubeconfig"}
# Leave the machine's sysctls alone.
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false}
EOF
  start kube-proxy --config "$CLUSTER_DIR/kube-proxy.yaml"
}

node_ready() { api "/api/v1/nodes/$NODE_NAME" | tr -d ' \n' | has '"type":"Ready","status":"True"'; }

up() {
  local t0=$SECONDS
  if [[ -f $RUN/up ]] && pid_of kube-apiserver >/dev/null && pid_of kubelet >/dev/null && node_ready; then
    log "already up (kubeconfig $KUBECONFIG_OUT)"; return 0
  fi
  preflight
  # Ports are checked on a fresh start only: a half-started cluster of ours holds some of them and is completed.
  local c running=
  for c in "${COMPONENTS[@]}"; do if pid_of "$c" >/dev/null; then running=1; fi; done
  [[ -n $running ]] || check_ports
  trap 'log "up failed; run hack/cluster.sh down to clean up"' ERR
  pki
  network
  control_plane
  containerd_up
  node
  wait_for kubelet 120 node_ready
  # Nothing schedules a pod onto the node before the default ServiceAccount exists.
  wait_for kube-controller-manager 60 api /api/v1/namespaces/default/serviceaccounts/default
  touch "$RUN/up"
  log "up: node $NODE_NAME Ready in $((SECONDS - t0))s; export KUBECONFIG=$KUBECONFIG_OUT"
}

# --- down ----------------------------------------------------------------------------------------------------

stop() { # NAME: SIGTERM, then SIGKILL after 10 s
  local pid; pid=$(pid_of "$1") || { rm -f "$RUN/$1.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  local i
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$RUN/$1.pid"
}

# remove_containers: every task and container in containerd's k8s.io namespace (the kubelet is gone by then).
remove_containers() {
  [[ -S $SOCK ]] && pid_of containerd >/dev/null || return 0
  local c=(ctr --address "$SOCK" -n k8s.io) id
  for id in $("${c[@]}" tasks ls -q 2>/dev/null); do "${c[@]}" tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true; done
  for id in $("${c[@]}" tasks ls -q 2>/dev/null); do
    local i
    for i in $(seq 1 50); do "${c[@]}" tasks delete "$id" >/dev/null 2>&1 && break; sleep 0.1; done
  done
  for id in $("${c[@]}" containers ls -q 2>/dev/null); do "${c[@]}" containers delete "$id" >/dev/null 2>&1 || true; done
}

down() {
  local i
  stop kubelet
  remove_containers
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do [[ ${COMPONENTS[i]} == kubelet ]] || stop "${COMPONENTS[i]}"; done
  # Processes of this cluster whose pid file is gone (a crashed or interrupted up, containerd-shims): every one
  # names $CLUSTER_DIR on its command line (configs, data dirs, the containerd socket).
  local pid
  for pid in $(pgrep -f -- "$CLUSTER_DIR/" || true); do kill -KILL "$pid" 2>/dev/null || true; done
  # Mounts under the cluster's directory: kubelet volumes, container root filesystems, network namespaces.
  local m
  for m in $(awk -v d="$CLUSTER_DIR/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  # The pods' veth ends vanished with their network namespaces; kube-proxy removes its own rules, and the
  # kubelet's few chains go here (this machine runs no other kubelet: `up` fails when its ports are taken).
  if [[ -x $BIN_DIR/kube-proxy ]] && iptables-save 2>/dev/null | has KUBE-; then
    "$BIN_DIR/kube-proxy" --cleanup >/dev/null 2>&1 || true
  fi
  local ipt t ch
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    while "$ipt" -t filter -D INPUT -j KUBE-FIREWALL 2>/dev/null; do :; done
    while "$ipt" -t filter -D OUTPUT -j KUBE-FIREWALL 2>/dev/null; do :; done
    for t in mangle nat filter; do
      for ch in KUBE-KUBELET-CANARY KUBE-FIREWALL KUBE-IPTABLES-HINT; do
        "$ipt" -t "$t" -F "$ch" 2>/dev/null && "$ipt" -t "$t" -X "$ch" 2>/dev/null || true
      done
    done
  done
  # The kubelet's pod cgroups (cgroupfs driver, every v1 hierarchy, or the unified one).
  local d
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/kubepods.slice; do
    [[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  find /var/log/containers -maxdepth 1 -type l -lname "$CLUSTER_DIR/*" -delete 2>/dev/null || true
  # Directories the kubelet and containerd 1.6's shims create at fixed paths; removed only when empty.
  rmdir /var/log/containers /run/containerd/s /run/containerd 2>/dev/null || true
  # A clean slate for the next up, except the certificates and containerd's images (root/).
  rm -rf "$RUN" "$CLUSTER_DIR/etcd" "$CLUSTER_DIR/kubelet" "$CLUSTER_DIR/pod-logs" "$CLUSTER_DIR/cni" \
    "$CTRD/state" "$CLUSTER_DIR/kubelet-plugins" "$CTRD/runc"
  verify_down
}

# verify_down: says what is left, if anything, instead of claiming a clean machine.
verify_down() {
  local left=()
  pgrep -f -- "$CLUSTER_DIR/" >/dev/null && left+=("processes ($(pgrep -f -- "$CLUSTER_DIR/" | tr '\n' ' '))")
  awk -v d="$CLUSTER_DIR/" 'index($2, d) == 1 {f=1} END {exit !f}' /proc/self/mounts && left+=("mounts under $CLUSTER_DIR")
  ip link show "$BRIDGE" >/dev/null 2>&1 && left+=("the bridge $BRIDGE")
  ip -br link show type veth 2>/dev/null | has . && left+=("veth links ($(ip -br link show type veth | awk '{print $1}' | tr '\n' ' '))")
  iptables-save 2>/dev/null | has KUBE- && left+=("KUBE-* iptables rules")
  if [[ ${#left[@]} -gt 0 ]]; then
    log "WARNING: down left ${left[*]}"; return 1
  fi
  log "down: no process, mount, bridge, veth, network namespace or iptables rule of the cluster is left"
}

status() {
  local c up=0
  for c in "${COMPONENTS[@]}"; do
    if p=$(pid_of "$c"); then printf '%-24s running (pid %s)\n' "$c" "$p"; up=1; else printf '%-24s stopped\n' "$c"; fi
  done
  [[ $up -eq 1 ]]
}

case "${1:-}" in
  up) up ;;
  down) [[ $(id -u) -eq 0 ]] || die "down needs root, as up did"; down ;;
  status) status ;;
  *) echo "usage: hack/cluster.sh up|down|status" >&2; exit 2 ;;
esac
