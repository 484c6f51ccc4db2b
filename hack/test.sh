#!/usr/bin/env bash
# Runs the test stages of `make test`: hack/test.sh [unit] [fuzz] [integration] [e2e]
#
#   unit         go test of every package except ./test/...
#   fuzz         each Fuzz* target of the repository, one at a time (go test fuzzes one target per run), for
#                FUZZTIME
#   integration  ./test/... but ./test/e2e (the integration suite, the chart's tests, ...) against the
#                kube-apiserver and etcd in KUBEBUILDER_ASSETS, with helm from $HELM
#   e2e          ./test/e2e: the chart and real pods on the one-node cluster of hack/cluster.sh; needs root on
#                Linux (skipped otherwise, failed when CI is set); E2E_TIMEOUT bounds it (default 15m)
#
# Every go test run goes through gotestsum, which also keeps its events in bin/test-results/*.json. All stages
# run even when one fails, so a CI log shows every failure at once; the script then replays all the events
# through gotestsum once more, so that the last lines printed are one summary of every stage, and exits
# non-zero when any stage failed.
set -euo pipefail
cd "$(dirname "$0")/.."

GOTESTSUM=${GOTESTSUM:-bin/gotestsum}
FUZZTIME=${FUZZTIME:-20s}
GOTEST_FLAGS=${GOTEST_FLAGS:-}
FORMAT=${GOTESTSUM_FORMAT:-pkgname-and-test-fails}
RESULTS=${TEST_RESULTS_DIR:-bin/test-results}

[[ -x "$GOTESTSUM" ]] || { echo "test.sh: $GOTESTSUM not found; run through 'make test', which installs it" >&2; exit 2; }
[[ $# -gt 0 ]] || set -- unit fuzz integration e2e

rm -rf "$RESULTS"
mkdir -p "$RESULTS"
module=$(go list -m)
read -r -a extra_flags <<<"$GOTEST_FLAGS"
failures=()
runs=0

stage() { printf '\n=== %s\n' "$*"; }

# gotest NAME GO_TEST_ARGS...: one `go test` through gotestsum, events saved as RESULTS/NNN-NAME.json (numbered
# so the final replay keeps the order of the runs). Failed test output is printed as it happens; the per-run
# summary keeps only its DONE line and build errors, the combined summary at the end lists the failures.
gotest() {
  local name=$1; shift
  runs=$((runs + 1))
  local json; json=$(printf '%s/%03d-%s.json' "$RESULTS" "$runs" "$name")
  if ! "$GOTESTSUM" --format "$FORMAT" --hide-summary=skipped,failed,output --jsonfile "$json" -- \
      "${extra_flags[@]}" "$@"; then
    failures+=("$name")
  fi
}

run_unit() {
  stage "unit tests"
  # -e lists packages that do not compile too, so that they fail here instead of silently dropping out.
  local pkgs
  mapfile -t pkgs < <(go list -e ./... | grep -Ev "^${module}/test(/|$)" || true)
  if [[ ${#pkgs[@]} -eq 0 ]]; then echo "no packages outside ./test"; return; fi
  gotest unit "${pkgs[@]}"
}

run_fuzz() {
  stage "fuzz, ${FUZZTIME} per target"
  # A fuzz target is a top-level `func FuzzXxx(f *testing.F)` in a _test.go file; testdata and bin/ are not code.
  local found
  found=$(grep -rEo --include='*_test.go' --exclude-dir=.git --exclude-dir=bin --exclude-dir=testdata \
    --exclude-dir=vendor '^func Fuzz[A-Za-z0-9_]*\([[:space:]]*[A-Za-z0-9_]+[[:space:]]+\*testing\.F[[:space:]]*\)' . |
    sed -E 's|^\./||; s|^(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*|\1 \2|; s|^[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*|. \1|' |
    sort -u || true)
  if [[ -z "$found" ]]; then echo "no Fuzz* targets found"; return; fi
  local dir name pkg corpus before
  while read -r dir name; do
    pkg="./$dir"; [[ "$dir" != . ]] || pkg=.
    echo "--- $name in $pkg"
    # go test writes an input that fails into the package's seed corpus; point at it so it gets committed.
    corpus="$dir/testdata/fuzz/$name"
    before=$(ls "$corpus" 2>/dev/null || true)
    # No minimizing (-fuzzminimizetime=0): go test minimizes every new interesting input for up to 60 s, and a
    # minimization still running when -fuzztime ends fails the run with "context deadline exceeded" (a new
    # branch in the engine made FuzzInject fail that way in CI). A failing input is still written, unminimized.
    gotest "fuzz-${name}" -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" -fuzzminimizetime=0 "$pkg"
    if [[ "$(ls "$corpus" 2>/dev/null || true)" != "$before" ]]; then
      echo "    new failing input in $corpus/: commit it, it then runs as a regression case in the unit tests"
    fi
  done <<<"$found"
}

run_integration() {
  stage "integration tests"
  local assets=${KUBEBUILDER_ASSETS:-}
  if [[ ! -x "$assets/kube-apiserver" || ! -x "$assets/etcd" ]]; then
    echo "KUBEBUILDER_ASSETS=${assets:-<unset>} lacks kube-apiserver or etcd; run 'make control-plane'" >&2
    failures+=(integration)
    return
  fi
  local pkgs
  mapfile -t pkgs < <(go list ./test/... | grep -Ev "^${module}/test/e2e(/|$)")
  # -count=1: the results depend on binaries that go test's cache does not track.
  gotest integration -count=1 "${pkgs[@]}"
}

run_e2e() {
  stage "e2e tests on a one-node cluster"
  # Verbose, so that the log shows the cluster's time to Ready and the stories' figures (availability counts).
  local FORMAT=standard-verbose
  # The package stops the cluster itself at its own deadline (14m), before this timeout would kill it unclean.
  gotest e2e -count=1 -timeout "${E2E_TIMEOUT:-15m}" ./test/e2e/
}

for s in "$@"; do
  case "$s" in
    unit) run_unit ;;
    fuzz) run_fuzz ;;
    integration) run_integration ;;
    e2e) run_e2e ;;
    *) echo "test.sh: unknown stage '$s' (want unit, fuzz, integration, e2e)" >&2; exit 2 ;;
  esac
done

if [[ ${#failures[@]} -gt 0 ]]; then
  stage "FAILED: ${failures[*]}"
else
  stage "all stages passed: $*"
fi
shopt -s nullglob
results=("$RESULTS"/*.json)
if [[ ${#results[@]} -gt 0 ]]; then
  # The replay exits 0 whatever it shows; the exit status below comes from the runs themselves.
  # Skipped tests are counted in its DONE line but not listed: the list would push the failures off screen.
  "$GOTESTSUM" --format none --hide-summary=skipped --raw-command -- cat "${results[@]}" || true
fi
[[ ${#failures[@]} -eq 0 ]]
