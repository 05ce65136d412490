"""The temporary copy on AWS: where it lands, how it runs, what it costs.

Each test pins one AWS behaviour that moto 5.2.5 does not enforce by itself;
the stricter behaviour comes from the hooks of tests/support/aws_strict.py on
every test Session (writer only in an available cluster, automated and
shared snapshot lookups, ExpectedBucketOwner, the copy's recorded network and
parameter groups). The copies are genuine PITR copies (tests/support/aws.py).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest

from ddl_job.artifacts import BUCKET_OWNER_ENV, KMS_KEY_ENV, SSE_ENV, S3Store
from ddl_job.errors import DataPlaneError, ProviderError
from pg_schema_restore.aws.dms import DmsMigration, DmsSettings
from pg_schema_restore.aws.rds import (PASSWORD_LENGTH, _password, snapshot_lookup,
                                       version_difference)
from pg_schema_restore.aws.s3 import S3ArtifactCleaner
from pg_schema_restore.engine import phases
from support.aws import ACCOUNT, BUCKET, REGION, rds_backend
from support.aws_strict import StrictAws
from support.pg import restore_point

FOREIGN_ACCOUNT = "210987654321"


def iso(point: datetime) -> str:
    return point.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def inheriting(world, **overrides):
    """A spec that names no network and no parameter group: the source's apply."""
    spec = world.spec(restoreTime=iso(restore_point()), **overrides)
    spec["temporaryDatabase"] = {"instanceClass": "db.t4g.medium",
                                 **overrides.get("temporaryDatabase", {})}
    return spec


def plan_of(world, spec) -> dict:
    record = world.record(spec)
    return phases.plan(record, world.context(record))


def restore_copy(world, spec, **context):
    """Phases 1 and 2 for real (a genuine copy), then the caller checks; the
    caller runs `clean` after."""
    record = world.record(spec)
    ctx = world.context(record, **context)
    phases.initialize(record, ctx)
    phases.temporary_database(record, ctx)
    return record, ctx


def clean(world, record, ctx) -> None:
    phases.cleanup(record, ctx)
    assert world.leftovers(record.restore_id) == []


# -- where the copy lands and how it runs ------------------------------------------------
def test_plan_shows_the_aurora_serverless_sources_settings_inherited(aws_world):
    """The done-when of the issue: subnet group, parameter groups and Serverless
    v2 scaling come from the source cluster, each shown with its origin."""
    spec = inheriting(aws_world, source={"dbIdentifier": "prod-aurora"},
                      temporaryDatabase={"instanceClass": "db.serverless"})
    settings = plan_of(aws_world, spec)["wouldCreate"]["temporaryDatabase"]["settings"]
    source = StrictAws.settings_of("prod-aurora")
    assert settings["subnetGroup"] == {"value": "pgsr-isolated", "from": "source"}
    assert settings["securityGroupIds"] == {"value": source["securityGroupIds"],
                                            "from": "source"}
    assert settings["clusterParameterGroup"] == {"value": "prod-apg15", "from": "source"}
    assert settings["parameterGroup"] == {"value": "prod-apg15-writer", "from": "source"}
    assert settings["serverlessV2Scaling"] == {
        "value": {"MinCapacity": 0.5, "MaxCapacity": 16.0}, "from": "source"}
    assert settings["instanceClass"] == {"value": "db.serverless", "from": "spec"}
    # What the spec names wins, and says so.
    spec = inheriting(aws_world, source={"dbIdentifier": "prod-aurora"})
    spec["temporaryDatabase"] = {"subnetGroup": "other-subnets", "parameterGroup": "copy-pg"}
    settings = plan_of(aws_world, spec)["wouldCreate"]["temporaryDatabase"]["settings"]
    assert settings["subnetGroup"] == {"value": "other-subnets", "from": "spec"}
    assert settings["parameterGroup"] == {"value": "copy-pg", "from": "spec"}
    assert settings["instanceClass"] == {"value": "db.r6g.large", "from": "operator default"}


def test_instance_copy_runs_beside_the_source_with_its_parameters(aws_world):
    record, ctx = restore_copy(aws_world, inheriting(aws_world))
    copy_id = record.resources["temporaryDatabase"]["instanceId"]
    assert aws_world.sim.strict.differences(copy_id, "prod-db") == []
    assert aws_world.sim.strict.created[copy_id]["parameterGroup"] == "prod-pg15"
    clean(aws_world, record, ctx)


