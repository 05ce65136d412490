#!/usr/bin/env bash
# Proves that setup, the kube control-plane build and the demo work on a
# fresh Debian 13 (trixie): builds a minbase trixie root with mmdebstrap,
# copies this work tree into it and, inside a chroot, runs
#   setup        scripts/setup.sh (PostgreSQL 17, Python 3.13 .venv)
#   kube-build   scripts/kube/build.sh (bookworm's 1.20 source + Go 1.19)
#   kube-up      scripts/kube/up.sh /tmp/kc (trixie's etcd 3.5)
#   kube-check   /readyz with the admin cert, kubectl version, a namespace
#   kube-down    scripts/kube/down.sh /tmp/kc
#   demo         scripts/demo.sh (a real PITR restore on PostgreSQL 17)
# and prints each step's time and a final PASS/FAIL line (exit 0 / 1).
# Not part of every CI run: ~25-30 min cold on 2 cores (the kube compile),
# a few minutes when DIR's kube cache is warm. Needs root (mounts, chroot).
#
#   scripts/check-debian13.sh [DIR]     DIR: $PGSR_D13_DIR, default /var/tmp/pgsr-debian13
#
# DIR/root        the trixie root; rebuilt on every run unless
#                 PGSR_D13_REUSE_ROOT=1 and it is complete (then reused as is)
# DIR/kube-cache  build.sh's cache, bind-mounted at /var/cache/pg-schema-restore
#                 in the root: kept between runs, so a reused DIR skips the compile
# DIR/logs        one log per step, summary.txt
# Other knobs: PGSR_D13_MIRROR (mmdebstrap's mirror, default its own),
# PGSR_D13_DEMO_ARGS (extra arguments for the demo), PGSR_D13_EXTRA (a
# command run last in the repo inside the root as step `extra`, e.g.
# 'scripts/test.sh -x tests/kube'). PGSR_KUBE_MIRROR,
# PGSR_KUBE_SECURITY_MIRROR and PGSR_KUBE_DEBSRC are passed to build.sh.
# The host's CA bundle, extra CAs and /etc/pip.conf are copied in (pip and
# HTTPS need them behind an intercepting proxy); services are kept from
# starting inside (policy-rc.d); everything mounted is unmounted on exit and
# anything still running inside the root is stopped first.
set -uo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${1:-${PGSR_D13_DIR:-/var/tmp/pgsr-debian13}}"
[ "$(id -u)" -eq 0 ] || { echo "ERROR: run as root (mmdebstrap --mode=root, mounts, chroot)" >&2; exit 2; }
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd -P)"
ROOT="$DIR/root"
KCACHE="$DIR/kube-cache"
LOGS="$DIR/logs"
MARK="$ROOT/.pgsr-check-debian13-root"
IN_REPO=/src/pg-schema-restore
mkdir -p "$KCACHE" "$LOGS"

T0=$(date +%s)
declare -a RESULTS=()
FAILED=()
note() { echo "[check-debian13 $(date +%T)] $*"; }

# ------------------------------------------------------------------ cleanup
mounted_under() {  # mount points at or below $1, deepest first
  findmnt -rn -o TARGET | awk -v r="$1" '$0 == r || index($0, r "/") == 1' | sort -r
}
stop_root_processes() {  # whatever runs with its root in $ROOT was started by us
  local p r pids=()
  for p in /proc/[0-9]*; do
    r="$(readlink "$p/root" 2>/dev/null)" || continue
    [ "$r" = "$ROOT" ] && pids+=("${p#/proc/}")
  done
  [ "${#pids[@]}" -gt 0 ] || return 0
  note "stopping processes left in the root: ${pids[*]}"
  kill -TERM "${pids[@]}" 2>/dev/null
  for _ in $(seq 1 50); do
    kill -0 "${pids[@]}" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "${pids[@]}" 2>/dev/null
  sleep 0.5
}
unmount_all() {
  local m
  [ -d "$ROOT" ] || return 0
  stop_root_processes
  for m in "$ROOT/var/cache/pg-schema-restore" "$ROOT/dev" "$ROOT/proc"; do
    if mountpoint -q "$m" 2>/dev/null; then
      umount -R "$m" 2>/dev/null || umount -R -l "$m" || note "WARNING: could not unmount $m"
    fi
  done
  if [ -n "$(mounted_under "$ROOT")" ]; then
    note "WARNING: still mounted under $ROOT:"; mounted_under "$ROOT"
    return 1
  fi
}
trap 'unmount_all' EXIT
trap 'note "interrupted"; exit 130' INT TERM

