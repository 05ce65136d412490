"""Wire the AWS adapters into an engine Context (the only place that knows
them all: the adapters themselves never import each other)."""

from __future__ import annotations

from typing import Any, Callable

import boto3

from ..engine.phases import Context
from ..engine.ports import DataMigration, Executor
from ..engine.record import RestoreRecord
from .audit import DynamoAudit
from .rds import RdsTemporaryDatabases
from .s3 import S3ArtifactCleaner
from .secrets import AwsSecrets
from .session import DEFAULT_RETRY_MODE, Clients, Poller


def aws_context(session: boto3.Session, *, artifacts_root: str,
                executor: Executor | None = None, audit_table: str | None = None,
                save: Callable[[RestoreRecord], None] = lambda record: None,
                on_event: Callable[[dict[str, Any]], None] = lambda event: None,
                dms: DataMigration | None = None, poller: Poller | None = None,
                retry_mode: str = DEFAULT_RETRY_MODE) -> Context:
    """An engine Context on AWS.

    - temporary databases: RDS / Aurora (`RdsTemporaryDatabases`);
    - secrets: Secrets Manager (`AwsSecrets`), also the executor's source of
      connections: by default a local `SubprocessExecutor` (CLI, tests);
    - artifacts: `artifacts_root` (`s3://bucket/prefix`, or a directory),
      deleted by `S3ArtifactCleaner`;
    - audit: DynamoDB table `audit_table` when given;
    - dms: a `DataMigration` (aws/dms.py) when `dataCopy: dms` is wanted.
    `poller` sets how waits poll (tests inject a fake clock).
    """
    clients = Clients(session, retry_mode=retry_mode)
    secrets = AwsSecrets(session, clients=clients)
    if executor is None:
        from ..executors.subprocess import SubprocessExecutor
        executor = SubprocessExecutor(secrets)
    return Context(
        temp_dbs=RdsTemporaryDatabases(session, secrets, clients=clients, poller=poller),
        executor=executor,
        artifacts_root=artifacts_root,
        artifact_cleaner=S3ArtifactCleaner(session, clients=clients),
        secrets=secrets,
        audit=DynamoAudit(session, audit_table, clients=clients) if audit_table else None,
        dms=dms,
        save=save,
        on_event=on_event,
    )
