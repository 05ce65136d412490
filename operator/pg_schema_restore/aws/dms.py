"""AWS DMS full load: the `dms` data copy (engine port `DataMigration`).

One replication instance per restore, created in phase 2 right after the
restore call (it takes minutes to provision, fewer than the restore, so it
is ready when the copy is and is not billed while phase 1 runs); in phase 4 two endpoints that read their credentials from Secrets
Manager, both connection tests polled to completion, then one `full-load`
task per schema, at most `max_concurrent_tasks` at once, each waited on until
it has *really* finished. Everything is deleted, by recorded id and by tag, in
phase 6.

What "finished" means (docs/facts.md, defect 7 of the original workflow, which
never looked): the task is `stopped` with StopReason
`Stop Reason FULL_LOAD_ONLY_FINISHED`, its ReplicationTaskStats report no
errored table, and DescribeTableStatistics reports every table
`Table completed` with no error rows (and `Validated`, when validation is on).
Anything else -- status `failed`, any other StopReason, an errored,
cancelled or still-loading table, a LastFailureMessage -- is a
`ProviderError("DmsTaskFailed", ...)` carrying the task's own message.

The source endpoint is the disposable restored copy, in which extract has
already renamed the schemas to their *target* names, so each task selects
`schema = target name` on both sides and needs no rename transformation.
Tables exist already in production (pre-data, with primary keys in `dms`
mode): TargetTablePrepMode is DO_NOTHING, nothing is dropped or truncated.

LOBs (in PostgreSQL: text, bytea, json/jsonb, xml, arrays, unbounded
varchar) must never be truncated; the default `lob_mode="limited"` uses
limited LOB mode *with* `FailTasksOnLobTruncation` on the source endpoint:
a LOB larger than `lob_max_size_kb` fails the task (detected and reported)
instead of being cut. Full LOB mode (`lob_mode="full"`) also cannot
truncate, but DMS then inserts every row with NULL LOBs and updates them
afterwards, which violates the NOT NULL constraints that pre-data creates
(`text NOT NULL` is everywhere); with it such tables end in `Table error`
(detected too). Limited mode is also far faster. The post-data `verify` step
compares exact row counts afterwards, which catches a table DMS never selected.

Configuration (operator Helm values / CLI flags; see `DmsSettings`):
- `secrets_access_role_arn` (required): an IAM role that trusts
  `dms.<region>.amazonaws.com` and may `secretsmanager:GetSecretValue` on the
  temporary secret and the production secret (plus `kms:Decrypt` if they use
  a customer key). The operator's own identity needs `iam:PassRole` on it.
- `replication_subnet_group`: an existing DMS replication subnet group. If
  empty, a replication subnet group with the subnets of the temporary
  database's DB subnet group (`temporaryDatabase.subnetGroup`, else the
  source's) is created for this restore (a temporary resource, deleted at
  cleanup; AWS needs the `dms-vpc-role` role for that). If both are empty,
  DMS uses the default VPC.
- the instance gets the temporary database's security groups (the spec's,
  else the source's): they must allow it
  to reach both the temporary database and production.

Waits go through session.py's `Poller` (exponential backoff, injectable sleep
and clock); clients come from session.py's `Clients` (botocore standard retry
mode absorbs throttling). The record keeps everything under
`resources["dms"]`: replicationInstance {id, arn}, subnetGroup {id, created},
endpoints {source, target: {id, arn}}, tasks {target schema: {id, arn,
started, done, tables, rows, seconds}}; ids are written and checkpointed
before each create call, so a re-run describes and adopts instead of creating.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, TypeVar

from botocore.exceptions import ClientError

from ddl_job.errors import CleanupFailed, ProviderError, RestoreError
from ddl_job.names import shown

from ..engine import progress
from ..engine.record import RestoreRecord
from ..engine.spec import RestoreSpec
from .session import RESTORE_ID_TAG, Clients, Poller, error_code, error_message, restore_tags

log = logging.getLogger(__name__)
T = TypeVar("T")

TAG_KEY = RESTORE_ID_TAG
FULL_LOAD_FINISHED = "Stop Reason FULL_LOAD_ONLY_FINISHED"
TABLE_COMPLETED = "Table completed"

# Replication instance states that will never become `available`.
_INSTANCE_TERMINAL = ("failed", "incompatible-network", "incompatible-credentials",
                      "inaccessible-encryption-credentials", "storage-full", "deleting",
                      "deleted")
# Task states in which it still moves by itself (towards ready or stopped).
_TASK_MOVING = ("creating", "starting", "running", "stopping", "modifying", "moving",
                "testing", "resuming")
_TASK_ACTIVE = ("starting", "running", "resuming")   # must be stopped before delete
_NOT_FOUND = ("ResourceNotFoundFault",)
_TAG_BATCH = 20


@dataclass
class DmsSettings:
    """Operator / CLI configuration of the `dms` data copy."""

    secrets_access_role_arn: str = ""    # required; see the module docstring
    instance_class: str = "dms.r5.large"
    allocated_storage_gb: int = 50
    engine_version: str = ""             # "" = DMS default
    replication_subnet_group: str = ""   # existing DMS subnet group to use as is
    max_concurrent_tasks: int = 2        # full-load tasks running at once
    max_full_load_subtasks: int = 8      # tables loaded in parallel inside one task
    lob_mode: str = "limited"            # "limited" (fails on truncation) or "full"
    lob_max_size_kb: int = 32768         # limited mode: larger LOBs fail the task
    commit_rate: int = 10000             # rows per batch; DMS pre-allocates
                                         # commit_rate x lob_max_size per LOB column
    validation: bool = False             # DMS row validation after the load (slower)
    ssl_mode: str = "require"
    cloudwatch_logs: bool = False        # needs the dms-cloudwatch-logs-role
    instance_timeout: float = 3600.0
    connection_timeout: float = 900.0
    task_timeout: float = 24 * 3600.0
    delete_timeout: float = 3600.0
    progress_seconds: float = 5.0        # table statistics read and saved at most this often

    def validate(self) -> None:
        if not self.secrets_access_role_arn.startswith("arn:"):
            raise ProviderError(
                "DmsNotConfigured",
                "dataCopy dms needs the ARN of an IAM role DMS assumes to read the "
                "database secrets (operator setting dms.secretsAccessRoleArn)")
        if not self.instance_class.startswith("dms."):
            raise ProviderError("DmsNotConfigured",
                                f"{self.instance_class!r} is not a DMS instance class")
        if self.lob_mode not in ("limited", "full"):
            raise ProviderError("DmsNotConfigured", "lob_mode must be 'limited' or 'full'")
        if not 1 <= self.lob_max_size_kb <= 102400:
            raise ProviderError("DmsNotConfigured", "lob_max_size_kb must be 1..102400")
        if self.max_concurrent_tasks < 1:
            raise ProviderError("DmsNotConfigured", "max_concurrent_tasks must be >= 1")


def _copy_or_spec(record: RestoreRecord, name: str, spec_value: Any) -> Any:
    """The temporary database's setting as phase 1 resolved it (the spec's,
    else the source's): the replication instance goes where the copy goes."""
    return record.copy_setting(name) or spec_value


