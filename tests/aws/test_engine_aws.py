"""The engine on "AWS": moto 5.2.5 in-process + real PostgreSQL (tests/support/aws.py).

Every restore runs the real engine (`runner.run`) through the AWS adapters
and the real data plane (`python -m ddl_job` subprocesses). The temporary
database is a genuine local point-in-time copy of production that moto's
restored instance / cluster points at. After every scenario, success or
failure, nothing carrying the restore id is left (instance, cluster, secret,
S3 object, local copy) and every schema production had before is unchanged.
"""

from __future__ import annotations

import dataclasses

import json
import time
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from psycopg import sql

from ddl_job.errors import RestoreError
from pg_schema_restore.aws.audit import DynamoAudit
from pg_schema_restore.aws.rds import RdsTemporaryDatabases
from pg_schema_restore.aws.s3 import S3ArtifactCleaner
from pg_schema_restore.aws.secrets import AwsSecrets, SecretVersion, version_active_at
from pg_schema_restore.aws.session import Clients, Poller, retry_config
from pg_schema_restore.engine import runner
from pg_schema_restore.engine.record import PHASES, RestoreRecord, restore_id_for
from pg_schema_restore.engine.spec import RestoreSpec
from pg_schema_restore.local.cluster import SUPERUSER
from support.aws import (
    AUDIT_TABLE,
    BUCKET,
    REGION,
    TAG,
    TENANTS,
    Crash,
    FakeClock,
    SavedRecord,
    fast_poller,
    secrets_backend,
    temporary_secret_read,
)
from support.pg import restore_point

RESTORE_CALLS = ("rds.RestoreDBInstanceToPointInTime", "rds.RestoreDBInstanceFromDBSnapshot",
                 "rds.RestoreDBClusterToPointInTime", "rds.RestoreDBClusterFromSnapshot")


def iso(point: datetime) -> str:
    return point.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


# -- helpers --------------------------------------------------------------------------
def prepare(world):
    """Restore point, then damage production; returns (point, expected counts, fingerprint)."""
    point = restore_point()
    expected = {t: world.counts(t) for t in TENANTS}
    world.damage()
    return point, expected, world.fingerprint()


def assert_restored(world, record: RestoreRecord, expected: dict[str, dict[str, int]],
                    before: dict[str, str]) -> None:
    assert record.phase == "Succeeded", record.error
    assert record.error is None
    for tenant, target in record.targets.items():
        assert world.counts(target) == expected[tenant], tenant
    assert record.result["verify"], "verify returned nothing"
    after = world.fingerprint()
    assert {k: after[k] for k in before} == before, "a pre-existing schema changed"
    assert world.leftovers(record.restore_id) == []


def assert_failed_clean(world, record: RestoreRecord, before: dict[str, str], reason: str,
                        phase: str | None = None) -> None:
    assert record.phase == "Failed"
    assert record.error is not None and record.error["reason"] == reason, record.error
    if phase:
        assert record.error["phase"] == phase, record.error
    assert world.fingerprint() == before, ("production changed after a failed restore",
                                           record.result.get("cleanupErrors"))
    assert world.leftovers(record.restore_id) == []
    assert not set(record.targets.values()) & world.schemas()


def audit_item(restore_id: str) -> dict:
    return DynamoAudit(boto3.Session(region_name=REGION), AUDIT_TABLE).get(restore_id)


# -- units: pure logic and single adapters ---------------------------------------------
def _v(vid: str, created: datetime, *stages: str) -> SecretVersion:
    return SecretVersion(vid, tuple(stages), created)


