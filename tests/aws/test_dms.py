"""The `dms` data copy against moto + the DMS double + real PostgreSQL.

The source endpoint is a database on the `copyhost` cluster (the restored
copy, schemas already renamed to their target names), the target endpoint a
database *with the same name* on the `prod` cluster (production, pre-data
applied: empty tables with their primary keys). The double really copies the
rows when a task starts.
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any

import boto3
import psycopg
import pytest
from moto.dms.models import dms_backends
from psycopg import sql

from ddl_job.errors import RestoreError
from pg_schema_restore.aws.dms import (
    FULL_LOAD_FINISHED,
    TAG_KEY,
    DmsMigration,
    DmsSettings,
    dms_pattern,
    table_mappings,
    task_settings,
)
from pg_schema_restore.aws.session import Poller
from pg_schema_restore.engine.record import RestoreRecord
from pg_schema_restore.engine.spec import RestoreSpec
from pg_schema_restore.local.cluster import SUPERUSER, LocalCluster
from support.aws import FakeClock
from support.dms_double import DmsDouble, dms_regex

REGION = "eu-west-1"
ROLE = "arn:aws:iam::123456789012:role/pgsr-dms-secrets"
SUFFIX = "_20240128143000"
_counter = itertools.count()

DDL = """
CREATE SCHEMA {schema};
CREATE TABLE {schema}.orders (
    id bigint PRIMARY KEY,
    note text NOT NULL,
    payload bytea,
    doc jsonb,
    flag boolean NOT NULL DEFAULT false,
    doubled bigint GENERATED ALWAYS AS (id * 2) STORED
);
CREATE TABLE {schema}."Line Items" (
    order_id bigint NOT NULL,
    n int NOT NULL,
    label varchar(20),
    PRIMARY KEY (order_id, n)
);
CREATE TABLE {schema}.empty_one (id int PRIMARY KEY);
"""


def _fill(conn: psycopg.Connection, schema: str, orders: int) -> None:
    s = sql.Identifier(schema)
    conn.execute(sql.SQL(
        "INSERT INTO {}.orders (id, note, payload, doc, flag) "
        "SELECT g, repeat('x', g %% 50) || E'\\nline ' || g, decode(md5(g::text), 'hex'), "
        "jsonb_build_object('g', g), g %% 2 = 0 FROM generate_series(1, %s) g").format(s),
        [orders])
    conn.execute(sql.SQL(
        'INSERT INTO {}."Line Items" SELECT g, n, \'l\' || n '
        "FROM generate_series(1, %s) g, generate_series(1, 3) n").format(s), [orders // 10])


def _count(cluster: LocalCluster, db: str, schema: str, table: str) -> int:
    with cluster.connect(db) as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            sql.Identifier(schema, table))).fetchone()
        assert row is not None
        return int(row[0])


# -- fixtures -------------------------------------------------------------------
@pytest.fixture
def aws(mocked_aws):
    """moto in-process with fake credentials (tests/support/aws.py) and a Session."""
    return boto3.Session(region_name=REGION)


@pytest.fixture
def double(aws):
    fake = DmsDouble(aws).install()
    yield fake
    fake.uninstall()


class World:
    """Two databases with one name: the restored copy and production."""

    def __init__(self, aws, source: LocalCluster, target: LocalCluster, schemas: list[str],
                 orders: int = 200) -> None:
        self.aws = aws
        self.source, self.target = source, target
        self.db = f"dms_{os.getpid()}_{next(_counter)}"
        self.spec = RestoreSpec.from_dict({
            "database": self.db, "schemas": schemas, "restoreTime": "2024-01-28T14:30:00Z",
            "dataCopy": "dms", "targetSuffix": SUFFIX,
            "source": {"dbIdentifier": "prod-db", "region": REGION},
            "temporaryDatabase": {"securityGroupIds": ["sg-0123456789abcdef0"]}})
        self.targets = self.spec.target_names()
        for cluster in (source, target):
            cluster.create_database(self.db)
            with cluster.connect(self.db, autocommit=True) as conn:
                for name in [*self.targets.values(), "customerXa1" + SUFFIX]:
                    conn.execute(DDL.format(schema=sql.Identifier(name).as_string(conn)))
        with source.connect(self.db, autocommit=True) as conn:
            for name in self.targets.values():
                _fill(conn, name, orders)
            # Matches `customer_a1...` if `_` were left a DMS wildcard: must stay empty.
            _fill(conn, "customerXa1" + SUFFIX, 5)
        secrets = aws.client("secretsmanager")
        self.source_secret = secrets.create_secret(
            Name=f"pgsr-test-{self.db}-temp", SecretString=json.dumps({
                "host": "127.0.0.1", "port": source.port, "username": SUPERUSER,
                "password": source.password}))["ARN"]
        self.target_secret = secrets.create_secret(
            Name=f"pgsr-test-{self.db}-prod", SecretString=json.dumps({
                "host": "127.0.0.1", "port": target.port, "username": SUPERUSER,
                "password": target.password}))["ARN"]
        self.saved: list[dict[str, Any]] = []

    def record(self, restore_id: str = "0a1b2c3d4e") -> RestoreRecord:
        record = RestoreRecord(restore_id=restore_id, spec=self.spec)
        record.targets = dict(self.targets)
        record.source = {"kind": "instance", "engine_version": "15.5"}
        return record

    def checkpoint(self, record: RestoreRecord):
        return lambda: self.saved.append(json.loads(record.to_json()))

    def drop(self) -> None:
        for cluster in (self.source, self.target):
            with cluster.connect(autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(self.db)))


@pytest.fixture
def world(aws, copyhost, prod):
    made: list[World] = []

    def make(schemas: list[str], orders: int = 200) -> World:
        made.append(World(aws, copyhost, prod, schemas, orders))
        return made[-1]

    yield make
    for w in made:
        w.drop()


def adapter(aws, **settings: Any) -> tuple[DmsMigration, FakeClock]:
    fake = FakeClock()
    config = DmsSettings(secrets_access_role_arn=ROLE, **settings)
    return DmsMigration(aws, config, poller=Poller(sleep=fake.sleep, clock=fake.clock)), fake


def leftovers(aws, restore_id: str) -> list[str]:
    """Every DMS resource still tagged with (or named after) the restore id."""
    dms = aws.client("dms")
    arns = [i["ReplicationInstanceArn"]
            for i in dms.describe_replication_instances()["ReplicationInstances"]]
    arns += [e["EndpointArn"] for e in dms.describe_endpoints()["Endpoints"]]
    arns += [t["ReplicationTaskArn"]
             for t in dms.describe_replication_tasks()["ReplicationTasks"]]
    found = []
    if arns:
        for tag in dms.list_tags_for_resource(ResourceArnList=arns)["TagList"]:
            if tag["Key"] == TAG_KEY and tag["Value"] == restore_id:
                found.append(tag["ResourceArn"])
    found += [arn for arn in arns if restore_id in arn]
    found += [g["ReplicationSubnetGroupIdentifier"] for g in
              dms.describe_replication_subnet_groups()["ReplicationSubnetGroups"]
              if restore_id in g["ReplicationSubnetGroupIdentifier"]]
    return sorted(set(found))


# -- units --------------------------------------------------------------------------
def test_patterns_are_literal():
    assert dms_pattern("customer_a1%x[y") == "customer[_]a1[%]x[[]y"
    assert dms_regex(dms_pattern("customer_a1")).match("customer_a1")
    assert not dms_regex(dms_pattern("customer_a1")).match("customerXa1")
    assert dms_regex("customer_a1").match("customerXa1")          # the trap avoided
    rule = json.loads(table_mappings("Tenant B2_x"))["rules"][0]
    assert rule["object-locator"] == {"schema-name": "Tenant B2[_]x", "table-name": "%",
                                      "table-type": "table"}
    assert [r["rule-type"] for r in json.loads(table_mappings("a"))["rules"]] == ["selection"]


def test_task_settings_never_truncate_and_never_touch_tables():
    limited = json.loads(task_settings(DmsSettings(secrets_access_role_arn=ROLE)))
    assert limited["FullLoadSettings"]["TargetTablePrepMode"] == "DO_NOTHING"
    assert limited["TargetMetadata"]["SupportLobs"] is True
    assert limited["TargetMetadata"]["LimitedSizeLobMode"] is True
    assert limited["ErrorBehavior"]["DataTruncationErrorPolicy"] == "STOP_TASK"
    assert limited["ErrorBehavior"]["DataErrorPolicy"] == "STOP_TASK"
    full = json.loads(task_settings(DmsSettings(secrets_access_role_arn=ROLE, lob_mode="full")))
    assert full["TargetMetadata"]["FullLobMode"] is True
    assert full["TargetMetadata"]["LimitedSizeLobMode"] is False


def test_not_configured_creates_nothing(aws, double, world):
    w = world(["customer_a1"])
    record = w.record()
    migration = DmsMigration(aws, DmsSettings())
    with pytest.raises(RestoreError) as err:
        migration.start_instance(record, w.spec, w.checkpoint(record))
    assert err.value.reason == "DmsNotConfigured"
    assert aws.client("dms").describe_replication_instances()["ReplicationInstances"] == []


# -- phase 1 --------------------------------------------------------------------------
def test_start_instance_records_first_and_is_idempotent(aws, double, world):
    w = world(["customer_a1"])
    record = w.record()
    migration, _ = adapter(aws)
    dms = aws.client("dms")
    seen_before_create: list[bool] = []

    def checkpoint():
        if not seen_before_create:
            exists = dms.describe_replication_instances()["ReplicationInstances"]
            seen_before_create.append(
                record.resources["dms"]["replicationInstance"]["id"] == "pgsr-0a1b2c3d4e-dms"
                and not exists)

    migration.start_instance(record, w.spec, checkpoint)
    migration.start_instance(record, w.spec, checkpoint)
    assert seen_before_create == [True]
    instances = dms.describe_replication_instances()["ReplicationInstances"]
    assert len(instances) == 1
    instance = instances[0]
    assert instance["ReplicationInstanceIdentifier"] == "pgsr-0a1b2c3d4e-dms"
    assert instance["PubliclyAccessible"] is False
    assert [g["VpcSecurityGroupId"] for g in instance["VpcSecurityGroups"]] == [
        "sg-0123456789abcdef0"]
    assert record.resources["dms"]["replicationInstance"]["arn"] == \
        instance["ReplicationInstanceArn"]
    tags = dms.list_tags_for_resource(ResourceArn=instance["ReplicationInstanceArn"])["TagList"]
    assert {"Key": TAG_KEY, "Value": "0a1b2c3d4e"} in [
        {"Key": t["Key"], "Value": t["Value"]} for t in tags]


def test_subnet_group_made_from_the_db_subnet_group_and_deleted(aws, double, world):
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24",
                                 AvailabilityZone=f"{REGION}{az}")["Subnet"]["SubnetId"]
               for i, az in ((1, "a"), (2, "b"))]
    aws.client("rds").create_db_subnet_group(DBSubnetGroupName="isolated",
                                             DBSubnetGroupDescription="x", SubnetIds=subnets)
    w = world(["customer_a1"])
    spec = w.spec.to_dict()
    spec["temporaryDatabase"]["subnetGroup"] = "isolated"
    record = w.record()
    record.spec = RestoreSpec.from_dict(spec)
    migration, _ = adapter(aws)
    migration.start_instance(record, record.spec, w.checkpoint(record))
    dms = aws.client("dms")
    groups = dms.describe_replication_subnet_groups()["ReplicationSubnetGroups"]
    assert [g["ReplicationSubnetGroupIdentifier"] for g in groups] == ["pgsr-0a1b2c3d4e-dms"]
    assert record.resources["dms"]["subnetGroup"] == {"id": "pgsr-0a1b2c3d4e-dms",
                                                      "created": True}
    deleted = migration.delete(record)
    assert "dms-subnet-group:pgsr-0a1b2c3d4e-dms" in deleted
    assert dms.describe_replication_subnet_groups()["ReplicationSubnetGroups"] == []


# -- phase 4 --------------------------------------------------------------------------
def test_full_load_copies_real_rows(aws, double, world, copyhost, prod):
    w = world(["customer_a1", "Tenant_B2"], orders=300)
    record = w.record()
    migration, fake = adapter(aws)
    migration.start_instance(record, w.spec, w.checkpoint(record))
    summary = migration.run_full_load(record, w.spec, w.source_secret, w.target_secret,
                                      w.checkpoint(record))
    # 300 orders + 90 line items (+ an empty table) per schema
    assert summary["rows"] == 2 * (300 + 90)
    assert summary["tables"] == 6
    assert set(summary["tasks"]) == set(w.targets.values())
    for target in w.targets.values():
        assert summary["tasks"][target]["rows"] == 390
        assert _count(prod, w.db, target, "orders") == 300
        assert _count(prod, w.db, target, "Line Items") == 90
        with copyhost.connect(w.db) as src, prod.connect(w.db) as tgt:
            query = sql.SQL("SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM {} t").format(
                sql.Identifier(target, "orders"))
            assert src.execute(query).fetchone() == tgt.execute(query).fetchone()
    assert _count(prod, w.db, "customerXa1" + SUFFIX, "orders") == 0   # wildcard trap
    assert record.progress["rows"] == 780 and record.progress["tablesDone"] == 6
    # both endpoints were tested, and the tests polled to completion
    assert double.calls.count("TestConnection") == 2
    assert double.calls.count("DescribeConnections") >= 2
    assert fake.sleeps and all(s > 0 for s in fake.sleeps)   # polled through the poller
    dms = aws.client("dms")
    endpoints = {e["EndpointType"].lower(): e for e in dms.describe_endpoints()["Endpoints"]}
    source_settings = endpoints["source"]["PostgreSQLSettings"]
    assert source_settings["SecretsManagerSecretId"] == w.source_secret
    assert source_settings["SecretsManagerAccessRoleArn"] == ROLE
    assert source_settings["FailTasksOnLobTruncation"] is True
    assert endpoints["target"]["PostgreSQLSettings"]["SecretsManagerSecretId"] == w.target_secret
    tasks = dms.describe_replication_tasks()["ReplicationTasks"]
    assert {t["StopReason"] for t in tasks} == {FULL_LOAD_FINISHED}
    assert {t["MigrationType"] for t in tasks} == {"full-load"}
    # a second run (resume after the phase) loads nothing twice
    again = migration.run_full_load(record, w.spec, w.source_secret, w.target_secret,
                                    w.checkpoint(record))
    assert again["rows"] == summary["rows"]
    assert len(double.started) == 2
    assert _count(prod, w.db, w.targets["customer_a1"], "orders") == 300


def test_concurrency_cap(aws, double, world):
    w = world(["customer_a1", "customer_b2", "customer_c3"], orders=20)
    record = w.record()
    migration, _ = adapter(aws, max_concurrent_tasks=2)
    summary = migration.run_full_load(record, w.spec, w.source_secret, w.target_secret,
                                      w.checkpoint(record))
    assert summary["rows"] == 3 * (20 + 6)
    assert double.max_running == 2
    assert double.started == ["pgsr-0a1b2c3d4e-dms-task-1", "pgsr-0a1b2c3d4e-dms-task-2",
                              "pgsr-0a1b2c3d4e-dms-task-3"]


def test_concurrency_cap_of_one_runs_tasks_one_by_one(aws, double, world):
    w = world(["customer_a1", "customer_b2"], orders=10)
    record = w.record()
    migration, _ = adapter(aws, max_concurrent_tasks=1)
    migration.run_full_load(record, w.spec, w.source_secret, w.target_secret,
                            w.checkpoint(record))
    assert double.max_running == 1 and len(double.started) == 2


def test_connection_test_failure_is_reported(aws, double, world):
    w = world(["customer_a1"])
    record = w.record()
    double.fail_connection("target", "FATAL: password authentication failed for user \"dms\"")
    migration, _ = adapter(aws)
    with pytest.raises(RestoreError) as err:
        migration.run_full_load(record, w.spec, w.source_secret, w.target_secret,
                                w.checkpoint(record))
    assert err.value.reason == "DmsConnectionFailed"
    assert "password authentication failed" in err.value.message
    assert "target" in err.value.message
    assert double.started == []


def test_unreachable_database_fails_the_connection_test(aws, double, world):
    w = world(["customer_a1"])
    record = w.record()
    secrets = aws.client("secretsmanager")
    bad = secrets.create_secret(Name=f"bad-{w.db}", SecretString=json.dumps({
        "host": "127.0.0.1", "port": 1, "username": "x", "password": "y"}))["ARN"]
    migration, _ = adapter(aws)
    with pytest.raises(RestoreError) as err:
        migration.run_full_load(record, w.spec, bad, w.target_secret, w.checkpoint(record))
    assert err.value.reason == "DmsConnectionFailed"
    assert "source" in err.value.message and "Test connection failed" in err.value.message


def test_failed_task_is_reported_with_its_message(aws, double, world):
    w = world(["customer_a1", "customer_b2"], orders=10)
    record = w.record()
    double.fail_task(w.targets["customer_b2"], "Last Error Task error notification received")
    migration, _ = adapter(aws)
    with pytest.raises(RestoreError) as err:
        migration.run_full_load(record, w.spec, w.source_secret, w.target_secret,
                                w.checkpoint(record))
    assert err.value.reason == "DmsTaskFailed"
    assert "status failed" in err.value.message
    assert "Task error notification received" in err.value.message
    assert w.targets["customer_b2"] in err.value.message


@pytest.mark.parametrize("status, reason, message, expected", [
    ("stopped", "Stop Reason NORMAL", "", "Stop Reason NORMAL"),          # stopped by someone
    ("stopped", "Stop Reason STOPPED_DUE_TO_LOW_DISK", "", "LOW_DISK"),
    ("stopped", FULL_LOAD_FINISHED, "Error executing source loop", "executing source loop"),
])
def test_anything_but_a_clean_full_load_finish_is_a_failure(aws, double, world, status,
                                                            reason, message, expected):
    w = world(["customer_a1"], orders=10)
    record = w.record()
    double.fail_task(w.targets["customer_a1"], message, stop_reason=reason, status=status)
    migration, _ = adapter(aws)
    with pytest.raises(RestoreError) as err:
        migration.run_full_load(record, w.spec, w.source_secret, w.target_secret,
                                w.checkpoint(record))
    assert err.value.reason == "DmsTaskFailed"
    assert expected in err.value.message


def test_table_statistics_are_read_across_pages(aws, double, world, copyhost, prod):
    w = world(["customer_a1"], orders=10)
    target = w.targets["customer_a1"]
    for cluster in (copyhost, prod):
        with cluster.connect(w.db, autocommit=True) as conn:
            for i in range(110):
                conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY)").format(
                    sql.Identifier(target, f"t{i:03d}")))
    with copyhost.connect(w.db, autocommit=True) as conn:
        conn.execute(sql.SQL("INSERT INTO {} VALUES (1), (2)").format(
            sql.Identifier(target, "t109")))
    record = w.record()
    migration, _ = adapter(aws)
    summary = migration.run_full_load(record, w.spec, w.source_secret, w.target_secret,
                                      w.checkpoint(record))
    assert summary["tables"] == 113
    assert summary["rows"] == 10 + 3 + 2
    assert double.calls.count("DescribeTableStatistics") >= 2


def test_full_load_reports_live_progress_from_table_statistics(aws, double, world):
    """While a task runs, its table statistics (every page) move record.progress
    and the record is saved, before the task finishes (progress_seconds 0: every poll)."""
    w = world(["customer_a1", "customer_b2"], orders=40)
    double.polls_to_finish = 3
    record = w.record()
    migration, _ = adapter(aws, max_concurrent_tasks=1, progress_seconds=0)
    summary = migration.run_full_load(record, w.spec, w.source_secret, w.target_secret,
                                      w.checkpoint(record))

    def tasks_done(saved: dict) -> int:
        tasks = saved["resources"].get("dms", {}).get("tasks", {})
        return sum(1 for task in tasks.values() if task.get("done"))

    seen = [(tasks_done(s), s["progress"]) for s in w.saved if s["progress"].get("updatedAt")]
    # The first task, still running, already shows its rows and tables.
    live = [p for done, p in seen if done == 0 and p.get("rows")]
    assert live and live[0]["rows"] == 40 + 12 and live[0]["tablesTotal"] == 3
    assert live[0]["tablesDone"] == 3
    # The second one while running, on top of the first one's finished counts.
    assert any(done == 1 and p["rows"] == 2 * (40 + 12) for done, p in seen)
    rows = [p.get("rows", 0) for _, p in seen]
    assert rows == sorted(rows)                                 # never goes back
    assert record.progress["rows"] == summary["rows"] == 2 * (40 + 12)
    assert record.progress["tablesDone"] == record.progress["tablesTotal"] == 6


def test_errored_table_in_a_finished_task_is_a_failure(aws, double, world, prod):
    w = world(["customer_a1"], orders=10)
    record = w.record()
    target = w.targets["customer_a1"]
    double.error_table(target, "Line Items", "ERROR: value too long for type")
    migration, _ = adapter(aws)
    with pytest.raises(RestoreError) as err:
        migration.run_full_load(record, w.spec, w.source_secret, w.target_secret,
                                w.checkpoint(record))
    assert err.value.reason == "DmsTaskFailed"
    assert f'{target}."Line Items" (Table error)' in err.value.message   # names as typed
    # the task itself said it had finished normally: only the statistics tell
    task = aws.client("dms").describe_replication_tasks()["ReplicationTasks"][0]
    assert task["Status"] == "stopped" and task["StopReason"] == FULL_LOAD_FINISHED
    assert _count(prod, w.db, target, "orders") == 10


def test_missing_target_table_stops_the_task(aws, double, world, prod):
    w = world(["customer_a1"], orders=10)
    target = w.targets["customer_a1"]
    with prod.connect(w.db, autocommit=True) as conn:     # pre-data incomplete
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(target, "orders")))
    record = w.record()
    migration, _ = adapter(aws)
    with pytest.raises(RestoreError) as err:
        migration.run_full_load(record, w.spec, w.source_secret, w.target_secret,
                                w.checkpoint(record))
    assert err.value.reason == "DmsTaskFailed"
    assert "does not exist" in err.value.message


def test_instance_in_a_terminal_state_fails(aws, double, world):
    w = world(["customer_a1"])
    record = w.record()
    migration, _ = adapter(aws)
    migration.start_instance(record, w.spec, w.checkpoint(record))
    arn = record.resources["dms"]["replicationInstance"]["arn"]
    dms_backends["123456789012"][REGION].replication_instances[arn].status = \
        "incompatible-network"
    with pytest.raises(RestoreError) as err:
        migration.run_full_load(record, w.spec, w.source_secret, w.target_secret,
                                w.checkpoint(record))
    assert err.value.reason == "DmsInstanceFailed"
    assert "incompatible-network" in err.value.message


def test_resume_after_a_crash_mid_phase_duplicates_nothing(aws, double, world, prod):
    w = world(["customer_a1", "customer_b2"], orders=50)
    record = w.record()
    migration, _ = adapter(aws)
    saved: list[str] = []

    class Crash(BaseException):
        pass

    def crashing_checkpoint():
        saved.append(record.to_json())
        arns = [t.get("arn") for t in record.resources.get("dms", {}).get("tasks", {}).values()]
        if any(arns) and double.started:      # a task is running: the process dies
            raise Crash()

    with pytest.raises(Crash):
        migration.run_full_load(record, w.spec, w.source_secret, w.target_secret,
                                crashing_checkpoint)
    resumed = RestoreRecord.from_dict(json.loads(saved[-1]))
    again, _ = adapter(aws)          # a new process
    summary = again.run_full_load(resumed, w.spec, w.source_secret, w.target_secret,
                                  w.checkpoint(resumed))
    assert summary["rows"] == 2 * (50 + 15)
    dms = aws.client("dms")
    assert len(dms.describe_replication_tasks()["ReplicationTasks"]) == 2
    assert len(dms.describe_endpoints()["Endpoints"]) == 2
    assert len(dms.describe_replication_instances()["ReplicationInstances"]) == 1
    assert len(double.started) == 2
    for target in w.targets.values():
        assert _count(prod, w.db, target, "orders") == 50


# -- phase 6 --------------------------------------------------------------------------
def test_delete_stops_running_tasks_first_and_is_idempotent(aws, double, world):
    w = world(["customer_a1", "customer_b2"], orders=10)
    record = w.record()
    double.polls_to_finish = 10_000           # tasks that keep running
    migration, _ = adapter(aws, task_timeout=600)
    with pytest.raises(RestoreError) as err:
        migration.run_full_load(record, w.spec, w.source_secret, w.target_secret,
                                w.checkpoint(record))
    assert err.value.reason == "DmsTimeout"
    dms = aws.client("dms")
    assert {t["Status"] for t in dms.describe_replication_tasks()["ReplicationTasks"]} == {
        "running"}
    double.calls.clear()
    deleted = migration.delete(record)
    assert sorted(deleted) == sorted([
        "dms-task:pgsr-0a1b2c3d4e-dms-task-1", "dms-task:pgsr-0a1b2c3d4e-dms-task-2",
        "dms-endpoint:pgsr-0a1b2c3d4e-dms-source", "dms-endpoint:pgsr-0a1b2c3d4e-dms-target",
        "dms-instance:pgsr-0a1b2c3d4e-dms"])
    calls = double.calls
    assert calls.count("StopReplicationTask") == 2
    assert calls.index("StopReplicationTask") < calls.index("DeleteReplicationTask")
    assert max(i for i, c in enumerate(calls) if c == "DeleteReplicationTask") < \
        calls.index("DeleteEndpoint") < calls.index("DeleteReplicationInstance")
    assert leftovers(aws, record.restore_id) == []
    assert migration.delete(record) == []           # idempotent: NotFound is done
    assert leftovers(aws, record.restore_id) == []


def test_delete_finds_resources_by_tag_without_a_record(aws, double, world):
    w = world(["customer_a1"], orders=10)
    record = w.record()
    migration, _ = adapter(aws)
    migration.run_full_load(record, w.spec, w.source_secret, w.target_secret,
                            w.checkpoint(record))
    assert len(leftovers(aws, record.restore_id)) == 4
    # `pg-schema-restore cleanup --restore-id`: nothing recorded but the id
    bare = RestoreRecord(restore_id=record.restore_id, spec=w.spec)
    deleted = migration.delete(bare)
    assert len(deleted) == 4
    assert leftovers(aws, record.restore_id) == []


def test_delete_leaves_other_restores_alone(aws, double, world):
    w = world(["customer_a1"], orders=10)
    mine, other = w.record("1111111111"), w.record("2222222222")
    migration, _ = adapter(aws)
    migration.start_instance(mine, w.spec, w.checkpoint(mine))
    migration.start_instance(other, w.spec, w.checkpoint(other))
    assert migration.delete(mine) == ["dms-instance:pgsr-1111111111-dms"]
    assert leftovers(aws, "2222222222") != []
    migration.delete(other)


def test_delete_with_nothing_created_is_a_no_op(aws, double, world):
    w = world(["customer_a1"])
    migration, _ = adapter(aws)
    assert migration.delete(w.record()) == []


# -- the engine, end to end --------------------------------------------------------------
@pytest.mark.e2e
def test_engine_restore_with_dms(aws_world, capsys):
    """All seven phases with `dataCopy: dms`: RDS PITR copy (genuine local PITR),
    pre-data with PKs, DMS full load really copying rows, sequences, post-data,
    verify, cleanup of every RDS and DMS resource."""
    from support.aws import TENANTS, fast_poller
    from support.pg import restore_point

    point = restore_point()
    expected = {t: aws_world.counts(t) for t in TENANTS}
    aws_world.damage()
    before = aws_world.fingerprint()
    session = aws_world.sim.session()
    fake = DmsDouble(session).install()
    dms = DmsMigration(session, DmsSettings(secrets_access_role_arn=ROLE),
                       poller=fast_poller())
    spec = aws_world.spec(restoreTime=point.isoformat().replace("+00:00", "Z"),
                          dataCopy="dms")
    record = aws_world.run(spec, session=session, dms=dms)
    # Whatever the outcome: DMS really copied every row, and nothing is left.
    copied = sum(t["FullLoadRows"] for run in fake._runs.values() for t in run.stats)
    assert copied == sum(sum(c.values()) for c in expected.values())
    assert len(fake.started) == len(TENANTS)
    assert aws_world.leftovers(record.restore_id) == []
    assert leftovers(session, record.restore_id) == []
    deleted = record.result["deleted"]["dms"]
    assert f"dms-instance:pgsr-{record.restore_id}-dms" in deleted
    assert f"dms-subnet-group:pgsr-{record.restore_id}-dms" in deleted
    after = aws_world.fingerprint()
    assert {k: after[k] for k in before} == before, "a pre-existing schema changed"
    dms_calls = {op: n for op, n in aws_world.sim.calls.items()
                 if op.startswith("database-migration-service.")}
    with capsys.disabled():
        print(f"\nDMS API calls of one restore with dataCopy dms: {sum(dms_calls.values())}")
        for op, n in sorted(dms_calls.items()):
            print(f"  {n:4d}  {op.split('.', 1)[1]}")
    assert record.phase == "Succeeded", record.error
    for tenant, target in record.targets.items():
        assert aws_world.counts(target) == expected[tenant], tenant
    assert record.result["rows"] == copied
    # the restored sequences continue after the copied ids (DMS copies none)
    with aws_world.prod.connect(aws_world.database) as conn:
        target = record.targets["customer_a1"]
        top = conn.execute(f'SELECT max(id) FROM "{target}".orders').fetchone()[0]
        nxt = conn.execute(f"SELECT nextval('\"{target}\".orders_id_seq')").fetchone()[0]
        assert nxt > top

