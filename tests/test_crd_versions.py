"""The two generated CRDs, per supported Kubernetes version, without a cluster.

`crds/` (and the chart's copy) carries the CEL rules, for 1.25 and later:
validated here strictly against each version's own schemas that
kubernetes-validate carries (1.25 to 1.37). `crds/kubernetes-1.20-1.24/`
is the same CRD without them; kubectl 1.35 applies it to the 1.20 control
plane in tests/kube/test_crd_apply.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pg_schema_restore import crd as crd_module

REPO = Path(__file__).resolve().parent.parent
CEL_VERSIONS = [f"1.{minor}.0" for minor in range(25, 38)]


@pytest.mark.parametrize("path", crd_module.LEGACY_FILES, ids=str)
def test_legacy_crd_is_generated(path):
    assert (REPO / path).read_text("utf-8") == crd_module.render(cel=False), (
        f"{path} is stale or edited by hand: run `python -m pg_schema_restore.crd --write`")


def test_legacy_crd_is_the_same_crd_without_the_cel_rules():
    with_cel = yaml.safe_load((REPO / crd_module.FILES[0]).read_text())
    legacy = yaml.safe_load((REPO / crd_module.LEGACY_FILES[0]).read_text())
    spec = with_cel["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec.pop("x-kubernetes-validations") == crd_module.SPEC_RULES
    assert legacy == with_cel


def test_kubectl_apply_of_the_crds_folder_takes_one_crd():
    """`kubectl apply -f crds/` does not descend into the legacy folder."""
    top = [p.name for p in (REPO / "crds").iterdir() if p.is_file()]
    assert top == [f"{crd_module.NAME}.yaml"]


@pytest.mark.parametrize("version", CEL_VERSIONS)
def test_the_cel_crd_validates_strictly_on_current_versions(version):
    check = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet",
                            "-k", version, str(REPO / crd_module.FILES[0])],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