# -------------------------------------------------------------------- steps
# run_step NAME CMD...: runs, logs to $LOGS/NAME.log (and the terminal),
# records its time and status.
run_step() {
  local name="$1" t rc secs; shift
  note "==> $name"
  t=$(date +%s)
  "$@" 2>&1 | tee "$LOGS/$name.log"
  rc=${PIPESTATUS[0]}
  secs=$(( $(date +%s) - t ))
  if [ "$rc" -eq 0 ]; then
    RESULTS+=("$(printf '%-11s %5ss  ok' "$name" "$secs")")
  else
    RESULTS+=("$(printf '%-11s %5ss  FAILED (exit %s, %s)' "$name" "$secs" "$rc" "$LOGS/$name.log")")
    FAILED+=("$name")
  fi
  note "<== $name: ${secs}s, exit $rc"
  return "$rc"
}
skip_step() {
  RESULTS+=("$(printf '%-11s    -   skipped (%s failed)' "$1" "$2")")
  FAILED+=("$1")
}
# in_root CMD: bash -c CMD inside the chroot, in the copied repository, with
# a clean environment (the host's PIP_* / find-links paths do not exist there).
in_root() {
  local envs=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
              LANG=C.UTF-8 TERM="${TERM:-dumb}" DEBIAN_FRONTEND=noninteractive) v
  for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY PIP_DEFAULT_TIMEOUT \
           PGSR_KUBE_MIRROR PGSR_KUBE_SECURITY_MIRROR PGSR_KUBE_DEBSRC; do
    if [ -n "${!v:-}" ]; then envs+=("$v=${!v}"); fi
  done
  chroot "$ROOT" /usr/bin/env -i "${envs[@]}" /bin/bash -c "cd $IN_REPO && $1"
}

make_root() {
  if ! command -v mmdebstrap >/dev/null 2>&1; then
    note "installing mmdebstrap on the host"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null || return 1
  fi
  if [ -e "$ROOT" ]; then
    unmount_all || return 1
    rm -rf --one-file-system "$ROOT" || return 1
  fi
  # ca-certificates first, so the host's bundle copied below is not
  # regenerated away by a later install of it.
  # shellcheck disable=SC2086
  mmdebstrap --variant=minbase --mode=root --include=ca-certificates trixie "$ROOT" ${PGSR_D13_MIRROR:-} \
    && touch "$MARK"
}

prepare_root() {
  set -e
  # Host network settings and trust: DNS, CA bundle (+ local CAs, kept if the
  # bundle is ever regenerated inside), pip's config (it sets `cert`).
  cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
  cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
  if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    mkdir -p "$ROOT/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
  fi
  if [ -f /etc/pip.conf ]; then cp /etc/pip.conf "$ROOT/etc/pip.conf"; fi
  # No daemon starts from a package's postinst (postgresql, etcd-server): the
  # host may use their ports, and nothing may keep the root busy.
  printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"
  chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
  mkdir -p "$ROOT/var/cache/pg-schema-restore" "$ROOT$IN_REPO"
  mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
  if ! mountpoint -q "$ROOT/dev"; then
    mount --rbind /dev "$ROOT/dev"      # /dev/shm too: PostgreSQL's shared memory
    mount --make-rslave "$ROOT/dev"     # unmounting it never reaches the host's /dev
  fi
  mountpoint -q "$ROOT/var/cache/pg-schema-restore" || mount --bind "$KCACHE" "$ROOT/var/cache/pg-schema-restore"
  # The work tree as it is (uncommitted changes included); the root's .venv stays.
  rsync -a --delete --exclude .git --exclude .venv --exclude __pycache__ --exclude '*.egg-info' \
    --exclude .pytest_cache "$REPO/" "$ROOT$IN_REPO/"
  echo "trixie root: $(cat "$ROOT/etc/debian_version"), repo at $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
  # shellcheck disable=SC2012
  echo "keyrings: $(ls "$ROOT/usr/share/keyrings/" | tr '\n' ' ')"
}

