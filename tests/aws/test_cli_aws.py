"""`pg-schema-restore plan` and `cleanup` against moto + real PostgreSQL."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import boto3
import pytest

from pg_schema_restore import cli
from support.aws import BUCKET, REGION, TAG
from support.pg import restore_point


@pytest.fixture(autouse=True)
def cli_uses_simulated_aws(aws_world, monkeypatch):
    """The CLI makes its own Session: give it the simulator's (moto + hooks)."""
    import pg_schema_restore.aws.session as session_module

    monkeypatch.setattr(session_module, "new_session",
                        lambda region=None, profile=None: aws_world.sim.session())


def iso(point: datetime) -> str:
    return point.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _instances() -> list[str]:
    rds = boto3.client("rds", region_name=REGION)
    return sorted(i["DBInstanceIdentifier"] for i in rds.describe_db_instances()["DBInstances"])


def _plan_args(world, point: datetime) -> list[str]:
    return ["plan", "--database", world.database, "--schemas", "customer_a1,customer_b2",
            "--restore-time", iso(point), "--source-id", "prod-db",
            "--secret-arn", world.secret_arn, "--region", REGION,
            "--artifacts", f"s3://{BUCKET}/plans", "--restore-id", "plan1"]


def test_plan_validates_and_creates_nothing(aws_world, capsys):
    point = restore_point()
    before = _instances()
    assert cli.main(_plan_args(aws_world, point)) == 0
    plan = json.loads(capsys.readouterr().out)
    suffix = point.astimezone(timezone.utc).strftime("_%Y%m%d%H%M%S")
    assert plan["targets"] == {"customer_a1": "customer_a1" + suffix,
                               "customer_b2": "customer_b2" + suffix}
    assert plan["source"]["kind"] == "instance"
    copy = plan["wouldCreate"]["temporaryDatabase"]
    assert copy["instance"] == "pgsr-plan1-db"
    # No network or parameter group given: the source's, and plan says so.
    assert copy["settings"]["subnetGroup"] == {"value": "pgsr-isolated", "from": "source"}
    assert copy["settings"]["parameterGroup"] == {"value": "prod-pg15", "from": "source"}
    assert copy["settings"]["instanceClass"] == {"value": "db.r6g.large",
                                                 "from": "operator default"}
    assert plan["wouldCreate"]["artifacts"] == f"s3://{BUCKET}/plans/plan1"
    assert _instances() == before
    sm = boto3.client("secretsmanager", region_name=REGION)
    assert not [s for s in sm.list_secrets()["SecretList"] if s["Name"].startswith("pgsr-")]


def test_plan_refuses_a_point_outside_the_window(aws_world, capsys):
    too_late = datetime.now(timezone.utc) + timedelta(days=1)
    assert cli.main(_plan_args(aws_world, too_late)) == 1
    err = capsys.readouterr().err
    assert "RestoreTimeOutOfWindow" in err
    assert aws_world.leftovers("plan1") == []


def test_plan_refuses_taken_target_names(aws_world, capsys):
    point = restore_point()
    suffix = point.astimezone(timezone.utc).strftime("_%Y%m%d%H%M%S")
    with aws_world.prod.connect(aws_world.database, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "customer_a1{suffix}"')
    assert cli.main(_plan_args(aws_world, point)) == 1
    assert "TargetExists" in capsys.readouterr().err


def test_cleanup_deletes_everything_tagged(aws_world, capsys):
    restore_id = "leak1"
    tags = [{"Key": TAG, "Value": restore_id}]
    rds = boto3.client("rds", region_name=REGION)
    rds.create_db_instance(DBInstanceIdentifier=f"pgsr-{restore_id}-db", Engine="postgres",
                           DBInstanceClass="db.t3.micro", MasterUsername="admin",
                           MasterUserPassword="not-a-real-one-1", AllocatedStorage=20,
                           Tags=tags)
    sm = boto3.client("secretsmanager", region_name=REGION)
    sm.create_secret(Name=f"pgsr-{restore_id}-secret", SecretString="{}", Tags=tags)
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=BUCKET, Key=f"runs/{restore_id}/schema.dump", Body=b"x")
    assert aws_world.leftovers(restore_id)
    assert cli.main(["cleanup", "--restore-id", restore_id, "--region", REGION,
                     "--artifacts", f"s3://{BUCKET}/runs"]) == 0
    deleted = json.loads(capsys.readouterr().out)
    assert any(f"pgsr-{restore_id}-db" in item for item in deleted["temporaryDatabase"])
    assert deleted["artifacts"] == 1
    assert aws_world.leftovers(restore_id) == []
    assert "prod-db" in _instances()
    # Idempotent: a second run finds nothing and succeeds.
    assert cli.main(["cleanup", "--restore-id", restore_id, "--region", REGION]) == 0


def test_plan_says_which_schemas_production_lacks_now(aws_world, capsys):
    """issue 13: a typo shows before a copy is paid for; not a refusal (a
    schema dropped from production is what one restores)."""
    args = _plan_args(aws_world, restore_point())
    args[args.index("customer_a1,customer_b2")] = "customer_a1,custmer_b2"
    assert cli.main(args) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["warnings"] == ["schema custmer_b2 is not in production now; it will be "
                                "looked for in the copy"]
    assert plan["targets"]["custmer_b2"].startswith("custmer_b2_")
