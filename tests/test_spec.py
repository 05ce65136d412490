"""The spec model refuses every invalid SchemaRestore with words that say why.

Pure decisions: no server. The engine's handling of a refusal (nothing
created, the audit item Failed) is proven on AWS for one case per family in
tests/aws/test_more_faults.py; the cases themselves are decided here.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pg_schema_restore.engine.spec import InvalidSpec, RestoreSpec
from support.specs import invalid_cases

VALID: dict[str, Any] = {
    "database": "appdb",
    "schemas": ["customer_a1", "customer_b2"],
    "restoreTime": "2024-01-28T14:30:00Z",
    "source": {"dbIdentifier": "prod-db", "region": "eu-west-1",
               "secretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod"},
    "temporaryDatabase": {"instanceClass": "db.t4g.medium", "subnetGroup": "pgsr-isolated",
                          "securityGroupIds": ["sg-1"]},
}


def test_the_valid_base_is_accepted():
    spec = RestoreSpec.from_dict(copy.deepcopy(VALID))
    assert spec.target_names() == {"customer_a1": "customer_a1_20240128143000",
                                   "customer_b2": "customer_b2_20240128143000"}


@pytest.mark.parametrize("mutate,says", invalid_cases())
def test_invalid_spec_is_refused_with_a_precise_message(mutate, says, request):
    spec = copy.deepcopy(VALID)
    mutate(spec)
    with pytest.raises(InvalidSpec) as refused:
        RestoreSpec.from_dict(spec)
    # A suffixed name over 63 bytes keeps the data plane's reason (docs/operations.md).
    too_long = request.node.callspec.id == "suffix-too-long-for-names"
    assert refused.value.reason == ("NameTooLong" if too_long else "InvalidSpec")
    for words in says:
        assert words in refused.value.message, (words, refused.value.message)
    assert "Traceback" not in refused.value.message


def test_the_copy_may_be_serverless_and_name_its_parameter_groups():
    """Aurora Serverless v2's class and the copy's parameter groups (the
    source's when unset: aws/placement.py)."""
    spec = copy.deepcopy(VALID)
    spec["temporaryDatabase"].update(instanceClass="db.serverless", parameterGroup="copy-pg",
                                     clusterParameterGroup="copy-cpg")
    temp = RestoreSpec.from_dict(spec).temporary_database
    assert (temp.instance_class, temp.parameter_group, temp.cluster_parameter_group) == (
        "db.serverless", "copy-pg", "copy-cpg")
    assert RestoreSpec.from_dict(copy.deepcopy(VALID)).temporary_database.parameter_group == ""
    spec["temporaryDatabase"]["instanceClass"] = "db.serverlessx"
    with pytest.raises(InvalidSpec):
        RestoreSpec.from_dict(spec)
