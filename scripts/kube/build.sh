#!/usr/bin/env bash
# Builds and caches kube-apiserver + kube-controller-manager from Debian 12's
# (bookworm's) `kubernetes` source package (1.20.x) with bookworm's Go 1.19,
# for the tests on a real control plane (why each step: docs/facts.md,
# "Kubernetes control plane for the tests"). Works the same on a
# Debian 12 and a Debian 13 (trixie) host: the 1.20 source, the Go 1.19
# toolchain and the two Go libraries come from bookworm's archive through a
# PRIVATE apt configuration and are unpacked (dpkg-deb -x) into the build
# dir, never installed (trixie has neither golang-1.19 nor a 1.20 source).
#
#   scripts/kube/build.sh              build if needed; last line: KUBE_BIN=<dir>
#   scripts/kube/build.sh --print-dir  print the cached dir and exit 0, or exit 1
#
# Cache: $PGSR_KUBE_CACHE (default /var/cache/pg-schema-restore, outside the
# repo) / kube-<upstream version>/ holds kube-apiserver,
# kube-controller-manager, Debian's matching kubectl (extracted from
# bookworm's kubernetes-client .deb, not installed: another package may own
# /usr/bin/kubectl), VERSION (the Debian source version) and a .complete
# marker. When a complete cache for $PGSR_KUBE_VERSION (a version prefix,
# default 1.20) exists and up.sh's tools (etcd, curl, python3, openssl,
# setsid) are installed, the script exits at once: no apt, no network
# (tools missing: step 1 installs them, then the cache is used).
# Otherwise (cold, ~15 min on 2 cores):
#   1. apt-get install the HOST's packages the control plane needs (etcd,
#      openssl, curl, python3, rsync, jq, make, dpkg-dev...): any Debian
#      release's will do
#   2. through a private sources list + private lists/cache dirs (the
#      system's apt configuration is left untouched): `deb` and `deb-src`
#      lines for bookworm, bookworm-updates and bookworm-security on the
#      mirrors the system's Debian sources use (deb.debian.org otherwise);
#      shared with scripts/fetch-regress.sh in scripts/lib/bookworm-apt.sh
#   3. apt-get source kubernetes (1.20.x), apt-get download golang-1.19-go,
#      golang-1.19-src, the reflect2 / json-iterator -dev packages and
#      kubernetes-client; dpkg-deb -x them into the build dir
#   4. swap vendored modern-go/reflect2 + json-iterator/go for Debian's
#      (the vendored ones crash Go 1.19 at the first custom-resource create)
#   5. make generated_files (the tarball lacks generated openapi code)
#   6. go build (GOPATH mode, GO111MODULE=off CGO_ENABLED=0) both commands
# The build tree ($PGSR_KUBE_CACHE/build) is removed afterwards unless
# PGSR_KUBE_KEEP_BUILD=1. PGSR_KUBE_FETCH_ONLY=1 stops after step 4 (sources
# and toolchain fetched and unpacked, `go version` run; tree kept, no cache).
#
# Overrides: PGSR_KUBE_DEBSRC: the whole private sources list, one-line
# format (`deb-src` lines alone get matching `deb` lines); PGSR_KUBE_MIRROR /
# PGSR_KUBE_SECURITY_MIRROR: the bookworm mirror URIs (or the shared
# PGSR_BOOKWORM_SOURCES / _MIRROR / _SECURITY_MIRROR, see scripts/lib/).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"

CACHE_ROOT="${PGSR_KUBE_CACHE:-/var/cache/pg-schema-restore}"
WANT="${PGSR_KUBE_VERSION:-1.20}"
BINS=(kube-apiserver kube-controller-manager)

find_cached() {
  local d
  for d in "$CACHE_ROOT"/kube-"$WANT"*/; do
    [ -d "$d" ] || continue
    d="${d%/}"
    if [ -f "$d/.complete" ] && [ -x "$d/kube-apiserver" ] && [ -x "$d/kube-controller-manager" ]; then
      echo "$d"
      return 0
    fi
  done
  return 1
}

if [ "${1:-}" = "--print-dir" ]; then
  find_cached
  exit $?
fi

# What up.sh runs besides the cached binaries (installed in step 1).
RUNTIME_TOOLS=(etcd curl python3 openssl setsid flock)
runtime_missing() {
  local c
  for c in "${RUNTIME_TOOLS[@]}"; do command -v "$c" >/dev/null 2>&1 || echo "$c"; done
}

if dir="$(find_cached)"; then
  missing_tools="$(runtime_missing | tr '\n' ' ')"
  if [ -z "$missing_tools" ]; then
    echo "kube binaries cached in $dir ($(cat "$dir/VERSION" 2>/dev/null || echo '?'))"
    echo "KUBE_BIN=$dir"
    exit 0
  fi
  # A cache kept across a fresh system (a new root, a reinstalled host):
  # install the host packages, then use the cache (found again below).
  echo "kube binaries cached in $dir, but this system lacks: $missing_tools"
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

