#!/usr/bin/env bash
# Build (if missing) every native binary of the modelobs stack from Go modules.
#
#   deploy/build-all.sh                 # build what is missing, write paths.env
#   deploy/build-all.sh otelcol jaeger  # only these (otelcol jaeger prometheus alertmanager
#                                       #   victorialogs)
#   deploy/build-all.sh --print         # print the KEY=path lines, build nothing
#                                       # (exit 1 if a binary is missing)
#   MODELOBS_FORCE_BUILD=1 deploy/build-all.sh   # rebuild even if cached
#
# Cache: ${MODELOBS_CACHE:-$HOME/.cache/modelobs}/bin/<name>-<key>/ where <key> is
# the first 16 hex chars of sha256(go.mod + go.sum + build flags + `go version`)
# (for the collector: sha256(manifest.yaml + `go version`), see
# otel-collector/build.sh). Changing a pin or the Go toolchain changes the key.
# At the end ${MODELOBS_CACHE}/bin/paths.env holds
#   OTELCOL_BIN=  JAEGER_BIN=  PROMETHEUS_BIN=  PROMTOOL_BIN=  ALERTMANAGER_BIN=
#   VICTORIALOGS_BIN=
# Builds run one after another (2 cores; each Go build already uses all cores).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
LOG_TAG=build-all
# shellcheck source=lib/tools.sh
. "$here/lib/tools.sh"
cache="$modelobs_cache"
bin_root="${cache}/bin"

require_build_tools
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-trimpath"
export CGO_ENABLED=0

# component table: name | module dir | build tags | ldflags extra | "pkg:binary" ...
prom_ver="3.16.0"   # github.com/prometheus/prometheus v0.316.0 == Prometheus 3.16.0
am_ver="0.35.0"
vl_ver="1.52.1"   # github.com/VictoriaMetrics/VictoriaLogs (deploy/victorialogs/build/go.mod)
ldv="github.com/prometheus/common/version"

# key for a Go-module component: hash of go.mod, go.sum, tags, ldflags, go version
module_key() { # dir tags ldflags [extra files...]
  local d="$1" t="$2" l="$3"; shift 3
  { cat "$d/go.mod" "$d/go.sum" "$@"; printf 'tags=%s\nldflags=%s\n%s\n' "$t" "$l" "$go_version"; } \
    | cache_key
}

# build_module NAME DIR TAGS LDFLAGS PKG:BIN [PKG:BIN ...]
# sets global REPLY_DIR to the output directory
build_module() {
  local name="$1" dir="$2" tags="$3" ldextra="$4"; shift 4
  [[ -f "$dir/go.mod" && -f "$dir/go.sum" ]] || die "$name: $dir/go.mod or go.sum missing"
  local ldflags="-s -w${ldextra:+ $ldextra}"
  local key; key="$(module_key "$dir" "$tags" "$ldflags" ${KEY_EXTRA_FILES:-})"
  local out_dir="${bin_root}/${name}-${key}"
  REPLY_DIR="$out_dir"
  local missing=0 spec
  for spec in "$@"; do [[ -x "$out_dir/${spec#*:}" ]] || missing=1; done
  if [[ "$PRINT_ONLY" == 1 ]]; then return 0; fi
  if [[ $missing == 0 && "${MODELOBS_FORCE_BUILD:-0}" != 1 ]]; then
    log "$name: up to date ($out_dir)"
    return 0
  fi
  log "$name: building into $out_dir (cold builds take minutes on 2 cores)"
  mkdir -p "$out_dir"
  local start end
  start=$(date +%s)
  for spec in "$@"; do
    local pkg="${spec%%:*}" bin="${spec#*:}"
    log "$name: go build $pkg${tags:+ (tags: $tags)}"
    local modfile=""
    if [[ -n "${MODFILE_FN:-}" ]]; then modfile="$("$MODFILE_FN" "$dir")" || die "$name: preparing sources failed"; fi
    ( cd "$dir" && go build ${tags:+-tags "$tags"} ${modfile:+-modfile="$modfile"} \
        -ldflags="$ldflags" -o "$out_dir/$bin.tmp" "$pkg" ) \
      || die "$name: go build $pkg failed (see output above)"
    mv -f "$out_dir/$bin.tmp" "$out_dir/$bin"
  done
  end=$(date +%s)
  write_build_info "$out_dir" "$name" "$key" "$((end - start))" "tags=$tags" "ldflags=$ldflags"
  cp "$dir/go.mod" "$dir/go.sum" "$out_dir/"
  log "$name: built in $((end - start))s"
}

PRINT_ONLY=0
want=()
for a in "$@"; do
  case "$a" in
    --print) PRINT_ONLY=1 ;;
    -h|--help) sed -n '2,19p' "${BASH_SOURCE[0]}"; exit 0 ;;
    otelcol|jaeger|prometheus|alertmanager|victorialogs) want+=("$a") ;;
    *) die "unknown argument: $a" ;;
  esac
