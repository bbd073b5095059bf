#!/usr/bin/env bash
# Build the modelobs OpenTelemetry Collector distribution from manifest.yaml.
#
#   otel-collector/build.sh            # build if missing, print the binary path
#   MODELOBS_FORCE_BUILD=1 otel-collector/build.sh   # rebuild even if cached
#   otel-collector/build.sh --print-path   # print where the binary is/would be; no build
#
# The binary lands in
#   ${MODELOBS_CACHE:-$HOME/.cache/modelobs}/bin/otelcol-<key>/modelobs-otelcol
# where <key> = first 16 hex chars of sha256(manifest.yaml + every file under components/
# (path and content) + `go version`). A cached binary is reused as long as the key is
# unchanged: editing our own components' sources (e.g. the trace journal) changes the key.
# Progress goes to stderr; the LAST line on stdout is the binary path.
set -euo pipefail

OCB_VERSION="v0.161.0"   # must equal the release of every module in manifest.yaml
BIN_NAME="modelobs-otelcol"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
manifest="${here}/manifest.yaml"
LOG_TAG=otelcol-build
# shellcheck source=../deploy/lib/tools.sh
. "$here/../deploy/lib/tools.sh"
cache="$modelobs_cache"

require_build_tools
[[ -f "$manifest" ]] || die "manifest not found: $manifest"

components="${here}/components"
[[ -d "$components" ]] || die "components directory not found: $components"

# Every file of our own components, by path and content, in a stable order.
components_digest() {
  ( cd "$components" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum )
}

key="$( { cat "$manifest"; components_digest; printf '%s\n' "$go_version"; } | cache_key)"
out_dir="${cache}/bin/otelcol-${key}"
out="${out_dir}/${BIN_NAME}"

if [[ "${1:-}" == "--print-path" ]]; then
  printf '%s\n' "$out"
  exit 0
elif [[ -n "${1:-}" ]]; then
  die "unknown argument: $1 (usage: build.sh [--print-path])"
fi

if [[ -x "$out" && "${MODELOBS_FORCE_BUILD:-0}" != "1" ]]; then
  log "up to date (key ${key})"
  printf '%s\n' "$out"
  exit 0
fi

# 1. ocb, pinned to the same release as the components, cached per version.
ocb_dir="${cache}/tools/ocb-${OCB_VERSION}"
ocb="${ocb_dir}/builder"
if [[ ! -x "$ocb" ]]; then
  log "installing ocb ${OCB_VERSION} into ${ocb_dir}"
  mkdir -p "$ocb_dir"
  GOBIN="$ocb_dir" go install "go.opentelemetry.io/collector/cmd/builder@${OCB_VERSION}" \
    || die "go install of ocb ${OCB_VERSION} failed"
fi

# 2. Generate the distribution's Go sources in a scratch dir inside the cache
#    (never inside the clone), resolving modules once.
work="${cache}/build/otelcol-${key}"
rm -rf "$work"
mkdir -p "$work"
cp "$manifest" "$work/manifest.yaml"
# The manifest's `path:` entries are relative to the directory ocb runs in.
cp -R "$components" "$work/components"
start=$(date +%s)
log "generating sources with ocb in ${work} (downloads modules on first run)"
( cd "$work" && "$ocb" --config manifest.yaml --skip-compilation >&2 ) \
  || die "ocb failed to generate the distribution (see output above)"
[[ -f "$work/_build/main.go" ]] || die "ocb produced no main.go in $work/_build"

# 3. Compile ourselves: static, trimmed, stripped.
log "compiling (cold builds take several minutes on 2 cores)"
mkdir -p "$out_dir"
( cd "$work/_build" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "${out}.tmp" . >&2 ) \
  || die "go build failed (see output above)"
mv -f "${out}.tmp" "$out"
end=$(date +%s)

write_build_info "$out_dir" otelcol "$key" "$((end - start))" "ocb=${OCB_VERSION}"
cp "$manifest" "${out_dir}/manifest.yaml"
rm -rf "$work"

log "built ${out} in $((end - start))s"
printf '%s\n' "$out"
