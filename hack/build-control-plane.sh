#!/usr/bin/env bash
# Builds etcd and Kubernetes binaries from Go modules into $BIN_DIR:
#
#   hack/build-control-plane.sh            etcd and kube-apiserver, for envtest and `make demo`
#   hack/build-control-plane.sh node       also kube-controller-manager, kube-scheduler, kube-proxy and kubelet,
#                                          and containerd (with its runc shim and ctr) at CONTAINERD_VERSION, for
#                                          the one-node cluster of hack/cluster.sh (test/e2e)
#
# Why build: the envtest binary download service is not reachable from CI, and the Go module proxy is.
# Each binary is built in a throw-away module that requires the upstream module at the pinned version and
# replaces every module that upstream's own go.mod replaces with a local path (k8s.io/kubernetes's staging
# repositories, etcd's sibling modules) by the published module of the matching version.
#
# Binaries that are already present with the right version stamp are reused.
set -euo pipefail

BIN_DIR=${BIN_DIR:-$(cd "$(dirname "$0")/.." && pwd)/bin}
KUBERNETES_VERSION=${KUBERNETES_VERSION:?set KUBERNETES_VERSION, e.g. v1.37.1}
ETCD_VERSION=${ETCD_VERSION:?set ETCD_VERSION, e.g. v3.6.8}
mkdir -p "$BIN_DIR"

log() { printf '[control-plane] %s\n' "$*" >&2; }
fail() { printf '[control-plane] ERROR: %s\n' "$*" >&2; exit 1; }

# stamp_ok NAME VERSION: true when bin/NAME exists and was built for VERSION.
stamp_ok() { [[ -x "$BIN_DIR/$1" && -f "$BIN_DIR/.$1.version" && "$(cat "$BIN_DIR/.$1.version")" == "$2" ]]; }

# upstream_gomod MODULE@VERSION: downloads the module and prints the path of its go.mod in the module cache, whose
# local `=> ./...` replaces build_in_module maps to published versions.
upstream_gomod() {
  local modver=$1
  go mod download -json "$modver" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p'
}

# build_in_module NAMES MODULE VERSION PACKAGES REPLACE_VERSION LDFLAGS: NAMES and PACKAGES are space-separated
# lists of the same length; all packages are built by one `go build`, so the packages they share compile once.
build_in_module() {
  local names=$1 module=$2 version=$3 pkgs=$4 repver=$5 ldflags=$6
  local work; work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  log "building $names $version from $module (first time takes several minutes)"
  (
    cd "$work"
    export GOFLAGS=-mod=mod GOWORK=off
    go mod init "build-${names%% *}" >/dev/null 2>&1
    local gomod; gomod=$(upstream_gomod "$module@$version") || fail "cannot download $module@$version from the Go module proxy"
    # Lines like `k8s.io/api => ./staging/src/k8s.io/api` or `go.etcd.io/etcd/api/v3 => ../api`; etcd also
    # points modules it forbids at ./FORBIDDEN_DEPENDENCY, which we leave alone.
    local replaced
    replaced=$(grep -E '=>[[:space:]]*\.\.?/' "$gomod" | grep -v FORBIDDEN_DEPENDENCY | sed -E 's/^[[:space:]]*(replace[[:space:]]+)?//; s/[[:space:]]*=>.*//' | awk '{print $1}' | sort -u)
    [[ -n "$replaced" ]] || fail "found no local replaces in $module's go.mod; cannot map its sibling modules"
    go mod edit -require="$module@$version"
    local m
    for m in $replaced; do
      go mod edit -replace="$m=$m@$repver"
    done
    go mod tidy >/dev/null 2>&1 || true
    local p out=$work/out
    for p in $pkgs; do go get "$p@$version" >/dev/null 2>&1 || true; done
    mkdir -p "$out"
    # One package is written under its NAME (etcd's package path ends in /server/v3); several go into $out/
    # under the last element of their paths, which are their NAMES.
    local dest=$out/
    [[ "$names" == *" "* ]] || dest=$out/$names
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$dest" $pkgs
    local n
    for n in $names; do mv -f "$out/$n" "$BIN_DIR/$n"; done
  ) || fail "build of $names failed; see the go output above. Is the Go module proxy reachable?"
  local n
  for n in $names; do
    echo "$version" > "$BIN_DIR/.$n.version"
    log "built $BIN_DIR/$n"
  done
}

