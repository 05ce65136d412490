"""Who may restore what: the declared sources decide, before anything runs.

Pure decisions (no server): the operator's policy turns a SchemaRestore's
spec into the one the engine runs, or refuses it with SourceNotAllowed. The
same refusals on the real control plane, as a tenant, are in
tests/kube/test_tenancy.py.
"""

from __future__ import annotations

import pytest

from ddl_job.errors import InvalidSpec, SourceNotAllowed
from pg_schema_restore.config import OperatorConfig
from pg_schema_restore.engine.spec import RestoreSpec

SOURCES = {
    "team-a-db": {"dbIdentifier": "prod-a", "region": "eu-west-1", "namespaces": ["team-a"],
                  "secretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:a"},
    "team-b-db": {"dbIdentifier": "prod-b", "region": "us-east-2", "namespaces": ["team-b"],
                  "secretArn": "arn:aws:secretsmanager:us-east-2:123456789012:secret:b",
                  "databases": ["billing"], "schemas": ["invoices", "payments"]},
    "shared": {"dbIdentifier": "prod-s", "secretArn": "s", "namespaces": ["*"]},
}
BASE = {"database": "billing", "schemas": ["invoices"], "restoreTime": "2024-01-28T14:30:00Z"}


def spec_for(namespace: str, source: dict, **config) -> dict:
    return OperatorConfig(sources=SOURCES, **config).spec_for(namespace,
                                                              {**BASE, "source": source})


def test_a_namespace_restores_its_declared_source():
    spec = RestoreSpec.from_dict(spec_for("team-a", {"name": "team-a-db"}))
    assert (spec.source.name, spec.source.db_identifier, spec.source.region) == (
        "team-a-db", "prod-a", "eu-west-1")
    assert spec.source.secret_arn.endswith(":secret:a")


def test_a_source_for_every_namespace():
    assert spec_for("anyone", {"name": "shared"})["source"]["dbIdentifier"] == "prod-s"


@pytest.mark.parametrize("namespace,source,says", [
    ("team-a", {"name": "team-b-db"}, "may not restore source 'team-b-db'"),
    ("team-a", {"name": "no-such-db"}, "may not restore source 'no-such-db'"),
    ("team-a", {"dbIdentifier": "prod-b"}, "may not name a database directly"),
    ("team-a", {"secretArn": "arn:aws:secretsmanager:eu-west-1:1:secret:x"}, "directly"),
    ("team-a", {"region": "us-east-2", "name": "team-a-db"}, "directly"),
])
def test_other_sources_and_raw_ids_are_refused(namespace, source, says):
    with pytest.raises(SourceNotAllowed) as refused:
        spec_for(namespace, source)
    assert refused.value.reason == "SourceNotAllowed"
    assert says in refused.value.message
    # The offer lists only what this namespace may use: nothing of team-b's.
    assert "team-b-db" not in refused.value.message.split("(")[-1]


def test_an_unknown_source_and_another_teams_read_alike():
    messages = []
    for name in ("team-b-db", "no-such-db"):
        with pytest.raises(SourceNotAllowed) as refused:
            spec_for("team-a", {"name": name})
        messages.append(refused.value.message.replace(name, "X"))
    assert messages[0] == messages[1]


def test_databases_and_schemas_a_source_allows():
    assert spec_for("team-b", {"name": "team-b-db"})["source"]["dbIdentifier"] == "prod-b"
    config = OperatorConfig(sources=SOURCES)
    with pytest.raises(SourceNotAllowed, match="database 'other'"):
        config.spec_for("team-b", {**BASE, "database": "other", "source": {"name": "team-b-db"}})
    with pytest.raises(SourceNotAllowed, match="schemas \\['ledger'\\]"):
        config.spec_for("team-b", {**BASE, "schemas": ["invoices", "ledger"],
                                   "source": {"name": "team-b-db"}})


def test_raw_ids_only_with_the_administrators_switch():
    raw = {"dbIdentifier": "prod-x", "secretArn": "arn:aws:secretsmanager:eu-west-1:1:secret:x"}
    assert spec_for("team-a", raw, allow_raw_sources=True)["source"] == raw
    with pytest.raises(InvalidSpec, match="excludes"):
        spec_for("team-a", {**raw, "name": "team-a-db"}, allow_raw_sources=True)


def test_defaults_may_name_a_declared_source_but_not_a_raw_one():
    named = OperatorConfig(sources=SOURCES, spec_defaults={"source": {"name": "team-a-db"}})
    assert named.spec_for("team-a", BASE)["source"]["dbIdentifier"] == "prod-a"
    with pytest.raises(SourceNotAllowed):
        named.spec_for("team-b", BASE)
    raw = OperatorConfig(sources=SOURCES, spec_defaults={"source": {"dbIdentifier": "prod-x"}})
    with pytest.raises(SourceNotAllowed, match="default source"):
        raw.spec_for("team-a", BASE)
    assert OperatorConfig(spec_defaults={"source": {"dbIdentifier": "prod-x"}},
                          allow_raw_sources=True).spec_for("team-a", BASE)["source"] == {
        "dbIdentifier": "prod-x"}


def test_no_source_at_all_is_left_to_the_provider():
    # The local provider has one production; on AWS the engine refuses an
    # empty source (InvalidSpec) before any call.
    assert spec_for("team-a", {}) == {**BASE, "source": {}}


def test_the_configuration_comes_from_the_environment():
    import json
    config = OperatorConfig.from_env({"PGSR_SOURCES": json.dumps(SOURCES),
                                      "PGSR_ALLOW_RAW_SOURCES": "false",
                                      "PGSR_JOB_NAMESPACE": "pgsr-system"})
    assert config.allow_raw_sources is False and config.job_namespace == "pgsr-system"
    assert config.source_policy.allowed_for("team-a") == ["shared", "team-a-db"]
    assert OperatorConfig.from_env({"PGSR_ALLOW_RAW_SOURCES": "true"}).allow_raw_sources
