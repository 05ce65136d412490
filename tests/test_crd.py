"""The CRD's rules, checked without a cluster.

The 1.20 test apiserver ignores CEL (`x-kubernetes-validations`), so each
rule is evaluated here with cel-python, and the OpenAPI patterns are run
against the same inputs as the operator's own validation (RestoreSpec)."""

from __future__ import annotations

import re
from pathlib import Path

import celpy
import pytest
import yaml
from celpy import json_to_cel

from pg_schema_restore.engine.spec import InvalidSpec, RestoreSpec

CRD = Path(__file__).resolve().parent.parent / "crds" / "schemarestores.pgschemarestore.io.yaml"


@pytest.fixture(scope="module")
def crd() -> dict:
    return yaml.safe_load(CRD.read_text())


@pytest.fixture(scope="module")
def spec_schema(crd) -> dict:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def _rule(spec_schema: dict, text: str):
    rules = {r["rule"]: r for r in spec_schema["x-kubernetes-validations"]}
    assert text in rules, f"CRD lacks rule {text!r}"
    env = celpy.Environment()
    return env.program(env.compile(text))


@pytest.mark.parametrize("spec,ok", [
    ({"database": "d", "schemas": ["a"], "restoreTime": "2024-01-28T14:30:00Z"}, True),
    ({"database": "d", "schemas": ["a"], "snapshotId": "rds:x"}, True),
    ({"database": "d", "schemas": ["a"]}, False),
    ({"database": "d", "schemas": ["a"], "restoreTime": "2024-01-28T14:30:00Z",
      "snapshotId": "rds:x"}, False),
])
def test_exactly_one_restore_point(spec_schema, spec, ok):
    program = _rule(spec_schema, "has(self.restoreTime) != has(self.snapshotId)")
    assert bool(program.evaluate({"self": json_to_cel(spec)})) is ok
    # the operator agrees with the server
    if ok:
        RestoreSpec.from_dict(spec)
    else:
        with pytest.raises(InvalidSpec, match="exactly one"):
            RestoreSpec.from_dict(spec)


def test_spec_is_immutable(spec_schema):
    program = _rule(spec_schema, "self == oldSelf")
    old = {"database": "d", "schemas": ["a", "b"], "restoreTime": "2024-01-28T14:30:00Z"}
    assert program.evaluate({"self": json_to_cel(old), "oldSelf": json_to_cel(dict(old))})
    changed = {**old, "schemas": ["a"]}
    assert not program.evaluate({"self": json_to_cel(changed), "oldSelf": json_to_cel(old)})


def _pattern(spec_schema: dict, *path: str) -> re.Pattern:
    node = spec_schema
    for key in path:
        node = node["properties"][key] if key != "items" else node["items"]
    return re.compile(node["pattern"])


@pytest.mark.parametrize("name,ok", [
    ("customer_a1", True), ("Tenant B", True), ("kündé", True),
    ('bad"name', False), ("a;drop", False), ("back\\slash", False), ("new\nline", False),
    ("it's", False),
])
def test_schema_name_pattern_matches_operator(spec_schema, name, ok):
    assert bool(_pattern(spec_schema, "schemas", "items").match(name)) is ok
    spec = {"database": "d", "schemas": [name], "restoreTime": "2024-01-28T14:30:00Z"}
    if ok:
        RestoreSpec.from_dict(spec)
    else:
        with pytest.raises(InvalidSpec):
            RestoreSpec.from_dict(spec)


def test_operator_refuses_what_patterns_cannot_express():
    """`--` and `/*` cannot be excluded by an RE2 pattern; the operator refuses them."""
    for name in ("a--b", "a/*b"):
        with pytest.raises(InvalidSpec):
            RestoreSpec.from_dict({"database": "d", "schemas": [name],
                                   "snapshotId": "s"})


@pytest.mark.parametrize("value,ok", [
    ("2024-01-28T14:30:00Z", True), ("2024-01-28T14:30:00.123+02:00", True),
    ("2024-01-28 14:30:00", False), ("yesterday", False), ("2024-01-28T14:30Z", False),
])
def test_restore_time_is_rfc3339(spec_schema, value, ok):
    assert bool(_pattern(spec_schema, "restoreTime").match(value)) is ok
    spec = {"database": "d", "schemas": ["a"], "restoreTime": value}
    if ok:
        RestoreSpec.from_dict(spec)
    else:
        with pytest.raises(InvalidSpec, match="RFC 3339"):
            RestoreSpec.from_dict(spec)


def test_schemas_unique_and_bounded(spec_schema):
    schemas = spec_schema["properties"]["schemas"]
    assert schemas["x-kubernetes-list-type"] == "set"
    assert schemas["minItems"] == 1
    with pytest.raises(InvalidSpec, match="twice"):
        RestoreSpec.from_dict({"database": "d", "schemas": ["a", "a"], "snapshotId": "s"})


def test_target_name_length_checked_with_derived_suffix():
    long_name = "t" * 49  # + 15-byte _YYYYMMDDHHMMSS = 64 bytes
    with pytest.raises(InvalidSpec, match="63-byte"):
        RestoreSpec.from_dict({"database": "d", "schemas": [long_name],
                               "restoreTime": "2024-01-28T14:30:00Z"})
    RestoreSpec.from_dict({"database": "d", "schemas": ["t" * 48],
                           "restoreTime": "2024-01-28T14:30:00Z"})


def test_enums_match_operator(spec_schema):
    props = spec_schema["properties"]
    from pg_schema_restore.engine import spec as spec_module

    assert tuple(props["dataCopy"]["enum"]) == spec_module.DATA_COPY
    assert tuple(props["credentials"]["enum"]) == spec_module.CREDENTIALS
    assert tuple(props["onFailure"]["enum"]) == spec_module.ON_FAILURE


def test_printer_columns(crd):
    columns = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns == ["Database", "Schemas", "Point", "Status", "Progress", "Age"]
