"""The temporary secret lives in the source's region, not the client's.

The operator's AWS session has its own default region; a source in
another region gets its temporary copy there (RDS) and its temporary
secret there too (Secrets Manager), recorded by ARN so every later read
and delete goes to that region.
"""

from __future__ import annotations

import boto3
from pg_schema_restore import wiring
from pg_schema_restore.aws.session import secret_name
from pg_schema_restore.config import OperatorConfig
from pg_schema_restore.engine import runner
from support.aws import BUCKET, REGION, fast_poller
from support.pg import restore_point

OTHER = "us-east-1"


def test_temporary_secret_is_made_in_the_sources_region(aws_world):
    assert REGION != OTHER
    point = restore_point()
    session = aws_world.sim.attach(boto3.Session(region_name=OTHER))
    regions: list[str] = []
    session.events.register(
        "before-sign.secrets-manager.CreateSecret",
        lambda request, **_: regions.append(request.url.split(".")[1]))
    record = aws_world.record(aws_world.spec(restoreTime=point.isoformat(),
                                             source={"region": REGION}))
    ctx = wiring.build_context(
        OperatorConfig(provider="aws", executor="subprocess",
                       artifacts_root=f"s3://{BUCKET}/regions"),
        record, session=session, poller=fast_poller(None))
    runner.run(record, ctx)
    assert record.succeeded, record.error
    assert regions == [REGION]
    assert record.resources["temporarySecret"].startswith(
        f"arn:aws:secretsmanager:{REGION}:")
    assert aws_world.leftovers(record.restore_id) == []


def test_messages_name_a_secret_recorded_by_its_arn():
    """The record keeps ARNs (they carry the region); cleanup says names, what
    people know a secret by (AWS appends `-` and six characters to the name)."""
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:pgsr-0123456789-secret-AbC123"
    assert secret_name(arn) == "pgsr-0123456789-secret"
    assert secret_name("arn:aws:secretsmanager:eu-west-1:1:secret:team/db-x-Zz9Yy8") == "team/db-x"
    assert secret_name("pgsr-0123456789-secret") == "pgsr-0123456789-secret"
