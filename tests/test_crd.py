"""The CRD's rules, checked without a cluster.

The 1.20 test apiserver ignores CEL (`x-kubernetes-validations`), so each
rule is evaluated here with cel-python, and the OpenAPI patterns are run
against the same inputs as the operator's own validation (RestoreSpec).
The CRD is generated from RestoreSpec's field declarations
(pg_schema_restore.crd): the last tests prove both files are current and
hold exactly those declarations."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import MISSING, fields
from pathlib import Path

import celpy
import pytest
import yaml
from celpy import json_to_cel

from pg_schema_restore import crd as crd_module
from pg_schema_restore.engine.spec import InvalidSpec, RestoreSpec

REPO = Path(__file__).resolve().parent.parent
CRD = REPO / "crds" / "schemarestores.pgschemarestore.io.yaml"


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
    # legal PostgreSQL names, accepted by the server and the operator alike
    ('bad"name', True), ("a;drop", True), ("back\\slash", True), ("new\nline", True),
    ("it's", True),
    ("nul\x00byte", False),   # the one character PostgreSQL refuses
])
def test_schema_name_pattern_matches_operator(spec_schema, name, ok):
    assert bool(_pattern(spec_schema, "schemas", "items").match(name)) is ok
    spec = {"database": "d", "schemas": [name], "restoreTime": "2024-01-28T14:30:00Z"}
    if ok:
        RestoreSpec.from_dict(spec)
    else:
        with pytest.raises(InvalidSpec):
            RestoreSpec.from_dict(spec)


def test_operator_refuses_what_patterns_cannot_express(spec_schema):
    """System schemas and names over 63 bytes (not characters) pass the pattern;
    the operator refuses them. `--` and `/*` are legal names: accepted."""
    pattern = _pattern(spec_schema, "schemas", "items")
    for name in ("pg_x", "information_schema", "é" * 32):
        assert pattern.match(name)
        with pytest.raises(InvalidSpec):
            RestoreSpec.from_dict({"database": "d", "schemas": [name], "snapshotId": "s"})
    for name in ("a--b", "a/*b"):
        RestoreSpec.from_dict({"database": "d", "schemas": [name], "snapshotId": "s"})


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
    assert tuple(props["foreignKeys"]["enum"]) == spec_module.FOREIGN_KEYS


def test_printer_columns(crd):
    columns = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns == ["Database", "Schemas", "Point", "Status", "Progress", "Age"]


# -- the CRD is generated from the spec model (pg_schema_restore.crd) -----------------


def _fields_with_properties(cls: type, properties: dict, path: str = ""):
    """Each spec field (recursively) with its CRD property and its dotted path."""
    for spec_field in fields(cls):
        prop = properties[spec_field.metadata["json"]]
        yield spec_field, prop, path + spec_field.metadata["json"]
        if spec_field.metadata["nested"] is not None:
            yield from _fields_with_properties(spec_field.metadata["nested"], prop["properties"],
                                               f"{path}{spec_field.metadata['json']}.")


@pytest.mark.parametrize("path", crd_module.FILES, ids=str)
def test_crd_files_are_generated(path):
    text = (crd_module.REPO / path).read_text("utf-8")
    assert text == crd_module.render(), (
        f"{path} is stale or edited by hand: run `python -m pg_schema_restore.crd --write`")


def test_rendering_round_trips():
    rendered = crd_module.render()
    assert yaml.safe_load(rendered) == crd_module.build()
    loaded = yaml.safe_load(rendered)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    pattern = loaded["properties"]["spec"]["properties"]["schemas"]["items"]["pattern"]
    declared = next(f for f in fields(RestoreSpec) if f.name == "schemas").metadata["schema"]
    assert pattern.encode() == declared["items"]["pattern"].encode()


def test_every_spec_property_is_described(spec_schema):
    def walk(properties: dict, path: str):
        for name, prop in properties.items():
            assert isinstance(prop.get("description"), str) and prop["description"].strip(), \
                f"spec.{path}{name} has no description"
            walk(prop.get("properties", {}), f"{path}{name}.")

    walk(spec_schema["properties"], "")


def test_required_are_the_fields_without_default(spec_schema):
    assert spec_schema["required"] == [
        f.metadata["json"] for f in fields(RestoreSpec)
        if f.default is MISSING and f.default_factory is MISSING]
    assert spec_schema["required"] == ["database", "schemas"]


def test_constraints_are_the_spec_fields_schemas(spec_schema):
    """The generated properties are exactly the fields' declarations: nothing more."""
    for spec_field, prop, path in _fields_with_properties(RestoreSpec,
                                                          spec_schema["properties"]):
        meta = spec_field.metadata
        assert prop["description"] == meta["description"], path
        constraints = {k: v for k, v in prop.items()
                       if k not in ("description", "default", "properties")}
        assert constraints == meta["schema"], path
        if meta["nested"] is not None:
            assert set(prop["properties"]) == {f.metadata["json"]
                                               for f in fields(meta["nested"])}, path
    assert set(spec_schema["properties"]) == {f.metadata["json"] for f in fields(RestoreSpec)}


