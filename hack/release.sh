#!/usr/bin/env bash
# Builds the release artifacts into $RELEASE_DIR (bin/release), reproducibly: the same commit gives
# byte-identical files on any machine (no timestamps, random serial numbers or host paths in them).
#
#   sidecar-injector-<chart version>.tgz   the Helm chart, `helm package`d, then re-archived with every file's
#                                          time set to the commit's time ($SOURCE_DATE_EPOCH) and a gzip header
#                                          without a name or time (helm package stamps the current time)
#   sidecar-injector.cdx.json              a CycloneDX SBOM of the modules linked into the sidecar-injector
#                                          binary, with their licenses (cyclonedx-gomod app), without serial
#                                          number or timestamp
#   sidecar-injector.tar                   the injector's image (hack/image.sh: OCI layout, $IMAGE_PLATFORMS,
#                                          default linux/amd64 and linux/arm64), named exactly as the packaged
#                                          chart installs it by default (image.repository:appVersion)
#   SHA256SUMS                             sha256sum of every other file in the directory
set -euo pipefail
cd "$(dirname "$0")/.."

RELEASE_DIR=${RELEASE_DIR:?set RELEASE_DIR, e.g. bin/release}
HELM=${HELM:?set HELM}
CYCLONEDX_GOMOD=${CYCLONEDX_GOMOD:?set CYCLONEDX_GOMOD}
CHART_DIR=${CHART_DIR:-charts/sidecar-injector}
# The artifacts come from the commit (below), so a "-dirty" suffix of `git describe` does not apply to them.
VERSION=${VERSION:?set VERSION}
VERSION=${VERSION%-dirty}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
export SOURCE_DATE_EPOCH

log() { printf '[release] %s\n' "$*" >&2; }
mkdir -p "$RELEASE_DIR"
RELEASE_DIR=$(cd "$RELEASE_DIR" && pwd)
rm -f "$RELEASE_DIR"/sidecar-injector-*.tgz "$RELEASE_DIR"/*.cdx.json "$RELEASE_DIR"/sidecar-injector.tar "$RELEASE_DIR"/SHA256SUMS

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Everything is built from a clone of the commit, never from the working tree: uncommitted changes cannot leak
# into a release, and cyclonedx-gomod reads the version from a plain repository (it cannot open git worktrees).
if [[ -n "$(git status --porcelain --untracked-files=no)" ]]; then
  log "WARNING: the working tree has uncommitted changes; they are not in the release (built from $(git rev-parse --short HEAD))"
fi
git clone --quiet --no-hardlinks "$(git rev-parse --show-toplevel)" "$work/src"
git -C "$work/src" checkout --quiet --detach "$(git rev-parse HEAD)"

# The chart. Its version is Chart.yaml's; the app version is the release version (v stripped, as in the image
# tag), so the chart installs the image of this release by default.
"$HELM" package "$work/src/$CHART_DIR" --app-version "${VERSION#v}" --destination "$work/pkg" >/dev/null
pkg=$(ls "$work"/pkg/*.tgz)
mkdir "$work/unpacked"
tar -xzf "$pkg" -C "$work/unpacked"
(
  cd "$work/unpacked"
  find . -type f -printf '%P\n' | LC_ALL=C sort |
    tar --create --no-recursion --files-from=- --format=ustar --mtime="@$SOURCE_DATE_EPOCH" \
      --owner=0 --group=0 --numeric-owner --mode='a=r,u+w' |
    gzip -9 --no-name > "$RELEASE_DIR/$(basename "$pkg")"
)
log "chart: $RELEASE_DIR/$(basename "$pkg")"

# The image, from the clone too, under the reference the packaged chart renders by default, so that pushing the
# tarball under its own name is all a registry needs for `helm install` of this chart.
ref=$("$HELM" template release "$RELEASE_DIR/$(basename "$pkg")" --show-only templates/deployment.yaml |
  sed -n 's/^ *image: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' | head -n 1)
[[ "$ref" == *:* && "$ref" != *@* ]] || { log "cannot read the chart's default image reference (got '$ref')"; exit 1; }
(cd "$work/src" && VERSION="$VERSION" IMAGE_REPO="${ref%:*}" IMAGE_TAG="${ref##*:}" \
  IMAGE_OUT="$RELEASE_DIR/sidecar-injector.tar" hack/image.sh injector >/dev/null)
log "image: $RELEASE_DIR/sidecar-injector.tar ($ref)"

# The SBOM of what the binary links (not of every module in go.sum).
# -noserial, -notimestamp: no random serial number or generation time, so the file is reproducible.
(cd "$work/src" && "$CYCLONEDX_GOMOD" app -json -noserial -notimestamp -licenses -main cmd/sidecar-injector \
  -output "$RELEASE_DIR/sidecar-injector.cdx.json" .) 2>"$work/sbom.log" || { cat "$work/sbom.log" >&2; exit 1; }
log "sbom: $RELEASE_DIR/sidecar-injector.cdx.json"

(cd "$RELEASE_DIR" && find . -maxdepth 1 -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs sha256sum > SHA256SUMS)
log "checksums: $RELEASE_DIR/SHA256SUMS"
cat "$RELEASE_DIR/SHA256SUMS"
