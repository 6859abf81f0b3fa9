#!/usr/bin/env bash
# Run the whole test suite from a fresh machine: installs the services the tests start
# (Redis, PostgreSQL, Prometheus, Alertmanager from Debian; the collector built with OCB,
# cached), creates .venv with the project and its test extras, then runs ruff, mypy and pytest.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/daemon -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# The versions of requirements.lock (scripts/lock.sh), so a run does not depend on the day.
.venv/bin/python -m pip install --quiet -c requirements.lock -e ".[test]"

# The checks first: a lint or type finding fails the run like a failing test.
.venv/bin/python -m ruff check .
.venv/bin/python -m mypy
exec .venv/bin/python -m pytest "$@"