if stamp_ok etcd "$ETCD_VERSION"; then
  log "etcd $ETCD_VERSION already in $BIN_DIR"
else
  build_in_module etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "-s -w"
fi

# The Kubernetes binaries wanted: kube-apiserver always, the node's with the `node` argument.
k8s_names=(kube-apiserver)
case "${1:-}" in
  "") ;;
  node) k8s_names+=(kube-controller-manager kube-scheduler kube-proxy kubelet) ;;
  *) fail "unknown argument '$1' (want nothing, or 'node')" ;;
esac
missing=() pkgs=()
for n in "${k8s_names[@]}"; do
  if stamp_ok "$n" "$KUBERNETES_VERSION"; then
    log "$n $KUBERNETES_VERSION already in $BIN_DIR"
  else
    missing+=("$n") pkgs+=("k8s.io/kubernetes/cmd/$n")
  fi
done
if [[ ${#missing[@]} -gt 0 ]]; then
  staging="v0.${KUBERNETES_VERSION#v1.}"
  vpkg=k8s.io/component-base/version
  ld="-s -w -X $vpkg.gitVersion=$KUBERNETES_VERSION -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2) -X $vpkg.gitTreeState=clean -X $vpkg.buildDate=1970-01-01T00:00:00Z"
  build_in_module "${missing[*]}" k8s.io/kubernetes "$KUBERNETES_VERSION" "${pkgs[*]}" "$staging" "$ld"
fi

# containerd v2 builds as it is published (`go install module@version`, no replaces to map), without cgo; the
# build tags leave out the snapshotters that need cgo or kernel features this cluster does not use. Debian 12's
# containerd 1.6 runs the cluster too, but it is past its upstream end of life.
if [[ "${1:-}" == node ]]; then
  CONTAINERD_VERSION=${CONTAINERD_VERSION:?set CONTAINERD_VERSION, e.g. v2.4.2}
  ctrd_names=(containerd containerd-shim-runc-v2 ctr)
  missing=()
  for n in "${ctrd_names[@]}"; do stamp_ok "$n" "$CONTAINERD_VERSION" || missing+=("$n"); done
  if [[ ${#missing[@]} -eq 0 ]]; then
    log "containerd $CONTAINERD_VERSION already in $BIN_DIR"
  else
    log "building containerd $CONTAINERD_VERSION (containerd, containerd-shim-runc-v2, ctr) from Go modules"
    gobin=$(mktemp -d)
    mod=github.com/containerd/containerd/v2
    pkgs=()
    for n in "${ctrd_names[@]}"; do pkgs+=("$mod/cmd/$n@$CONTAINERD_VERSION"); done
    CGO_ENABLED=0 GOBIN=$gobin GOFLAGS=-mod=mod go install -trimpath -tags "no_btrfs no_devmapper no_zfs" \
      -ldflags "-s -w -X $mod/version.Version=${CONTAINERD_VERSION#v}" "${pkgs[@]}" ||
      { rm -rf "$gobin"; fail "build of containerd $CONTAINERD_VERSION failed; see the go output above"; }
    for n in "${ctrd_names[@]}"; do
      mv -f "$gobin/$n" "$BIN_DIR/$n"
      echo "$CONTAINERD_VERSION" > "$BIN_DIR/.$n.version"
    done
    rm -rf "$gobin"
    log "built $BIN_DIR/containerd, containerd-shim-runc-v2 and ctr"
  fi
fi
