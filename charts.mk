# Helm chart targets, included by the Makefile (`include charts.mk`); also usable alone:
#   make -f charts.mk chart-lint chart-test
#
#   helm        install the pinned helm into bin/ when missing or at another version
#   chart-crds  copy config/crd/bases/*.yaml into charts/sidecar-injector/files/crds/ (run after `make manifests`);
#               templates/crds.yaml renders them, so that `helm upgrade` upgrades them
#   chart-lint  helm lint the chart, with the default values and with each TLS mode
#   chart-test  the Go tests of the chart (test/chart): render, schema, determinism, RBAC, and a real
#               kube-apiserver (envtest) accepting every rendered object

HELM_VERSION ?= v3.22.0
LOCALBIN     ?= $(abspath bin)
HELM         ?= $(LOCALBIN)/helm
CHART_DIR    ?= charts/sidecar-injector
# Extra flags for the chart tests, e.g. CHART_TEST_FLAGS=-v
CHART_TEST_FLAGS ?=

# The lint runs of chart-lint: one per TLS mode (the default is selfManaged).
CHART_LINT_VALUES = \
	"" \
	"--set tls.mode=certManager" \
	"--set tls.mode=secret --set tls.secret.name=my-tls --set tls.secret.caBundle=Q0E=" \
	"--set replicaCount=1 --set matchConditions.enabled=false" \
	"--set monitoring.serviceMonitor.enabled=true --set monitoring.prometheusRule.enabled=true --set monitoring.grafanaDashboard.enabled=true --set hostNetwork=true --set webhook.port=10260"

ifeq ($(origin SHELL),default)
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
endif

##@ Helm chart

.PHONY: helm
helm: ## Install helm $(HELM_VERSION) into bin/ when missing.
	@stamp="$(dir $(HELM)).$(notdir $(HELM)).version"; \
	if [ -x "$(HELM)" ] && [ -f "$$stamp" ] && [ "$$(cat "$$stamp")" = "$(HELM_VERSION)" ]; then exit 0; fi; \
	echo "installing helm.sh/helm/v3/cmd/helm@$(HELM_VERSION) into $(dir $(HELM))"; \
	mkdir -p "$(dir $(HELM))"; \
	GOBIN="$(dir $(HELM))" go install "helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)"; \
	echo "$(HELM_VERSION)" > "$$stamp"

.PHONY: chart-crds
chart-crds: ## Copy the generated CRDs (config/crd/bases) into the chart's files/crds/ (rendered by templates/crds.yaml).
	@mkdir -p $(CHART_DIR)/files/crds
	@rm -f $(CHART_DIR)/files/crds/*.yaml
	cp config/crd/bases/*.yaml $(CHART_DIR)/files/crds/

.PHONY: chart-lint
chart-lint: helm ## helm lint the chart with the default values and with each TLS mode.
	@for v in $(CHART_LINT_VALUES); do \
		echo "helm lint --strict $(CHART_DIR) $$v"; \
		$(HELM) lint --strict $(CHART_DIR) --namespace sidecar-injector $$v >/dev/null || \
			{ $(HELM) lint --strict $(CHART_DIR) --namespace sidecar-injector $$v; exit 1; }; \
	done

.PHONY: chart-test
chart-test: helm ## Go tests of the chart (needs kube-apiserver and etcd in bin/: `make control-plane`).
	HELM="$(HELM)" KUBEBUILDER_ASSETS="$(LOCALBIN)" go test -count=1 $(CHART_TEST_FLAGS) ./test/chart/...