def test_server_defaults_are_the_top_level_ones(spec_schema):
    """Enum fields and jobs default in the API server; the fields of source and
    temporaryDatabase do not (the operator's configuration fills those in)."""
    defaults = {}
    for spec_field, prop, path in _fields_with_properties(RestoreSpec,
                                                          spec_schema["properties"]):
        if "default" in prop:
            assert prop["default"] == spec_field.default, path
            defaults[path] = prop["default"]
    assert defaults == {"engine": "native", "dataCopy": "copy",
                        "credentials": "resetMasterPassword",
                        "onFailure": "dropRestoredSchemas", "jobs": 2,
                        "foreignKeys": "keepNotValid"}


def test_check_names_the_stale_files(tmp_path, capsys):
    assert crd_module.main(["--check"], root=tmp_path) == 1
    assert crd_module.main(["--write"], root=tmp_path) == 0
    assert crd_module.main(["--check"], root=tmp_path) == 0
    chart = tmp_path / crd_module.FILES[1]
    chart.write_text(chart.read_text().replace("maxItems: 100", "maxItems: 101"))
    capsys.readouterr()
    assert crd_module.main(["--check"], root=tmp_path) == 1
    said = capsys.readouterr().err
    assert str(chart) in said and str(tmp_path / crd_module.FILES[0]) not in said


def test_every_field_of_spec_and_status_explains_itself() -> None:
    """`kubectl explain` prints the description: none may be empty."""
    crd = yaml.safe_load(CRD.read_text())
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    missing = []

    def walk(schema: dict, path: str) -> None:
        for name, prop in schema.get("properties", {}).items():
            if not prop.get("description", "").strip():
                missing.append(f"{path}.{name}")
            walk(prop, f"{path}.{name}")
            walk(prop.get("items", {}), f"{path}.{name}[]")

    for top in ("spec", "status"):
        walk(root[top], top)
    assert missing == []


def test_the_docs_field_reference_is_generated_from_this_crd() -> None:
    check = subprocess.run([sys.executable, str(REPO / "scripts/docs.py"), "--check"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_name_too_long_says_the_real_suffix_and_by_how_much():
    """issue 13: reason NameTooLong (as the docs say), the suffix it would use."""
    long_name = "t" * 49
    with pytest.raises(InvalidSpec) as info:
        RestoreSpec.from_dict({"database": "d", "schemas": [long_name],
                               "restoreTime": "2024-01-28T14:30:00Z"})
    assert info.value.reason == "NameTooLong"
    assert "_20240128143000" in info.value.message and "1 over" in info.value.message
    assert "00000000000000" not in info.value.message
    with pytest.raises(InvalidSpec) as info:   # a snapshot's time is read in phase 1
        RestoreSpec.from_dict({"database": "d", "schemas": [long_name], "snapshotId": "s"})
    assert info.value.reason == "NameTooLong"
    assert "15-byte suffix _YYYYMMDDHHMMSS" in info.value.message
    assert "1 over" in info.value.message
    with pytest.raises(InvalidSpec) as info:
        RestoreSpec.from_dict({"database": "d", "schemas": ["t" * 60], "snapshotId": "s",
                               "targetSuffix": "_restored"})
    assert "_restored" in info.value.message and "6 over" in info.value.message
    RestoreSpec.from_dict({"database": "d", "schemas": [long_name], "snapshotId": "s",
                           "targetSuffix": "_r"})


def test_status_keeps_unknown_fields_only_where_it_must() -> None:
    """On the status itself, x-kubernetes-preserve-unknown-fields hides every
    property from `kubectl explain` (issue 13); the record and the progress
    counters keep it."""
    crd = yaml.safe_load(CRD.read_text())
    status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    kept = []

    def walk(schema: dict, path: str) -> None:
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            kept.append(path)
        for name, prop in schema.get("properties", {}).items():
            walk(prop, f"{path}.{name}")

    walk(status, "status")
    assert kept == ["status.progress", "status.record", "status.record.spec",
                    "status.record.source",
                    "status.record.resources", "status.record.result"]
    assert {"conditions", "targetSchemas", "record", "warnings"} <= set(status["properties"])