def test_aurora_writer_is_created_once_the_cluster_is_available(aws_world):
    """AWS refuses CreateDBInstance into a cluster still `creating` (the double
    keeps a restored cluster creating for two describes)."""
    spec = inheriting(aws_world, source={"dbIdentifier": "prod-aurora"},
                      temporaryDatabase={"instanceClass": "db.serverless"})
    record, ctx = restore_copy(aws_world, spec)
    strict, log = aws_world.sim.strict, aws_world.sim.log
    assert strict.refused == []
    resources = record.resources["temporaryDatabase"]
    assert strict.clusters[resources["clusterId"]] == "available"
    cluster_id, writer_id = resources["clusterId"], resources["instanceId"]
    restored = log.index("rds.RestoreDBClusterToPointInTime")
    writer = log.index("rds.CreateDBInstance", restored)
    assert log[restored:writer].count("rds.DescribeDBClusters") >= \
        aws_world.sim.creating_describes + 1
    assert strict.differences(cluster_id, "prod-aurora") == []
    assert strict.created[writer_id]["parameterGroup"] == "prod-apg15-writer"
    [writer_call] = aws_world.sim.params["rds.CreateDBInstance"]
    assert writer_call["DBInstanceClass"] == "db.serverless"
    clean(aws_world, record, ctx)
    [delete] = aws_world.sim.params["rds.DeleteDBCluster"]
    assert delete["DeleteAutomatedBackups"] is True and delete["SkipFinalSnapshot"] is True


def test_cleanup_copes_with_a_cluster_still_creating(aws_world):
    """A restore that fails right after the restore call: Cleanup meets a
    cluster AWS will not delete yet, retries, and leaves nothing."""
    spec = inheriting(aws_world, source={"dbIdentifier": "prod-aurora"})
    record = aws_world.record(spec)
    ctx = aws_world.context(record)
    phases.initialize(record, ctx)
    aws_world.sim.creating_describes = 6   # still creating when Cleanup comes
    ctx.temp_dbs.create(record, record.requested, lambda: None)
    cluster_id = record.resources["temporaryDatabase"]["clusterId"]
    assert aws_world.sim.strict.clusters[cluster_id] == "creating"
    clean(aws_world, record, ctx)
    assert any(r.startswith("rds.DeleteDBCluster") for r in aws_world.sim.strict.refused)
    assert aws_world.sim.succeeded["rds.DeleteDBCluster"] == 1


def test_another_minor_version_is_a_warning_not_a_failure(aws_world):
    session = aws_world.sim.session()

    def newer_minor(parsed, **kwargs):   # RDS restored onto a newer minor
        identifier = parsed["DBInstance"]["DBInstanceIdentifier"]
        rds_backend().databases[identifier].engine_version = "15.19"

    session.events.register("after-call.rds.RestoreDBInstanceToPointInTime", newer_minor)
    events: list[dict] = []
    record, ctx = restore_copy(aws_world, inheriting(aws_world), session=session,
                               events=events)
    [warning] = record.warnings
    assert "15.19" in warning and "15.18" in warning
    assert [e["message"] for e in events if e.get("event") == "restore_warning"] == [warning]
    clean(aws_world, record, ctx)
    assert version_difference("15.18", "15.18") is None
    with pytest.raises(ProviderError) as refused:
        version_difference("15.18", "16.4")
    assert refused.value.reason == "EngineVersionMismatch"


def test_plan_says_when_the_copy_would_be_billed_for_extended_support(aws_world):
    assert plan_of(aws_world, inheriting(aws_world))["notes"] == []
    aws_world.sim.strict.standard_support_end["15"] = datetime(2025, 2, 28,
                                                               tzinfo=timezone.utc)
    [note] = plan_of(aws_world, inheriting(aws_world))["notes"]
    assert "Extended Support" in note and "2025-02-28" in note


# -- snapshots ------------------------------------------------------------------------
def _automated(kind: str, source: str) -> str:
    rds = boto3.client("rds", region_name=REGION)
    if kind == "cluster":
        found = rds.describe_db_cluster_snapshots(DBClusterIdentifier=source,
                                                  SnapshotType="automated")
        return found["DBClusterSnapshots"][0]["DBClusterSnapshotIdentifier"]
    found = rds.describe_db_snapshots(DBInstanceIdentifier=source, SnapshotType="automated")
    return found["DBSnapshots"][0]["DBSnapshotIdentifier"]


@pytest.mark.parametrize("kind, source", [("instance", "prod-db"), ("cluster", "prod-aurora")])
def test_automated_snapshots_are_found(aws_world, kind, source):
    snapshot_id = _automated(kind, source)
    assert snapshot_id.startswith("rds:")
    plan = plan_of(aws_world, aws_world.spec(snapshotId=snapshot_id, targetSuffix="_auto",
                                             source={"dbIdentifier": source}))
    assert plan["source"]["kind"] == kind
    assert aws_world.sim.strict.refused == []


def test_shared_snapshot_is_found_by_its_arn_and_restored(aws_world):
    aws_world.snapshot("prod-db-shared")
    arn = f"arn:aws:rds:{REGION}:{FOREIGN_ACCOUNT}:snapshot:prod-db-shared"
    spec = aws_world.spec(snapshotId=arn, targetSuffix="_shared")
    plan = plan_of(aws_world, spec)
    [note] = plan["notes"]
    assert FOREIGN_ACCOUNT in note
    record, ctx = restore_copy(aws_world, spec)
    [restore] = aws_world.sim.params["rds.RestoreDBInstanceFromDBSnapshot"]
    assert aws_world.sim.strict.refused == []
    assert record.resources["temporaryDatabase"]["instanceId"] in aws_world.sim.strict.created
    clean(aws_world, record, ctx)
    assert restore["DBSnapshotIdentifier"] == "prod-db-shared"   # the fake's name for it


