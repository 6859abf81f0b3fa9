#!/usr/bin/env bash
# Install what the pipeline tests run for real, idempotently; fast when everything is present.
#   - Debian packages: redis-server, prometheus (+promtool), prometheus-alertmanager (+amtool),
#     postgresql (server binaries for tests/harness/postgres.py); apt only runs when one of the
#     binaries is missing; valgrind (callgrind counts instructions in bench/instructions.py);
#     busybox (its sh runs the Alertmanager start-up script as the image does)
#   - the OpenTelemetry Collector Builder, then the collector itself via collector-config/build.sh
#     (cached on the manifest's hash, so a warm run costs a hash and a stat)
# Needs root (or sudo) for apt and a Go toolchain (>= 1.25) for the collector build.
# Prints the collector binary path as its last line, like build.sh.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILDER_VERSION=v0.161.0

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || need_apt+=(prometheus)
{ command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null; } \
  && command -v amtool >/dev/null || need_apt+=(prometheus-alertmanager)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null \
  || need_apt+=(postgresql)
command -v callgrind_control >/dev/null || need_apt+=(valgrind)
# busybox sh runs backends/alertmanager/render.sh as the Alertmanager image does
command -v busybox >/dev/null || need_apt+=(busybox)

if [ "${#need_apt[@]}" -gt 0 ]; then
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  echo "install-test-deps: apt-get install ${need_apt[*]}" >&2
  "${sudo_cmd[@]}" apt-get update >&2
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y --no-install-recommends \
    "${need_apt[@]}" >&2
  # The Debian packages start their services; the tests start their own on free ports.
  for svc in redis-server prometheus prometheus-alertmanager postgresql; do
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
      "${sudo_cmd[@]}" systemctl stop "$svc" >&2 || true
    fi
  done
fi

command -v go >/dev/null || { echo "install-test-deps: Go toolchain (>= 1.25) required" >&2; exit 1; }
gobin="$(go env GOPATH)/bin"
if ! { [ -x "$gobin/builder" ] && "$gobin/builder" version 2>&1 | grep -q "$BUILDER_VERSION"; }; then
  echo "install-test-deps: installing ocb $BUILDER_VERSION" >&2
  GOBIN="$gobin" go install "go.opentelemetry.io/collector/cmd/builder@$BUILDER_VERSION" >&2
fi

# LogQL and TraceQL grammars for the dashboard query checks (pinned by package-lock.json).
if [ ! -d "$here/tests/dashboards/node_modules/@grafana/lezer-traceql" ]; then
  command -v npm >/dev/null || { echo "install-test-deps: npm (Node.js) required" >&2; exit 1; }
  (cd "$here/tests/dashboards" && npm ci --no-audit --no-fund) >&2
fi

"$here/collector-config/build.sh"
