"""The Step Functions engine: the real definition (stepfunctions/restore.asl.json)
executed by moto's ASL interpreter, our Lambda and ECS entry point running
unmocked (support/sfn_moto.py), the real data plane as local processes,
the temporary database a genuine local point-in-time copy.

Every case ends with the audit item checked and nothing tagged with the
restore id left (instance, cluster, secret, S3 object, local copy).
"""

from __future__ import annotations

import boto3
import pytest
from psycopg import sql

from pg_schema_restore.engine.record import RestoreRecord
from pg_schema_restore.local.cluster import SUPERUSER
from pg_schema_restore.stepfunctions import definition
from support.aws import REGION, TENANTS
from support.pg import restore_point
from support.sfn_world import Machine, iso

@pytest.fixture
def machine(aws_world, monkeypatch):
    return Machine(aws_world, monkeypatch)


def _prepare(world):
    point = restore_point()
    expected = {t: world.counts(t) for t in TENANTS}
    world.damage()
    return point, expected, world.fingerprint()


def test_instance_point_in_time_restore(machine, aws_world):
    point, expected, before = _prepare(aws_world)
    run = machine.run(aws_world.spec(restoreTime=iso(point)))
    assert run["described"]["status"] == "SUCCEEDED", run["described"].get("cause")
    record = run["record"]
    assert record.phase == "Succeeded" and record.error is None
    assert record.completed == ["Initialize", "TemporaryDatabase", "SchemaExtraction",
                                "DataCopy", "PostData", "Cleanup", "Record"]
    for tenant, target in record.targets.items():
        assert aws_world.counts(target) == expected[tenant], tenant
    assert record.result["verify"], "verify returned nothing"
    assert record.progress.get("rows") == sum(sum(c.values()) for c in expected.values())
    after = aws_world.fingerprint()
    assert {k: after[k] for k in before} == before, "a pre-existing schema changed"
    assert [r["command"][4].removeprefix("--key=") for r in machine.runs] == [
        "rights", "extract", "applyPre", "copy", "applyPost", "verify"]
    assert aws_world.sim.calls["rds.RestoreDBInstanceToPointInTime"] == 1
    audit = machine.audit(run["restoreId"])
    assert audit["status"] == "Succeeded" and audit["targets"] == record.targets
    assert aws_world.leftovers(run["restoreId"]) == []
    transitions = sum(1 for e in run["events"] if e["type"].endswith("StateEntered"))
    calls = sum(aws_world.sim.calls.values())
    print(f"\nstate transitions of a happy-path instance PITR restore: {transitions}; "
          f"AWS API calls through the hooked sessions: {calls}")
    assert transitions < 60, "the happy path should stay cheap (Step Functions bills per transition)"


def _assert_failed_clean(machine, world, run, before, reason: str, phase: str) -> RestoreRecord:
    assert run["described"]["status"] == "FAILED"
    assert run["described"].get("error") == reason, run["described"].get("cause")
    record = machine.failed_record(run)
    assert record.phase == "Failed"
    assert record.error and record.error["reason"] == reason and record.error["phase"] == phase, \
        record.error
    audit = machine.audit(run["restoreId"])
    assert audit["status"] == "Failed"
    assert audit["error"]["reason"] == reason and audit["error"]["phase"] == phase
    after = world.fingerprint()
    assert after == before, "production changed: a failed restore left schemas behind"
    assert world.leftovers(run["restoreId"]) == []
    return record


def test_temporary_database_incompatible_restore(machine, aws_world):
    point, _, before = _prepare(aws_world)
    aws_world.sim.restore_outcome = "incompatible-restore"
    run = machine.run(aws_world.spec(restoreTime=iso(point)))
    record = _assert_failed_clean(machine, aws_world, run, before, "TemporaryDatabaseFailed",
                                  "TemporaryDatabase")
    assert "incompatible-restore" in record.error["message"]
    assert machine.runs == [], "a data-plane step ran on a failed copy"


def test_data_plane_step_exits_non_zero(aws_world, monkeypatch):
    machine = Machine(aws_world, monkeypatch, fail_step="applyPost")
    point, _, before = _prepare(aws_world)
    run = machine.run(aws_world.spec(restoreTime=iso(point)))
    record = _assert_failed_clean(machine, aws_world, run, before, "StepFailed", "PostData")
    assert "applyPost" in record.error["message"] and "137" in record.error["message"]
    # Pre-data was applied: the schemas carrying this restore's marker were dropped.
    assert sorted(record.result["droppedSchemas"]) == sorted(record.targets.values())
    assert [r["command"][4] for r in machine.runs][-1] == "--key=drop"


