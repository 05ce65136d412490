"""Build the engine Context for one SchemaRestore from the operator config.

The provider is `aws` (RDS/Aurora, Secrets Manager, S3, DynamoDB, DMS) or
`local` (genuine PITR on the operator's machine: demo and tests); steps run
as Kubernetes Jobs (`job`) or local processes (`subprocess`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..engine.phases import Context, local_artifact_cleaner
from ..engine.ports import Executor, Secrets
from ..engine.record import RestoreRecord
from ..executors.subprocess import SubprocessExecutor
from .config import OperatorConfig
from .jobs import JobExecutor


def _default_session_factory():  # pragma: no cover - replaced in tests
    from ..aws.session import new_session

    return new_session()


# Tests point this at a session carrying moto and their hooks.
SESSION_FACTORY: Callable[[], Any] = _default_session_factory


def _owner(body: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": body["apiVersion"], "kind": body["kind"],
            "name": body["metadata"]["name"], "uid": body["metadata"]["uid"]}


def job_executor(config: OperatorConfig, body: dict[str, Any], record: RestoreRecord,
                 secrets: Secrets, should_stop: Callable[[], bool]) -> JobExecutor:
    return JobExecutor(namespace=body["metadata"]["namespace"], owner=_owner(body),
                       restore_id=record.restore_id, image=config.job_image, secrets=secrets,
                       resources=config.job_resources,
                       deadline_seconds=config.job_deadline_seconds,
                       service_account=config.job_service_account, should_stop=should_stop,
                       poll_seconds=config.job_poll_seconds)


def engine_context(config: OperatorConfig, body: dict[str, Any], record: RestoreRecord, *,
                   save: Callable[[RestoreRecord], None],
                   on_event: Callable[[dict[str, Any]], None],
                   should_stop: Callable[[], bool]) -> Context:
    def executor_for(secrets: Secrets) -> Executor:
        if config.executor == "subprocess":
            return SubprocessExecutor(secrets)
        return job_executor(config, body, record, secrets, should_stop)

    if config.provider == "local":
        from ..local.provider import LocalSource, LocalTemporaryDatabases
        from ..local.secrets import LocalSecrets

        secrets = LocalSecrets(Path(config.local_secrets_dir))
        source = LocalSource(Path(config.local_base_backup), Path(config.local_wal_archive),
                             config.local_production_secret, Path(config.local_workdir))
        return Context(temp_dbs=LocalTemporaryDatabases(source, secrets),
                       executor=executor_for(secrets), artifacts_root=config.artifacts_root,
                       artifact_cleaner=local_artifact_cleaner(), secrets=secrets,
                       save=save, on_event=on_event)

    from ..aws.context import aws_context
    from ..aws.dms import DmsMigration, DmsSettings
    from ..aws.secrets import AwsSecrets

    session = SESSION_FACTORY()
    secrets = AwsSecrets(session)
    dms = None
    if record.spec.get("dataCopy") == "dms":
        dms = DmsMigration(session, DmsSettings(
            secrets_access_role_arn=config.dms_secrets_role_arn))
    return aws_context(session, artifacts_root=config.artifacts_root,
                       executor=executor_for(secrets), audit_table=config.audit_table or None,
                       save=save, on_event=on_event, dms=dms)