T0=$(date +%s)
STEP_T=$T0
step() {  # step NAME: prints the time the previous step took
  local now
  now=$(date +%s)
  echo "==> [$((now - T0))s total, previous step $((now - STEP_T))s] $*"
  STEP_T=$now
}

# ---------------------------------------------------------------- 1. packages
step "installing the host's Debian packages"
# From the host's own release (Debian 12 or 13); etcd 3.4 and 3.5 both do.
PKGS=(etcd-server rsync jq dpkg-dev openssl make ca-certificates debian-archive-keyring)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# up.sh needs these too; any install of them will do.
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
{ command -v flock && command -v setsid; } >/dev/null 2>&1 || missing+=(util-linux)
if [ "${#missing[@]}" -gt 0 ]; then
  if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
    $SUDO apt-get update -qq
  fi
  echo "apt-get install ${missing[*]}"
  apt_log="$(mktemp)"
  if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$apt_log" 2>&1; then
    # Stale package lists, a half-configured package or a lock held by a
    # concurrent apt are recoverable: refresh, finish configuring, and try
    # once more, loudly this time.
    tail -20 "$apt_log" >&2
    echo "apt-get install failed; apt-get update + dpkg --configure -a, then retrying" >&2
    sleep 5
    $SUDO apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $SUDO dpkg --configure -a || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  rm -f "$apt_log"
fi
# Debian's etcd-server unit starts a default etcd on 2379; the tests never use it.

# ------------------------------------------------------------ 2. apt (private)
$SUDO mkdir -p "$CACHE_ROOT"
[ -w "$CACHE_ROOT" ] || $SUDO chown "$(id -u):$(id -g)" "$CACHE_ROOT"
# One build at a time per cache; whoever waited finds the cache filled.
exec 9>"$CACHE_ROOT/.build.lock"
if ! flock -n 9; then
  echo "another build.sh is running on $CACHE_ROOT; waiting for it"
  flock 9
fi
if dir="$(find_cached)"; then
  echo "kube binaries cached in $dir (built meanwhile)"
  echo "KUBE_BIN=$dir"
  exit 0
fi
WORK="$CACHE_ROOT/build"
rm -rf "$WORK"
mkdir -p "$WORK/src" "$WORK/debs" "$WORK/tools"

step "private apt configuration for Debian 12 (bookworm), whatever the host runs"
# The shared private configuration (scripts/lib/bookworm-apt.sh); this
# script's older override names still work.
PGSR_BOOKWORM_SOURCES="${PGSR_KUBE_DEBSRC:-${PGSR_BOOKWORM_SOURCES:-}}"
PGSR_BOOKWORM_MIRROR="${PGSR_KUBE_MIRROR:-${PGSR_BOOKWORM_MIRROR:-}}"
PGSR_BOOKWORM_SECURITY_MIRROR="${PGSR_KUBE_SECURITY_MIRROR:-${PGSR_BOOKWORM_SECURITY_MIRROR:-}}"
# shellcheck source=scripts/lib/bookworm-apt.sh
. "$HERE/../lib/bookworm-apt.sh"
bookworm_apt_init "$WORK/apt"

# --------------------------------------------------- 3. source and toolchain
step "fetching the kubernetes source package"
DEB_VERSION="$(apt-cache "${APT_PRIV[@]}" showsrc kubernetes | sed -n 's/^Version: //p' | sort -V | tail -1)"
[ -n "$DEB_VERSION" ] || { echo "ERROR: no kubernetes source package in $SRCLIST" >&2; exit 1; }
# Debian versions look like 1.20.5+really1.20.2-1.1+deb12u1: the code is 1.20.2.
UPSTREAM="${DEB_VERSION%-*}"; UPSTREAM="${UPSTREAM##*really}"; UPSTREAM="${UPSTREAM#*:}"
echo "kubernetes source $DEB_VERSION (upstream $UPSTREAM)"
case "$UPSTREAM" in
  "$WANT"*) ;;
  *) echo "ERROR: the kubernetes source in $SRCLIST is $UPSTREAM, not $WANT.x" >&2; exit 1 ;;
esac
(cd "$WORK/src" && apt-get "${APT_PRIV[@]}" source -qq "kubernetes=$DEB_VERSION" >/dev/null)
SRC="$(find "$WORK/src" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -1)"
[ -d "$SRC/cmd/kube-apiserver" ] || { echo "ERROR: unpacked source lacks cmd/kube-apiserver ($SRC)" >&2; exit 1; }

step "fetching bookworm's Go 1.19 toolchain and Go libraries (unpacked, not installed)"
DEBS=(golang-1.19-go golang-1.19-src golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev)
(cd "$WORK/debs" && apt-get "${APT_PRIV[@]}" download -qq "${DEBS[@]}" >/dev/null)
# Debian's kubectl (kubernetes-client, 1.20) matches the server. Optional.
(cd "$WORK/debs" && apt-get "${APT_PRIV[@]}" download -qq kubernetes-client >/dev/null 2>&1) \
  || echo "note: bookworm's kubernetes-client not available; tests use the kubectl on PATH"
