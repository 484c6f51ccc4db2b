#!/usr/bin/env bash
# Builds container images without a Docker engine: static Go binaries, assembled by hack/ociimage
# (go-containerregistry) into OCI image-layout tarballs.
#
#   hack/image.sh injector     the injector's image for IMAGE_PLATFORMS (default linux/amd64 linux/arm64), as
#                              $IMAGE_OUT (default $IMAGE_DIR/sidecar-injector.tar), named $IMAGE_REPO:$IMAGE_TAG
#                              (default localhost/sidecar-injector:<git describe>); prints the digest of its index
#   hack/image.sh test-images  the e2e tests' images (app, logshipper, proxy, pause) for this machine's platform,
#                              as $IMAGE_DIR/e2e-NAME.tar, named localhost/sidecar-e2e/NAME:v1
#
# Reproducible: binaries are built with -trimpath and -buildvcs=false, the version and commit are stamped with
# -ldflags, and every timestamp in the image is the commit's time (SOURCE_DATE_EPOCH), so building the same commit
# twice gives the same digest (test/image checks it).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

IMAGE_DIR=${IMAGE_DIR:-$ROOT/bin/images}
IMAGE_REPO=${IMAGE_REPO:-localhost/sidecar-injector}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
COMMIT=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
IMAGE_TAG=${IMAGE_TAG:-$VERSION}
IMAGE_PLATFORMS=${IMAGE_PLATFORMS:-linux/amd64 linux/arm64}
IMAGE_OUT=${IMAGE_OUT:-$IMAGE_DIR/sidecar-injector.tar}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
CLI=github.com/sidecar-dev/sidecar-injector/internal/version

log() { printf '[image] %s\n' "$*" >&2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/ociimage" ./hack/ociimage

# build_binary OS/ARCH PACKAGE OUT [LDFLAGS]: a static, reproducible binary.
build_binary() {
  local platform=$1 pkg=$2 out=$3 ldflags=${4:-}
  CGO_ENABLED=0 GOOS=${platform%/*} GOARCH=${platform#*/} GOFLAGS=-buildvcs=false \
    go build -trimpath -ldflags "-s -w $ldflags" -o "$out" "$pkg"
}

injector() {
  local args=() p
  for p in $IMAGE_PLATFORMS; do
    local out="$work/${p//\//_}/sidecar-injector"
    log "building sidecar-injector $VERSION ($COMMIT) for $p"
    build_binary "$p" ./cmd/sidecar-injector "$out" "-X $CLI.Version=$VERSION -X $CLI.Commit=$COMMIT"
    args+=(-binary "$p=$out")
  done
  # The same empty base, user, entrypoint, command, ports and labels as the Dockerfile.
  "$work/ociimage" -o "$IMAGE_OUT" -ref "$IMAGE_REPO:$IMAGE_TAG" "${args[@]}" \
    -path /sidecar-injector -user 65532:65532 -cmd serve -port 9443 -port 8080 -port 8081 \
    -label org.opencontainers.image.title=sidecar-injector \
    -label "org.opencontainers.image.description=Kubernetes mutating admission webhook that injects sidecars from SidecarTemplates" \
    -label org.opencontainers.image.source=https://github.com/sidecar-dev/sidecar-injector \
    -label "org.opencontainers.image.version=$VERSION" \
    -label "org.opencontainers.image.revision=$COMMIT"
  log "wrote $IMAGE_OUT ($IMAGE_REPO:$IMAGE_TAG, $IMAGE_PLATFORMS)"
}

test_images() {
  local platform; platform="linux/$(go env GOARCH)"
  local n
  for n in app logshipper proxy pause; do
    build_binary "$platform" "./test/e2e/images/$n" "$work/$n"
    "$work/ociimage" -o "$IMAGE_DIR/e2e-$n.tar" -ref "localhost/sidecar-e2e/$n:v1" -binary "$platform=$work/$n" \
      -path "/$n" -user 65532:65532 -label "org.opencontainers.image.revision=$COMMIT" >/dev/null
  done
  log "wrote $IMAGE_DIR/e2e-{app,logshipper,proxy,pause}.tar (localhost/sidecar-e2e/NAME:v1, $platform)"
}

case "${1:-}" in
  injector) injector ;;
  test-images) test_images ;;
  *) echo "usage: hack/image.sh injector|test-images" >&2; exit 2 ;;
esac
