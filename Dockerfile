# syntax=docker/dockerfile:1
# The sidecar-injector image: a static binary on distroless, running as the nonroot user (65532).
#
#   docker build -t sidecar-injector:dev --build-arg VERSION=v0.1.0 --build-arg COMMIT=$(git rev-parse HEAD) .
#
# `make image` builds the same image without Docker (hack/image.sh: same binary flags, user, entrypoint, command,
# ports and labels; test/image checks that they match this file), but on an empty base instead of distroless: the
# injector needs no file of distroless (no CA bundle: it trusts the API server's CA from its service account).
#
# Multi-arch: docker buildx build --platform linux/amd64,linux/arm64 ... (the Go toolchain cross-compiles on the
# build platform; nothing is emulated).

ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS builder
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

FROM gcr.io/distroless/static:nonroot
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
