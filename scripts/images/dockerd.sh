#!/usr/bin/env bash
# A private Docker engine for building and testing the images, never the
# machine's own: its socket, pid file and exec root are under RUN_DIR, its
# image store under DATA_ROOT (kept between runs, so built images stay).
#
#   scripts/images/dockerd.sh start RUN_DIR [DATA_ROOT]   prints the DOCKER_HOST to use
#   scripts/images/dockerd.sh stop RUN_DIR                stops only the daemon started there
#
# No iptables rules and no bridge (containers run with --network host), so
# the host's network is left as it was. DATA_ROOT defaults to
# /var/lib/pg-schema-restore/docker. Needs Debian's docker.io (scripts/images/build.sh
# installs it).
set -euo pipefail

cmd="${1:?usage: dockerd.sh start|stop RUN_DIR [DATA_ROOT]}"
run_dir="${2:?usage: dockerd.sh start|stop RUN_DIR [DATA_ROOT]}"
data_root="${3:-/var/lib/pg-schema-restore/docker}"
sock="$run_dir/docker.sock"

case "$cmd" in
  start)
    mkdir -p "$run_dir" "$data_root"
    if [ -S "$sock" ] && docker -H "unix://$sock" version >/dev/null 2>&1; then
      echo "unix://$sock"; exit 0
    fi
    dockerd --iptables=false --ip-masq=false --bridge=none \
      -H "unix://$sock" --data-root "$data_root" --exec-root "$run_dir/exec" \
      --pidfile "$run_dir/dockerd.pid" >"$run_dir/dockerd.log" 2>&1 &
    for _ in $(seq 1 150); do
      if docker -H "unix://$sock" version >/dev/null 2>&1; then
        echo "unix://$sock"; exit 0
      fi
      if ! kill -0 $! 2>/dev/null; then break; fi
      sleep 0.2
    done
    echo "dockerd did not start; its log ($run_dir/dockerd.log) ends:" >&2
    tail -20 "$run_dir/dockerd.log" >&2
    exit 1
    ;;
  stop)
    pidfile="$run_dir/dockerd.pid"
    if [ -f "$pidfile" ]; then
      pid="$(cat "$pidfile")"
      if kill "$pid" 2>/dev/null; then
        for _ in $(seq 1 150); do
          kill -0 "$pid" 2>/dev/null || break
          sleep 0.2
        done
        kill -9 "$pid" 2>/dev/null || true
      fi
    fi
    # The engine leaves its network-namespace mount behind: release it, so
    # RUN_DIR can be removed.
    for mount in "$run_dir"/exec/netns/*; do
      [ -e "$mount" ] && umount "$mount" 2>/dev/null || true
    done
    ;;
  *)
    echo "usage: dockerd.sh start|stop RUN_DIR [DATA_ROOT]" >&2; exit 2 ;;
esac
