# sidecar-injector build. `make help` lists the targets.
#
# Everything this Makefile needs beyond Go, git and make is installed into bin/ on first use, at the versions
# pinned here and nowhere else.

# Versions: override on the command line, e.g. `make test FUZZTIME=1m`.

CONTROLLER_TOOLS_VERSION ?= v0.21.0
KUBERNETES_VERSION       ?= v1.37.1
ETCD_VERSION             ?= v3.6.8
# containerd for the one-node cluster (hack/cluster.sh), built from Go modules like the Kubernetes binaries.
CONTAINERD_VERSION       ?= v2.4.2
GOTESTSUM_VERSION        ?= v1.13.0
# staticcheck 2026.2.2, the current release; its go.mod asks for go1.26.0, so it builds with this repo's Go.
STATICCHECK_VERSION      ?= v0.8.2
# promtool (Prometheus 3.16.0 is the module version v0.316.0), for `promtool test rules` on the chart's alerts.
PROMTOOL_VERSION         ?= v0.316.0
# The Prometheus Operator API whose CRDs validate the chart's ServiceMonitor and PrometheusRule (tests only).
PROMETHEUS_OPERATOR_VERSION ?= v0.95.2
# CycloneDX SBOM generator for Go modules, used by `make release`.
CYCLONEDX_GOMOD_VERSION  ?= v1.10.0

# How long each Fuzz* target is fuzzed by `make test`.
FUZZTIME ?= 20s
# Extra flags for every `go test` run by `make test`, e.g. GOTEST_FLAGS=-race (needs a C compiler).
GOTEST_FLAGS ?=

# Generated files: `make verify` fails when regenerating them changes anything under these paths.
GENERATED_PATHS := config/crd config/rbac config/webhook charts/sidecar-injector/files/crds ':(glob)**/zz_generated*'

LOCALBIN ?= $(abspath bin)
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
GOTESTSUM      ?= $(LOCALBIN)/gotestsum
STATICCHECK    ?= $(LOCALBIN)/staticcheck
PROMTOOL       ?= $(LOCALBIN)/promtool
CYCLONEDX_GOMOD ?= $(LOCALBIN)/cyclonedx-gomod
MONITORING_CRDS ?= $(LOCALBIN)/monitoring-crds

# Every recipe runs in bash with errexit and pipefail, so a failing command in a pipeline fails the target.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# Go files of the repository (not of bin/ or testdata, which may hold deliberately odd code).
GO_FILES = $(shell find . -name '*.go' -not -path './bin/*' -not -path './.git/*' -not -path '*/testdata/*' -not -path './vendor/*')

