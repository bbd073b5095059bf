# Shared by deploy/build-all.sh and otel-collector/build.sh (source it, do not run it):
# the one statement of the Go version the builds need, the tool checks, logging, the
# build cache and its hash keys.
#
#   LOG_TAG=name; . deploy/lib/tools.sh; require_build_tools
#
# Sets: modelobs_cache (${MODELOBS_CACHE:-$HOME/.cache/modelobs}), go_version (`go version`
# after require_build_tools).

# The build modules' go.mod files say `go 1.26.8`; an older 1.26 fetches that toolchain.
GO_MIN_VERSION="1.26"

modelobs_cache="${MODELOBS_CACHE:-$HOME/.cache/modelobs}"

log() { printf '[%s] %s\n' "${LOG_TAG:-build}" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "${LOG_TAG:-build}" "$*" >&2; exit 1; }

# go (>= GO_MIN_VERSION) and sha256sum on PATH; sets go_version.
require_build_tools() {
  command -v go >/dev/null 2>&1 || die "go is not on PATH (Go >= ${GO_MIN_VERSION} needed)"
  command -v sha256sum >/dev/null 2>&1 || die "sha256sum is not on PATH (coreutils)"
  local have; have="$(go env GOVERSION)"; have="${have#go}"
  if [[ "$(printf '%s\n%s\n' "$GO_MIN_VERSION" "$have" | sort -V | head -n1)" != "$GO_MIN_VERSION" ]]; then
    die "Go ${have} is too old: Go >= ${GO_MIN_VERSION} needed"
  fi
  go_version="$(go version)"
}

# stdin -> the first 16 hex characters of its sha256: a cache directory's key.
cache_key() { sha256sum | cut -c1-16; }

# write_build_info DIR COMPONENT KEY SECONDS [KEY=VALUE ...]
write_build_info() {
  local dir="$1" component="$2" key="$3" seconds="$4"; shift 4
  {
    echo "component=$component"; echo "key=$key"
    printf '%s\n' "$@"
    echo "go=$go_version"; echo "built_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "build_seconds=$seconds"
  } > "$dir/build-info.txt"
}
