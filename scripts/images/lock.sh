#!/usr/bin/env bash
# Recompile the images' Python lock files (pinned versions with hashes) for
# the Python of the images' Debian (13: Python 3.13), inside the base image:
#   operator/requirements.lock  from pyproject.toml's dependencies
#   ddl_job/requirements.lock   from ddl_job/requirements.in
# The versions the test suite runs with (.venv) are the constraints, so the
# images carry what was tested, and the resolver has nothing to search.
# Run after changing either; needs the base image (scripts/images/build.sh)
# and .venv (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
RUN_DIR="$(mktemp -d /tmp/pgsr-dockerd.XXXXXX)"
export DOCKER_HOST
DOCKER_HOST="$(scripts/images/dockerd.sh start "$RUN_DIR")"
trap 'scripts/images/dockerd.sh stop "$RUN_DIR"; rm -rf "$RUN_DIR"' EXIT
.venv/bin/pip freeze --exclude-editable --exclude pg-schema-restore >"$RUN_DIR/tested.txt"
# The host's CA bundle goes in read-only: a machine whose TLS is intercepted
# (this project's CI) trusts its proxy there.
docker run --rm --network host -v "$PWD:/src" -w /src -v "$RUN_DIR/tested.txt:/tmp/tested.txt:ro" \
  -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/host-ca.crt:ro -e PIP_CERT=/etc/ssl/host-ca.crt \
  pg-schema-restore/base:trixie sh -ec '
  apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-venv ca-certificates >/dev/null
  python3 -m venv /tmp/v && /tmp/v/bin/pip install -q pip-tools
  compile() { /tmp/v/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras --no-header --constraint /tmp/tested.txt --output-file "$1" "$2"; }
  compile operator/requirements.lock pyproject.toml
  compile ddl_job/requirements.lock ddl_job/requirements.in
  chown '"$(id -u):$(id -g)"' operator/requirements.lock ddl_job/requirements.lock'