def test_snapshot_lookup_parameters():
    assert snapshot_lookup("DBSnapshotIdentifier", "rds:db-2024-01-01-00-00") == {
        "DBSnapshotIdentifier": "rds:db-2024-01-01-00-00", "SnapshotType": "automated"}
    arn = f"arn:aws:rds:{REGION}:{FOREIGN_ACCOUNT}:cluster-snapshot:manual-1"
    assert snapshot_lookup("DBClusterSnapshotIdentifier", arn) == {
        "DBClusterSnapshotIdentifier": arn, "IncludeShared": True}
    assert snapshot_lookup("DBSnapshotIdentifier", "manual-1") == {
        "DBSnapshotIdentifier": "manual-1"}


# -- what it costs -------------------------------------------------------------------
def test_dms_instance_starts_right_after_the_restore_call(aws_world):
    """Not in phase 1: it would be billed while Initialize runs and the
    restore is only being asked for."""
    session = aws_world.sim.session()
    dms = DmsMigration(session, DmsSettings(
        secrets_access_role_arn=f"arn:aws:iam::{ACCOUNT}:role/dms-secrets"))
    spec = inheriting(aws_world, dataCopy="dms")
    record = aws_world.record(spec)
    ctx = aws_world.context(record, session=session, dms=dms)
    log = aws_world.sim.log
    phases.initialize(record, ctx)
    assert "database-migration-service.CreateReplicationInstance" not in log
    phases.temporary_database(record, ctx)
    restored = log.index("rds.RestoreDBInstanceToPointInTime")
    started = log.index("database-migration-service.CreateReplicationInstance")
    assert restored < started
    # Before the copy was seen available: the instance provisions meanwhile.
    assert "rds.DescribeDBInstances" in log[started:]
    # Beside the copy: the DB subnet group and security groups it inherited.
    [created] = aws_world.sim.params["database-migration-service.CreateReplicationInstance"]
    assert created["VpcSecurityGroupIds"] == StrictAws.settings_of("prod-db")["securityGroupIds"]
    clean(aws_world, record, ctx)


def test_master_password_fits_modify_db_cluster():
    passwords = {_password() for _ in range(50)}
    assert PASSWORD_LENGTH == 40 and {len(p) for p in passwords} == {PASSWORD_LENGTH}
    assert 8 <= PASSWORD_LENGTH <= 41
    assert not any(set(p) & set('/"@ ') for p in passwords)


def test_artifacts_encryption_and_bucket_owner(mocked_aws, monkeypatch, tmp_path: Path):
    """SSE is a setting (AES256 by default, aws:kms with a key id); every S3
    call names the bucket's expected owner, so a bucket of another account
    is refused (the strict hook plays S3's refusal)."""
    session = boto3.Session(region_name=REGION)
    StrictAws().attach(session.events)
    s3 = session.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    artifact = tmp_path / "pre.sql"
    artifact.write_text("CREATE SCHEMA s;")
    store = S3Store(BUCKET, "restores/r1", client=s3)

    store.put_file("default.sql", artifact)
    assert s3.head_object(Bucket=BUCKET, Key="restores/r1/default.sql")[
        "ServerSideEncryption"] == "AES256"
    monkeypatch.setenv(SSE_ENV, "aws:kms")
    monkeypatch.setenv(KMS_KEY_ENV, "alias/pgsr-artifacts")
    monkeypatch.setenv(BUCKET_OWNER_ENV, ACCOUNT)
    store.put_file("pre.sql", artifact)
    head = s3.head_object(Bucket=BUCKET, Key="restores/r1/pre.sql")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms",
                                                                   "alias/pgsr-artifacts")
    assert store.read_text("pre.sql") == "CREATE SCHEMA s;"

    monkeypatch.setenv(BUCKET_OWNER_ENV, FOREIGN_ACCOUNT)
    with pytest.raises(DataPlaneError) as refused:
        store.put_file("again.sql", artifact)
    assert refused.value.reason == "ArtifactWriteFailed"
    cleaner = S3ArtifactCleaner(session, expected_owner=FOREIGN_ACCOUNT)
    with pytest.raises(ProviderError) as unusable:
        cleaner.check(f"s3://{BUCKET}/restores")
    assert unusable.value.reason == "ArtifactsUnavailable"
    assert S3ArtifactCleaner(session, expected_owner=ACCOUNT).delete(
        f"s3://{BUCKET}/restores/r1") == 2
    monkeypatch.setenv(SSE_ENV, "aws:fsx")
    with pytest.raises(DataPlaneError):
        store.put_file("bad.sql", artifact)
