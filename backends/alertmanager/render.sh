#!/bin/sh
# Render alertmanager.yml (beside this script) for the environment, then run COMMAND if given:
#
#   sh render.sh OUT_DIR [COMMAND ARG...]
#
# The one start-up step between the committed config and a running Alertmanager, for docker
# compose (the alertmanager service's entrypoint) and the tests (tests/harness/alertmanager.py)
# alike: Alertmanager 0.25, which the tests run, expands no environment variables. POSIX sh and
# awk only (busybox in the prom/alertmanager image; dash and mawk on Debian).
#
# It writes OUT_DIR/alertmanager.yml, where
#   - the lines between "# exai:when VAR" and "# exai:end" are kept only when VAR is not empty
#     (blocks nest);
#   - '${VAR}' and '${VAR:-default}' take VAR's value (single quotes doubled: placeholders are
#     written inside single quotes, booleans excepted); one left without a value stops the start
#     with a message naming VAR;
#   - EXAI_ALERT_WEBHOOK_URL, when set, takes the place of http://alert-webhook:9095/alerts;
# and links OUT_DIR/templates to the templates beside this script. Secrets never enter the
# rendered file: EXAI_ALERT_SLACK_WEBHOOK_URL and EXAI_ALERT_SMTP_AUTH_PASSWORD are written to
# files of mode 0600 in OUT_DIR (unless a *_FILE variable already names one), the config names
# those files, and the values are taken out of the environment before COMMAND starts.
set -eu

out=${1:?usage: render.sh OUT_DIR [COMMAND ARG...]}
shift
here=$(cd "$(dirname "$0")" && pwd)
umask 077
mkdir -p "$out"

# NAME -> NAME_FILE: the file holding NAME's value, written here when only the value is given.
secret_file() {
    eval "value=\${$1:-} file=\${$1_FILE:-}"
    if [ -z "$file" ] && [ -n "$value" ]; then
        file="$out/$(printf '%s' "$1" | tr 'A-Z_' 'a-z-')"
        printf '%s' "$value" > "$file"
    fi
    export "$1_FILE=$file"
    unset "$1"
}
secret_file EXAI_ALERT_SLACK_WEBHOOK_URL
secret_file EXAI_ALERT_SMTP_AUTH_PASSWORD

awk -v q="'" -v sink='http://alert-webhook:9095/alerts' -v webhook="${EXAI_ALERT_WEBHOOK_URL:-}" '
function fail(message) {
    print "render.sh: alertmanager.yml line " NR ": " message > "/dev/stderr"
    failed = 1
    exit 1
}
function quoted(value) {
    if (index(value, "\n")) fail("a value holds a line break")
    gsub(q, q q, value)
    return value
}
/^[ \t]*# exai:when [A-Za-z_][A-Za-z0-9_]*[ \t]*$/ {
    depth++
    if (!skip && ENVIRON[$3] == "") skip = depth
    next
}
/^[ \t]*# exai:end[ \t]*$/ {
    if (depth == 0) fail("exai:end without exai:when")
    if (skip == depth) skip = 0
    depth--
    next
}
skip { next }
/^[ \t]*#/ { print; next }
{
    line = $0
    if (webhook != "" && (at = index(line, sink)) > 0)
        line = substr(line, 1, at - 1) quoted(webhook) substr(line, at + length(sink))
    done = ""
    while (match(line, /\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}/)) {
        name = substr(line, RSTART + 2, RLENGTH - 3)
        fallback = ""
        if ((at = index(name, ":-")) > 0) {
            fallback = substr(name, at + 2)
            name = substr(name, 1, at - 1)
        }
        value = ENVIRON[name]
        if (value == "") value = fallback
        if (value == "" && at == 0 && name ~ /_FILE$/)
            fail(name " (or " substr(name, 1, length(name) - 5) ") is not set")
        if (value == "" && at == 0) fail(name " is not set")
        done = done substr(line, 1, RSTART - 1) quoted(value)
        line = substr(line, RSTART + RLENGTH)
    }
    print done line
}
END { if (!failed && depth != 0) fail("exai:when without exai:end") }
' "$here/alertmanager.yml" > "$out/alertmanager.yml.new"
mv "$out/alertmanager.yml.new" "$out/alertmanager.yml"
ln -sfn "$here/templates" "$out/templates"

if [ $# -gt 0 ]; then
    exec "$@"
fi
