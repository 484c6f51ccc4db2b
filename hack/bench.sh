#!/usr/bin/env bash
# The end-to-end benchmark behind `make bench`: the real `sidecar-injector serve` side by side with two floor
# servers (test/bench/floor), driven by test/bench/load, orchestrated by test/bench/harness (which starts its
# own kube-apiserver and etcd through envtest: no cluster needed). Prints one table, the engine's Go
# benchmarks and a PASS/FAIL line per goal; logs, profiles and results.json go to $BENCH_OUT.
#
# Environment:
#   BENCH_QUICK=1              ~1-minute smoke run: 1 s cells, scale scenario reduced to 1,100 templates, no profiles
#   BENCH_DURATION=5s          measured window per cell          BENCH_WARMUP=1s   warm-up per cell
#   BENCH_CONCURRENCY=1,8,64   concurrency levels                BENCH_SIZES=small,realistic,large
#   BENCH_SCALE_NAMESPACES     namespaces of 10 templates each (default 1000, quick 100; -1 skips the scenario)
#   BENCH_PROFILE=0            skip the CPU/alloc profiles (of the realistic pod, or BENCH_PROFILE_SIZE; full mode only)
#   BENCH_PROFILE_CONCURRENCY  concurrency of the profiled runs (default 8)   BENCH_PROFILE_SIZE (default realistic)
#   BENCH_GO=0                 skip the engine's Go benchmarks   BENCH_GO_BENCHTIME (default 1s, quick 100ms)
#   BENCH_PIN=0                do not pin with taskset (results then mix server and load tool CPU)
#   BENCH_STRICT=1             exit 1 when a goal fails
#   BENCH_MEMORY=1             only the injector's memory over the scale scenario (`make bench-memory`: a few
#                              minutes, no throughput cells); more harness flags after the script's arguments, e.g.
#                              -memory-variant before=/tmp/old/sidecar-injector -memory-variant limit=bin/bench/bin/sidecar-injector,GOMEMLIMIT=80MiB
#   BENCH_OUT=bin/bench        where logs, profiles and results.json go
#   KUBEBUILDER_ASSETS         kube-apiserver and etcd (default bin/, built by `make control-plane`)
#
# Every load goes to 127.0.0.1 only and every run is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${BENCH_OUT:-bin/bench}
export KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS:-$PWD/bin}

if [[ ! -x "$KUBEBUILDER_ASSETS/kube-apiserver" || ! -x "$KUBEBUILDER_ASSETS/etcd" ]]; then
  echo "bench.sh: $KUBEBUILDER_ASSETS lacks kube-apiserver or etcd; run 'make control-plane'" >&2
  exit 2
fi
if [[ "${BENCH_PIN:-1}" != 0 ]] && ! command -v taskset >/dev/null; then
  echo "bench.sh: taskset not found; installing util-linux" >&2
  if [[ $(id -u) -eq 0 ]]; then apt-get install -y util-linux >&2; else sudo apt-get install -y util-linux >&2; fi
fi

mkdir -p "$OUT/bin"
echo "bench.sh: building sidecar-injector, floor, load, pprofserve and harness into $OUT/bin" >&2
# The injector is built as the image builds it (Dockerfile, hack/image.sh): static, without cgo, symbol table or
# DWARF. Its RSS counts the binary's pages it touched: 2.7 MiB less than a default `go build` at idle.
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$OUT/bin/sidecar-injector" ./cmd/sidecar-injector
go build -o "$OUT/bin/" ./test/bench/floor ./test/bench/load ./test/bench/pprofserve ./test/bench/harness

args=(-root="$PWD" -bin-dir="$OUT/bin" -out="$OUT")
[[ "${BENCH_QUICK:-0}" == 1 ]] && args+=(-quick)
[[ -n "${BENCH_DURATION:-}" ]] && args+=(-duration="$BENCH_DURATION")
[[ -n "${BENCH_WARMUP:-}" ]] && args+=(-warmup="$BENCH_WARMUP")
[[ -n "${BENCH_CONCURRENCY:-}" ]] && args+=(-concurrency="$BENCH_CONCURRENCY")
[[ -n "${BENCH_SIZES:-}" ]] && args+=(-sizes="$BENCH_SIZES")
[[ -n "${BENCH_SCALE_NAMESPACES:-}" ]] && args+=(-scale-namespaces="$BENCH_SCALE_NAMESPACES")
[[ "${BENCH_PROFILE:-1}" == 0 ]] && args+=(-profile=false)
[[ -n "${BENCH_PROFILE_CONCURRENCY:-}" ]] && args+=(-profile-concurrency="$BENCH_PROFILE_CONCURRENCY")
[[ -n "${BENCH_PROFILE_SIZE:-}" ]] && args+=(-profile-size="$BENCH_PROFILE_SIZE")
[[ "${BENCH_GO:-1}" == 0 ]] && args+=(-go-bench=false)
[[ -n "${BENCH_GO_BENCHTIME:-}" ]] && args+=(-go-benchtime="$BENCH_GO_BENCHTIME")
[[ "${BENCH_PIN:-1}" == 0 ]] && args+=(-pin=false)
[[ "${BENCH_STRICT:-0}" == 1 ]] && args+=(-strict)
[[ "${BENCH_MEMORY:-0}" == 1 ]] && args+=(-memory)

exec "$OUT/bin/harness" "${args[@]}" "$@"