def test_validation_refuses_before_anything_is_created(machine, aws_world):
    """A target name already taken: Initialize's precheck refuses with the data
    plane's own reason, and no RDS restore is ever called."""
    point, _, before = _prepare(aws_world)
    spec = aws_world.spec(restoreTime=iso(point), targetSuffix="_taken")
    with aws_world.prod.connect(aws_world.database) as conn:
        conn.execute("CREATE SCHEMA customer_a1_taken")
    before = aws_world.fingerprint()
    run = machine.run(spec)
    _assert_failed_clean(machine, aws_world, run, before, "TargetExists", "Initialize")
    assert aws_world.sim.calls["rds.RestoreDBInstanceToPointInTime"] == 0, \
        "something was created before validation passed"


def test_aurora_cluster_from_snapshot(machine, aws_world):
    point, expected, before = _prepare_snapshot(aws_world)
    run = machine.run(aws_world.spec(snapshotId="aurora-snap",
                                     source={"dbIdentifier": "prod-aurora"}))
    assert run["described"]["status"] == "SUCCEEDED", run["described"].get("cause")
    record = run["record"]
    for tenant, target in record.targets.items():
        assert aws_world.counts(target) == expected[tenant], tenant
    assert aws_world.sim.calls["rds.RestoreDBClusterFromSnapshot"] == 1
    assert aws_world.sim.calls["rds.CreateDBInstance"] == 1
    assert machine.audit(run["restoreId"])["status"] == "Succeeded"
    assert aws_world.leftovers(run["restoreId"]) == []


def _prepare_snapshot(world):
    expected = {t: world.counts(t) for t in TENANTS}
    point = world.snapshot("aurora-snap", source="prod-aurora")
    world.damage()
    return point, expected, world.fingerprint()


@pytest.fixture
def dms_machine(aws_world, monkeypatch):
    """One hooked session shared by every call, with the DMS double on it
    (the double keeps its tasks' state per session)."""
    from support.dms_double import DmsDouble

    session = aws_world.sim.session()
    double = DmsDouble(session).install()
    machine = Machine(aws_world, monkeypatch, session_factory=lambda: session)
    machine.dms = double
    return machine


def test_dms_full_load(dms_machine, aws_world):
    point, expected, before = _prepare(aws_world)
    run = dms_machine.run(aws_world.spec(restoreTime=iso(point), dataCopy="dms"))
    assert run["described"]["status"] == "SUCCEEDED", run["described"].get("cause")
    record = run["record"]
    for tenant, target in record.targets.items():
        assert aws_world.counts(target) == expected[tenant], tenant
    assert len(dms_machine.dms.started) == len(TENANTS)
    assert dms_machine.dms.max_running <= definition.DMS_MAX_CONCURRENCY
    assert record.progress["rows"] == sum(sum(c.values()) for c in expected.values())
    # DMS copies no sequences: the sequences-only step ran after the full load.
    assert [r["command"][4] for r in dms_machine.runs] == [
        "--key=rights", "--key=extract", "--key=applyPre", "--key=copy", "--key=applyPost",
        "--key=verify"]
    assert "--sequences-only" in dms_machine.runs[3]["command"]
    assert dms_machine.audit(run["restoreId"])["status"] == "Succeeded"
    assert aws_world.leftovers(run["restoreId"]) == []
    assert _dms_leftovers(run["restoreId"]) == []


def test_dms_task_fails(dms_machine, aws_world):
    point, _, before = _prepare(aws_world)
    spec = aws_world.spec(restoreTime=iso(point), dataCopy="dms")
    target = f"customer_b2_{iso(point)[:19].replace('-', '').replace(':', '').replace('T', '')}"
    dms_machine.dms.fail_task(target, "ERROR: out of shared memory")
    run = dms_machine.run(spec)
    record = _assert_failed_clean(dms_machine, aws_world, run, before, "DmsTaskFailed",
                                  "DataCopy")
    assert "out of shared memory" in record.error["message"], record.error
    assert sorted(record.result["droppedSchemas"]) == sorted(record.targets.values())
    assert _dms_leftovers(run["restoreId"]) == []


