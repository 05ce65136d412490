#!/usr/bin/env bash
# README command 2: set up everything the tests need and run them all
# (end-to-end tests included). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# The slowest tests are listed at the end: CI time is watched, not guessed.
exec .venv/bin/python -m pytest --durations=20 "$@"
