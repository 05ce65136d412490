"""The Helm chart, rendered by the real helm (scripts/fetch-helm.sh caches
it; scripts/setup.sh runs that): the tests read the chart's RBAC and
Deployment exactly as a cluster would receive them.

- `helm_path()`: the cached binary, or the test fails with the command to run.
- `render(namespace, values)`: the manifests of `helm template`, as dicts.
- `rules_of(manifest)`: a Role's rules as a set of (apiGroup, resource, verb).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "pg-schema-restore"


def helm_path() -> str:
    res = subprocess.run([str(REPO / "scripts" / "fetch-helm.sh"), "--print-path"],
                         capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        pytest.fail("no helm: run scripts/fetch-helm.sh (scripts/setup.sh does)")
    return res.stdout.strip()


# What every installation must give (the chart has no default image).
IMAGES = {"image": {"repository": "registry.example/pg-schema-restore/operator"},
          "jobImage": {"repository": "registry.example/pg-schema-restore/ddl-job"}}


def helm(*args: str, values: dict[str, Any] | None = None) -> subprocess.CompletedProcess:
    """`helm ARGS -f -` with `values` on stdin (JSON is YAML)."""
    return subprocess.run([helm_path(), *args, "-f", "-"], input=json.dumps(values or {}),
                          capture_output=True, text=True, timeout=60)


def with_images(values: dict[str, Any] | None) -> dict[str, Any]:
    return {**IMAGES, **(values or {})}


def render(namespace: str, values: dict[str, Any] | None = None,
           release: str = "pgsr") -> list[dict[str, Any]]:
    """`helm template` of the chart with `values` (and IMAGES unless given), as dicts."""
    res = helm("template", release, str(CHART), "-n", namespace, values=with_images(values))
    if res.returncode != 0:
        pytest.fail(f"helm template failed:\n{res.stderr}")
    return [doc for doc in yaml.safe_load_all(res.stdout) if doc]


def of_kind(manifests: list[dict[str, Any]], *kinds: str) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] in kinds]


def rules_of(manifest: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for rule in manifest.get("rules") or []
            for group in rule["apiGroups"] for resource in rule["resources"]
            for verb in rule["verbs"]}