def test_version_active_at_follows_creation_and_labels():
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    versions = [_v("v1", t0), _v("v2", t0 + timedelta(hours=1), "AWSPREVIOUS"),
                _v("v3", t0 + timedelta(hours=2), "AWSCURRENT"),
                _v("v4", t0 + timedelta(hours=3), "AWSPENDING")]   # never current
    assert version_active_at(versions, t0 + timedelta(minutes=30)).version_id == "v1"
    assert version_active_at(versions, t0 + timedelta(hours=1)).version_id == "v2"
    assert version_active_at(versions, t0 + timedelta(hours=1, minutes=59)).version_id == "v2"
    assert version_active_at(versions, t0 + timedelta(hours=5)).version_id == "v3"
    with pytest.raises(RestoreError) as exc:
        version_active_at(versions, t0 - timedelta(seconds=1))
    assert exc.value.reason == "SecretVersionPruned"
    # Same-second versions: the labels order them.
    same = [_v("a", t0, "AWSCURRENT"), _v("b", t0, "AWSPREVIOUS")]
    assert version_active_at(same, t0).version_id == "a"
    # A rollback: AWSCURRENT moved back to an older version at an unknown time.
    rolled = [_v("old", t0, "AWSCURRENT"), _v("new", t0 + timedelta(hours=1), "AWSPREVIOUS")]
    assert version_active_at(rolled, t0 + timedelta(minutes=1)).version_id == "old"
    with pytest.raises(RestoreError) as exc:
        version_active_at(rolled, t0 + timedelta(hours=2))
    assert exc.value.reason == "SecretHistoryAmbiguous"


def test_poller_backs_off_and_times_out():
    clock = FakeClock()
    poller = Poller(sleep=clock.sleep, clock=clock.clock, initial=2, factor=2, max_delay=10,
                    jitter=0)
    answers = iter([None, None, None, "done"])
    assert poller.wait(lambda: next(answers), timeout=100, what="x") == "done"
    assert clock.sleeps == [2, 4, 8]
    with pytest.raises(RestoreError) as exc:
        poller.wait(lambda: None, timeout=30, what="never", reason="SomethingTimeout")
    assert exc.value.reason == "SomethingTimeout"
    assert max(clock.sleeps) <= 10


def test_retry_config_uses_botocore_retry_modes():
    assert retry_config().retries == {"mode": "standard", "max_attempts": 10}
    assert retry_config("adaptive").retries["mode"] == "adaptive"
    with pytest.raises(ValueError):
        retry_config("legacy")


