"""Registers the test support plugins and marks every test by the real parts it uses.

Fixtures live in `tests/support/` (one module per real part); this file only
wires them in. Each test is marked from the fixtures it requests, so a tier
is a marker expression, not a list of files:

- `unit`: no server at all (pure decisions: spec, status, rewrite, plans);
- `pg`:   real PostgreSQL clusters (`prod`, `copyhost` and what builds on them);
- `aws`:  moto in-process (with real PostgreSQL behind the RDS double);
- `kube`: the real kube-apiserver + kube-controller-manager;
- `e2e`:  set by hand on the slow end-to-end cases.

`./scripts/test.sh --fast` runs `not e2e and not aws and not kube`.
"""

from __future__ import annotations

import pytest

pytest_plugins = [
    "support.timing",
    "support.pg",
    "support.aws",
    "support.kube",
    "support.iam_proof",
]

# A test that requests any of these (directly or through another fixture)
# uses that real part.
_PART_FIXTURES = {
    "kube": {"kube_cluster"},
    "aws": {"mocked_aws", "aws_env"},
    "pg": {"prod", "copyhost"},
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        parts = [part for part, fixtures in _PART_FIXTURES.items() if used & fixtures]
        for part in parts or ["unit"]:
            item.add_marker(part)
    # Longest first (`longest` marks the run's longest cases, which also
    # decide its end): the control-plane and end-to-end cases start at once
    # and the short ones fill the gaps, instead of one long case finishing
    # alone at the end of a parallel run. File order is kept within each group.
    items.sort(key=lambda item: 0 if item.get_closest_marker("longest") else
               1 if item.get_closest_marker("kube") else
               2 if item.get_closest_marker("e2e") else 3)