# The Helm chart's targets (helm, chart-crds, chart-lint, chart-test).
include charts.mk

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage:\n  make \033[36m<target>\033[0m [VAR=value]\n"} \
		/^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } \
		/^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: generate
generate: controller-gen ## Generate DeepCopy methods for the API types (internal/api/...).
	$(CONTROLLER_GEN) object paths="./internal/api/..."

# Markers are read from internal/ only: cmd/ and test/ hold none, and loading them would only slow this down.
.PHONY: manifests
manifests: controller-gen ## Generate the CRD, ClusterRole and MutatingWebhookConfiguration from code markers.
	$(CONTROLLER_GEN) crd rbac:roleName=sidecar-injector webhook paths="./internal/..." \
		output:crd:artifacts:config=config/crd/bases \
		output:rbac:artifacts:config=config/rbac \
		output:webhook:artifacts:config=config/webhook
	go run ./hack/crdplaceholders config/crd/bases/sidecar.dev_sidecartemplates.yaml
	@$(MAKE) --no-print-directory chart-crds

.PHONY: verify
verify: generate manifests ## Fail when generated files or go.mod/go.sum are not up to date with the code.
	@stale=$$(git status --porcelain --untracked-files=all -- $(GENERATED_PATHS)); \
	if [[ -n "$$stale" ]]; then \
		echo "ERROR: generated files differ from the committed ones:" >&2; \
		echo "$$stale" | sed 's/^/  /' >&2; \
		echo "Run 'make generate manifests' and commit the result." >&2; \
		exit 1; \
	fi
	@go mod tidy -diff || { echo "ERROR: go.mod/go.sum are not tidy; run 'go mod tidy' and commit the result." >&2; exit 1; }
	@echo "verify: generated files and go.mod are up to date"

.PHONY: fmt
fmt: ## Format the Go code in place.
	gofmt -w $(GO_FILES)

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: staticcheck vet ## Check formatting, run go vet and staticcheck.
	@unformatted=$$(gofmt -l $(GO_FILES)); \
	if [[ -n "$$unformatted" ]]; then \
		echo "ERROR: not gofmt-formatted (run 'make fmt'):" >&2; echo "$$unformatted" | sed 's/^/  /' >&2; exit 1; \
	fi
	$(STATICCHECK) ./...

##@ Test

# hack/test.sh runs the stages and ends with one gotestsum summary of all of them.
TEST_ENV = GOTESTSUM="$(GOTESTSUM)" FUZZTIME="$(FUZZTIME)" GOTEST_FLAGS="$(GOTEST_FLAGS)" KUBEBUILDER_ASSETS="$(LOCALBIN)" HELM="$(HELM)" \
	PROMTOOL="$(PROMTOOL)" MONITORING_CRDS="$(MONITORING_CRDS)" CYCLONEDX_GOMOD="$(CYCLONEDX_GOMOD)"

.PHONY: test
test: gotestsum control-plane helm promtool monitoring-crds cyclonedx-gomod e2e-deps ## helm lint, unit tests, a bounded fuzz run of every Fuzz* target, ./test/... (integration, chart), then test/e2e on a real cluster (root only).
	@$(MAKE) --no-print-directory chart-lint
	$(TEST_ENV) hack/test.sh unit fuzz integration e2e

.PHONY: test-unit
test-unit: gotestsum ## Unit tests only (everything but ./test/...).
	$(TEST_ENV) hack/test.sh unit

.PHONY: test-fuzz
test-fuzz: gotestsum ## Fuzz every Fuzz* target for FUZZTIME each.
	$(TEST_ENV) hack/test.sh fuzz

.PHONY: test-integration
test-integration: gotestsum control-plane helm promtool monitoring-crds cyclonedx-gomod ## ./test/... but test/e2e (integration and chart suites) against a local kube-apiserver and etcd.
	$(TEST_ENV) hack/test.sh integration

.PHONY: test-e2e
test-e2e: gotestsum helm e2e-deps ## test/e2e only: the chart and real pods on a one-node cluster (hack/cluster.sh; root on Linux).
	$(TEST_ENV) hack/test.sh e2e

.PHONY: bench
bench: control-plane ## End-to-end benchmark: the injector beside two floor servers, plus the engine's Go benchmarks (BENCH_QUICK=1: a 1-minute smoke run).
	KUBEBUILDER_ASSETS="$(LOCALBIN)" hack/bench.sh

.PHONY: bench-memory
bench-memory: control-plane ## The injector's RSS and heap at 10,100 templates, first start and restart (~12 min; BENCH_ARGS: harness flags).
	KUBEBUILDER_ASSETS="$(LOCALBIN)" BENCH_MEMORY=1 hack/bench.sh $(BENCH_ARGS)

.PHONY: bench-go
bench-go: ## Go benchmarks of internal/ only.
	go test -run='^$$' -bench=. -benchmem ./internal/...

SOAK_DURATION ?= 5m

.PHONY: soak
soak: control-plane ## Soak at half the measured peak rate for SOAK_DURATION (default 5m), then shutdown, rotation and API-server faults under load.
	KUBEBUILDER_ASSETS="$(LOCALBIN)" SOAK_DURATION="$(SOAK_DURATION)" hack/soak.sh

##@ Build

# The version and commit stamped into the binary (internal/version) and the release artifacts.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)

.PHONY: build
build: ## Build bin/sidecar-injector.
	go build -ldflags "-X github.com/sidecar-dev/sidecar-injector/internal/version.Version=$(VERSION) -X github.com/sidecar-dev/sidecar-injector/internal/version.Commit=$(COMMIT)" \
		-o $(LOCALBIN)/sidecar-injector ./cmd/sidecar-injector

IMG ?= sidecar-injector:dev

.PHONY: docker-build
docker-build: ## Build the container image $(IMG) (needs a Docker engine).
	docker build -t $(IMG) .

RELEASE_DIR ?= $(LOCALBIN)/release

# hack/release.sh builds every artifact, the image included, from a clone of the current commit.
.PHONY: release
release: helm cyclonedx-gomod ## Build the release artifacts into bin/release: image, packaged chart, SBOM, SHA256SUMS (reproducible).
	IMAGE_PLATFORMS="$(IMAGE_PLATFORMS)" RELEASE_DIR="$(RELEASE_DIR)" HELM="$(HELM)" CYCLONEDX_GOMOD="$(CYCLONEDX_GOMOD)" VERSION="$(VERSION)" hack/release.sh

# As root on Linux the demo runs on the real one-node cluster (hack/demo-cluster.sh); elsewhere it says why and
# runs the API-server-only demo (hack/demo.sh). DEMO_API_ONLY=1 chooses the latter anywhere.
.PHONY: demo
demo: ## Show the injector at work: on a real one-node cluster as root on Linux, else on a local API server.
	@if [[ $$(uname -s) == Linux && $$(id -u) -eq 0 && -z "$${DEMO_API_ONLY:-}" ]]; then \
		$(MAKE) --no-print-directory e2e-deps helm && BIN_DIR="$(LOCALBIN)" HELM="$(HELM)" hack/demo-cluster.sh; \
	else \
		echo "demo: the real cluster needs root on Linux (this is $$(uname -s), uid $$(id -u)$${DEMO_API_ONLY:+, DEMO_API_ONLY set}): showing the injection on a local API server instead"; \
		$(MAKE) --no-print-directory build control-plane && BIN_DIR="$(LOCALBIN)" KUBEBUILDER_ASSETS="$(LOCALBIN)" hack/demo.sh; \
	fi

# The image of `make image`: override IMAGE_REPO/IMAGE_TAG to push it elsewhere, IMAGE_PLATFORMS for other ones.
IMAGE_REPO      ?= localhost/sidecar-injector
IMAGE_TAG       ?= $(VERSION)
IMAGE_PLATFORMS ?= linux/amd64 linux/arm64

.PHONY: image
image: ## Build the injector's image without Docker (go-containerregistry): bin/images/sidecar-injector.tar, OCI layout, amd64+arm64.
	VERSION="$(VERSION)" IMAGE_REPO="$(IMAGE_REPO)" IMAGE_TAG="$(IMAGE_TAG)" IMAGE_PLATFORMS="$(IMAGE_PLATFORMS)" \
		IMAGE_DIR="$(LOCALBIN)/images" hack/image.sh injector

.PHONY: e2e-images
e2e-images: ## Build the e2e tests' images (app, logshipper, proxy, pause) into bin/images/e2e-*.tar.
	IMAGE_DIR="$(LOCALBIN)/images" hack/image.sh test-images

.PHONY: clean
clean: ## Remove build outputs and test results (keeps the tools in bin/).
	rm -rf $(LOCALBIN)/sidecar-injector $(LOCALBIN)/test-results $(LOCALBIN)/images cover.out

##@ Real cluster (root on Linux)

.PHONY: cluster-up
cluster-up: cluster-binaries e2e-images ## Start the one-node cluster (hack/cluster.sh up); kubeconfig bin/kubeconfig.
	BIN_DIR="$(LOCALBIN)" hack/cluster.sh up

.PHONY: cluster-down
cluster-down: ## Stop the one-node cluster and remove what it created (hack/cluster.sh down).
	BIN_DIR="$(LOCALBIN)" hack/cluster.sh down

# What test/e2e needs: built only where it can run, so that `make test` as a normal user costs nothing extra.
# The injector's image for the tests is built for this machine's platform only, tagged e2e.
.PHONY: e2e-deps
e2e-deps:
	@if [[ $$(uname -s) == Linux && $$(id -u) -eq 0 ]]; then \
		$(MAKE) --no-print-directory cluster-binaries e2e-images && \
		VERSION="$(VERSION)" IMAGE_REPO=localhost/sidecar-injector IMAGE_TAG=e2e IMAGE_PLATFORMS="linux/$$(go env GOARCH)" \
			IMAGE_DIR="$(LOCALBIN)/images" IMAGE_OUT="$(LOCALBIN)/images/e2e-sidecar-injector.tar" hack/image.sh injector >/dev/null; \
	else echo "e2e-deps: not root on Linux, so test/e2e will be skipped and its binaries are not built"; fi

.PHONY: clean-tools
clean-tools: ## Remove everything in bin/, tools included (kube-apiserver takes minutes to rebuild).
	rm -rf $(LOCALBIN)

##@ Tools (installed into bin/ only when missing or at another version)

.PHONY: control-plane
control-plane: ## Build kube-apiserver and etcd from Go modules into bin/, for envtest and the demo.
	BIN_DIR="$(LOCALBIN)" KUBERNETES_VERSION="$(KUBERNETES_VERSION)" ETCD_VERSION="$(ETCD_VERSION)" hack/build-control-plane.sh

.PHONY: cluster-binaries
cluster-binaries: ## Also build kubelet, kube-controller-manager, kube-scheduler, kube-proxy and containerd, for hack/cluster.sh.
	BIN_DIR="$(LOCALBIN)" KUBERNETES_VERSION="$(KUBERNETES_VERSION)" ETCD_VERSION="$(ETCD_VERSION)" \
		CONTAINERD_VERSION="$(CONTAINERD_VERSION)" hack/build-control-plane.sh node

.PHONY: tools
tools: controller-gen gotestsum staticcheck promtool cyclonedx-gomod ## Install the Go tools.

# Built with -tags remove_all_sd: without the cloud service-discovery plugins (AWS, Azure, GCE, ...), which
# `promtool test rules` never uses and which are most of the build (see README, "Development").
.PHONY: promtool
promtool:
	@export GOFLAGS="$${GOFLAGS:-} -tags=remove_all_sd"; $(call go-install-tool,$(PROMTOOL),github.com/prometheus/prometheus/cmd/promtool,$(PROMTOOL_VERSION))

.PHONY: cyclonedx-gomod
cyclonedx-gomod:
	@$(call go-install-tool,$(CYCLONEDX_GOMOD),github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod,$(CYCLONEDX_GOMOD_VERSION))

.PHONY: monitoring-crds
monitoring-crds: controller-gen ## Generate the Prometheus Operator's CRDs into bin/monitoring-crds (chart tests only).
	@OUT_DIR="$(MONITORING_CRDS)" PROMETHEUS_OPERATOR_VERSION="$(PROMETHEUS_OPERATOR_VERSION)" CONTROLLER_GEN="$(CONTROLLER_GEN)" \
		hack/monitoring-crds.sh

.PHONY: controller-gen
controller-gen:
	@$(call go-install-tool,$(CONTROLLER_GEN),sigs.k8s.io/controller-tools/cmd/controller-gen,$(CONTROLLER_TOOLS_VERSION))

.PHONY: gotestsum
gotestsum:
	@$(call go-install-tool,$(GOTESTSUM),gotest.tools/gotestsum,$(GOTESTSUM_VERSION))

.PHONY: staticcheck
staticcheck:
	@$(call go-install-tool,$(STATICCHECK),honnef.co/go/tools/cmd/staticcheck,$(STATICCHECK_VERSION))

# go-install-tool BINARY,PACKAGE,VERSION: `go install PACKAGE@VERSION` into bin/ unless BINARY exists with a
# stamp file (bin/.NAME.version) saying VERSION, as hack/build-control-plane.sh does. The stamp is written
# only after a successful install, so an interrupted install is retried. `go install pkg@version` ignores this
# module's go.mod, so tools never add to it.
define go-install-tool
stamp="$(dir $(1)).$(notdir $(1)).version"; \
if [[ -x "$(1)" && -f "$$stamp" && "$$(cat "$$stamp")" == "$(3)" ]]; then exit 0; fi; \
echo "installing $(2)@$(3) into $(dir $(1))"; \
mkdir -p "$(dir $(1))"; \
GOBIN="$(dir $(1))" go install "$(2)@$(3)"; \
echo "$(3)" > "$$stamp"
endef
