"""More faults and bad inputs for the engine on "AWS" (moto 5.2.5 + real PostgreSQL).

Complements test_engine_aws.py, test_dms.py and test_cli_aws.py with cases
they do not cover. The promise checked everywhere: an invalid input or an
AWS failure ends `Failed` with a precise CamelCase reason and a message that
says what happened; production is untouched; nothing carrying the restore id
is left; no password ever reaches the record, the events or the audit item.

Helpers are local on purpose (test_engine_aws.py is being edited elsewhere).
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import pytest
import yaml

from pg_schema_restore import cli
from pg_schema_restore.aws.audit import DynamoAudit
from pg_schema_restore.engine import runner
from pg_schema_restore.engine.record import RestoreRecord
from support.aws import (
    ACCOUNT,
    AUDIT_TABLE,
    BUCKET,
    REGION,
    TENANTS,
    Crash,
    SavedRecord,
    _BridgeHandler,
    rds_backend,
    temporary_secret_read,
)
from support.pg import restore_point
from support.specs import ENGINE_CASES, invalid_cases

RESTORE_CALLS = ("rds.RestoreDBInstanceToPointInTime", "rds.RestoreDBInstanceFromDBSnapshot",
                 "rds.RestoreDBClusterToPointInTime", "rds.RestoreDBClusterFromSnapshot")


# -- helpers ------------------------------------------------------------------------
def iso(point: datetime, offset: timedelta = timedelta(0)) -> str:
    text = point.astimezone(timezone(offset)).isoformat()
    return text.replace("+00:00", "Z")


def prepare(world) -> tuple[datetime, dict[str, str]]:
    """A restore point, then damage production; returns (point, fingerprint)."""
    point = restore_point()
    world.damage()
    return point, world.fingerprint()


def restore_calls(world) -> int:
    return sum(world.sim.calls[c] for c in RESTORE_CALLS)


def audit_item(restore_id: str) -> dict | None:
    try:
        return DynamoAudit(boto3.Session(region_name=REGION), AUDIT_TABLE).get(restore_id)
    except Exception:   # noqa: BLE001 - the table may be the thing a test removed
        return None


def assert_failed_clean(world, record: RestoreRecord, before: dict[str, str], reason: str,
                        phase: str, *, says: tuple[str, ...] = ()) -> None:
    assert record.phase == "Failed", (record.phase, record.error)
    assert record.error is not None and record.error["reason"] == reason, record.error
    assert record.error["phase"] == phase, record.error
    message = record.error["message"]
    for text in says:
        assert text in message, (text, message)
    assert_no_traceback(message)
    assert world.fingerprint() == before, ("production changed",
                                           record.result.get("cleanupErrors"))
    assert world.leftovers(record.restore_id) == [], record.result.get("cleanupErrors")
    assert not set(record.targets.values()) & world.schemas()


def assert_no_traceback(message: str) -> None:
    """A message for humans, not the tail of a Python traceback."""
    assert "Traceback" not in message and 'File "' not in message, message


def assert_never_said(record: RestoreRecord, events: list[dict], *words: str) -> None:
    """None of `words` (passwords) in the record, the events or the audit item."""
    places = {"record": record.to_json(), "events": json.dumps(events, default=str),
              "audit": json.dumps(audit_item(record.restore_id), default=str)}
    for word in words:
        assert len(word) >= 8, "a password to look for"
        for where, text in places.items():
            assert word not in text, f"a password appears in the {where}"


# -- invalid specs: refused where they enter, nothing created ------------------------
# Every case is a unit test of the spec model (tests/test_spec.py); here one
# case per family goes through the command line (`run --spec FILE`, the same
# manifest kubectl would apply) to prove nothing is called, created or written.
@pytest.mark.parametrize("mutate,says", invalid_cases(ENGINE_CASES))
def test_invalid_spec_is_refused_before_anything_is_created(aws_world, mutate, says,
                                                            tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before, calls = aws_world.fingerprint(), sum(aws_world.sim.calls.values())
    spec = aws_world.spec(restoreTime=iso(restore_point()))
    mutate(spec)
    manifest = tmp_path / "restore.yaml"
    manifest.write_text(yaml.safe_dump({"apiVersion": "pgschemarestore.io/v1alpha1",
                                        "kind": "SchemaRestore",
                                        "metadata": {"name": "bad"}, "spec": spec}))
    assert cli.main(["run", "--spec", str(manifest), "--audit-table", AUDIT_TABLE,
                     "--restore-id", "refused1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: InvalidSpec: "), err
    for words in says:
        assert words in err, (words, err)
    assert_no_traceback(err)
    assert sum(aws_world.sim.calls.values()) == calls          # not one AWS call
    assert aws_world.fingerprint() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["restore.yaml"]   # no state file
    assert audit_item("refused1") is None


# -- production database and secret --------------------------------------------------
def _secret(value: str) -> str:
    sm = boto3.client("secretsmanager", region_name=REGION)
    return sm.create_secret(Name=f"prod/bad-{secrets.token_hex(4)}", SecretString=value)["ARN"]


def _prod_value(world, **changes: Any) -> dict[str, Any]:
    value = {"engine": "postgres", "host": "127.0.0.1", "port": world.prod.port,
             "username": world.role, "password": world.role_password,
             "dbname": world.database}
    value.update(changes)
    return {k: v for k, v in value.items() if v is not None}


def test_database_missing_on_the_source(aws_world):
    before = aws_world.fingerprint()
    record = aws_world.run(aws_world.spec(restoreTime=iso(restore_point()),
                                          database="no_such_database"))
    assert_failed_clean(aws_world, record, before, "DatabaseNotFound", "Initialize",
                        says=("no_such_database",))
    assert restore_calls(aws_world) == 0


def test_production_secret_missing(aws_world):
    before = aws_world.fingerprint()
    arn = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/nothing-here-AbC123"
    record = aws_world.run(aws_world.spec(restoreTime=iso(restore_point()),
                                          source={"secretArn": arn}))
    assert_failed_clean(aws_world, record, before, "SecretNotFound", "Initialize",
                        says=(arn,))
    assert restore_calls(aws_world) == 0


@pytest.mark.parametrize("case", ["not-json", "json-list", "no-password", "no-host",
                                  "no-username"])
def test_production_secret_malformed(aws_world, case):
    before = aws_world.fingerprint()
    password = aws_world.role_password
    if case == "not-json":
        text = f"host=127.0.0.1 user={aws_world.role} password={password}"
        says: tuple[str, ...] = ("not JSON",)
    elif case == "json-list":
        text = json.dumps([aws_world.role, password])
        says = ("not a JSON object",)
    else:
        field = case.split("-", 1)[1]
        text = json.dumps(_prod_value(aws_world, **{field: None}))
        says = (repr(field),)
    arn = _secret(text)
    events: list[dict] = []
    record = aws_world.run(aws_world.spec(restoreTime=iso(restore_point()),
                                          source={"secretArn": arn}), events=events)
    assert_failed_clean(aws_world, record, before, "InvalidSecret", "Initialize", says=says)
    assert restore_calls(aws_world) == 0
    assert_never_said(record, events, password)


def test_wrong_production_password_is_reported_without_any_password(aws_world):
    """The message comes from PostgreSQL; neither the wrong nor the real password leaks."""
    before = aws_world.fingerprint()
    wrong = "wrong-" + secrets.token_hex(12)
    arn = _secret(json.dumps(_prod_value(aws_world, password=wrong)))
    events: list[dict] = []
    record = aws_world.run(aws_world.spec(restoreTime=iso(restore_point()),
                                          source={"secretArn": arn}), events=events)
    assert_failed_clean(aws_world, record, before, "ConnectionFailed", "Initialize",
                        says=("password authentication failed", aws_world.role))
    assert restore_calls(aws_world) == 0
    assert_never_said(record, events, wrong, aws_world.role_password)


# -- the source: kinds, snapshots, windows ----------------------------------------------
def test_aurora_member_instance_as_source(aws_world):
    before = aws_world.fingerprint()
    record = aws_world.run(aws_world.spec(restoreTime=iso(restore_point()),
                                          source={"dbIdentifier": "prod-aurora-1"}))
    assert_failed_clean(aws_world, record, before, "InvalidSpec", "Initialize",
                        says=("prod-aurora-1", "prod-aurora"))
    assert restore_calls(aws_world) == 0


def test_instance_source_with_a_cluster_snapshot(aws_world):
    aws_world.snapshot("prod-aurora-manual-x", source="prod-aurora")
    before = aws_world.fingerprint()
    record = aws_world.run(aws_world.spec(snapshotId="prod-aurora-manual-x",
                                          targetSuffix="_snap"))
    assert_failed_clean(aws_world, record, before, "SnapshotNotFound", "Initialize",
                        says=("prod-aurora-manual-x",))
    assert restore_calls(aws_world) == 0


@pytest.mark.parametrize("kind", ["instance", "cluster"])
def test_snapshot_still_creating(aws_world, kind):
    source = "prod-db" if kind == "instance" else "prod-aurora"
    aws_world.snapshot(f"{source}-in-progress", source=source)
    backend = rds_backend()
    snaps = backend.database_snapshots if kind == "instance" else backend.cluster_snapshots
    snaps[f"{source}-in-progress"].status = "creating"
    before = aws_world.fingerprint()
    record = aws_world.run(aws_world.spec(snapshotId=f"{source}-in-progress",
                                          source={"dbIdentifier": source}))
    assert_failed_clean(aws_world, record, before, "SnapshotNotAvailable", "Initialize",
                        says=(f"{source}-in-progress", "creating"))
    assert restore_calls(aws_world) == 0


@pytest.mark.parametrize("engine,reason", [("mysql", "UnsupportedSource"),
                                           ("postgres", "PointInTimeRestoreUnavailable")])
def test_source_that_cannot_be_restored(aws_world, engine, reason):
    """A MySQL instance; a PostgreSQL instance without automated backups."""
    rds = boto3.client("rds", region_name=REGION)
    rds.create_db_instance(DBInstanceIdentifier="odd-db", Engine=engine,
                           DBInstanceClass="db.t4g.micro", MasterUsername="admin",
                           MasterUserPassword="unused-by-tests", AllocatedStorage=20,
                           BackupRetentionPeriod=0 if engine == "postgres" else 7)
    before = aws_world.fingerprint()
    record = aws_world.run(aws_world.spec(restoreTime=iso(restore_point()),
                                          source={"dbIdentifier": "odd-db"}))
    assert_failed_clean(aws_world, record, before, reason, "Initialize", says=("odd-db",))
    assert restore_calls(aws_world) == 0


def _fixed_latest(session: boto3.Session, latest: datetime) -> None:
    """LatestTime of every reported restore window = `latest` (the simulator says now)."""
    def handler(event_name: str, parsed: dict[str, Any], **kwargs: Any) -> None:
        if event_name.endswith(".DescribeDBInstanceAutomatedBackups"):
            for backup in parsed.get("DBInstanceAutomatedBackups", []):
                if "RestoreWindow" in backup:
                    backup["RestoreWindow"]["LatestTime"] = latest
    session.events.register_last("after-call", handler)


@pytest.mark.parametrize("kind", ["instance", "cluster"])
def test_restore_time_at_the_window_edges(aws_world, monkeypatch, kind):
    """Both edges are inside (to the microsecond, in any UTC offset); one second
    and one microsecond outside are refused before anything is created."""
    earliest = restore_point()
    time.sleep(1.2)
    latest = restore_point()
    sim = aws_world.sim
    session = sim.session()
    if kind == "instance":
        source = "prod-db"
        sim.windows[source] = earliest
        _fixed_latest(session, latest)
    else:
        from moto.rds.models import DBCluster
        source = "prod-aurora"
        rds_backend().clusters[source].earliest_restorable_time = earliest
        monkeypatch.setattr(DBCluster, "latest_restorable_time", property(lambda self: latest))
    before = aws_world.fingerprint()
    micro, second = timedelta(microseconds=1), timedelta(seconds=1)
    cases = [(earliest, timedelta(0), True), (latest, timedelta(0), True),
             (earliest, timedelta(hours=2), True), (latest, timedelta(hours=-5), True),
             (earliest - second, timedelta(0), False), (latest + second, timedelta(0), False),
             (earliest - micro, timedelta(0), False), (latest + micro, timedelta(0), False),
             (earliest - second, timedelta(hours=2), False)]
    for point, offset, inside in cases:
        spec = aws_world.spec(restoreTime=iso(point, offset), source={"dbIdentifier": source})
        record = aws_world.record(spec)
        ctx = aws_world.context(record, session=session)
        runner.run_one(record, ctx)
        label = (iso(point, offset), inside)
        if inside:
            assert record.phase == "TemporaryDatabase" and record.error is None, (label,
                                                                                 record.error)
            runner.request_cleanup(record)          # cancel: nothing was created
            runner.run(record, ctx)
            assert record.error["reason"] == "Cancelled", (label, record.error)
        else:
            runner.run(record, ctx)
            assert record.error and record.error["reason"] == "RestoreTimeOutOfWindow", (
                label, record.error)
            assert record.error["phase"] == "Initialize"
            assert iso(point) in record.error["message"].replace("+00:00", "Z"), (
                label, record.error["message"])
        assert record.phase == "Failed", label
        assert aws_world.leftovers(record.restore_id) == [], label
    assert restore_calls(aws_world) == 0
    assert aws_world.fingerprint() == before


# -- AWS refusals during the run ------------------------------------------------------------
@pytest.mark.e2e
def test_access_denied_on_the_restore_call(aws_world):
    point, before = prepare(aws_world)
    fault = aws_world.sim.fail("rds.RestoreDBInstanceToPointInTime", code="AccessDenied")
    record = aws_world.run(aws_world.spec(restoreTime=iso(point)))
    assert fault.fired == 1
    assert_failed_clean(aws_world, record, before, "AwsError", "TemporaryDatabase",
                        says=("AccessDenied",))
    assert aws_world.sim.succeeded["rds.RestoreDBInstanceToPointInTime"] == 0
    assert aws_world.sim.calls["secrets-manager.CreateSecret"] == 0
    assert audit_item(record.restore_id)["error"]["reason"] == "AwsError"


@pytest.mark.e2e
def test_aws_error_message_names_the_failed_call(aws_world):
    point, before = prepare(aws_world)
    aws_world.sim.fail("rds.RestoreDBInstanceToPointInTime", code="InvalidParameterValue")
    record = aws_world.run(aws_world.spec(restoreTime=iso(point)))
    assert_failed_clean(aws_world, record, before, "AwsError", "TemporaryDatabase",
                        says=("InvalidParameterValue", "RestoreDBInstanceToPointInTime"))


@pytest.mark.e2e
def test_access_denied_on_the_password_reset(aws_world):
    point, before = prepare(aws_world)
    sim = aws_world.sim
    fault = sim.fail("rds.ModifyDBInstance", code="AccessDenied")
    events: list[dict] = []
    record = aws_world.run(aws_world.spec(restoreTime=iso(point)), events=events)
    assert fault.fired == 1
    assert_failed_clean(aws_world, record, before, "AwsError", "SchemaExtraction",
                        says=("AccessDenied",))
    assert sim.succeeded["secrets-manager.CreateSecret"] == 1      # stored first ...
    assert sim.succeeded["secrets-manager.DeleteSecret"] == 1      # ... and deleted
    assert sim.succeeded["rds.DeleteDBInstance"] == 1
    [created] = sim.params["secrets-manager.CreateSecret"]
    assert_never_said(record, events, json.loads(created["SecretString"])["password"])


@pytest.mark.e2e
def test_access_denied_on_create_secret(aws_world):
    point, before = prepare(aws_world)
    sim = aws_world.sim
    fault = sim.fail("secrets-manager.CreateSecret", code="AccessDeniedException")
    record = aws_world.run(aws_world.spec(restoreTime=iso(point)))
    assert fault.fired == 1
    assert_failed_clean(aws_world, record, before, "AwsError", "SchemaExtraction",
                        says=("AccessDenied",))
    # The password is never changed before it is stored somewhere.
    assert sim.calls["rds.ModifyDBInstance"] == 0
    assert sim.succeeded["rds.DeleteDBInstance"] == 1


@pytest.mark.e2e
def test_access_denied_on_the_aurora_writer(aws_world):
    """The cluster is restored, its writer instance is refused: the cluster goes."""
    point, before = prepare(aws_world)
    sim = aws_world.sim
    sim.fail("rds.CreateDBInstance", code="AccessDenied")
    record = aws_world.run(aws_world.spec(restoreTime=iso(point),
                                          source={"dbIdentifier": "prod-aurora"}))
    assert_failed_clean(aws_world, record, before, "AwsError", "TemporaryDatabase",
                        says=("AccessDenied",))
    assert sim.succeeded["rds.RestoreDBClusterToPointInTime"] == 1
    assert sim.succeeded["rds.DeleteDBCluster"] == 1


def test_access_denied_on_the_audit_put(aws_world):
    before = aws_world.fingerprint()
    fault = aws_world.sim.fail("dynamodb.PutItem", code="AccessDeniedException")
    record = aws_world.run(aws_world.spec(restoreTime=iso(restore_point())))
    assert fault.fired == 1
    assert_failed_clean(aws_world, record, before, "AwsError", "Initialize",
                        says=("AccessDenied",))
    assert restore_calls(aws_world) == 0
    item = audit_item(record.restore_id)      # the final write still tells the story
    assert item["status"] == "Failed" and item["error"]["reason"] == "AwsError"


def test_audit_table_missing(aws_world):
    boto3.client("dynamodb", region_name=REGION).delete_table(TableName=AUDIT_TABLE)
    before = aws_world.fingerprint()
    record = aws_world.run(aws_world.spec(restoreTime=iso(restore_point())))
    assert restore_calls(aws_world) == 0
    assert record.phase == "Failed" and record.error["phase"] == "Initialize", record.error
    assert aws_world.leftovers(record.restore_id) == []
    assert aws_world.fingerprint() == before
    assert AUDIT_TABLE in record.error["message"], record.error
    assert record.error["reason"] == "AuditTableNotFound", record.error


@pytest.mark.e2e
def test_artifacts_bucket_missing(aws_world):
    point, before = prepare(aws_world)
    missing = "pgsr-no-such-bucket"
    record = aws_world.run(aws_world.spec(restoreTime=iso(point),
                                          artifactsLocation=f"s3://{missing}/restores"))
    assert record.phase == "Failed"
    assert record.error["reason"] not in ("StepFailed", "InternalError"), record.error
    assert missing in record.error["message"]
    assert_no_traceback(record.error["message"])
    assert record.error["phase"] == "Initialize", record.error   # nothing created first
    assert record.error["reason"] == "ArtifactsUnavailable", record.error
    assert restore_calls(aws_world) == 0
    assert not record.result.get("cleanupErrors"), record.result.get("cleanupErrors")
    assert_failed_clean(aws_world, record, before, record.error["reason"], "Initialize")


def _deny_s3_puts(monkeypatch, restore_id_part: str) -> list[str]:
    """The S3 bridge (data-plane subprocesses) answers PutObject with 403 AccessDenied."""
    original = _BridgeHandler.do_PUT
    denied: list[str] = []

    def do_put(self) -> None:
        if restore_id_part not in self.path:
            return original(self)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        denied.append(self.path)
        body = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
                b"<Message>Access Denied</Message><RequestId>sim</RequestId></Error>")
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    monkeypatch.setattr(_BridgeHandler, "do_PUT", do_put)
    return denied


@pytest.mark.e2e
def test_access_denied_writing_artifacts(aws_world, monkeypatch):
    point, before = prepare(aws_world)
    record = aws_world.record(aws_world.spec(restoreTime=iso(point)))
    denied = _deny_s3_puts(monkeypatch, f"/{record.restore_id}/")
    record = aws_world.run(record.requested.to_dict(), restore_id=record.restore_id)
    assert denied, "no artifact upload was attempted"
    assert record.phase == "Failed" and record.error["phase"] == "SchemaExtraction"
    assert record.error["reason"] == "ArtifactWriteFailed", record.error
    assert aws_world.leftovers(record.restore_id) == []
    assert aws_world.fingerprint() == before
    message = record.error["message"]
    assert record.error["reason"] != "StepFailed", record.error
    assert "AccessDenied" in message and BUCKET in message, message
    assert_no_traceback(message)


# -- the temporary database misbehaves ----------------------------------------------------
@pytest.mark.e2e
def test_instance_fails_while_its_password_is_reset(aws_world):
    """`available`, then `failed` while the password reset is awaited."""
    point, before = prepare(aws_world)
    sim = aws_world.sim
    session = sim.session()

    def fail_after_modify(event_name: str, context: dict, **kwargs: Any) -> None:
        if event_name.endswith(".ModifyDBInstance"):
            identifier = context["sim_params"]["DBInstanceIdentifier"]
            sim._lifecycle[f"instance:{identifier}"] = ["resetting-master-credentials",
                                                        "failed"]
    session.events.register_last("after-call", fail_after_modify)
    record = aws_world.run(aws_world.spec(restoreTime=iso(point)), session=session)
    assert_failed_clean(aws_world, record, before, "TemporaryDatabaseFailed",
                        "SchemaExtraction", says=(f"pgsr-{record.restore_id}-db", "failed"))
    assert sim.succeeded["rds.ModifyDBInstance"] == 1


@pytest.mark.e2e
def test_restore_that_never_becomes_available_times_out(aws_world):
    point, before = prepare(aws_world)
    aws_world.sim.creating_describes = 100_000
    record = aws_world.run(aws_world.spec(restoreTime=iso(point)))
    assert_failed_clean(aws_world, record, before, "TemporaryDatabaseTimeout",
                        "TemporaryDatabase", says=(f"pgsr-{record.restore_id}-db",))
    assert aws_world.sim.succeeded["rds.DeleteDBInstance"] == 1


@pytest.mark.e2e
def test_password_never_applied_fails_without_leaking_it(aws_world, monkeypatch):
    """RDS says the reset is done but the copy still has the old password: the
    extract step cannot connect; PostgreSQL's message is reported, the new
    password is not."""
    point, before = prepare(aws_world)
    sim = aws_world.sim
    monkeypatch.setattr(sim, "_reset_password", lambda key, master, password: None)
    events: list[dict] = []
    record = aws_world.run(aws_world.spec(restoreTime=iso(point)), events=events)
    assert_failed_clean(aws_world, record, before, "ConnectionFailed", "SchemaExtraction",
                        says=("password authentication failed",))
    [created] = sim.params["secrets-manager.CreateSecret"]
    password = json.loads(created["SecretString"])["password"]
    assert_never_said(record, events, password, aws_world.role_password, sim.prod.password)


@pytest.mark.e2e
def test_schema_missing_at_the_restore_point(aws_world):
    """A schema created after the point (or never): found missing in the copy."""
    point, before = prepare(aws_world)
    record = aws_world.run(aws_world.spec(restoreTime=iso(point),
                                          schemas=["customer_a1", "customer_zz"]))
    assert_failed_clean(aws_world, record, before, "MissingSchema", "SchemaExtraction",
                        says=("customer_zz",))
    assert "customer_a1" not in record.error["message"].split("[")[-1]


# -- cleanup under faults -----------------------------------------------------------------------
@pytest.mark.e2e
def test_busy_instance_delete_is_retried(aws_world):
    """DeleteDBInstance answers InvalidDBInstanceState once: cleanup waits and retries."""
    point = restore_point()
    expected = {t: aws_world.counts(t) for t in TENANTS}
    aws_world.damage()
    before = aws_world.fingerprint()
    sim = aws_world.sim
    fault = sim.fail("rds.DeleteDBInstance", code="InvalidDBInstanceState")
    record = aws_world.run(aws_world.spec(restoreTime=iso(point)))
    assert fault.fired == 1
    assert record.phase == "Succeeded", record.error
    assert not record.result.get("cleanupErrors")
    assert sim.calls["rds.DeleteDBInstance"] == 2 and sim.succeeded["rds.DeleteDBInstance"] == 1
    for tenant, target in record.targets.items():
        assert aws_world.counts(target) == expected[tenant]
    after = aws_world.fingerprint()
    assert {k: after[k] for k in before} == before
    assert aws_world.leftovers(record.restore_id) == []


@pytest.mark.e2e
def test_secret_delete_denied_is_reported_with_the_secret_name(aws_world):
    """A permanent refusal: the restore says CleanupFailed and names what is left."""
    point, _ = prepare(aws_world)
    sim = aws_world.sim
    sim.fail("secrets-manager.DeleteSecret", code="AccessDeniedException", times=100)
    record = aws_world.record(aws_world.spec(restoreTime=iso(point)))
    ctx = aws_world.context(record)
    record = runner.run(record, ctx)
    secret = f"pgsr-{record.restore_id}-secret"
    assert record.phase == "Failed"
    assert record.error["reason"] == "CleanupFailed", record.error
    assert record.error["phase"] == "Cleanup"
    assert secret in record.error["message"] and "AccessDenied" in record.error["message"]
    assert aws_world.leftovers(record.restore_id) == [f"secret {secret}"]
    assert sim.succeeded["rds.DeleteDBInstance"] == 1          # everything else went
    assert audit_item(record.restore_id)["error"]["reason"] == "CleanupFailed"
    # Once the permission is back, deleting by tag leaves nothing.
    sim.faults.clear()
    assert ctx.temp_dbs.delete(record) == [f"secret {secret}"]
    assert aws_world.leftovers(record.restore_id) == []


def _fail_after_pre_data_then_crash_in_cleanup(world) -> tuple[RestoreRecord, dict]:
    """The copy step's read of the temporary secret is denied (after pre-data);
    the process dies right after DeleteDBInstance in the failure cleanup; the
    run is resumed from the last saved record."""
    point, before = prepare(world)
    sim = world.sim
    sim.fail("secrets-manager.GetSecretValue", match=temporary_secret_read("copy"))
    crash = sim.crash_after("rds.DeleteDBInstance")
    saved = SavedRecord()
    record = world.record(world.spec(restoreTime=iso(point)))
    with pytest.raises(Crash):
        runner.run(record, world.context(record, save=saved))
    assert crash.fired == 1
    resumed = saved.load()
    assert resumed.phase == "Cleanup" and resumed.schemas_created
    return runner.run(resumed, world.context(resumed, save=saved)), before


@pytest.mark.e2e
def test_crash_in_failure_cleanup_then_resume_keeps_the_first_error(aws_world):
    """The resumed run finishes the cleanup, the restored schemas are gone,
    and the record still reports the original failure."""
    resumed, before = _fail_after_pre_data_then_crash_in_cleanup(aws_world)
    assert_failed_clean(aws_world, resumed, before, "AwsError", "DataCopy",
                        says=("AccessDenied",))
    assert not resumed.result.get("cleanupErrors"), resumed.result.get("cleanupErrors")
    assert audit_item(resumed.restore_id)["error"]["phase"] == "DataCopy"


@pytest.mark.e2e
def test_resumed_failure_cleanup_still_lists_the_dropped_schemas(aws_world):
    resumed, _ = _fail_after_pre_data_then_crash_in_cleanup(aws_world)
    assert resumed.phase == "Failed" and resumed.targets
    assert not set(resumed.targets.values()) & aws_world.schemas()     # they were dropped
    assert sorted(resumed.result.get("droppedSchemas") or []) == sorted(
        resumed.targets.values())


@pytest.mark.e2e
def test_cleanup_error_on_a_failed_restore_then_retry_keeps_the_first_error(aws_world):
    """A restore fails after pre-data; its cleanup cannot delete the temporary
    secret once; `runner.retry_cleanup` finishes the job and the record still
    says why the restore failed (not Succeeded, not CleanupFailed)."""
    retry = getattr(runner, "retry_cleanup", None)
    if retry is None:
        pytest.skip("runner.retry_cleanup is not there (yet)")
    point, before = prepare(aws_world)
    sim = aws_world.sim
    sim.fail("secrets-manager.GetSecretValue", match=temporary_secret_read("copy"))
    sim.fail("secrets-manager.DeleteSecret", code="AccessDeniedException")
    record = aws_world.record(aws_world.spec(restoreTime=iso(point)))
    record = runner.run(record, aws_world.context(record))
    secret = f"pgsr-{record.restore_id}-secret"
    assert record.phase == "Failed"
    assert record.error["reason"] == "AwsError" and record.error["phase"] == "DataCopy"
    assert any(secret in e for e in record.result["cleanupErrors"]), record.result
    assert aws_world.leftovers(record.restore_id) == [f"secret {secret}"]
    assert not set(record.targets.values()) & aws_world.schemas()       # already dropped
    retry(record, aws_world.context(record))
    assert_failed_clean(aws_world, record, before, "AwsError", "DataCopy",
                        says=("AccessDenied",))
    assert not record.result.get("cleanupErrors"), record.result
    item = audit_item(record.restore_id)
    assert item["status"] == "Failed" and item["error"]["phase"] == "DataCopy"
    assert not item.get("cleanupErrors")


# -- names that are taken by somebody else ------------------------------------------------
def _stranger_instance(name: str) -> None:
    boto3.client("rds", region_name=REGION).create_db_instance(
        DBInstanceIdentifier=name, Engine="postgres", DBInstanceClass="db.t4g.micro",
        MasterUsername="admin", MasterUserPassword="unused-by-tests", AllocatedStorage=20,
        Tags=[{"Key": "team", "Value": "someone-else"}])


def _run_with_stranger_instance(world) -> tuple[RestoreRecord, str, dict]:
    before = world.fingerprint()
    spec = world.spec(restoreTime=iso(restore_point()))
    restore_id = world.record(spec).restore_id
    name = f"pgsr-{restore_id}-db"
    _stranger_instance(name)
    return world.run(spec, restore_id=restore_id), name, before


def test_stranger_instance_with_the_temporary_name_is_never_used_or_deleted(aws_world):
    record, name, before = _run_with_stranger_instance(aws_world)
    rds = boto3.client("rds", region_name=REGION)
    [kept] = rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"]
    assert kept["DBInstanceStatus"] == "available"
    assert aws_world.sim.calls["rds.DeleteDBInstance"] == 0
    assert record.phase == "Failed", record.error
    assert record.error["reason"] == "ResourceConflict", record.error
    assert record.error["phase"] == "TemporaryDatabase"
    assert name in record.error["message"]
    assert restore_calls(aws_world) == 0
    assert aws_world.leftovers(record.restore_id) == [f"instance {name} (available)"]
    assert aws_world.fingerprint() == before


def test_stranger_instance_does_not_leave_the_cleanup_pending(aws_world):
    record, _, _ = _run_with_stranger_instance(aws_world)
    assert record.error["reason"] == "ResourceConflict", record.error
    assert not record.result.get("cleanupErrors"), record.result.get("cleanupErrors")


@pytest.mark.e2e
def test_stranger_secret_with_the_temporary_name_is_never_used_or_deleted(aws_world):
    point, before = prepare(aws_world)
    spec = aws_world.spec(restoreTime=iso(point))
    restore_id = aws_world.record(spec).restore_id
    name = f"pgsr-{restore_id}-secret"
    sm = boto3.client("secretsmanager", region_name=REGION)
    theirs = json.dumps({"owner": "someone else", "password": "theirs-" + "x" * 12})
    sm.create_secret(Name=name, SecretString=theirs,
                     Tags=[{"Key": "team", "Value": "someone-else"}])
    record = aws_world.run(spec, restore_id=restore_id)
    assert aws_world.sim.calls["secrets-manager.PutSecretValue"] == 0, \
        "a secret that is not ours was overwritten"
    try:
        value = sm.get_secret_value(SecretId=name)["SecretString"]
    except sm.exceptions.ResourceNotFoundException:
        value = None
    assert value == theirs, "a secret that is not ours was overwritten or deleted"
    assert record.phase == "Failed", record.error
    assert record.error["reason"] == "ResourceConflict", record.error
    assert record.error["phase"] == "SchemaExtraction"
    assert aws_world.sim.calls["rds.ModifyDBInstance"] == 0
    assert aws_world.leftovers(record.restore_id) == [f"secret {name}"]
    assert aws_world.fingerprint() == before


# -- more inputs --------------------------------------------------------------------------
def test_source_in_another_region(aws_world):
    before = aws_world.fingerprint()
    record = aws_world.run(aws_world.spec(restoreTime=iso(restore_point()),
                                          source={"region": "us-east-1"}))
    assert_failed_clean(aws_world, record, before, "SourceNotFound", "Initialize",
                        says=("prod-db", "us-east-1"))
    assert restore_calls(aws_world) == 0


@pytest.mark.e2e
def test_historical_secret_version_without_a_password(aws_world):
    """credentials: historicalSecret, and the version current at the point has no
    password: a clear InvalidSecret after the copy exists, which is deleted."""
    sm = boto3.client("secretsmanager", region_name=REGION)
    good = _prod_value(aws_world)
    time.sleep(1.1)                      # Secrets Manager dates: one-second resolution
    sm.put_secret_value(SecretId=aws_world.secret_arn,
                        SecretString=json.dumps(_prod_value(aws_world, password=None)))
    time.sleep(1.1)
    point, _ = prepare(aws_world)
    time.sleep(1.1)
    sm.put_secret_value(SecretId=aws_world.secret_arn, SecretString=json.dumps(good))
    before = aws_world.fingerprint()
    events: list[dict] = []
    record = aws_world.run(aws_world.spec(restoreTime=iso(point),
                                          credentials="historicalSecret"), events=events)
    assert_failed_clean(aws_world, record, before, "InvalidSecret", "SchemaExtraction",
                        says=("'password'",))
    assert aws_world.sim.calls["rds.ModifyDBInstance"] == 0
    assert_never_said(record, events, aws_world.role_password)
