#!/usr/bin/env bash
# README command 2: set up everything the tests need and run them all
# (end-to-end tests included), in parallel (pytest-xdist).
#
#   ./scripts/test.sh            everything: unit, PostgreSQL, moto, the real
#                                kube-apiserver (built and cached the first time),
#                                the real-world corpora (PostgreSQL's regression
#                                scripts fetched and cached the first time), the
#                                built images (scripts/images/build.sh)
#   ./scripts/test.sh --fast     the fast tier: `-m "not e2e and not aws and not kube"`; a later -m wins
#                                (no moto, no control plane, no kube build)
#
# Extra arguments go to pytest (e.g. -k, -m, -x). PGSR_TEST_WORKERS sets the
# number of xdist workers (default 4: the tests mostly wait on servers, so
# more workers than the 2 cores pay off; 0 runs in this process).
# At the end the run prints its wall and CPU time and the 20 slowest tests.
set -euo pipefail
cd "$(dirname "$0")/.."

fast=0
args=()
for arg in "$@"; do
  if [ "$arg" = "--fast" ]; then fast=1; else args+=("$arg"); fi
done

./scripts/setup.sh
tier=()
if [ "$fast" = 1 ]; then
  tier=(-m "not e2e and not aws and not kube")
  # The corpora tests are e2e; a later -m may still select them. Cached:
  # instant; cold: one ~25 MB apt download. Offline, the fast tier goes on.
  ./scripts/fetch-regress.sh >/dev/null || echo "note: regression scripts not fetched;" \
    "tests/test_corpora.py will fail until ./scripts/fetch-regress.sh succeeds" >&2
else
  # Fetched and built before pytest (once per machine, cached): never inside a test.
  ./scripts/fetch-regress.sh
  ./scripts/kube/build.sh
  # Both images, on a base made from Debian's packages (cached per machine).
  # The lock files' hashes check every Python file installed, so trusting
  # PyPI's hosts costs nothing where TLS to them is intercepted (CI here).
  PGSR_PIP_TRUSTED_HOST="${PGSR_PIP_TRUSTED_HOST-pypi.org files.pythonhosted.org}" \
    ./scripts/images/build.sh
fi
exec .venv/bin/python -m pytest -n "${PGSR_TEST_WORKERS:-4}" --dist worksteal \
  "${tier[@]}" "${args[@]}"
