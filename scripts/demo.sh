#!/usr/bin/env bash
# README command 1: set up (Debian PostgreSQL + .venv) and run a real restore
# end to end on local PostgreSQL. Extra arguments go to `pg-schema-restore demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/pg-schema-restore demo "$@"
