# syntax=docker/dockerfile:1
# The sidecar-injector image: a static binary on an empty base (scratch), running as the nonroot user (65532).
#
#   docker build -t sidecar-injector:dev --build-arg VERSION=v0.1.0 --build-arg COMMIT=$(git rev-parse HEAD) .
#
# `make image` builds the same image without Docker (hack/image.sh: same binary flags, base, user, entrypoint,
# command, ports and labels; test/image checks that they match this file). The base is empty because the injector
# needs no file besides itself: no CA bundle (it trusts the API server's CA from its service account), no
# timezone data, no shell.
#
# Every base is pinned by digest (test/image fails on a FROM that is neither scratch nor pinned, and on a builder
# whose Go differs from go.mod's). The golang:1.26.8 digest is the multi-arch index, taken from public records
# that agree on it, since no registry is reachable from where it was written: a table of index digests read
# from the registry API (golang:1.26 = 1.26.8, checked 2026-09-21), a Dockerfile that resolved it with
# `docker buildx imagetools inspect`, and Dockerfiles pinning golang:1.26.8 to it for amd64+arm64 builds. The tag
# is rebuilt from time to time (other digests of 1.26.8 exist), so re-resolve the digest together with the tag
# when Go is bumped: docker buildx imagetools inspect golang:<version>. GOTOOLCHAIN=local below makes a digest
# of an older Go fail the build (go.mod requires its version) instead of building with it.
#
# Multi-arch: docker buildx build --platform linux/amd64,linux/arm64 ... (the Go toolchain cross-compiles on the
# build platform; nothing is emulated).

FROM --platform=$BUILDPLATFORM golang:1.26.8@sha256:6c2a5538f964f1c82f97ad14988bf05de100d922d159d0e398b54c7b0ca0c6c9 AS builder
ARG TARGETOS=linux
ARG TARGETARCH
ARG VERSION=dev
ARG COMMIT=unknown
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local

# Modules first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY cmd/ cmd/
COPY internal/ internal/
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath \
      -ldflags="-s -w -X github.com/sidecar-dev/sidecar-injector/internal/version.Version=${VERSION} -X github.com/sidecar-dev/sidecar-injector/internal/version.Commit=${COMMIT}" \
      -o /out/sidecar-injector ./cmd/sidecar-injector

FROM scratch
ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="sidecar-injector" \
      org.opencontainers.image.description="Kubernetes mutating admission webhook that injects sidecars from SidecarTemplates" \
      org.opencontainers.image.source="https://github.com/sidecar-dev/sidecar-injector" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY --from=builder /out/sidecar-injector /sidecar-injector
USER 65532:65532
EXPOSE 9443 8080 8081
ENTRYPOINT ["/sidecar-injector"]
CMD ["serve"]