done
[[ ${#want[@]} -gt 0 ]] || want=(otelcol jaeger prometheus alertmanager victorialogs)
wants() { local w; for w in "${want[@]}"; do [[ "$w" == "$1" ]] && return 0; done; return 1; }

# Paths are always computed for all four (paths.env is complete); only the
# wanted ones are built.
if [[ "$PRINT_ONLY" == 1 ]] || ! wants otelcol; then
  OTELCOL_BIN="$("$repo/otel-collector/build.sh" --print-path)"
else
  OTELCOL_BIN="$("$repo/otel-collector/build.sh" | tail -n1)"
fi

build_jaeger() {
  PRINT_ONLY=$1 build_module jaeger "$here/jaeger/build" "" "" \
    "github.com/jaegertracing/jaeger/cmd/jaeger:jaeger"
  JAEGER_BIN="$REPLY_DIR/jaeger"
}
build_prometheus() {
  # remove_all_sd: keep only file/http/static service discovery (all we use),
  # which drops the cloud SDKs from the prometheus binary. The web UI assets
  # (tag builtinassets) are not in the Go module: UI absent, API works.
  PRINT_ONLY=$1 build_module prometheus "$here/prometheus/build" "remove_all_sd" \
    "-X $ldv.Version=$prom_ver -X $ldv.Branch=module -X $ldv.Revision=v0.316.0" \
    "github.com/prometheus/prometheus/cmd/prometheus:prometheus" \
    "github.com/prometheus/prometheus/cmd/promtool:promtool"
  PROMETHEUS_BIN="$REPLY_DIR/prometheus"; PROMTOOL_BIN="$REPLY_DIR/promtool"
}
# Alertmanager's ui package embeds ui/app/dist (//go:embed), which npm builds and
# which is NOT in the Go module: a plain build fails with "pattern app/dist: no
# matching files found" (every served version, 0.33 to 0.35). So, at build time
# only, the module is copied from the Go module cache into the build cache,
# a placeholder index.html is added under ui/app/dist/{elm,mantine}, and the
# build uses a temporary go.mod (-modfile) with a replace to that copy. Nothing
# is vendored into the repo; the API is unaffected, the UI shows the placeholder.
am_modfile() { # build_dir -> prints the temporary go.mod path
  local bdir="$1" mdir ver src tmp placeholder="$here/alertmanager/build/ui-placeholder.html"
  ( cd "$bdir" && go mod download github.com/prometheus/alertmanager ) >&2 \
    || die "alertmanager: go mod download failed"
  mdir="$(cd "$bdir" && go list -m -f '{{.Dir}}' github.com/prometheus/alertmanager)"
  ver="$(cd "$bdir" && go list -m -f '{{.Version}}' github.com/prometheus/alertmanager)"
  [[ -n "$mdir" && -d "$mdir" ]] || die "alertmanager: module dir not found"
  src="${cache}/build/alertmanager-src-${ver}"
  tmp="${cache}/build/alertmanager-modfile"
  rm -rf "$src" "$tmp"; mkdir -p "$(dirname "$src")" "$tmp"
  cp -R "$mdir" "$src"; chmod -R u+w "$src"
  mkdir -p "$src/ui/app/dist/elm" "$src/ui/app/dist/mantine"
  cp "$placeholder" "$src/ui/app/dist/elm/index.html"
  cp "$placeholder" "$src/ui/app/dist/mantine/index.html"
  # HTML is served pre-compressed only (.br/.gz), so add a gzip copy too.
  gzip -9 -n -c "$placeholder" > "$src/ui/app/dist/elm/index.html.gz"
  cp "$src/ui/app/dist/elm/index.html.gz" "$src/ui/app/dist/mantine/index.html.gz"
  cp "$bdir/go.mod" "$tmp/go.mod"; cp "$bdir/go.sum" "$tmp/go.sum"
  printf '\nreplace github.com/prometheus/alertmanager => %s\n' "$src" >> "$tmp/go.mod"
  printf '%s\n' "$tmp/go.mod"
}
build_alertmanager() {
  KEY_EXTRA_FILES="$here/alertmanager/build/ui-placeholder.html" MODFILE_FN=am_modfile \
  PRINT_ONLY=$1 build_module alertmanager "$here/alertmanager/build" "" \
    "-X $ldv.Version=$am_ver -X $ldv.Branch=module -X $ldv.Revision=v$am_ver" \
    "github.com/prometheus/alertmanager/cmd/alertmanager:alertmanager"
  ALERTMANAGER_BIN="$REPLY_DIR/alertmanager"
}

# VictoriaLogs, the native stack's log store (Apache-2.0; Loki is AGPL: compose only). Its
# web UI is committed in the module (app/vlselect/vmui), so the module build serves it.
build_victorialogs() {
  PRINT_ONLY=$1 build_module victorialogs "$here/victorialogs/build" "" \
    "-X github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo.Version=victoria-logs-v$vl_ver" \
    "github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs:victoria-logs"
  VICTORIALOGS_BIN="$REPLY_DIR/victoria-logs"
}

for c in jaeger prometheus alertmanager victorialogs; do
  if [[ "$PRINT_ONLY" == 1 ]] || ! wants "$c"; then "build_$c" 1; else "build_$c" 0; fi
done

env_text="OTELCOL_BIN=$OTELCOL_BIN
JAEGER_BIN=$JAEGER_BIN
PROMETHEUS_BIN=$PROMETHEUS_BIN
PROMTOOL_BIN=$PROMTOOL_BIN
ALERTMANAGER_BIN=$ALERTMANAGER_BIN
VICTORIALOGS_BIN=$VICTORIALOGS_BIN"

missing=0
for b in "$OTELCOL_BIN" "$JAEGER_BIN" "$PROMETHEUS_BIN" "$PROMTOOL_BIN" "$ALERTMANAGER_BIN" "$VICTORIALOGS_BIN"; do
  [[ -x "$b" ]] || { log "not built yet: $b"; missing=1; }
done

if [[ "$PRINT_ONLY" == 1 ]]; then
  printf '%s\n' "$env_text"
  exit "$missing"
fi

mkdir -p "$bin_root"
printf '%s\n' "$env_text" > "$bin_root/paths.env.tmp"
mv -f "$bin_root/paths.env.tmp" "$bin_root/paths.env"
log "wrote $bin_root/paths.env"
printf '%s\n' "$env_text"
[[ $missing == 0 ]] || log "some binaries are still missing (built only: ${want[*]})"