TOOLS="$WORK/tools"
for deb in "$WORK"/debs/*.deb; do
  echo "  $(basename "$deb")"
  dpkg-deb -x "$deb" "$TOOLS"
done
# Debian's GOROOT (its src, pkg/include... are relative symlinks into
# usr/share/go-1.19, so they resolve inside the unpacked tree too).
export GOROOT="$TOOLS/usr/lib/go-1.19"
GO="$GOROOT/bin/go"
[ -x "$GO" ] || { echo "ERROR: $GO missing after unpacking golang-1.19-go" >&2; exit 1; }
[ -f "$GOROOT/src/runtime/runtime.go" ] || { echo "ERROR: $GOROOT/src incomplete (golang-1.19-src)" >&2; exit 1; }
"$GO" version

# ---------------------------------------------------------- 4. vendor swap
export PATH="$GOROOT/bin:$PATH"
export GOCACHE="$WORK/gocache" GOFLAGS="" GO111MODULE=off CGO_ENABLED=0 GOTOOLCHAIN=local
export GOPATH="$WORK/gopath"
mkdir -p "$GOPATH/src/k8s.io"
ln -sfn "$SRC" "$GOPATH/src/k8s.io/kubernetes"
export KUBE_GIT_VERSION="v$UPSTREAM" KUBE_GIT_TREE_STATE=clean

# Before generating, so the generators also compile against Debian's libraries.
step "replacing vendored reflect2 / json-iterator with Debian's"
for pkg in github.com/modern-go/reflect2 github.com/json-iterator/go; do
  deb="$TOOLS/usr/share/gocode/src/$pkg"
  [ -d "$deb" ] || { echo "ERROR: $deb missing" >&2; exit 1; }
  rm -rf "${SRC:?}/vendor/$pkg"
  mkdir -p "$SRC/vendor/$pkg"
  cp -rL "$deb/." "$SRC/vendor/$pkg/"
  find "$SRC/vendor/$pkg" -name '*_test.go' -delete
done

if [ "${PGSR_KUBE_FETCH_ONLY:-0}" = "1" ]; then
  step "PGSR_KUBE_FETCH_ONLY=1: sources and toolchain ready in $WORK (no build, no cache)"
  exit 0
fi

# -------------------------------------------------------------- 5. generated
step "make generated_files"
(cd "$GOPATH/src/k8s.io/kubernetes" && make generated_files > "$WORK/generated.log" 2>&1) || {
  echo "ERROR: make generated_files failed; last lines of $WORK/generated.log:" >&2
  tail -40 "$WORK/generated.log" >&2
  exit 1
}

# ------------------------------------------------------------------ 6. build
OUT="$WORK/out"
mkdir -p "$OUT"
# Version stamps (else the server reports v0.0.0-master with no major/minor).
# In GOPATH mode the vendored packages' import paths carry the vendor prefix.
MAJOR="${UPSTREAM%%.*}"; MINOR="${UPSTREAM#*.}"; MINOR="${MINOR%%.*}"
LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  for p in "k8s.io/kubernetes/vendor/$pkg" "$pkg"; do
    LDFLAGS="$LDFLAGS -X $p.gitVersion=v$UPSTREAM -X $p.gitMajor=$MAJOR -X $p.gitMinor=$MINOR"
    LDFLAGS="$LDFLAGS -X $p.gitTreeState=archive -X $p.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  done
done
for b in "${BINS[@]}"; do
  step "go build ./cmd/$b"
  (cd "$GOPATH/src/k8s.io/kubernetes" && go build -p "$(nproc)" -ldflags "$LDFLAGS" -o "$OUT/$b" "./cmd/$b")
done

# ------------------------------------------------------------------ 7. cache
step "caching binaries"
DEST="$CACHE_ROOT/kube-$UPSTREAM"
rm -rf "$DEST.tmp"
mkdir -p "$DEST.tmp"
for b in "${BINS[@]}"; do install -m 0755 "$OUT/$b" "$DEST.tmp/$b"; done
# bookworm's kubectl (unpacked from kubernetes-client above), not installed:
# its /usr/bin/kubectl may clash with another kubectl package.
if [ -x "$TOOLS/usr/bin/kubectl" ]; then install -m 0755 "$TOOLS/usr/bin/kubectl" "$DEST.tmp/kubectl"; fi
echo "$DEB_VERSION" > "$DEST.tmp/VERSION"
"$DEST.tmp/kube-apiserver" --version | tee "$DEST.tmp/apiserver-version"
grep -q "v$UPSTREAM" "$DEST.tmp/apiserver-version" || { echo "ERROR: version stamp missing" >&2; exit 1; }
touch "$DEST.tmp/.complete"
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
if [ "${PGSR_KUBE_KEEP_BUILD:-0}" != "1" ]; then rm -rf "$WORK"; fi
step "done: kube $UPSTREAM (Debian $DEB_VERSION) in $DEST"
echo "KUBE_BIN=$DEST"
