"""The IAM policies in docs/ pass parliament's lint (PyPI `parliament`).

Which actions they allow is proven against the calls the code makes during
the test run (support/iam_proof.py); this checks how they are written:
resource formats, no `*` resource where the action takes a resource-level
ARN, valid ARNs. One finding is tolerated, and only when it is
parliament's own age: an action its database does not know yet but
botocore's service model has (a real, newer API)."""

from __future__ import annotations

from pathlib import Path

import botocore.session
import pytest
from parliament import analyze_policy_string

DOCS = Path(__file__).resolve().parent.parent / "docs"
POLICIES = ["iam-policy.json", "iam-policy-job.json"]


def _newer_than_parliament(action: str) -> bool:
    service, _, operation = action.partition(":")
    try:
        model = botocore.session.get_session().get_service_model(service)
    except Exception:   # not a botocore service name: not tolerated
        return False
    return operation in model.operation_names


@pytest.mark.parametrize("name", POLICIES)
def test_parliament_finds_nothing(name: str) -> None:
    policy = analyze_policy_string((DOCS / name).read_text())
    findings = [f"{f.issue}: {f.detail} (line {f.location.get('line')})"
                for f in policy.findings
                if not (f.issue == "UNKNOWN_ACTION"
                        and _newer_than_parliament(f.location["string"]))]
    assert findings == []