def _chunks(items: list[T], size: int) -> Iterable[list[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def dms_pattern(name: str) -> str:
    """A literal schema/table name as a DMS table-mapping pattern.

    DMS patterns treat `%` and `_` as wildcards and `[...]` as a set:
    `customer_a1` would also select `customerXa1`. Each special character
    becomes a one-character set.
    """
    return "".join(f"[{ch}]" if ch in "%_[" else ch for ch in name)


def table_mappings(schema: str) -> str:
    """All tables of one schema, same schema name on both sides."""
    return json.dumps({"rules": [{
        "rule-type": "selection", "rule-id": "1", "rule-name": "schema",
        "object-locator": {"schema-name": dms_pattern(schema), "table-name": "%",
                           "table-type": "table"},
        "rule-action": "include", "filters": [],
    }]})


def task_settings(settings: DmsSettings) -> str:
    limited = settings.lob_mode == "limited"
    return json.dumps({
        "TargetMetadata": {
            "TargetSchema": "",
            "SupportLobs": True,
            "FullLobMode": not limited,
            "LobChunkSize": 64,
            "LimitedSizeLobMode": limited,
            "LobMaxSize": settings.lob_max_size_kb if limited else 0,
            "InlineLobMaxSize": 0,
            "BatchApplyEnabled": False,
        },
        "FullLoadSettings": {
            # Tables come from pre-data (with their PKs in dms mode): never touch them.
            "TargetTablePrepMode": "DO_NOTHING",
            "CreatePkAfterFullLoad": False,
            "StopTaskCachedChangesApplied": False,
            "StopTaskCachedChangesNotApplied": False,
            "MaxFullLoadSubTasks": settings.max_full_load_subtasks,
            "TransactionConsistencyTimeout": 600,
            "CommitRate": settings.commit_rate,
        },
        "Logging": {"EnableLogging": settings.cloudwatch_logs},
        "ErrorBehavior": {
            # Defaults are LOG_ERROR: a bad or truncated row is skipped and the
            # task still "succeeds". Stop instead; the reason is surfaced.
            "DataErrorPolicy": "STOP_TASK",
            "DataTruncationErrorPolicy": "STOP_TASK",
            "DataErrorEscalationPolicy": "STOP_TASK",
            "TableErrorPolicy": "STOP_TASK",
            "TableErrorEscalationPolicy": "STOP_TASK",
            "FailOnNoTablesCaptured": False,   # a schema may legitimately hold no table
            "FailOnTransactionConsistencyBreached": False,
        },
        "ValidationSettings": {
            "EnableValidation": settings.validation,
            "ValidationMode": "ROW_LEVEL",
            "ThreadCount": 5,
            "FailureMaxCount": 10000,
            "ValidationOnly": False,
            "ValidationPartialLobSize": settings.lob_max_size_kb if limited else 0,
        },
    })


class DmsMigration:
    """`DataMigration` on AWS DMS. Safe to run in cleanup's thread pool."""

    def __init__(self, session: Any, settings: DmsSettings | None = None, *,
                 clients: Clients | None = None, poller: Poller | None = None) -> None:
        self.settings = settings or DmsSettings()
        # Clients are made lazily (hooks registered on the session before the
        # first call reach them) under session.py's lock.
        self.clients = clients or Clients(session)
        self.poller = poller or Poller()

    # -- plumbing ------------------------------------------------------------
    def _client(self, service: str, region: str = "") -> Any:
        return self.clients.get(service, region or None)

    def _dms(self, record: RestoreRecord) -> Any:
        return self._client("dms", record.region)

    def _state(self, record: RestoreRecord) -> dict[str, Any]:
        return record.resources.setdefault("dms", {})

    def _tags(self, record: RestoreRecord) -> list[dict[str, str]]:
        return restore_tags(record.restore_id)

    def _wait(self, check: Callable[[], T | None], what: str, timeout: float) -> T:
        """Poll `check` (with backoff, injectable sleep/clock) until it returns something."""
        return self.poller.wait(check, timeout=timeout, what=what, reason="DmsTimeout")

    # -- describe helpers (AWS raises NotFound on an empty filter, moto returns []) --
    def _describe(self, dms: Any, operation: str, key: str, filters: list[dict[str, Any]],
                  **extra: Any) -> list[dict[str, Any]]:
        try:
            paginator = dms.get_paginator(operation)
            items: list[dict[str, Any]] = []
            for page in paginator.paginate(Filters=filters, **extra):
                items.extend(page.get(key, []))
            return items
        except ClientError as exc:
            if error_code(exc) in _NOT_FOUND:
                return []
            raise

    def _instances(self, dms: Any, name: str, values: list[str]) -> list[dict[str, Any]]:
        return self._describe(dms, "describe_replication_instances", "ReplicationInstances",
                              [{"Name": name, "Values": values}])

    def _endpoints(self, dms: Any, name: str, values: list[str]) -> list[dict[str, Any]]:
        return self._describe(dms, "describe_endpoints", "Endpoints",
                              [{"Name": name, "Values": values}])

    def _tasks(self, dms: Any, name: str, values: list[str]) -> list[dict[str, Any]]:
        return self._describe(dms, "describe_replication_tasks", "ReplicationTasks",
                              [{"Name": name, "Values": values}], WithoutSettings=True)

    # -- phase 1: the replication instance --------------------------------------
    def start_instance(self, record: RestoreRecord, spec: RestoreSpec,
                       checkpoint: Callable[[], None]) -> None:
        self.settings.validate()
        dms = self._dms(record)
        state = self._state(record)
        subnet_group = self._subnet_group(record, spec, checkpoint)
        instance = state.setdefault("replicationInstance", {})
        instance["id"] = record.resource_name("dms")
        checkpoint()                       # recorded BEFORE the create call
        found = self._instances(dms, "replication-instance-id", [instance["id"]])
        if not found:
            params: dict[str, Any] = {
                "ReplicationInstanceIdentifier": instance["id"],
                "ReplicationInstanceClass": self.settings.instance_class,
                "AllocatedStorage": self.settings.allocated_storage_gb,
                "MultiAZ": False,
                "PubliclyAccessible": False,
                "AutoMinorVersionUpgrade": False,
                "Tags": self._tags(record),
            }
            groups = _copy_or_spec(record, "securityGroupIds",
                                   list(spec.temporary_database.security_group_ids))
            if groups:
                params["VpcSecurityGroupIds"] = list(groups)
            if subnet_group:
                params["ReplicationSubnetGroupIdentifier"] = subnet_group
            if self.settings.engine_version:
                params["EngineVersion"] = self.settings.engine_version
            try:
                created = dms.create_replication_instance(**params)["ReplicationInstance"]
                found = [created]
                log.info("DMS replication instance %s created", instance["id"])
            except ClientError as exc:
                if error_code(exc) != "ResourceAlreadyExistsFault":
                    raise
                found = self._instances(dms, "replication-instance-id", [instance["id"]])
        if found:
            instance["arn"] = found[0]["ReplicationInstanceArn"]
            checkpoint()

    def _subnet_group(self, record: RestoreRecord, spec: RestoreSpec,
                      checkpoint: Callable[[], None]) -> str:
        """The replication subnet group to use ("" = DMS default)."""
        if self.settings.replication_subnet_group:
            return self.settings.replication_subnet_group
        db_subnet_group = _copy_or_spec(record, "subnetGroup",
                                        spec.temporary_database.subnet_group)
        if not db_subnet_group:
            return ""
        dms = self._dms(record)
        state = self._state(record)
        name = record.resource_name("dms")
        state["subnetGroup"] = {"id": name, "created": True}
        checkpoint()                       # recorded BEFORE the create call
        existing = self._describe(dms, "describe_replication_subnet_groups",
                                  "ReplicationSubnetGroups",
                                  [{"Name": "replication-subnet-group-id", "Values": [name]}])
        if existing:
            return name
        rds = self._client("rds", record.region)
        groups = rds.describe_db_subnet_groups(DBSubnetGroupName=db_subnet_group)["DBSubnetGroups"]
        subnets = [s["SubnetIdentifier"] for s in groups[0].get("Subnets", [])]
        if not subnets:
            raise ProviderError("DmsNotConfigured",
                                f"DB subnet group {db_subnet_group!r} has no subnets")
        try:
            dms.create_replication_subnet_group(
                ReplicationSubnetGroupIdentifier=name,
                ReplicationSubnetGroupDescription=(
                    f"pg-schema-restore {record.restore_id} (from {db_subnet_group})"),
                SubnetIds=subnets, Tags=self._tags(record))
        except ClientError as exc:
            if error_code(exc) != "ResourceAlreadyExistsFault":
                raise
        return name

    def _wait_instance(self, record: RestoreRecord) -> str:
        dms = self._dms(record)
        ident = self._state(record)["replicationInstance"]["id"]

        def check() -> str | None:
            found = self._instances(dms, "replication-instance-id", [ident])
            if not found:
                raise ProviderError("DmsInstanceFailed",
                                    f"replication instance {ident} does not exist")
            status = found[0].get("ReplicationInstanceStatus", "")
            if status == "available":
                return str(found[0]["ReplicationInstanceArn"])
            if status in _INSTANCE_TERMINAL:
                raise ProviderError("DmsInstanceFailed",
                                    f"replication instance {ident} is {status}")
            return None

        return self._wait(check, f"replication instance {ident} to become available",
                          self.settings.instance_timeout)

    # -- phase 4: endpoints, connection tests, tasks -----------------------------
    def _endpoint(self, record: RestoreRecord, spec: RestoreSpec, role: str, secret_id: str,
                  checkpoint: Callable[[], None]) -> str:
        dms = self._dms(record)
        endpoints = self._state(record).setdefault("endpoints", {})
        entry = endpoints.setdefault(role, {})
        entry["id"] = record.resource_name(f"dms-{role}")
        checkpoint()                       # recorded BEFORE the create call
        found = self._endpoints(dms, "endpoint-id", [entry["id"]])
        if not found:
            engine = "aurora-postgresql" if record.source.get("kind") == "cluster" else "postgres"
            pg: dict[str, Any] = {
                "SecretsManagerSecretId": secret_id,
                "SecretsManagerAccessRoleArn": self.settings.secrets_access_role_arn,
                "DatabaseName": spec.database,
                "MapBooleanAsBoolean": True,   # else booleans travel as varchar(5)
            }
            if role == "source":
                pg["CaptureDdls"] = False      # full load only: no DDL triggers in the copy
                pg["FailTasksOnLobTruncation"] = True
            else:
                pg["ExecuteTimeout"] = 3600
            try:
                created = dms.create_endpoint(
                    EndpointIdentifier=entry["id"], EndpointType=role, EngineName=engine,
                    SslMode=self.settings.ssl_mode,
                    PostgreSQLSettings=pg, Tags=self._tags(record))["Endpoint"]
                found = [created]
            except ClientError as exc:
                if error_code(exc) != "ResourceAlreadyExistsFault":
                    raise
                found = self._endpoints(dms, "endpoint-id", [entry["id"]])
        entry["arn"] = found[0]["EndpointArn"]
        checkpoint()
        return str(entry["arn"])

    def _test_connections(self, record: RestoreRecord, instance_arn: str,
                          endpoints: dict[str, str]) -> None:
        """Start both connection tests, then poll them to completion."""
        dms = self._dms(record)
        for arn in endpoints.values():
            try:
                dms.test_connection(ReplicationInstanceArn=instance_arn, EndpointArn=arn)
            except ClientError as exc:
                if error_code(exc) != "InvalidResourceStateFault":   # a test already running
                    raise
        pending = dict(endpoints)

        def check() -> bool | None:
            for role, arn in list(pending.items()):
                connections = self._describe(dms, "describe_connections", "Connections",
                                             [{"Name": "endpoint-arn", "Values": [arn]}])
                mine = [c for c in connections if c.get("ReplicationInstanceArn") == instance_arn]
                status = mine[0].get("Status", "") if mine else "testing"
                if status == "successful":
                    del pending[role]
                elif status == "failed":
                    message = mine[0].get("LastFailureMessage") or "no message"
                    ident = mine[0].get("EndpointIdentifier") or arn
                    raise ProviderError(
                        "DmsConnectionFailed",
                        f"DMS cannot connect to the {role} database "
                        f"({'temporary copy' if role == 'source' else 'production'}, "
                        f"endpoint {ident}): {message}")
            return True if not pending else None

        self._wait(check, "DMS endpoint connection tests", self.settings.connection_timeout)

    def run_full_load(self, record: RestoreRecord, spec: RestoreSpec, source_secret: str,
                      target_secret: str, checkpoint: Callable[[], None]) -> dict[str, Any]:
        self.start_instance(record, spec, checkpoint)      # idempotent: a describe
        instance_arn = self._wait_instance(record)
        endpoints = {"source": self._endpoint(record, spec, "source", source_secret, checkpoint),
                     "target": self._endpoint(record, spec, "target", target_secret, checkpoint)}
        self._test_connections(record, instance_arn, endpoints)
        return self._run_tasks(record, instance_arn, endpoints, checkpoint)

    def _task_entries(self, record: RestoreRecord) -> list[tuple[str, dict[str, Any]]]:
        tasks = self._state(record).setdefault("tasks", {})
        entries = []
        for number, source_name in enumerate(record.requested.schemas, start=1):
            target = record.targets[source_name]
            entry = tasks.setdefault(target, {})
            entry["id"] = record.resource_name(f"dms-task-{number}")
            entries.append((target, entry))
        return entries

    def _create_task(self, record: RestoreRecord, schema: str, entry: dict[str, Any],
                     instance_arn: str, endpoints: dict[str, str],
                     checkpoint: Callable[[], None]) -> dict[str, Any]:
        dms = self._dms(record)
        try:
            task = dms.create_replication_task(
                ReplicationTaskIdentifier=entry["id"],
                SourceEndpointArn=endpoints["source"], TargetEndpointArn=endpoints["target"],
                ReplicationInstanceArn=instance_arn, MigrationType="full-load",
                TableMappings=table_mappings(schema),
                ReplicationTaskSettings=task_settings(self.settings),
                Tags=self._tags(record))["ReplicationTask"]
        except ClientError as exc:
            if error_code(exc) != "ResourceAlreadyExistsFault":
                raise
            task = self._tasks(dms, "replication-task-id", [entry["id"]])[0]
        entry["arn"] = task["ReplicationTaskArn"]
        checkpoint()
        return dict(task)

    def _run_tasks(self, record: RestoreRecord, instance_arn: str, endpoints: dict[str, str],
                   checkpoint: Callable[[], None]) -> dict[str, Any]:
        dms = self._dms(record)
        entries = self._task_entries(record)
        checkpoint()                       # task ids recorded BEFORE any create call
        todo = [(schema, entry) for schema, entry in entries if not entry.get("done")]
        existing = {t["ReplicationTaskIdentifier"]: t for t in self._tasks(
            dms, "replication-task-id", [e["id"] for _, e in todo])} if todo else {}
        # A re-run finds its tasks where the crash left them: in flight ones keep running.
        in_flight: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        queue: list[tuple[str, dict[str, Any]]] = []
        for schema, entry in todo:
            task = existing.get(entry["id"])
            if task is None:
                queue.append((schema, entry))
            else:
                entry["arn"] = task["ReplicationTaskArn"]
                in_flight[schema] = (entry, task)
        cap = self.settings.max_concurrent_tasks
        # Live progress: tasks in flight, by their table statistics (schema ->
        # tables completed, tables, rows), read at most every progress_seconds.
        live: dict[str, tuple[int, int, int]] = {}
        throttle = progress.Throttle(self.settings.progress_seconds)

        def report() -> None:
            """Absolute counters: finished tasks (also before a crash) + live ones."""
            done = [entry for _schema, entry in entries if entry.get("done")]
            finished_tables = sum(entry.get("tables") or 0 for entry in done)
            progress.update(record.progress, {
                "tablesDone": finished_tables + sum(v[0] for v in live.values()),
                "tablesTotal": finished_tables + sum(v[1] for v in live.values()),
                "rows": sum(entry.get("rows") or 0 for entry in done)
                + sum(v[2] for v in live.values())}, datetime.now(timezone.utc))

        report()

        def step() -> bool | None:
            while True:
                # 1. create queued tasks up to the cap (they start once `ready`)
                while queue and len(in_flight) < cap:
                    schema, entry = queue.pop(0)
                    in_flight[schema] = (entry, self._create_task(
                        record, schema, entry, instance_arn, endpoints, checkpoint))
                if not in_flight:
                    return True
                # 2. one describe for every task in flight
                arns = [entry["arn"] for entry, _ in in_flight.values()]
                current = {t["ReplicationTaskArn"]: t for t in self._tasks(
                    dms, "replication-task-arn", arns)}
                finished = False
                # Statistics are read (and saved) only while some task loads.
                sample = any(task.get("Status") == "running" for task in current.values()
                             ) and throttle.ready()
                for schema, (entry, _old) in list(in_flight.items()):
                    task = current.get(entry["arn"])
                    if task is None:
                        raise ProviderError(
                            "DmsTaskFailed", f"DMS task {entry['id']} (schema {shown(schema)}) "
                            "disappeared while in flight")
                    status = task.get("Status", "")
                    in_flight[schema] = (entry, task)
                    if status == "ready":
                        # Never started, or started a moment ago and not yet `starting`.
                        if not entry.get("started"):
                            self._start_task(record, entry)
                            checkpoint()
                    elif status not in _TASK_MOVING:   # stopped, failed, deleting...
                        result = self._finished(record, schema, entry, task)
                        entry.update(result, done=True)
                        live.pop(schema, None)
                        del in_flight[schema]
                        report()
                        checkpoint()
                        finished = True
                    elif sample and status == "running":
                        live[schema] = self._live_counts(record, entry["arn"])
                if sample and live:
                    report()
                    checkpoint()           # the status shows the load moving
                if not queue and not in_flight:
                    return True
                if not (finished and queue):
                    return None            # nothing more to do before the next poll

        self._wait(step, "DMS full-load tasks", self.settings.task_timeout)
        tasks = {schema: {k: entry.get(k) for k in ("id", "tables", "rows", "seconds")}
                 for schema, entry in entries}
        return {"engine": "dms", "tables": sum(t["tables"] or 0 for t in tasks.values()),
                "rows": sum(t["rows"] or 0 for t in tasks.values()), "tasks": tasks}

    def _start_task(self, record: RestoreRecord, entry: dict[str, Any]) -> None:
        try:
            self._dms(record).start_replication_task(
                ReplicationTaskArn=entry["arn"], StartReplicationTaskType="start-replication")
            log.info("DMS task %s started", entry["id"])
        except ClientError as exc:
            if error_code(exc) != "InvalidResourceStateFault":   # already starting: poll on
                raise
        entry["started"] = True

    def _table_statistics(self, record: RestoreRecord, arn: str) -> list[dict[str, Any]]:
        dms = self._dms(record)
        stats: list[dict[str, Any]] = []
        for page in dms.get_paginator("describe_table_statistics").paginate(
                ReplicationTaskArn=arn):
            stats.extend(page.get("TableStatistics", []))
        return stats

    def _live_counts(self, record: RestoreRecord, arn: str) -> tuple[int, int, int]:
        """(tables completed, tables, rows loaded) of a running task, from its
        table statistics (every page)."""
        stats = self._table_statistics(record, arn)
        return (sum(1 for t in stats if t.get("TableState") == TABLE_COMPLETED), len(stats),
                sum(int(t.get("FullLoadRows") or 0) for t in stats))

    def _finished(self, record: RestoreRecord, schema: str, entry: dict[str, Any],
                  task: dict[str, Any]) -> dict[str, Any]:
        """Judge a task that stopped moving: the summary, or DmsTaskFailed."""
        status = task.get("Status", "")
        reason = task.get("StopReason") or ""
        message = task.get("LastFailureMessage") or ""
        task_stats = task.get("ReplicationTaskStats") or {}
        stats = self._table_statistics(record, entry["arn"])
        problems: list[str] = []
        if status != "stopped" or reason != FULL_LOAD_FINISHED:
            problems.append(f"status {status}" + (f", {reason}" if reason else ""))
        if int(task_stats.get("TablesErrored") or 0):
            problems.append(f"{task_stats['TablesErrored']} table(s) errored")
        bad = []
        for table in stats:
            name = ".".join(shown(str(table.get(part))) for part in ("SchemaName", "TableName"))
            state = table.get("TableState", "")
            if state != TABLE_COMPLETED:
                bad.append(f"{name} ({state or 'no state'})")
            elif int(table.get("FullLoadErrorRows") or 0):
                bad.append(f"{name} ({table['FullLoadErrorRows']} rows failed)")
            elif self.settings.validation and (
                    table.get("ValidationState") != "Validated"
                    or int(table.get("ValidationFailedRecords") or 0)):
                bad.append(f"{name} (validation: {table.get('ValidationState')}, "
                           f"{table.get('ValidationFailedRecords', 0)} failed records)")
        if bad:
            listed = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
            problems.append(f"tables not completed: {listed}")
        if message:                        # even on a "finished" task: something went wrong
            problems.append(f"DMS says: {message}")
        if problems:
            raise ProviderError("DmsTaskFailed",
                                f"DMS task {entry['id']} (schema {shown(schema)}): "
                                + "; ".join(problems))
        return {"tables": len(stats),
                "rows": sum(int(t.get("FullLoadRows") or 0) for t in stats),
                "seconds": round(int(task_stats.get("ElapsedTimeMillis") or 0) / 1000, 3)}

    # -- phase 6: delete everything ---------------------------------------------
    def _tagged(self, dms: Any, arns: list[str], restore_id: str) -> set[str]:
        """Those of `arns` tagged with this restore id."""
        mine: set[str] = set()
        for chunk in _chunks(arns, _TAG_BATCH):
            try:
                tags = dms.list_tags_for_resource(ResourceArnList=chunk).get("TagList", [])
            except ClientError as exc:
                if error_code(exc) in _NOT_FOUND:
                    continue
                raise
            mine.update(t["ResourceArn"] for t in tags
                        if t.get("Key") == TAG_KEY and t.get("Value") == restore_id
                        and t.get("ResourceArn"))
        return mine

    def _describe_unfiltered(self, dms: Any, operation: str, key: str,
                             **extra: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        try:
            for page in dms.get_paginator(operation).paginate(**extra):
                items.extend(page.get(key, []))
        except ClientError as exc:
            if error_code(exc) not in _NOT_FOUND:
                raise
        return items

    def delete(self, record: RestoreRecord) -> list[str]:
        """Stop and delete tasks, then endpoints, the instance and our subnet
        group: by recorded id AND by tag. NotFound is done. Every step runs
        even if an earlier one failed; failures are raised together at the end."""
        dms = self._dms(record)
        state = record.resources.get("dms") or {}
        rid = record.restore_id
        deleted: list[str] = []
        problems: list[str] = []

        def attempt(what: str, action: Callable[[], None]) -> None:
            try:
                action()
            except RestoreError as exc:
                problems.append(f"{what}: {exc.message}")
            except ClientError as exc:
                problems.append(f"{what}: {error_code(exc)}: {error_message(exc)}")

        # What is ours: recorded ids/ARNs, deterministic names, tags.
        instance_ids = {record.resource_name("dms")}
        instance_ids.update(filter(None, [(state.get("replicationInstance") or {}).get("id")]))
        endpoint_ids = {record.resource_name("dms-source"), record.resource_name("dms-target")}
        endpoint_ids.update(e.get("id") for e in (state.get("endpoints") or {}).values()
                            if e.get("id"))
        task_ids = {t["id"] for t in (state.get("tasks") or {}).values() if t.get("id")}
        recorded_task_arns = {t["arn"] for t in (state.get("tasks") or {}).values()
                              if t.get("arn")}

        instances: dict[str, dict[str, Any]] = {}
        tasks: dict[str, dict[str, Any]] = {}
        endpoints: dict[str, dict[str, Any]] = {}

        def find() -> None:
            for inst in self._instances(dms, "replication-instance-id", sorted(instance_ids)):
                instances[inst["ReplicationInstanceArn"]] = inst
            every_instance = self._describe_unfiltered(dms, "describe_replication_instances",
                                                       "ReplicationInstances")
            tagged = self._tagged(dms, [i["ReplicationInstanceArn"] for i in every_instance], rid)
            instances.update({i["ReplicationInstanceArn"]: i for i in every_instance
                              if i["ReplicationInstanceArn"] in tagged})
            every_task = self._describe_unfiltered(dms, "describe_replication_tasks",
                                                   "ReplicationTasks", WithoutSettings=True)
            tagged = self._tagged(dms, [t["ReplicationTaskArn"] for t in every_task], rid)
            for task in every_task:
                if (task["ReplicationTaskArn"] in tagged
                        or task["ReplicationTaskArn"] in recorded_task_arns
                        or task.get("ReplicationTaskIdentifier") in task_ids
                        or task.get("ReplicationInstanceArn") in instances):
                    tasks[task["ReplicationTaskArn"]] = task
            every_endpoint = self._describe_unfiltered(dms, "describe_endpoints", "Endpoints")
            tagged = self._tagged(dms, [e["EndpointArn"] for e in every_endpoint], rid)
            for endpoint in every_endpoint:
                if (endpoint["EndpointArn"] in tagged
                        or endpoint.get("EndpointIdentifier") in endpoint_ids):
                    endpoints[endpoint["EndpointArn"]] = endpoint

        attempt("find DMS resources", find)
        attempt("replication tasks", lambda: deleted.extend(self._delete_tasks(dms, tasks)))
        attempt("endpoints", lambda: deleted.extend(self._delete_endpoints(dms, endpoints)))
        attempt("replication instance",
                lambda: deleted.extend(self._delete_instances(dms, instances)))
        # Ours by its name (the restore id is in it), recorded or not.
        subnet_group = record.resource_name("dms")
        if subnet_group != self.settings.replication_subnet_group:
            attempt("replication subnet group",
                    lambda: deleted.extend(self._delete_subnet_group(dms, subnet_group)))
        if problems:
            raise CleanupFailed("DMS: " + "; ".join(problems))
        return deleted

    def _gone(self, describe: Callable[[], list[dict[str, Any]]], what: str) -> None:
        self._wait(lambda: True if not describe() else None, f"{what} to be deleted",
                   self.settings.delete_timeout)

    def _delete_tasks(self, dms: Any, tasks: dict[str, dict[str, Any]]) -> list[str]:
        if not tasks:
            return []
        arns = sorted(tasks)
        for arn in arns:                   # stop first: a running task cannot be deleted
            if tasks[arn].get("Status") in _TASK_ACTIVE:
                try:
                    dms.stop_replication_task(ReplicationTaskArn=arn)
                except ClientError as exc:
                    if error_code(exc) not in _NOT_FOUND + ("InvalidResourceStateFault",):
                        raise

        def settled() -> bool | None:
            current = self._tasks(dms, "replication-task-arn", arns)
            for task in current:
                if task.get("Status") in _TASK_ACTIVE:
                    try:           # started meanwhile (or the stop was refused): again
                        dms.stop_replication_task(ReplicationTaskArn=task["ReplicationTaskArn"])
                    except ClientError as exc:
                        if error_code(exc) not in _NOT_FOUND + ("InvalidResourceStateFault",):
                            raise
            return True if all(t.get("Status") not in _TASK_MOVING for t in current) else None

        self._wait(settled, "DMS tasks to stop", self.settings.delete_timeout)
        deleted = []
        for arn in arns:
            try:
                dms.delete_replication_task(ReplicationTaskArn=arn)
                deleted.append(f"dms-task:{tasks[arn].get('ReplicationTaskIdentifier', arn)}")
            except ClientError as exc:
                if error_code(exc) not in _NOT_FOUND:
                    raise
        self._gone(lambda: self._tasks(dms, "replication-task-arn", arns), "DMS tasks")
        return deleted

    def _delete_endpoints(self, dms: Any, endpoints: dict[str, dict[str, Any]]) -> list[str]:
        deleted = []
        for arn, endpoint in sorted(endpoints.items()):
            try:
                dms.delete_endpoint(EndpointArn=arn)
                deleted.append(f"dms-endpoint:{endpoint.get('EndpointIdentifier', arn)}")
            except ClientError as exc:
                if error_code(exc) not in _NOT_FOUND:
                    raise
        if endpoints:
            self._gone(lambda: self._endpoints(dms, "endpoint-arn", sorted(endpoints)),
                       "DMS endpoints")
        return deleted

    def _delete_instances(self, dms: Any, instances: dict[str, dict[str, Any]]) -> list[str]:
        deleted = []
        for arn, instance in sorted(instances.items()):
            if instance.get("ReplicationInstanceStatus") == "deleting":
                continue
            try:
                dms.delete_replication_instance(ReplicationInstanceArn=arn)
                deleted.append(
                    f"dms-instance:{instance.get('ReplicationInstanceIdentifier', arn)}")
            except ClientError as exc:
                if error_code(exc) not in _NOT_FOUND:
                    raise
        if instances:   # the subnet group cannot go while the instance exists
            self._gone(lambda: self._instances(dms, "replication-instance-arn",
                                               sorted(instances)), "DMS replication instance")
        return deleted

    def _delete_subnet_group(self, dms: Any, name: str) -> list[str]:
        try:
            dms.delete_replication_subnet_group(ReplicationSubnetGroupIdentifier=name)
            return [f"dms-subnet-group:{name}"]
        except ClientError as exc:
            if error_code(exc) in _NOT_FOUND:
                return []
            raise
