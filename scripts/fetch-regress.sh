#!/usr/bin/env bash
# Fetches PostgreSQL 15's regression scripts (src/test/regress/sql/*.sql and
# the data files they COPY from) out of Debian 12's (bookworm's)
# `postgresql-15` SOURCE package and caches them outside the repository,
# for the real-world corpora tests (tests/support/corpora.py). They are
# PostgreSQL's, not ours: never committed.
#
#   scripts/fetch-regress.sh              fetch if needed; last line: PGSR_REGRESS_DIR=<dir>
#   scripts/fetch-regress.sh --print-dir  print the cached dir and exit 0, or exit 1
#
# Cache: $PGSR_REGRESS_DIR (default /var/cache/pg-schema-restore/pg15-regress)
# holds sql/ (every script), data/ (only the DATA_FILES below: what the
# selection in tests/support/corpora.py reads), parallel_schedule, VERSION
# (the Debian source version) and a .complete marker listing the data files.
# A complete cache with the same list makes the script exit at once (no apt,
# no network); a changed list fetches again.
# Otherwise: one private apt configuration for bookworm (the system's is
# untouched: scripts/lib/bookworm-apt.sh, shared with scripts/kube/build.sh),
# `apt-get source --download-only postgresql-15` (the .dsc and the upstream
# tarball, ~25 MB; apt checks them against the signed Sources index), and
# only sql/*.sql and data/* are taken out of the tarball. Works the same on
# Debian 12 and 13 (trixie has no postgresql-15 source; bookworm's is used).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${PGSR_REGRESS_DIR:-/var/cache/pg-schema-restore/pg15-regress}"
# The data files the selected scripts COPY from (test_setup: the shared
# tables; create_index, create_view, constraints: their own).
DATA_FILES=(onek tenk person emp student stud_emp streets array rect real_city constro constrf)
WANT="data: ${DATA_FILES[*]}"

complete() {
  [ -f "$CACHE/.complete" ] && [ "$(cat "$CACHE/.complete")" = "$WANT" ] && [ -d "$CACHE/sql" ]
}

if [ "${1:-}" = "--print-dir" ]; then
  complete && { echo "$CACHE"; exit 0; }
  exit 1
fi
if complete; then
  echo "regression scripts cached in $CACHE ($(cat "$CACHE/VERSION" 2>/dev/null || echo '?'))"
  echo "PGSR_REGRESS_DIR=$CACHE"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
PARENT="$(dirname "$CACHE")"
$SUDO mkdir -p "$PARENT"
[ -w "$PARENT" ] || $SUDO chown "$(id -u):$(id -g)" "$PARENT"
# The tarball's compression (bzip2 for postgresql-15) and the keyring.
need=()
command -v bzip2 >/dev/null 2>&1 || need+=(bzip2)
command -v xz >/dev/null 2>&1 || need+=(xz-utils)
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || [ -f /usr/share/keyrings/debian-archive-keyring.pgp ] \
  || need+=(debian-archive-keyring)
if [ "${#need[@]}" -gt 0 ]; then
  echo "apt-get install ${need[*]}"
  apt-cache show "${need[@]}" >/dev/null 2>&1 || $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# One fetch at a time; whoever waited finds the cache filled.
exec 9>"$PARENT/.regress.lock"
if ! flock -n 9; then
  echo "another fetch-regress.sh is running; waiting for it"
  flock 9
fi
if complete; then
  echo "PGSR_REGRESS_DIR=$CACHE"
  exit 0
fi

T0=$(date +%s)
WORK="$(mktemp -d "$PARENT/.regress-fetch.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
# shellcheck source=scripts/lib/bookworm-apt.sh
. "$HERE/lib/bookworm-apt.sh"
bookworm_apt_init "$WORK/apt"

# The installed server's version first (its own tests), then newest first: a
# mirror may lack the files of a version its index lists (a security
# archive's pool lags its index).
INSTALLED="$(dpkg-query -W -f='${Version}' postgresql-15 2>/dev/null || true)"
mapfile -t VERSIONS < <( { [ -n "$INSTALLED" ] && echo "$INSTALLED"
  apt-cache "${APT_PRIV[@]}" showsrc postgresql-15 | sed -n 's/^Version: //p' | sort -Vr; } | awk '!seen[$0]++')
[ "${#VERSIONS[@]}" -gt 0 ] || { echo "ERROR: no postgresql-15 source package in $SRCLIST" >&2; exit 1; }
mkdir -p "$WORK/src"
VERSION=""
for v in "${VERSIONS[@]}"; do
  if (cd "$WORK/src" && apt-get "${APT_PRIV[@]}" source --download-only -qq "postgresql-15=$v" >/dev/null 2>"$WORK/apt.err"); then
    VERSION="$v"; break
  fi
  echo "postgresql-15 $v: not fetched ($(grep -m1 -o 'Failed to fetch.*' "$WORK/apt.err" || tail -1 "$WORK/apt.err"))"
  rm -f "$WORK"/src/*
done
[ -n "$VERSION" ] || { echo "ERROR: no postgresql-15 source could be fetched (tried ${VERSIONS[*]})" >&2; exit 1; }
echo "postgresql-15 source $VERSION"
TARBALL="$(find "$WORK/src" -maxdepth 1 -name 'postgresql-15_*.orig.tar.*' | head -1)"
[ -n "$TARBALL" ] || { echo "ERROR: no upstream tarball among: $(ls "$WORK/src")" >&2; exit 1; }
echo "$(basename "$TARBALL"): $(du -h "$TARBALL" | cut -f1)"
mkdir -p "$WORK/x"
members=('*/src/test/regress/sql/*.sql' '*/src/test/regress/parallel_schedule')
for f in "${DATA_FILES[@]}"; do members+=("*/src/test/regress/data/$f.data"); done
tar -xf "$TARBALL" -C "$WORK/x" --wildcards --no-anchored "${members[@]}"
TOP="$(find "$WORK/x" -mindepth 1 -maxdepth 1 -type d | head -1)"
REG="$TOP/src/test/regress"
[ -f "$REG/sql/create_table.sql" ] || { echo "ERROR: $TARBALL lacks src/test/regress/sql" >&2; exit 1; }

rm -rf "$CACHE.tmp"
mkdir -p "$CACHE.tmp"
cp -r "$REG/sql" "$REG/data" "$REG/parallel_schedule" "$CACHE.tmp/"
for f in "${DATA_FILES[@]}"; do
  [ -f "$CACHE.tmp/data/$f.data" ] || { echo "ERROR: data/$f.data not in $TARBALL" >&2; exit 1; }
done
echo "$VERSION" > "$CACHE.tmp/VERSION"
echo "$WANT" > "$CACHE.tmp/.complete"
rm -rf "$CACHE"
mv "$CACHE.tmp" "$CACHE"
echo "cached $(find "$CACHE/sql" -name '*.sql' | wc -l) scripts and $(find "$CACHE/data" -type f | wc -l)" \
     "data files ($(du -sh "$CACHE" | cut -f1)) in $((  $(date +%s) - T0 ))s"
echo "PGSR_REGRESS_DIR=$CACHE"
