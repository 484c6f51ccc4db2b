#!/usr/bin/env bash
# Builds kube-apiserver and etcd from Go modules into $BIN_DIR, for envtest and `make demo`.
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

build_in_module() { # NAME MODULE VERSION PACKAGE REPLACE_VERSION LDFLAGS
  local name=$1 module=$2 version=$3 pkg=$4 repver=$5 ldflags=$6
  local work; work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  log "building $name $version from $module (first time takes several minutes)"
  (
    cd "$work"
    export GOFLAGS=-mod=mod GOWORK=off
    go mod init "build-$name" >/dev/null 2>&1
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
    go get "$pkg@$version" >/dev/null 2>&1 || true
    CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$BIN_DIR/$name" "$pkg"
  ) || fail "build of $name failed; see the go output above. Is the Go module proxy reachable?"
  echo "$version" > "$BIN_DIR/.$name.version"
  log "built $BIN_DIR/$name"
}

if stamp_ok etcd "$ETCD_VERSION"; then
  log "etcd $ETCD_VERSION already in $BIN_DIR"
else
  build_in_module etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "-s -w"
fi

if stamp_ok kube-apiserver "$KUBERNETES_VERSION"; then
  log "kube-apiserver $KUBERNETES_VERSION already in $BIN_DIR"
else
  staging="v0.${KUBERNETES_VERSION#v1.}"
  vpkg=k8s.io/component-base/version
  ld="-s -w -X $vpkg.gitVersion=$KUBERNETES_VERSION -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2) -X $vpkg.gitTreeState=clean -X $vpkg.buildDate=1970-01-01T00:00:00Z"
  build_in_module kube-apiserver k8s.io/kubernetes "$KUBERNETES_VERSION" k8s.io/kubernetes/cmd/kube-apiserver "$staging" "$ld"
fi
