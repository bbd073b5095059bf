#!/usr/bin/env bash
# Regenerate tests/vectors/tail_sampling_decisions.json: which trace ids the collector's
# tail_sampling processor (the release the manifest pins) keeps under probabilistic policies.
# Builds main.go in a scratch module outside the clone (no go.mod/go.sum committed).
#
#   tests/vectors/tail_sampling/generate.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
release="$(sed -n 's/^ *- gomod: .*tailsamplingprocessor \(v[0-9.]*\).*/\1/p' "$here/../../../otel-collector/manifest.yaml")"
[[ -n "$release" ]] || { echo "no tailsamplingprocessor in otel-collector/manifest.yaml" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$here/main.go" "$work/"
cd "$work"
go mod init modelobs.local/tailsamplingvectors >/dev/null 2>&1
go get "github.com/open-telemetry/opentelemetry-collector-contrib/processor/tailsamplingprocessor@${release}" >&2
go mod tidy >&2
go run . > "$here/../tail_sampling_decisions.json"
echo "wrote $here/../tail_sampling_decisions.json" >&2