step_setup() {
  in_root 'scripts/setup.sh && echo "--- versions" && .venv/bin/python --version && ls -d /usr/lib/postgresql/*/bin && pg_dump --version'
}
step_build() {
  in_root 'scripts/kube/build.sh'
}
step_up() {
  in_root 'scripts/kube/down.sh /tmp/kc; rm -rf /tmp/kc; scripts/kube/up.sh /tmp/kc'
}
# shellcheck disable=SC2016  # expanded inside the root
step_check() {
  in_root '
    set -e
    etcd --version | head -1
    KC=/tmp/kc/kubeconfig; P=/tmp/kc/pki
    echo "readyz: $(curl -fsS --cacert $P/ca.crt --cert $P/admin.crt --key $P/admin.key "$(cat /tmp/kc/api_url)/readyz")"
    # The way the kubernetes Python client verifies (strict X.509 on 3.13).
    python3 - "$(cat /tmp/kc/api_url)/readyz" $P <<"PYEOF"
import ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[2] + "/ca.crt")
ctx.load_cert_chain(sys.argv[2] + "/admin.crt", sys.argv[2] + "/admin.key")
body = urllib.request.urlopen(sys.argv[1], context=ctx).read().decode()
print(f"readyz from Python {sys.version.split()[0]} (default TLS context): {body}")
PYEOF
    BIN="$(scripts/kube/build.sh --print-dir)"
    KUBECTL="$BIN/kubectl"; [ -x "$KUBECTL" ] || KUBECTL=kubectl
    "$KUBECTL" --kubeconfig $KC version --short 2>/dev/null || "$KUBECTL" --kubeconfig $KC version
    "$KUBECTL" --kubeconfig $KC create namespace pgsr-check-debian13
    "$KUBECTL" --kubeconfig $KC get namespace pgsr-check-debian13
    for _ in $(seq 1 100); do
      "$KUBECTL" --kubeconfig $KC get serviceaccount default -n pgsr-check-debian13 >/dev/null 2>&1 && break
      sleep 0.2
    done
    "$KUBECTL" --kubeconfig $KC get serviceaccount default -n pgsr-check-debian13'
}
step_down() {
  in_root 'scripts/kube/down.sh /tmp/kc && ! ls /tmp/kc/pids/*.pid 2>/dev/null'
}
step_demo() {
  in_root "scripts/demo.sh ${PGSR_D13_DEMO_ARGS:-}"
}

# --------------------------------------------------------------------- main
note "Debian 13 check in $DIR (logs in $LOGS)"
if [ "${PGSR_D13_REUSE_ROOT:-0}" = "1" ] && [ -f "$MARK" ]; then
  RESULTS+=("$(printf '%-11s    -   reused %s' mmdebstrap "$ROOT")")
else
  run_step mmdebstrap make_root
fi
if [ ${#FAILED[@]} -eq 0 ]; then
  run_step prepare prepare_root
fi
if [ ${#FAILED[@]} -gt 0 ]; then
  for s in setup kube-build kube-up kube-check kube-down demo; do skip_step "$s" "the root"; done
else
  run_step setup step_setup
  if run_step kube-build step_build; then
    if run_step kube-up step_up; then
      run_step kube-check step_check
    else
      skip_step kube-check kube-up
    fi
    run_step kube-down step_down   # always: stops whatever kube-up started
  else
    for s in kube-up kube-check kube-down; do skip_step "$s" kube-build; done
  fi
  if [[ " ${FAILED[*]} " == *" setup "* ]]; then
    skip_step demo setup
  else
    run_step demo step_demo
  fi
  if [ -n "${PGSR_D13_EXTRA:-}" ]; then
    run_step extra in_root "$PGSR_D13_EXTRA"
  fi
fi

unmount_all
trap - EXIT
TOTAL=$(( $(date +%s) - T0 ))
{
  echo "Debian 13 (trixie) check, $(date -u +%Y-%m-%dT%H:%M:%SZ), $DIR"
  printf '  %s\n' "${RESULTS[@]}"
  if [ ${#FAILED[@]} -eq 0 ]; then
    echo "PASS (${TOTAL}s total)"
  else
    echo "FAIL: ${FAILED[*]} (${TOTAL}s total)"
  fi
} | tee "$LOGS/summary.txt"
[ ${#FAILED[@]} -eq 0 ]
