#!/usr/bin/env bash
# Build the test collector (otelcol-exai) from manifest.yaml with the OpenTelemetry Collector Builder.
#
# The binary is cached under ${EXAI_CACHE_DIR:-$HOME/.cache/exai}/otelcol-<sha256 of manifest>/ and
# reused when present, so only a manifest change costs a rebuild (5-15 min cold on 2 cores). Go's
# module and build caches stay in their usual places, so a rebuild after a small change is fast.
# The last stdout line is the binary's absolute path; any failure exits non-zero.
#
# Steps: ocb generates the sources (--skip-compilation --skip-get-modules); we write go.mod from the
# manifest's gomod lines and replaces, resolve modules with `go mod tidy -e` and compile ourselves.
# `-e` is needed because tidy also walks the *tests* of dependencies (some import modules the proxy
# refuses) and those are never compiled. At v0.161.0 every module the binary links is the
# upstream one: the stand-ins older releases needed (ocb-shims/) are gone.
set -euo pipefail

BUILDER_VERSION=v0.161.0
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
manifest="$here/manifest.yaml"
cache_root="${EXAI_CACHE_DIR:-$HOME/.cache/exai}"
hash=$(sha256sum "$manifest" | cut -c1-16)
out="$cache_root/otelcol-$hash"
bin="$out/otelcol-exai"

if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: Go toolchain not found (need Go >= 1.25)" >&2; exit 1; }
gobin="$(go env GOPATH)/bin"
has_version() { [ -x "$1" ] && "$1" version 2>&1 | grep -q "$BUILDER_VERSION"; }
builder="$(command -v builder || true)"
if ! has_version "$builder"; then
  builder="$gobin/builder"
  if ! has_version "$builder"; then
    echo "build.sh: installing builder $BUILDER_VERSION into $gobin" >&2
    GOBIN="$gobin" go install "go.opentelemetry.io/collector/cmd/builder@$BUILDER_VERSION" >&2
  fi
fi

mkdir -p "$cache_root"
# One build at a time per manifest: a second caller waits, then finds the cached binary.
exec 9>"$cache_root/otelcol-$hash.lock"
flock 9
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

work=$(mktemp -d "$cache_root/otelcol-$hash.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
sed "s#^\(  output_path:\).*#\1 $work/dist#" "$manifest" > "$work/manifest.yaml"
echo "build.sh: building otelcol-exai (manifest $hash); this takes minutes when cold" >&2
( cd "$work" && "$builder" --config "$work/manifest.yaml" --skip-compilation --skip-get-modules ) >&2

cd "$work/dist"
# ocb writes no go.mod with --skip-get-modules: require exactly the manifest's modules ourselves.
go mod init go.opentelemetry.io/collector/cmd/builder >/dev/null 2>&1
go mod edit -go=1.25
sed -n 's/^[[:space:]]*-[[:space:]]*gomod:[[:space:]]*\([^[:space:]]*\)[[:space:]]\{1,\}\(v[^[:space:]]*\).*/\1@\2/p' \
  "$manifest" | while read -r req; do go mod edit -require="$req"; done
for core in go.opentelemetry.io/collector/otelcol go.opentelemetry.io/collector/service; do
  go mod edit -require="$core@$BUILDER_VERSION"
done
# The manifest's replaces (ocb syntax "old => new version"), as ocb itself would apply them.
sed -n 's/^[[:space:]]*-[[:space:]]*\([^[:space:]]*\)[[:space:]]*=>[[:space:]]*\([^[:space:]]*\)[[:space:]]\{1,\}\(v[^[:space:]]*\).*/\1=\2@\3/p' \
  "$manifest" | while read -r rep; do go mod edit -replace="$rep"; done
go mod tidy -e -compat=1.25 >&2
CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -tags grpcnotrace -o "$work/otelcol-exai" . >&2

mkdir -p "$out"
cp "$work/otelcol-exai" "$bin.tmp"
mv "$bin.tmp" "$bin"
cp "$manifest" "$out/manifest.yaml"
{ echo "built: $(date -u +%FT%TZ)"; go version; } > "$out/BUILD-INFO"
"$bin" components >/dev/null
echo "$bin"
