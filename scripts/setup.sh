#!/usr/bin/env bash
# Sets up everything pg-schema-restore needs on a fresh Debian 12 (bookworm)
# or Debian 13 (trixie) machine: Debian's PostgreSQL (the `postgresql`
# metapackage: 15 on Debian 12, 17 on Debian 13; server + client: pg_dump,
# pg_restore, psql) and a Python virtual environment in .venv (Python 3.11 or
# 3.13) with the project installed. The newest /usr/lib/postgresql/*/bin is
# the one used (local/cluster.py: server_bindir), so no version is named here.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need_apt=()
command -v pg_dump >/dev/null 2>&1 || need_apt+=(postgresql-client)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# Debian's package starts a default cluster on 5432; we never use it.

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# Quiet unless it fails: the build backend's notices would bury the test output.
pip_log="$(mktemp)"
if ! { .venv/bin/pip install -q --upgrade pip && .venv/bin/pip install -q -e ".[test]"; } \
    >"$pip_log" 2>&1; then
  tail -40 "$pip_log" >&2
  rm -f "$pip_log"
  exit 1
fi
rm -f "$pip_log"

# helm, for the chart's tests (cached outside the repository; instant when
# cached). Offline, the rest goes on and the chart tests say what to run.
./scripts/fetch-helm.sh >/dev/null || echo "note: helm and kubectl 1.35 not installed;" \
  "tests/test_chart.py, tests/kube/test_tenancy.py and tests/kube/test_crd_apply.py fail" \
  "until ./scripts/fetch-helm.sh succeeds" >&2