def test_dms_connection_test_fails(dms_machine, aws_world):
    point, _, before = _prepare(aws_world)
    dms_machine.dms.fail_connection("target", "FATAL: password authentication failed")
    run = dms_machine.run(aws_world.spec(restoreTime=iso(point), dataCopy="dms"))
    record = _assert_failed_clean(dms_machine, aws_world, run, before, "DmsConnectionFailed",
                                  "DataCopy")
    assert "password authentication failed" in record.error["message"]
    assert "target" in record.error["message"]
    assert dms_machine.dms.started == [], "a task started although a connection failed"
    assert _dms_leftovers(run["restoreId"]) == []


def _dms_leftovers(restore_id: str) -> list[str]:
    dms = boto3.client("dms", region_name=REGION)
    found = [i["ReplicationInstanceIdentifier"] for i in
             dms.describe_replication_instances()["ReplicationInstances"]]
    found += [e["EndpointIdentifier"] for e in dms.describe_endpoints()["Endpoints"]]
    found += [t["ReplicationTaskIdentifier"] for t in
              dms.describe_replication_tasks()["ReplicationTasks"]]
    return [name for name in found if restore_id in name]


# -- RDS's master user is no superuser: the rights and membership steps --------------
def _membership(world, grant: bool) -> None:
    """As the master user itself, who made the grant (16+ revokes by grantor)."""
    verb = "GRANT {} TO {}" if grant else "REVOKE {} FROM {}"
    world.prod.execute(sql.SQL(verb).format(sql.Identifier(world.owner),
                                            sql.Identifier(world.role)).as_string(None),
                       world.database, user=world.role, password=world.role_password)


def _is_member(world) -> bool:
    with world.prod.connect() as conn:
        return bool(conn.execute("SELECT pg_has_role(%s, %s, 'USAGE')",
                                 (world.role, world.owner)).fetchone()[0])


def _keys(machine) -> list[str]:
    return [r["command"][4].removeprefix("--key=") for r in machine.runs]


def test_missing_membership_in_the_copy_refused_before_extraction(machine, aws_world):
    """Production's tenants changed hands after the restore point, so Initialize
    finds nothing to refuse; the `rights` step, first on the copy, ends the
    execution with MissingRoleMembership: nothing extracted, nothing created
    in production, the copy deleted."""
    _membership(aws_world, grant=False)
    point = restore_point()          # the copy: tenants owned by the application role
    aws_world.prod.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(
        sql.Identifier(aws_world.owner), sql.Identifier(aws_world.role)).as_string(None),
        aws_world.database, user=SUPERUSER)
    before = aws_world.fingerprint()
    run = machine.run(aws_world.spec(restoreTime=iso(point)))
    record = _assert_failed_clean(machine, aws_world, run, before, "MissingRoleMembership",
                                  "SchemaExtraction")
    assert f"copy: membership in {aws_world.owner}" in record.error["message"], record.error
    assert _keys(machine) == ["rights"]
    assert not record.result.get("grantedMemberships")


@pytest.mark.e2e
def test_grant_membership_lent_and_revoked_by_the_cleanup(machine, aws_world):
    """grantMembership: the `rights` step reports what is missing, one step per
    side grants it, the restore succeeds, and the cleanup revokes production's;
    the record and the audit item say both."""
    _membership(aws_world, grant=False)
    point, expected, before = _prepare(aws_world)
    run = machine.run(aws_world.spec(restoreTime=iso(point), grantMembership=True))
    assert run["described"]["status"] == "SUCCEEDED", run["described"].get("cause")
    record = run["record"]
    for tenant, target in record.targets.items():
        assert aws_world.counts(target) == expected[tenant], tenant
    assert _keys(machine) == ["rights", "grantCopy", "grantProduction", "extract", "applyPre",
                              "copy", "applyPost", "verify", "revoke"]
    assert record.result["grantedMemberships"] == {"copy": [aws_world.owner],
                                                   "production": [aws_world.owner]}
    assert record.resources["grantedMemberships"] == [aws_world.owner]
    assert record.result["revokedMemberships"] == [aws_world.owner]
    assert not _is_member(aws_world)
    audit = machine.audit(run["restoreId"])
    assert audit["status"] == "Succeeded"
    assert aws_world.owner in str(audit.get("grantedMemberships"))
    assert aws_world.owner in str(audit.get("revokedMemberships"))
    assert aws_world.leftovers(run["restoreId"]) == []
