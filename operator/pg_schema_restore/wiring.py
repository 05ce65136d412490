"""The composition root: the one place that builds the engine's Context.

The operator, the command line, the demo and the tests all call
`build_context`; it picks the adapters from the settings:

- provider `aws`: RDS / Aurora, Secrets Manager, S3 artifacts, DynamoDB
  audit (when `audit_table` is set), DMS (for `dataCopy: dms`), all on one
  boto3 session and one client cache;
- provider `local`: genuine PITR on this machine from a base backup and a
  WAL archive, secrets in a directory, artifacts in a directory;
- executor `subprocess` (a local `python -m ddl_job` process) or `job` (a
  Kubernetes Job in the operator's namespace: `JobPlacement`).

Adapters never import each other; only this module knows them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .config import OperatorConfig
from .engine.phases import CLEANUP_PHASES, Context
from .engine.ports import DataMigration, Executor, Secrets
from .engine.record import RestoreRecord
from .engine.spec import RestoreSpec
from .engine.stopping import NEVER, Stop, stoppable_sleep
from .executors.job import JobExecutor
from .executors.subprocess import SubprocessExecutor


@dataclass(frozen=True)
class JobPlacement:
    """Where the operator runs a restore's Jobs: `namespace`, the operator's
    (never the SchemaRestore's); `owner` names the SchemaRestore
    (`namespace/name`). Stopping is the engine's (`Context.stop`)."""

    namespace: str
    owner: str


def _default_session(region: str | None) -> Any:
    from .aws.session import new_session

    return new_session(region=region)


# Tests point this at a session carrying moto and their hooks.
SESSION_FACTORY: Callable[[str | None], Any] = _default_session


def step_executor(session: Any = None) -> Executor:
    """A data-plane step on this machine, connections from Secrets Manager
    (the state machine's ECS tasks: `stepfunctions/ecs_step.py`)."""
    from .aws.secrets import AwsSecrets

    return SubprocessExecutor(AwsSecrets(session or SESSION_FACTORY(None)))


def job_executor(config: OperatorConfig, placement: JobPlacement, restore_id: str,
                 secrets: Secrets) -> JobExecutor:
    return JobExecutor(namespace=placement.namespace, owner=placement.owner,
                       restore_id=restore_id, image=config.job_image, secrets=secrets,
                       resources=config.job_resources,
                       deadline_seconds=config.job_deadline_seconds,
                       service_account=config.job_service_account,
                       poll_seconds=config.job_poll_seconds)


def build_context(config: OperatorConfig, record: RestoreRecord, *,
                  save: Callable[[RestoreRecord], None] = lambda record: None,
                  on_event: Callable[[dict[str, Any]], None] = lambda event: None,
                  jobs: JobPlacement | None = None, session: Any = None,
                  poller: Any = None, dms: DataMigration | None = None,
                  stop: Stop = NEVER) -> Context:
    """The Context for one restore. `session`, `poller` and `dms` replace the
    defaults (tests: moto's session, a fake clock, a DMS double); `stop`
    tells the engine when to cancel or stop driving the restore."""
    spec = record.spec

    def executor_for(secrets: Secrets) -> Executor:
        if config.executor == "job":
            if jobs is None:
                raise ValueError("executor 'job' needs a JobPlacement")
            return job_executor(config, jobs, record.restore_id, secrets)
        return SubprocessExecutor(secrets)

    if config.provider == "local":
        ctx = _local_context(config, executor_for, save, on_event)
    else:
        if poller is None and stop is not NEVER:
            # RDS and DMS waits last minutes: a deletion must not wait them out.
            from .aws.session import Poller

            poller = Poller(sleep=stoppable_sleep(
                stop, lambda: record.phase not in CLEANUP_PHASES))
        ctx = _aws_context(config, spec, record.region, executor_for, save=save,
                           on_event=on_event, session=session, poller=poller, dms=dms)
    ctx.stop = stop
    return ctx


def _local_context(config: OperatorConfig, executor_for: Callable[[Secrets], Executor],
                   save: Callable[[RestoreRecord], None],
                   on_event: Callable[[dict[str, Any]], None]) -> Context:
    from .local.artifacts import LocalArtifactCleaner
    from .local.provider import LocalSource, LocalTemporaryDatabases
    from .local.secrets import LocalSecrets

    secrets = LocalSecrets(Path(config.local_secrets_dir))
    source = LocalSource(Path(config.local_base_backup), Path(config.local_wal_archive),
                         config.local_production_secret, Path(config.local_workdir))
    return Context(temp_dbs=LocalTemporaryDatabases(source, secrets),
                   executor=executor_for(secrets), artifacts_root=config.artifacts_root,
                   artifact_cleaner=LocalArtifactCleaner(), secrets=secrets,
                   save=save, on_event=on_event, progress_seconds=config.progress_seconds)


def _aws_context(config: OperatorConfig, spec: RestoreSpec | None, region: str,
                 executor_for: Callable[[Secrets], Executor], *,
                 save: Callable[[RestoreRecord], None],
                 on_event: Callable[[dict[str, Any]], None], session: Any, poller: Any,
                 dms: DataMigration | None) -> Context:
    from .aws.audit import DynamoAudit
    from .aws.dms import DmsMigration, DmsSettings
    from .aws.rds import RdsTemporaryDatabases
    from .aws.s3 import S3ArtifactCleaner
    from .aws.secrets import AwsSecrets
    from .aws.session import Clients

    session = session or SESSION_FACTORY(region or None)
    clients = Clients(session)
    secrets = AwsSecrets(session, clients=clients)
    # A sweep (no spec) deletes DMS leftovers too.
    if dms is None and (spec is None or spec.data_copy == "dms"):
        dms = DmsMigration(session, DmsSettings(
            secrets_access_role_arn=config.dms_secrets_role_arn,
            progress_seconds=config.progress_seconds), clients=clients,
            poller=poller)
    return Context(
        temp_dbs=RdsTemporaryDatabases(session, secrets, clients=clients, poller=poller),
        executor=executor_for(secrets),
        artifacts_root=config.artifacts_root,
        artifact_cleaner=S3ArtifactCleaner(session, clients=clients,
                                           expected_owner=config.artifacts_bucket_owner),
        secrets=secrets,
        audit=DynamoAudit(session, config.audit_table, clients=clients)
        if config.audit_table else None,
        dms=dms, save=save, on_event=on_event, progress_seconds=config.progress_seconds)