def test_s3_cleaner_deletes_every_object_under_the_prefix_only(mocked_aws, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")     # in-process only: no subprocess here
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    for i in range(1205):       # more than one page and more than one DeleteObjects batch
        s3.put_object(Bucket=BUCKET, Key=f"restores/abc/part-{i}.sql", Body=b"x")
    s3.put_object(Bucket=BUCKET, Key="restores/abcd/keep.sql", Body=b"x")
    s3.put_object(Bucket=BUCKET, Key="restores/abc.sql", Body=b"x")
    cleaner = S3ArtifactCleaner(boto3.Session(region_name=REGION))
    assert cleaner.delete(f"s3://{BUCKET}/restores/abc") == 1205
    assert cleaner.delete(f"s3://{BUCKET}/restores/abc") == 0          # idempotent
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert sorted(left) == ["restores/abc.sql", "restores/abcd/keep.sql"]
    with pytest.raises(RestoreError):
        cleaner.delete(f"s3://{BUCKET}/")                               # never a whole bucket


def test_audit_writes_are_conditional(mocked_aws):
    ddb = boto3.client("dynamodb", region_name=REGION)
    ddb.create_table(TableName=AUDIT_TABLE,
                     KeySchema=[{"AttributeName": "restoreId", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "restoreId", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    audit = DynamoAudit(boto3.Session(region_name=REGION), AUDIT_TABLE)
    spec = RestoreSpec.from_dict({"database": "appdb", "schemas": ["a"],
                                  "restoreTime": "2024-01-28T14:30:00Z"})
    record = RestoreRecord(restore_id="r1", spec=spec)
    audit.started(record)
    audit.started(record)                  # the same restore resumed: fine
    restarted = RestoreRecord(restore_id="r1", spec=spec)    # died before saving: new record
    audit.started(restarted)
    other_spec = dataclasses.replace(spec, schemas=("b",))
    stranger = RestoreRecord(restore_id="r1", spec=other_spec)
    with pytest.raises(RestoreError) as exc:
        audit.started(stranger)            # never overwrite someone else's record
    assert exc.value.reason == "AuditConflict"
    record.timings = {"Initialize": 1.25}
    record.progress = {"rows": 10, "bytes": 100}
    audit.finished(record)
    audit.finished(record)                 # idempotent
    item = audit.get("r1")
    assert item["status"] == "Succeeded" and item["rows"] == 10
    assert item["startedAt"] == record.started_at
    with pytest.raises(RestoreError):
        audit.finished(stranger)
    # Failed before `started`: finished() creates the item, conditionally.
    early = RestoreRecord(restore_id="r2", spec=spec,
                          error={"phase": "Initialize", "reason": "X", "message": "m"})
    audit.finished(early)
    assert audit.get("r2")["status"] == "Failed"


def test_cleanup_finds_resources_by_tag_and_spares_strangers(aws_world):
    """Resources of a restore that its record lost are found by tag; a
    recorded id that is not ours is never deleted."""
    rds = boto3.client("rds", region_name=REGION)
    sm = boto3.client("secretsmanager", region_name=REGION)
    tags = [{"Key": TAG, "Value": "0123456789"}]
    rds.create_db_instance(DBInstanceIdentifier="lost-instance", Engine="postgres",
                           DBInstanceClass="db.t4g.micro", MasterUsername="postgres",
                           MasterUserPassword="password123", AllocatedStorage=20, Tags=tags)
    sm.create_secret(Name="lost-secret", SecretString="{}", Tags=tags)
    session = aws_world.sim.session()
    clients = Clients(session)
    temp_dbs = RdsTemporaryDatabases(session, AwsSecrets(session, clients=clients),
                                     clients=clients, poller=fast_poller())
    record = RestoreRecord.sweep("0123456789", REGION)      # its record is lost
    deleted = temp_dbs.delete(record)
    assert sorted(deleted) == ["DB instance lost-instance", "secret lost-secret"]
    assert temp_dbs.delete(record) == []                      # NotFound is done
    assert aws_world.leftovers("0123456789") == []
    record.resources["temporaryDatabase"] = {"kind": "instance", "instanceId": "other-db",
                                             "region": REGION}
    # Not ours: never deleted, and not an error that would keep cleanup pending forever.
    assert temp_dbs.delete(record) == []
    assert rds.describe_db_instances(DBInstanceIdentifier="other-db")["DBInstances"]
    assert aws_world.sim.calls["rds.DeleteDBInstance"] == 1   # the lost instance only


# -- validation failures: nothing is created -----------------------------------------------
def test_restore_time_outside_the_window_creates_nothing(aws_world):
    before = aws_world.fingerprint()
    too_early = aws_world.earliest - timedelta(minutes=5)
    record = aws_world.run(aws_world.spec(restoreTime=iso(too_early)))
    assert_failed_clean(aws_world, record, before, "RestoreTimeOutOfWindow", "Initialize")
    future = datetime.now(timezone.utc) + timedelta(hours=1)
    record = aws_world.run(aws_world.spec(restoreTime=iso(future)))
    assert_failed_clean(aws_world, record, before, "RestoreTimeOutOfWindow", "Initialize")
    aurora = aws_world.run(aws_world.spec(restoreTime=iso(too_early),
                                          source={"dbIdentifier": "prod-aurora"}))
    assert_failed_clean(aws_world, aurora, before, "RestoreTimeOutOfWindow", "Initialize")
    assert not any(aws_world.sim.calls[c] for c in RESTORE_CALLS)
    assert audit_item(record.restore_id)["status"] == "Failed"


def test_missing_snapshot_and_snapshot_of_another_source(aws_world):
    before = aws_world.fingerprint()
    record = aws_world.run(aws_world.spec(snapshotId="no-such-snapshot",
                                          targetSuffix="_snap"))
    assert_failed_clean(aws_world, record, before, "SnapshotNotFound", "Initialize")
    aws_world.snapshot("other-db-manual", source="other-db")
    record = aws_world.run(aws_world.spec(snapshotId="other-db-manual", targetSuffix="_snap"))
    assert_failed_clean(aws_world, record, before, "SnapshotNotOfSource", "Initialize")
    assert "other-db" in record.error["message"]
    record = aws_world.run(aws_world.spec(snapshotId="other-db-manual", targetSuffix="_snap",
                                          source={"dbIdentifier": "prod-aurora"}))
    assert_failed_clean(aws_world, record, before, "SnapshotNotFound", "Initialize")
    record = aws_world.run(aws_world.spec(restoreTime=iso(restore_point()),
                                          source={"dbIdentifier": "no-such-db"}))
    assert_failed_clean(aws_world, record, before, "SourceNotFound", "Initialize")
    assert not any(aws_world.sim.calls[c] for c in RESTORE_CALLS)


# -- happy paths: the four restore paths ------------------------------------------------
@pytest.mark.e2e
def test_instance_point_in_time_restore_and_api_call_count(aws_world, s3_bridge, capsys):
    point, expected, before = prepare(aws_world)
    bridge_before = len(s3_bridge.requests)
    events: list[dict] = []
    record = aws_world.run(aws_world.spec(restoreTime=iso(point)), events=events)
    assert_restored(aws_world, record, expected, before)
    sim = aws_world.sim
    assert sim.succeeded["rds.RestoreDBInstanceToPointInTime"] == 1
    [params] = sim.params["rds.RestoreDBInstanceToPointInTime"]
    assert params["TargetDBInstanceIdentifier"] == f"pgsr-{record.restore_id}-db"
    assert params["SourceDBInstanceIdentifier"] == "prod-db"
    assert params["RestoreTime"] == point
    assert params["PubliclyAccessible"] is False and params["DeletionProtection"] is False
    assert params["DBSubnetGroupName"] == aws_world.subnet_group
    assert params["VpcSecurityGroupIds"] == [aws_world.security_group]
    assert params["DBInstanceClass"] == "db.t4g.medium"
    assert params["Tags"] == [{"Key": TAG, "Value": record.restore_id}]
    [delete] = sim.params["rds.DeleteDBInstance"]
    assert delete["SkipFinalSnapshot"] is True
    [modify] = sim.params["rds.ModifyDBInstance"]
    assert modify["ApplyImmediately"] is True
    [secret] = sim.params["secrets-manager.CreateSecret"]
    assert secret["Name"] == f"pgsr-{record.restore_id}-secret"
    assert {"Key": TAG, "Value": record.restore_id} in secret["Tags"]
    value = json.loads(secret["SecretString"])
    assert value["host"] == "127.0.0.1" and value["password"] == modify["MasterUserPassword"]
    assert [p["ForceDeleteWithoutRecovery"] for p in sim.params["secrets-manager.DeleteSecret"]
            ] == [True]
    assert sim.succeeded["rds.ModifyDBInstance"] == 1
    assert sim.succeeded["secrets-manager.CreateSecret"] == 1
    assert sim.succeeded["secrets-manager.DeleteSecret"] == 1
    assert sim.succeeded["rds.DeleteDBInstance"] == 1
    item = audit_item(record.restore_id)
    assert item["status"] == "Succeeded" and item["targets"] == record.targets
    total = sum(sim.calls.values())
    subprocess_s3 = len(s3_bridge.requests) - bridge_before
    with capsys.disabled():
        print(f"\nAWS API calls of one happy-path restore (instance PITR): {total} "
              f"(+ {subprocess_s3} S3 requests from the data-plane steps)")
        for op, n in sorted(sim.calls.items()):
            print(f"  {n:4d}  {op}")
    assert total < 100


@pytest.mark.e2e
def test_instance_snapshot_restore(aws_world):
    aws_world.snapshot("prod-db-manual-1")
    expected = {t: aws_world.counts(t) for t in TENANTS}
    aws_world.damage()
    before = aws_world.fingerprint()
    record = aws_world.run(aws_world.spec(snapshotId="prod-db-manual-1"))
    assert_restored(aws_world, record, expected, before)
    assert aws_world.sim.succeeded["rds.RestoreDBInstanceFromDBSnapshot"] == 1
    # The suffix comes from the snapshot's instant as RDS reports it (not from
    # the test's own clock, which read the time a moment before the call).
    snapshot = boto3.client("rds", region_name=REGION).describe_db_snapshots(
        DBSnapshotIdentifier="prod-db-manual-1")["DBSnapshots"][0]
    created = snapshot["SnapshotCreateTime"].astimezone(timezone.utc)
    assert record.targets["customer_a1"] == "customer_a1_" + created.strftime("%Y%m%d%H%M%S")


@pytest.mark.e2e
def test_aurora_cluster_point_in_time_restore(aws_world):
    point, expected, before = prepare(aws_world)
    record = aws_world.run(aws_world.spec(restoreTime=iso(point),
                                          source={"dbIdentifier": "prod-aurora"}))
    assert_restored(aws_world, record, expected, before)
    sim = aws_world.sim
    assert sim.succeeded["rds.RestoreDBClusterToPointInTime"] == 1
    assert sim.succeeded["rds.CreateDBInstance"] == 1           # the writer
    assert sim.succeeded["rds.ModifyDBCluster"] == 1
    assert sim.succeeded["rds.DeleteDBInstance"] == 1
    assert sim.succeeded["rds.DeleteDBCluster"] == 1
    assert record.source["kind"] == "cluster"
    # Writer deleted before the cluster.
    log = sim.log
    assert log.index("rds.DeleteDBInstance") < log.index("rds.DeleteDBCluster")


@pytest.mark.e2e
def test_aurora_cluster_snapshot_restore(aws_world):
    aws_world.snapshot("prod-aurora-manual-1", source="prod-aurora")
    expected = {t: aws_world.counts(t) for t in TENANTS}
    aws_world.damage()
    before = aws_world.fingerprint()
    record = aws_world.run(aws_world.spec(snapshotId="prod-aurora-manual-1",
                                          source={"dbIdentifier": "prod-aurora"}))
    assert_restored(aws_world, record, expected, before)
    assert aws_world.sim.succeeded["rds.RestoreDBClusterFromSnapshot"] == 1


# -- faults ------------------------------------------------------------------------
@pytest.mark.e2e
def test_restore_ending_incompatible_restore_fails_and_cleans_up(aws_world):
    point, _, before = prepare(aws_world)
    aws_world.sim.restore_outcome = "incompatible-restore"
    record = aws_world.run(aws_world.spec(restoreTime=iso(point)))
    assert_failed_clean(aws_world, record, before, "TemporaryDatabaseFailed",
                        "TemporaryDatabase")
    assert "incompatible-restore" in record.error["message"]
    assert aws_world.sim.succeeded["rds.DeleteDBInstance"] == 1
    assert audit_item(record.restore_id)["error"]["reason"] == "TemporaryDatabaseFailed"


@pytest.mark.e2e
def test_throttling_bursts_are_retried(aws_world):
    point, expected, before = prepare(aws_world)
    sim = aws_world.sim
    for op, times in (("rds.DescribeDBInstances", 3), ("rds.RestoreDBInstanceToPointInTime", 2),
                      ("rds.ModifyDBInstance", 2), ("secrets-manager.GetSecretValue", 3),
                      ("secrets-manager.CreateSecret", 2), ("dynamodb.PutItem", 2),
                      ("rds.DeleteDBInstance", 2), ("s3.ListObjectsV2", 2)):
        sim.throttle(op, times=times)
    record = aws_world.run(aws_world.spec(restoreTime=iso(point)))
    assert_restored(aws_world, record, expected, before)
    assert all(f.fired == f.times for f in sim.faults), [(f.op, f.fired) for f in sim.faults]
    assert sim.succeeded["rds.RestoreDBInstanceToPointInTime"] == 1
    assert sim.attempts["rds.RestoreDBInstanceToPointInTime"] == 3
    assert len(sim.retry_sleeps) >= 18     # botocore backed off (recorded, not slept)


@pytest.mark.e2e
def test_historical_secret_version(aws_world):
    """The seed's way: the copy keeps the password current at the restore
    point; production's password was rotated since."""
    sm = boto3.client("secretsmanager", region_name=REGION)
    time.sleep(1.1)             # Secrets Manager dates have one-second resolution
    point, expected, _ = prepare(aws_world)
    time.sleep(1.1)
    aws_world.rotate_password()
    before = aws_world.fingerprint()
    versions = sm.list_secret_version_ids(SecretId=aws_world.secret_arn,
                                          IncludeDeprecated=True)["Versions"]
    assert len(versions) == 2
    record = aws_world.run(aws_world.spec(restoreTime=iso(point),
                                          credentials="historicalSecret"))
    assert_restored(aws_world, record, expected, before)
    assert aws_world.sim.calls["rds.ModifyDBInstance"] == 0     # no password reset


@pytest.mark.e2e
def test_pruned_historical_secret_version(aws_world):
    time.sleep(1.1)
    point, _, _ = prepare(aws_world)
    time.sleep(1.1)
    aws_world.rotate_password()
    before = aws_world.fingerprint()
    secret = secrets_backend().secrets[aws_world.secret_arn]
    old = [vid for vid, v in secret.versions.items() if "AWSCURRENT" not in v["version_stages"]]
    for vid in old:                   # Secrets Manager pruned the old version
        del secret.versions[vid]
    record = aws_world.run(aws_world.spec(restoreTime=iso(point),
                                          credentials="historicalSecret"))
    assert_failed_clean(aws_world, record, before, "SecretVersionPruned", "SchemaExtraction")
    assert "resetMasterPassword" in record.error["message"]


# -- crashes, then resume ----------------------------------------------------------------
def _resume_until_done(world, saved: SavedRecord, spec: dict, restore_id: str,
                       max_crashes: int) -> tuple[RestoreRecord, int]:
    """Run; after each Crash, load the last saved record (what a restarted
    process finds) and run it again on a fresh Session and Context."""
    record = world.record(spec, restore_id)
    for crashes in range(max_crashes + 1):
        try:
            return runner.run(record, world.context(record, save=saved)), crashes
        except Crash:
            # Nothing saved yet (died in phase 1): a restart begins a new record.
            record = saved.load() if saved.text else world.record(spec, restore_id)
    raise AssertionError("still crashing")


def _assert_no_duplicates(sim) -> None:
    made = sum(sim.succeeded[c] for c in RESTORE_CALLS)
    assert made == 1, dict(sim.succeeded)
    assert sim.succeeded["secrets-manager.CreateSecret"] == 1, dict(sim.succeeded)
    assert sim.succeeded["rds.CreateDBInstance"] <= 1, dict(sim.succeeded)


@pytest.mark.e2e
@pytest.mark.parametrize("moment", ["after-save", "before-save"])
def test_crash_after_every_phase_then_resume(aws_world, moment):
    """The process dies after each of the seven phases in turn (right after
    the phase was saved as completed, or right before), and is resumed from
    the saved record each time."""
    point, expected, before = prepare(aws_world)
    saved = (SavedRecord(crash_after=PHASES) if moment == "after-save"
             else SavedRecord(crash_before_saved=PHASES))
    spec = aws_world.spec(restoreTime=iso(point))
    record, crashes = _resume_until_done(aws_world, saved, spec,
                                         restore_id_for(f"phases-{moment}"), len(PHASES))
    assert crashes == len(PHASES), (saved.crashes, record.error,
                                    record.result.get("cleanupErrors"))
    assert_restored(aws_world, record, expected, before)
    _assert_no_duplicates(aws_world.sim)
    assert record.completed == list(PHASES) or record.completed[-len(PHASES):] == list(PHASES)


# Crash points inside phases (each fires once; the run is resumed after each).
MID_PHASE = [
    ("after", "dynamodb.PutItem"),                       # audit written, phase 1 not done
    ("before", "rds.RestoreDBInstanceToPointInTime"),    # id checkpointed, nothing created
    ("after", "rds.RestoreDBInstanceToPointInTime"),     # restore started, phase not done
    ("after", "rds.DescribeDBInstances"),                # while waiting for `available`
    ("after", "secrets-manager.CreateSecret"),           # secret made, password not reset
    ("after", "rds.ModifyDBInstance"),                   # password reset, not yet applied
    ("after", "rds.DeleteDBInstance"),                   # cleanup half-way
    ("after", "secrets-manager.DeleteSecret"),
    ("after", "dynamodb.UpdateItem"),                    # final audit written
]


@pytest.mark.e2e
def test_crash_mid_phase_then_resume(aws_world):
    point, expected, before = prepare(aws_world)
    sim = aws_world.sim
    faults = [(sim.crash_after if when == "after" else sim.crash_before)(op)
              for when, op in MID_PHASE]
    spec = aws_world.spec(restoreTime=iso(point))
    record, crashes = _resume_until_done(aws_world, SavedRecord(), spec,
                                         restore_id_for("mid-phase"), len(MID_PHASE))
    assert [f.fired for f in faults] == [1] * len(MID_PHASE)
    assert crashes == len(MID_PHASE)
    assert_restored(aws_world, record, expected, before)
    _assert_no_duplicates(sim)
    assert sim.succeeded["rds.RestoreDBInstanceToPointInTime"] == 1


@pytest.mark.e2e
def test_crash_mid_phase_aurora_then_resume(aws_world):
    point, expected, before = prepare(aws_world)
    sim = aws_world.sim
    ops = ["rds.RestoreDBClusterToPointInTime", "rds.CreateDBInstance", "rds.ModifyDBCluster",
           "rds.DeleteDBInstance", "rds.DeleteDBCluster"]
    faults = [sim.crash_after(op) for op in ops]
    spec = aws_world.spec(restoreTime=iso(point), source={"dbIdentifier": "prod-aurora"})
    record, crashes = _resume_until_done(aws_world, SavedRecord(), spec,
                                         restore_id_for("aurora-mid-phase"), len(ops))
    assert [f.fired for f in faults] == [1] * len(ops) and crashes == len(ops)
    assert_restored(aws_world, record, expected, before)
    _assert_no_duplicates(sim)
    assert sim.succeeded["rds.RestoreDBClusterToPointInTime"] == 1
    assert sim.succeeded["rds.CreateDBInstance"] == 1


@pytest.mark.e2e
def test_failure_after_pre_data_drops_the_new_schemas_and_cleans_up(aws_world):
    """A phase fails after pre-data was applied: the restore's own schemas are
    dropped, nothing else is touched, every temporary resource is deleted."""
    point, _, before = prepare(aws_world)
    # The copy step's read of the temporary secret is denied.
    fault = aws_world.sim.fail("secrets-manager.GetSecretValue",
                               match=temporary_secret_read("copy"))
    record = aws_world.run(aws_world.spec(restoreTime=iso(point)))
    assert fault.fired == 1
    assert record.schemas_created
    assert_failed_clean(aws_world, record, before, "AwsError", "DataCopy")
    assert "AccessDenied" in record.error["message"]
    assert sorted(record.result["droppedSchemas"]) == sorted(record.targets.values())


@pytest.mark.e2e
def test_warnings_reach_the_record_and_the_events(aws_world):
    """What a schema restore cannot bring back is said in the record and as events."""
    with aws_world.prod.connect(aws_world.database, autocommit=True) as conn:
        conn.execute("CREATE UNLOGGED TABLE customer_a1.cache (k int)")
        conn.execute("INSERT INTO customer_a1.cache SELECT generate_series(1, 10)")
        conn.execute(sql.SQL("ALTER TABLE customer_a1.cache OWNER TO {}").format(
            sql.Identifier(aws_world.role)))
    point = restore_point()
    events: list[dict] = []
    record = aws_world.run(aws_world.spec(restoreTime=iso(point)), events=events)
    assert record.phase == "Succeeded", record.error
    assert [w.split(":")[0] for w in record.warnings] == ["UnloggedTables"]
    assert "customer_a1.cache" in record.warnings[0]
    assert [e["message"] for e in events if e.get("event") == "restore_warning"] == \
        record.warnings
    assert aws_world.leftovers(record.restore_id) == []


@pytest.mark.e2e
def test_failed_cleanup_is_retried_and_keeps_a_succeeded_restore(aws_world):
    """Cleanup fails after a good restore: the temp DB is still there. A retry
    deletes it and ends Succeeded, and never drops the schemas just restored."""
    point, expected, before = prepare(aws_world)
    aws_world.sim.fail("rds.DeleteDBInstance", code="AccessDenied")
    record = aws_world.record(aws_world.spec(restoreTime=iso(point)))
    record = runner.run(record, aws_world.context(record))
    assert record.phase == "Failed"
    assert record.error["reason"] == "CleanupFailed", record.error
    assert "AccessDenied" in record.error["message"]
    assert runner.cleanup_pending(record)
    assert aws_world.leftovers(record.restore_id) != []        # the paid instance is left
    restored = {t: aws_world.counts(t) for t in record.targets.values()}
    assert restored == {record.targets[t]: expected[t] for t in TENANTS}

    runner.retry_cleanup(record, aws_world.context(record))
    assert record.phase == "Succeeded", record.error
    assert not runner.cleanup_pending(record)
    assert record.result["cleanupRetries"] == 1
    assert "AccessDenied" in record.result["previousCleanupErrors"][0]
    assert aws_world.leftovers(record.restore_id) == []
    # the restored schemas are the result: still there, still whole
    assert {t: aws_world.counts(t) for t in record.targets.values()} == restored
    after = aws_world.fingerprint()
    assert {k: after[k] for k in before} == before
    item = audit_item(record.restore_id)
    assert item["status"] == "Succeeded" and not item.get("cleanupErrors")


# -- RDS's master user is no superuser ----------------------------------------------
def _membership(world, grant: bool) -> None:
    """As the master user itself, who made the grant (16+ revokes by grantor)."""
    verb = "GRANT {} TO {}" if grant else "REVOKE {} FROM {}"
    world.prod.execute(sql.SQL(verb).format(sql.Identifier(world.owner),
                                            sql.Identifier(world.role)).as_string(None),
                       world.database, user=world.role, password=world.role_password)


def _is_member(world) -> bool:
    """Has the owner's privileges (16+: an ADMIN-only grant from CREATE ROLE is
    a membership without them)."""
    with world.prod.connect() as conn:
        return bool(conn.execute("SELECT pg_has_role(%s, %s, 'USAGE')",
                                 (world.role, world.owner)).fetchone()[0])


def test_owner_role_membership_missing_refused_before_anything(aws_world):
    """The master user is not a member of the tenants' owner: Initialize stops
    with MissingRoleMembership and the GRANT to run; no copy was restored."""
    _membership(aws_world, grant=False)
    before = aws_world.fingerprint()
    record = aws_world.run(aws_world.spec(restoreTime=iso(restore_point())))
    assert_failed_clean(aws_world, record, before, "MissingRoleMembership", "Initialize")
    grant = sql.SQL("GRANT {} TO {};").format(sql.Identifier(aws_world.owner),
                                              sql.Identifier(aws_world.role)).as_string(None)
    assert grant in record.error["message"], record.error
    assert not any(aws_world.sim.calls[c] for c in RESTORE_CALLS)


@pytest.mark.e2e
def test_grant_membership_lends_and_cleanup_revokes(aws_world):
    """grantMembership: the membership is granted for the restore (recorded in
    the record and the audit item) and revoked by Cleanup."""
    _membership(aws_world, grant=False)
    point, expected, before = prepare(aws_world)
    record = aws_world.run(aws_world.spec(restoreTime=iso(point), grantMembership=True))
    assert_restored(aws_world, record, expected, before)
    assert record.result["grantedMemberships"]["production"] == [aws_world.owner]
    assert record.result["revokedMemberships"] == [aws_world.owner]
    assert not _is_member(aws_world)
    item = audit_item(record.restore_id)
    assert aws_world.owner in json.dumps(item.get("grantedMemberships"))
    assert aws_world.owner in json.dumps(item.get("revokedMemberships"))


@pytest.mark.e2e
def test_grant_membership_revoked_after_a_failure(aws_world):
    """A restore that fails after the grant still has it revoked by Cleanup."""
    _membership(aws_world, grant=False)
    point, _, before = prepare(aws_world)
    # The copy step's read of the temporary secret is denied, after both grants.
    fault = aws_world.sim.fail("secrets-manager.GetSecretValue",
                               match=temporary_secret_read("copy"))
    record = aws_world.run(aws_world.spec(restoreTime=iso(point), grantMembership=True))
    assert fault.fired == 1
    assert record.phase == "Failed", record.error
    assert record.result["revokedMemberships"] == [aws_world.owner]
    assert not _is_member(aws_world)
    assert world_leftovers_ok(aws_world, record, before)


def world_leftovers_ok(world, record, before) -> bool:
    return world.fingerprint() == before and world.leftovers(record.restore_id) == []


@pytest.mark.e2e
def test_copy_owners_checked_before_extraction_and_the_copy_deleted(aws_world):
    """Production's tenants changed hands after the restore point, so Initialize
    finds nothing to refuse; the copy's owners are checked first thing on the
    copy (step `rights`): refused before extraction, the copy deleted,
    production unchanged."""
    _membership(aws_world, grant=False)
    point = restore_point()          # the copy: tenants owned by the application role
    aws_world.prod.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(
        sql.Identifier(aws_world.owner), sql.Identifier(aws_world.role)).as_string(None),
        aws_world.database, user=SUPERUSER)
    before = aws_world.fingerprint()
    record = aws_world.run(aws_world.spec(restoreTime=iso(point)))
    assert_failed_clean(aws_world, record, before, "MissingRoleMembership", "SchemaExtraction")
    assert "copy: membership in " + aws_world.owner in record.error["message"], record.error
    assert any(aws_world.sim.succeeded[c] for c in RESTORE_CALLS)   # a copy was made
    steps = aws_world.contexts[-1].steps_run
    assert "rights" in steps and "extract" not in steps, steps
