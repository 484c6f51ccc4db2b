#!/usr/bin/env bash
# Long-running load and fault tests of the webhook (`make soak`): hack/soak.sh [DURATION]
#
# Runs the load and fault stories of test/hardening against a local kube-apiserver and etcd (envtest,
# KUBEBUILDER_ASSETS, default bin/) and the real binary: first the peak admission rate is measured (20 s, 8
# keep-alive connections), then admissions are sent at half of it for DURATION (default 5m, or $SOAK_DURATION):
# no admission may fail and the resident memory of the process must stay within ±10% of its median after a
# warm-up (the first 30%). Then shutdown (SIGTERM and context cancel) under load, certificate rotation under
# load and the API server going away are run once more. All traffic goes to 127.0.0.1 and stops by itself.
#
# `make test` runs the same stories in short mode (a 10 s soak) as part of ./test/....
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-${SOAK_DURATION:-5m}}
export KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS:-$PWD/bin}
if [[ ! -x "$KUBEBUILDER_ASSETS/kube-apiserver" || ! -x "$KUBEBUILDER_ASSETS/etcd" ]]; then
  echo "soak.sh: $KUBEBUILDER_ASSETS lacks kube-apiserver or etcd; run 'make control-plane'" >&2
  exit 2
fi
# The go test timeout: the soak plus the peak measurement, the other stories and the control plane.
# Durations as Go writes them: 90s, 5m, 1h, 1m30s.
secs=0
rest=$duration
while [[ $rest =~ ^([0-9]+)(h|m|s)(.*)$ ]]; do
  n=${BASH_REMATCH[1]}
  case ${BASH_REMATCH[2]} in h) secs=$((secs + n * 3600)) ;; m) secs=$((secs + n * 60)) ;; s) secs=$((secs + n)) ;; esac
  rest=${BASH_REMATCH[3]}
done
if [[ -n $rest || $secs -le 0 ]]; then
  echo "soak.sh: \"$duration\" is not a duration (e.g. 5m, 90s, 1m30s)" >&2
  exit 2
fi
timeout="$((secs + 600))s"
echo "soak: ${duration} at half the measured peak rate, then shutdown, rotation and API server faults under load (go test -timeout ${timeout})"
HARDENING_SOAK="$duration" go test -count=1 -v -timeout "$timeout" \
  -run '^(TestSoakAtHalfThePeakRate|TestSIGTERMUnderLoadDrainsInFlightRequests|TestContextCancelUnderLoadDrainsInFlightRequests|TestCertificateRotationUnderLoad|TestTheAPIServerGoingAwayDoesNotStopTheWebhook)$' \
  ./test/hardening/ 2>&1 | grep -Ev '^=== (RUN|PAUSE|CONT)' 
