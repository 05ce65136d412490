"""RDS / Aurora: the temporary restored copy (engine port `TemporaryDatabases`).

Four ways to make the copy, all with the source's engine version, beside
and like the source (its subnet group, security groups, parameter groups,
Serverless v2 scaling, storage and KMS key, unless the spec names others:
`placement.py`), never publicly accessible, without deletion protection,
tagged `pg-schema-restore/restore-id`:

| source   | restoreTime                        | snapshotId                                    |
|----------|------------------------------------|-----------------------------------------------|
| instance | RestoreDBInstanceToPointInTime     | RestoreDBInstanceFromDBSnapshot               |
| cluster  | RestoreDBClusterToPointInTime      | RestoreDBClusterFromSnapshot                  |
|          |   + CreateDBInstance (the writer)  |   + CreateDBInstance (the writer)             |

`create` makes the restore call; `wait_ready` waits (bounded, with the
reason `TemporaryDatabaseTimeout`), for Aurora first for the cluster to be
`available`, then creates the writer: AWS accepts instances only in an
available cluster (docs/facts.md, "The temporary copy on AWS").

Identifiers are deterministic (`record.resource_name`), written to the
record and checkpointed *before* each create call; a re-run describes by id
first and never creates twice. Validation happens before anything is
created: the restore point must lie inside the source's restorable window
(checked here: moto does not), the snapshot must exist and belong to the
source (automated `rds:` ids, manual ones, and ARNs of snapshots shared by
another account are all looked up as the API reference asks).

Credentials: by default the copy's master password is reset
(ModifyDBInstance / ModifyDBCluster, ApplyImmediately) to a fresh random one
that is first stored in a new temporary secret (so the password in effect is
never lost, even by a crash between the two calls), then waited on until
RDS reports it applied. With `credentials: historicalSecret`, the source
secret's version that was current at the restore point is copied into the
temporary secret instead. Either way the temporary secret points at the
copy's endpoint. It is created where the copy lives, in
`spec.source.region` (default: the session's region), named
`record.resource_name("secret")`, and recorded by its ARN, which carries
that region to every later read and delete; messages name it by its name.

Cleanup deletes the writer/instances (SkipFinalSnapshot, automated backups
too), waits for them to be gone, deletes the cluster (automated backups too;
a cluster still `creating` is retried until AWS accepts), and force-deletes the
temporary secret -- each found by recorded id AND by tag; NotFound is done.

Secrets Manager is reached through the injected `secrets` collaborator
(`AwsSecrets` in practice, wired by `context.py`): adapters never import
each other.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets as random
from datetime import datetime, timezone
from typing import Any, Callable, Protocol

import boto3
from botocore.exceptions import ClientError

from ddl_job.errors import CleanupFailed, InvalidSpec, ProviderError, RestoreError

from ..engine.ports import SourceInfo
from ..engine.record import RestoreRecord
from ..engine.spec import RestoreSpec
from . import placement
from .session import (RESTORE_ID_TAG, Clients, Poller, as_utc, error_code, error_message,
                      has_restore_tag, restore_tags, secret_name)

log = logging.getLogger(__name__)

INSTANCE_ENGINES = ("postgres",)
CLUSTER_ENGINES = ("aurora-postgresql",)
# States from which a restore never becomes `available` by itself.
TERMINAL_STATES = frozenset({
    "failed", "incompatible-restore", "incompatible-parameters", "incompatible-network",
    "incompatible-option-group", "incompatible-credentials", "restore-error",
    "storage-full", "insufficient-capacity", "inaccessible-encryption-credentials",
    "inaccessible-encryption-credentials-recoverable", "migration-failed",
    "deleting", "delete-precheck", "stopped", "stopping",
})
_INSTANCE_NOT_FOUND = {"DBInstanceNotFound", "DBInstanceNotFoundFault"}
_CLUSTER_NOT_FOUND = {"DBClusterNotFoundFault", "DBClusterNotFound"}
_SNAPSHOT_NOT_FOUND = {"DBSnapshotNotFound", "DBSnapshotNotFoundFault"}
_CLUSTER_SNAPSHOT_NOT_FOUND = {"DBClusterSnapshotNotFoundFault", "DBClusterSnapshotNotFound"}
_ALREADY_EXISTS = {"DBInstanceAlreadyExists", "DBInstanceAlreadyExistsFault",
                   "DBClusterAlreadyExistsFault", "DBClusterAlreadyExists"}
_BUSY = {"InvalidDBInstanceState", "InvalidDBInstanceStateFault",
         "InvalidDBClusterStateFault", "InvalidDBClusterState"}


class SecretStore(Protocol):
    """What this adapter needs from Secrets Manager (AwsSecrets provides it)."""

    def create_or_update(self, name: str, value: dict[str, Any], *,
                         tags: list[dict[str, str]], description: str = "",
                         region: str | None = None) -> str: ...
    def force_delete(self, secret_id: str, *,
                     only_if_tagged: list[dict[str, str]] | None = None) -> bool: ...
    def find_tagged(self, key: str, value: str, region: str | None = None) -> list[str]: ...
    def value_at(self, secret_id: str, point: datetime) -> dict[str, Any]: ...


# ModifyDBCluster's MasterUserPassword takes 8-41 printable ASCII characters
# except / " @ (ModifyDBInstance for PostgreSQL up to 128): one length fits both.
PASSWORD_LENGTH = 40


def _password() -> str:
    """40 URL-safe characters (letters, digits, - and _): within both limits."""
    return random.token_urlsafe(30)[:PASSWORD_LENGTH]


def major(version: str) -> str:
    """PostgreSQL's major version of an RDS engine version ("15.4" -> "15")."""
    return version.split(".", 1)[0]


def version_difference(expected: str | None, actual: str | None) -> str | None:
    """A warning when the copy runs another minor version; ProviderError when
    another major (RDS may restore onto a newer minor, never another major)."""
    if not expected or not actual or expected == actual:
        return None
    if major(expected) != major(actual):
        raise ProviderError("EngineVersionMismatch",
                            f"temporary database runs {actual}, source {expected}")
    return (f"the temporary database runs PostgreSQL {actual}, the source {expected}: "
            "same major version, another minor (RDS chose it)")


class RdsTemporaryDatabases:
    """`TemporaryDatabases` on Amazon RDS and Aurora (PostgreSQL)."""

    def __init__(self, session: boto3.Session, secrets: SecretStore, *,
                 clients: Clients | None = None, poller: Poller | None = None,
                 restore_timeout: float = 6 * 3600, modify_timeout: float = 1800,
                 delete_timeout: float = 3600) -> None:
        self.clients = clients or Clients(session)
        self.secrets = secrets
        self.poller = poller or Poller()
        self.restore_timeout = restore_timeout
        self.modify_timeout = modify_timeout
        self.delete_timeout = delete_timeout

    # -- plumbing ------------------------------------------------------------
    def _rds(self, region: str | None = None) -> Any:
        return self.clients.get("rds", region or None)

    @staticmethod
    def _region(spec_or_record: RestoreSpec | RestoreRecord) -> str | None:
        if isinstance(spec_or_record, RestoreSpec):
            return spec_or_record.source.region or None
        return spec_or_record.region or None

    def _describe_one(self, region: str | None, operation: str, items_key: str,
                      not_found: Any, **identifier: Any) -> dict[str, Any] | None:
        """The one item a describe call returns for an identifier, or None."""
        try:
            found = getattr(self._rds(region), operation)(**identifier)
        except ClientError as exc:
            if error_code(exc) in not_found:
                return None
            raise
        items = found.get(items_key, [])
        return items[0] if items else None

    def _instance(self, identifier: str, region: str | None) -> dict[str, Any] | None:
        return self._describe_one(region, "describe_db_instances", "DBInstances",
                                  _INSTANCE_NOT_FOUND, DBInstanceIdentifier=identifier)

    def _cluster(self, identifier: str, region: str | None) -> dict[str, Any] | None:
        return self._describe_one(region, "describe_db_clusters", "DBClusters",
                                  _CLUSTER_NOT_FOUND, DBClusterIdentifier=identifier)

    def describe_source(self, spec: RestoreSpec) -> SourceInfo:
        source_id = spec.source.db_identifier
        if not source_id:
            raise InvalidSpec("source.dbIdentifier is required on AWS")
        if not spec.source.secret_arn:
            raise InvalidSpec("source.secretArn is required on AWS")
        region = self._region(spec)
        instance = self._instance(source_id, region)
        if instance is not None and instance.get("DBClusterIdentifier"):
            raise InvalidSpec(f"{source_id} is an instance of Aurora cluster "
                f"{instance['DBClusterIdentifier']}: name the cluster as source.dbIdentifier")
        if instance is not None:
            info = self._describe_instance_source(spec, instance, region)
            settings = placement.instance_settings(spec, instance)
            engine = INSTANCE_ENGINES[0]
        else:
            cluster = self._cluster(source_id, region)
            if cluster is None:
                raise ProviderError("SourceNotFound",
                                    f"no RDS instance or Aurora cluster named {source_id!r}"
                                    + (f" in {region}" if region else ""))
            info = self._describe_cluster_source(spec, cluster, region)
            settings = placement.cluster_settings(spec, cluster, self._writer_of(cluster, region))
            engine = CLUSTER_ENGINES[0]
        notes = info.notes + self._support_notes(engine, info.engine_version, region)
        return dataclasses.replace(info, settings=settings, notes=notes)

    def _writer_of(self, cluster: dict[str, Any], region: str | None) -> dict[str, Any] | None:
        """The source cluster's writer instance (its parameter group is the writer's)."""
        for member in cluster.get("DBClusterMembers") or []:
            if member.get("IsClusterWriter"):
                return self._instance(member["DBInstanceIdentifier"], region)
        return None

    def _support_notes(self, engine: str, version: str, region: str | None) -> tuple[str, ...]:
        """Whether the copy will be billed for RDS Extended Support.

        Restore calls default to EngineLifecycleSupport
        `open-source-rds-extended-support` (RDS API reference): a copy of a
        major version past its end of standard support is enrolled and billed
        for it. Disabling it would make RDS upgrade the copy's major version,
        which a restore must not do; so `plan` says it instead."""
        try:
            found = self._rds(region).describe_db_major_engine_versions(
                Engine=engine, MajorEngineVersion=major(version))
        except ClientError as exc:
            return (f"support dates of {engine} {major(version)} unknown ({error_code(exc)}): "
                    "past the end of standard support the copy is enrolled in RDS Extended "
                    "Support, billed per vCPU-hour while it runs",)
        now = datetime.now(timezone.utc)
        for item in found.get("DBMajorEngineVersions", []):
            for cycle in item.get("SupportedEngineLifecycles", []):
                end = cycle.get("LifecycleSupportEndDate")
                if (cycle.get("LifecycleSupportName") == "open-source-rds-standard-support"
                        and end and as_utc(end) < now):
                    return (f"{engine} {major(version)} left RDS standard support on "
                            f"{as_utc(end).date().isoformat()}: the copy will be enrolled in "
                            "RDS Extended Support (the restore calls' default), billed per "
                            "vCPU-hour on top of the instance while it runs",)
        return ()

    def _describe_instance_source(self, spec: RestoreSpec, instance: dict[str, Any],
                                  region: str | None) -> SourceInfo:
        source_id = instance["DBInstanceIdentifier"]
        if instance.get("Engine") not in INSTANCE_ENGINES:
            raise ProviderError("UnsupportedSource",
                                f"{source_id} runs {instance.get('Engine')}, not PostgreSQL")
        if spec.snapshot_id is not None:
            return self._from_snapshot("instance", "snapshot", instance,
                                       self._snapshot(spec.snapshot_id, region),
                                       "DBInstanceIdentifier", spec.snapshot_id)
        earliest, latest = self._instance_window(instance, region)
        self._check_point(spec, source_id, earliest, latest)
        return SourceInfo("instance", instance["EngineVersion"], earliest, latest)

    def _instance_window(self, instance: dict[str, Any],
                         region: str | None) -> tuple[datetime, datetime]:
        """[EarliestTime, LatestTime] from the instance's automated backups."""
        source_id = instance["DBInstanceIdentifier"]
        if not instance.get("BackupRetentionPeriod", 1):
            raise ProviderError("PointInTimeRestoreUnavailable",
                                f"{source_id} has automated backups disabled")
        paginator = self._rds(region).get_paginator("describe_db_instance_automated_backups")
        window = None
        for page in paginator.paginate(DBInstanceIdentifier=source_id):
            for backup in page.get("DBInstanceAutomatedBackups", []):
                if backup.get("Status", "active") != "active":
                    continue   # retained backups of a deleted namesake
                if (instance.get("DbiResourceId") and backup.get("DbiResourceId")
                        and backup["DbiResourceId"] != instance["DbiResourceId"]):
                    continue
                window = backup.get("RestoreWindow") or window
        if not window or not window.get("EarliestTime"):
            raise ProviderError("PointInTimeRestoreUnavailable",
                                f"{source_id}: no restore window reported by its automated "
                                "backups")
        earliest = as_utc(window["EarliestTime"])
        latest_value = window.get("LatestTime") or instance.get("LatestRestorableTime")
        if latest_value is None:
            raise ProviderError("PointInTimeRestoreUnavailable",
                                f"{source_id}: no latest restorable time")
        return earliest, as_utc(latest_value)

    def _describe_cluster_source(self, spec: RestoreSpec, cluster: dict[str, Any],
                                 region: str | None) -> SourceInfo:
        source_id = cluster["DBClusterIdentifier"]
        if cluster.get("Engine") not in CLUSTER_ENGINES:
            raise ProviderError("UnsupportedSource",
                                f"cluster {source_id} runs {cluster.get('Engine')}: only "
                                f"{', '.join(CLUSTER_ENGINES)} clusters are supported")
        if spec.snapshot_id is not None:
            return self._from_snapshot("cluster", "cluster snapshot", cluster,
                                       self._cluster_snapshot(spec.snapshot_id, region),
                                       "DBClusterIdentifier", spec.snapshot_id)
        if not cluster.get("EarliestRestorableTime") or not cluster.get("LatestRestorableTime"):
            raise ProviderError("PointInTimeRestoreUnavailable",
                                f"cluster {source_id} reports no restorable window")
        earliest = as_utc(cluster["EarliestRestorableTime"])
        latest = as_utc(cluster["LatestRestorableTime"])
        self._check_point(spec, source_id, earliest, latest)
        return SourceInfo("cluster", cluster["EngineVersion"], earliest, latest)

    def _from_snapshot(self, kind: str, label: str, source: dict[str, Any],
                       snapshot: dict[str, Any], owner_key: str, asked: str) -> SourceInfo:
        """A snapshot restore: the snapshot must be the source's (unless shared
        by another account) and available."""
        source_id, snapshot_id = source[owner_key], snapshot.get(
            "DBSnapshotIdentifier") or snapshot.get("DBClusterSnapshotIdentifier")
        arn = source.get("DBInstanceArn") or source.get("DBClusterArn") or ""
        shared_from = _account_of(asked)
        notes: tuple[str, ...] = ()
        if shared_from and shared_from != _account_of(arn):
            # Another account's database: its identifier means nothing here.
            notes = (f"{label} {asked} is shared from account {shared_from}: not "
                     f"checked to be a snapshot of {source_id}",)
        elif snapshot.get(owner_key) != source_id:
            raise ProviderError(
                "SnapshotNotOfSource",
                f"{label} {snapshot_id} belongs to {snapshot.get(owner_key)!r}, "
                f"not to {source_id}")
        self._snapshot_available(snapshot_id, snapshot.get("Status"))
        return SourceInfo(kind, snapshot.get("EngineVersion") or source["EngineVersion"],
                          snapshot_time=_snapshot_time(snapshot), notes=notes)

    @staticmethod
    def _check_point(spec: RestoreSpec, source_id: str, earliest: datetime,
                     latest: datetime) -> None:
        point = spec.restore_time
        assert point is not None
        if not earliest <= point <= latest:
            raise ProviderError(
                "RestoreTimeOutOfWindow",
                f"restoreTime {point.isoformat()} is outside the restorable window of "
                f"{source_id}: [{earliest.isoformat()}, {latest.isoformat()}]")

    def _snapshot(self, snapshot_id: str, region: str | None) -> dict[str, Any]:
        found = self._describe_one(region, "describe_db_snapshots", "DBSnapshots",
                                   _SNAPSHOT_NOT_FOUND,
                                   **snapshot_lookup("DBSnapshotIdentifier", snapshot_id))
        if found is None:
            raise ProviderError("SnapshotNotFound", f"DB snapshot {snapshot_id} not found")
        return found

    def _cluster_snapshot(self, snapshot_id: str, region: str | None) -> dict[str, Any]:
        found = self._describe_one(region, "describe_db_cluster_snapshots",
                                   "DBClusterSnapshots", _CLUSTER_SNAPSHOT_NOT_FOUND,
                                   **snapshot_lookup("DBClusterSnapshotIdentifier",
                                                     snapshot_id))
        if found is None:
            raise ProviderError("SnapshotNotFound",
                                f"DB cluster snapshot {snapshot_id} not found")
        return found

    @staticmethod
    def _snapshot_available(snapshot_id: str, status: str | None) -> None:
        if status and status != "available":
            raise ProviderError("SnapshotNotAvailable",
                                f"snapshot {snapshot_id} is {status}, not available")

    def production_secret(self, spec: RestoreSpec) -> str:
        if not spec.source.secret_arn:
            raise InvalidSpec("source.secretArn is required on AWS")
        return spec.source.secret_arn

    # -- phase 2 -------------------------------------------------------------
    @staticmethod
    def _settings(record: RestoreRecord) -> dict[str, Any]:
        """The copy's settings as phase 1 resolved them (spec, else source);
        a record saved before they were resolved has the spec's alone."""
        if record.source.get("settings"):
            return dict(record.source["settings"])
        temp = record.requested.temporary_database
        return {"instanceClass": {"value": temp.instance_class},
                "subnetGroup": {"value": temp.subnet_group},
                "securityGroupIds": {"value": list(temp.security_group_ids)}}

    def create(self, record: RestoreRecord, spec: RestoreSpec,
               checkpoint: Callable[[], None]) -> None:
        kind = record.source.get("kind")
        region = self._region(spec)
        resources = record.resources.setdefault("temporaryDatabase", {})
        resources.update({"kind": kind, "region": region or self.clients.region,
                          "instanceId": record.resource_name("db")})
        if kind == "cluster":
            resources["clusterId"] = record.resource_name("cluster")
        elif kind != "instance":
            raise ProviderError("InternalError", f"unknown source kind {kind!r}")
        checkpoint()   # the ids are in the record before any create call
        if kind == "instance":
            self._create_instance(record, spec, resources["instanceId"], region)
        else:
            # The writer waits for the cluster to be available (wait_ready).
            self._create_cluster(record, spec, resources["clusterId"], region)

    def _adopt(self, kind: str, identifier: str, found: dict[str, Any],
               record: RestoreRecord) -> None:
        """An existing resource with our deterministic name: ours (a re-run)?"""
        if not has_restore_tag(found.get("TagList"), record.restore_id):
            raise ProviderError(
                "ResourceConflict",
                f"{kind} {identifier} exists but is not tagged "
                f"{RESTORE_ID_TAG}={record.restore_id}; refusing to use or delete it")
        log.info("%s %s already exists (resumed run): not creating it again", kind, identifier)

    def _create_instance(self, record: RestoreRecord, spec: RestoreSpec, identifier: str,
                         region: str | None) -> None:
        existing = self._instance(identifier, region)
        if existing is not None:
            self._adopt("DB instance", identifier, existing, record)
            return
        # No automated backups of a disposable copy: available sooner, nothing to retain.
        kwargs = {"Tags": restore_tags(record.restore_id), "DeletionProtection": False,
                  **placement.instance_restore_params(self._settings(record)),
                  "DBInstanceClass": spec.temporary_database.instance_class,
                  "PubliclyAccessible": False, "MultiAZ": False,
                  "AutoMinorVersionUpgrade": False, "BackupRetentionPeriod": 0}
        rds = self._rds(region)
        try:
            if spec.snapshot_id is not None:
                rds.restore_db_instance_from_db_snapshot(
                    DBInstanceIdentifier=identifier, DBSnapshotIdentifier=spec.snapshot_id,
                    **kwargs)
            else:
                rds.restore_db_instance_to_point_in_time(
                    SourceDBInstanceIdentifier=spec.source.db_identifier,
                    TargetDBInstanceIdentifier=identifier,
                    RestoreTime=spec.restore_time, **kwargs)
        except ClientError as exc:
            if error_code(exc) not in _ALREADY_EXISTS:
                raise
            found = self._instance(identifier, region)
            if found is None:
                raise
            self._adopt("DB instance", identifier, found, record)

    def _create_cluster(self, record: RestoreRecord, spec: RestoreSpec, identifier: str,
                        region: str | None) -> None:
        existing = self._cluster(identifier, region)
        if existing is not None:
            self._adopt("DB cluster", identifier, existing, record)
            return
        kwargs = {"Tags": restore_tags(record.restore_id), "DeletionProtection": False,
                  **placement.cluster_restore_params(self._settings(record))}
        rds = self._rds(region)
        try:
            if spec.snapshot_id is not None:
                rds.restore_db_cluster_from_snapshot(
                    DBClusterIdentifier=identifier, SnapshotIdentifier=spec.snapshot_id,
                    Engine=CLUSTER_ENGINES[0], EngineVersion=record.source["engine_version"],
                    **kwargs)
            else:
                rds.restore_db_cluster_to_point_in_time(
                    DBClusterIdentifier=identifier,
                    SourceDBClusterIdentifier=spec.source.db_identifier,
                    RestoreToTime=spec.restore_time, RestoreType="full-copy", **kwargs)
        except ClientError as exc:
            if error_code(exc) not in _ALREADY_EXISTS:
                raise
            found = self._cluster(identifier, region)
            if found is None:
                raise
            self._adopt("DB cluster", identifier, found, record)

    def _create_writer(self, record: RestoreRecord, spec: RestoreSpec, cluster_id: str,
                       identifier: str, region: str | None) -> None:
        existing = self._instance(identifier, region)
        if existing is not None:
            self._adopt("DB instance", identifier, existing, record)
            return
        try:
            # Subnets and security groups come from the cluster.
            self._rds(region).create_db_instance(
                DBInstanceIdentifier=identifier, DBClusterIdentifier=cluster_id,
                Engine=CLUSTER_ENGINES[0], PubliclyAccessible=False,
                AutoMinorVersionUpgrade=False, Tags=restore_tags(record.restore_id),
                **placement.writer_params(self._settings(record)))
        except ClientError as exc:
            if error_code(exc) not in _ALREADY_EXISTS:
                raise
            found = self._instance(identifier, region)
            if found is None:
                raise
            self._adopt("DB instance", identifier, found, record)

    def wait_ready(self, record: RestoreRecord) -> list[str]:
        resources = record.resources["temporaryDatabase"]
        region = resources.get("region")
        cluster_id = resources.get("clusterId")
        instance_id = resources["instanceId"]
        if cluster_id:
            # The API reference: instances can be created in a restored cluster
            # only once it is `available`.
            self._wait_cluster(cluster_id, region)
            assert record.spec is not None
            self._create_writer(record, record.spec, cluster_id, instance_id, region)

        def probe() -> dict[str, Any] | None:
            described: dict[str, Any] = {}
            if cluster_id:
                cluster = self._cluster(cluster_id, region)
                self._check_state("DB cluster", cluster_id, cluster, "Status")
                described["cluster"] = cluster
            instance = self._instance(instance_id, region)
            self._check_state("DB instance", instance_id, instance, "DBInstanceStatus")
            described["instance"] = instance
            states = [described["instance"]["DBInstanceStatus"]]
            if cluster_id:
                states.append(described["cluster"]["Status"])
            return described if all(s == "available" for s in states) else None

        described = self.poller.wait(probe, timeout=self.restore_timeout,
                                     what=f"temporary database {cluster_id or instance_id}",
                                     reason="TemporaryDatabaseTimeout")
        expected = record.source.get("engine_version")
        actual = (described.get("cluster") or described["instance"]).get("EngineVersion")
        warning = version_difference(expected, actual)
        return [warning] if warning else []

    def _wait_cluster(self, cluster_id: str, region: str | None) -> None:
        def probe() -> bool | None:
            cluster = self._cluster(cluster_id, region)
            self._check_state("DB cluster", cluster_id, cluster, "Status")
            return True if cluster["Status"] == "available" else None   # type: ignore[index]

        self.poller.wait(probe, timeout=self.restore_timeout,
                         what=f"DB cluster {cluster_id} to become available (its writer can "
                              "be created only then)",
                         reason="TemporaryDatabaseTimeout")

    @staticmethod
    def _check_state(kind: str, identifier: str, found: dict[str, Any] | None,
                     key: str) -> None:
        if found is None:
            raise ProviderError("TemporaryDatabaseFailed",
                                f"{kind} {identifier} disappeared while being restored")
        status = found.get(key, "")
        if status in TERMINAL_STATES:
            raise ProviderError("TemporaryDatabaseFailed",
                                f"{kind} {identifier} is {status}: the restore cannot "
                                "complete")

    # -- phase 3 -------------------------------------------------------------
    def credentials(self, record: RestoreRecord, spec: RestoreSpec,
                    checkpoint: Callable[[], None]) -> str:
        resources = record.resources["temporaryDatabase"]
        region = resources.get("region")
        cluster_id = resources.get("clusterId")
        secret_name = record.resource_name("secret")
        record.resources["temporarySecret"] = secret_name
        checkpoint()   # recorded before the secret exists
        if cluster_id:
            target = self._cluster(cluster_id, region)
            if target is None:
                raise ProviderError("TemporaryDatabaseFailed", f"cluster {cluster_id} is gone")
            host, port = target.get("Endpoint"), target.get("Port")
        else:
            target = self._instance(resources["instanceId"], region)
            if target is None:
                raise ProviderError("TemporaryDatabaseFailed",
                                    f"instance {resources['instanceId']} is gone")
            endpoint = target.get("Endpoint") or {}
            host, port = endpoint.get("Address"), endpoint.get("Port")
        if not host or not port:
            raise ProviderError("TemporaryDatabaseFailed",
                                "the temporary database has no endpoint yet")
        value: dict[str, Any] = {"host": host, "port": int(port), "engine": "postgres",
                                 "dbname": spec.database}
        if spec.credentials == "historicalSecret":
            point = spec.restore_time or _parse_time(record.source.get("snapshot_time"))
            if point is None:
                raise InvalidSpec("historicalSecret needs a restore point")
            historical = self.secrets.value_at(self.production_secret(spec), point)
            try:
                value.update(username=historical["username"], password=historical["password"])
            except KeyError as exc:
                raise ProviderError("InvalidSecret",
                                    f"historical secret version lacks {exc.args[0]!r}") from None
            return self._store_secret(record, secret_name, value, region, checkpoint)
        username = target.get("MasterUsername")
        if not username:
            raise ProviderError("TemporaryDatabaseFailed", "no master username reported")
        password = _password()
        value.update(username=username, password=password)
        # The secret first: a crash after this leaves at worst an unused password.
        self._store_secret(record, secret_name, value, region, checkpoint)
        rds = self._rds(region)
        if cluster_id:
            rds.modify_db_cluster(DBClusterIdentifier=cluster_id, MasterUserPassword=password,
                                  ApplyImmediately=True)
        else:
            rds.modify_db_instance(DBInstanceIdentifier=resources["instanceId"],
                                   MasterUserPassword=password, ApplyImmediately=True)
        self._wait_password_applied(resources, region)
        return record.resources["temporarySecret"]

    def _store_secret(self, record: RestoreRecord, name: str, value: dict[str, Any],
                      region: str | None, checkpoint: Callable[[], None]) -> str:
        """The temporary secret, in the copy's region; recorded by its ARN."""
        arn = self.secrets.create_or_update(
            name, value, tags=restore_tags(record.restore_id), region=region,
            description=f"pg-schema-restore {record.restore_id}: temporary database credentials")
        record.resources["temporarySecret"] = arn
        checkpoint()
        return arn

    def _wait_password_applied(self, resources: dict[str, Any], region: str | None) -> None:
        cluster_id = resources.get("clusterId")
        instance_id = resources["instanceId"]

        def probe() -> bool | None:
            if cluster_id:
                found = self._cluster(cluster_id, region)
                self._check_state("DB cluster", cluster_id, found, "Status")
                status = found["Status"]   # type: ignore[index]
            else:
                found = self._instance(instance_id, region)
                self._check_state("DB instance", instance_id, found, "DBInstanceStatus")
                status = found["DBInstanceStatus"]   # type: ignore[index]
            pending = (found or {}).get("PendingModifiedValues") or {}
            return True if status == "available" and "MasterUserPassword" not in pending \
                else None

        self.poller.wait(probe, timeout=self.modify_timeout,
                         what="master password reset of the temporary database",
                         reason="CredentialsTimeout")

    # -- phase 6 -------------------------------------------------------------
    def _tagged(self, restore_id: str, region: str | None) -> tuple[list[str], list[str]]:
        """(instances, clusters) carrying this restore's tag."""
        rds = self._rds(region)
        instances: list[str] = []
        for page in rds.get_paginator("describe_db_instances").paginate():
            for item in page.get("DBInstances", []):
                if has_restore_tag(item.get("TagList"), restore_id):
                    instances.append(item["DBInstanceIdentifier"])
        clusters: list[str] = []
        for page in rds.get_paginator("describe_db_clusters").paginate():
            for item in page.get("DBClusters", []):
                if has_restore_tag(item.get("TagList"), restore_id):
                    clusters.append(item["DBClusterIdentifier"])
        return instances, clusters

    def delete(self, record: RestoreRecord) -> list[str]:
        """Everything of this restore: recorded ids and tagged resources.

        Every deletion is attempted even when one fails; failures are raised
        together at the end (the engine reports them and never loops).
        """
        resources = record.resources.get("temporaryDatabase") or {}
        region = resources.get("region") or self._region(record)
        deleted: list[str] = []
        problems: list[str] = []

        def attempt(what: str, action: Callable[[], Any]) -> Any:
            try:
                return action()
            except (ClientError, RestoreError) as exc:
                problems.append(f"{what}: {exc}")
                return None

        tagged = attempt("list tagged RDS resources",
                         lambda: self._tagged(record.restore_id, region)) or ([], [])
        instances = _unique([resources.get("instanceId"), *tagged[0]])
        clusters = _unique([resources.get("clusterId"), *tagged[1]])
        # Instances first: a cluster with members cannot be deleted. Only what
        # is being deleted is waited for: a failed delete call is a problem
        # already, and waiting for that resource to vanish would hang.
        for kind, identifiers, delete_one, describe in (
                ("DB instance", instances, self._delete_instance, self._instance),
                ("DB cluster", clusters, self._delete_cluster, self._cluster)):
            deleting = [i for i in identifiers
                        if attempt(f"{kind} {i}",
                                   lambda i=i: delete_one(i, region, record.restore_id))]
            deleted += [f"{kind} {i}" for i in deleting]
            for identifier in deleting:
                attempt(f"{kind} {identifier}",
                        lambda i=identifier: self._wait_gone(kind, lambda: describe(i, region)))
        # Temporary secrets live in the copy's region (see credentials()).
        found = attempt("list tagged secrets",
                        lambda: self.secrets.find_tagged(RESTORE_ID_TAG, record.restore_id,
                                                         region)) or []
        ours = restore_tags(record.restore_id)
        # Called by ARN (its region), reported by name (what people know).
        for secret_id in _unique([record.resources.get("temporarySecret"), *found]):
            if attempt(f"secret {secret_name(secret_id)}",
                       lambda s=secret_id: self.secrets.force_delete(s, only_if_tagged=ours)):
                deleted.append(f"secret {secret_name(secret_id)}")
        if problems:
            raise CleanupFailed("; ".join(problems)
                                + (f" (deleted: {', '.join(deleted)})" if deleted else ""))
        return deleted

    def _delete_instance(self, identifier: str, region: str | None, restore_id: str) -> bool:
        found = self._instance(identifier, region)
        if found is None:
            return False
        if not has_restore_tag(found.get("TagList"), restore_id):
            log.warning("DB instance %s is not tagged with restore id %s: not ours, "
                        "not deleting it", identifier, restore_id)
            return False
        if found.get("DBInstanceStatus") in ("deleting", "delete-precheck"):
            return True

        def attempt() -> bool | None:
            try:
                self._rds(region).delete_db_instance(
                    DBInstanceIdentifier=identifier, SkipFinalSnapshot=True,
                    DeleteAutomatedBackups=True)
            except ClientError as exc:
                code = error_code(exc)
                if code in _INSTANCE_NOT_FOUND:
                    return False
                if code in _BUSY:   # e.g. still creating/modifying: try again later
                    current = self._instance(identifier, region)
                    if current is None:
                        return False
                    if current.get("DBInstanceStatus") in ("deleting", "delete-precheck"):
                        return True
                    log.info("DB instance %s busy (%s): retrying delete", identifier,
                             error_message(exc))
                    return None
                raise
            return True

        return self.poller.wait(attempt, timeout=self.delete_timeout,
                                what=f"deletion of DB instance {identifier}",
                                reason="CleanupTimeout")

    def _delete_cluster(self, identifier: str, region: str | None, restore_id: str) -> bool:
        found = self._cluster(identifier, region)
        if found is None:
            return False
        if not has_restore_tag(found.get("TagList"), restore_id):
            log.warning("DB cluster %s is not tagged with restore id %s: not ours, "
                        "not deleting it", identifier, restore_id)
            return False
        if found.get("Status") == "deleting":
            return True

        def attempt() -> bool | None:
            try:
                # The copy's automated backups go with it (AWS's default too,
                # unless an AWS Backup plan keeps them).
                self._rds(region).delete_db_cluster(DBClusterIdentifier=identifier,
                                                    SkipFinalSnapshot=True,
                                                    DeleteAutomatedBackups=True)
            except ClientError as exc:
                code = error_code(exc)
                if code in _CLUSTER_NOT_FOUND:
                    return False
                if code in _BUSY:
                    current = self._cluster(identifier, region)
                    if current is None:
                        return False
                    if current.get("Status") == "deleting":
                        return True
                    log.info("DB cluster %s busy (%s): retrying delete", identifier,
                             error_message(exc))
                    return None
                raise
            return True

        return self.poller.wait(attempt, timeout=self.delete_timeout,
                                what=f"deletion of DB cluster {identifier}",
                                reason="CleanupTimeout")

    def _wait_gone(self, kind: str, describe: Callable[[], dict[str, Any] | None]) -> None:
        self.poller.wait(lambda: True if describe() is None else None,
                         timeout=self.delete_timeout, what=f"{kind} deletion",
                         reason="CleanupTimeout")


def snapshot_lookup(key: str, snapshot_id: str) -> dict[str, Any]:
    """DescribeDB(Cluster)Snapshots parameters that find any snapshot by id.

    The API reference: an automated snapshot's id (`rds:…`) is found only
    with SnapshotType=automated; a snapshot shared by another account only
    with IncludeShared=True and its ARN (IncludeShared does not apply to the
    automated type; automated snapshots cannot be shared)."""
    name = snapshot_id.split(":snapshot:", 1)[-1].split(":cluster-snapshot:", 1)[-1]
    params: dict[str, Any] = {key: snapshot_id}
    if name.startswith("rds:"):
        params["SnapshotType"] = "automated"
    elif snapshot_id.startswith("arn:"):
        params["IncludeShared"] = True
    return params


def _account_of(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 and parts[0] == "arn" else None


def _snapshot_time(snapshot: dict[str, Any]) -> datetime | None:
    """The instant the snapshot's data is from (a copy keeps the original's)."""
    for key in ("SnapshotDatabaseTime", "OriginalSnapshotCreateTime", "SnapshotCreateTime"):
        if snapshot.get(key):
            return as_utc(snapshot[key])
    return None


def _parse_time(value: Any) -> datetime | None:
    return as_utc(value) if value else None


def _unique(items: list[str | None]) -> list[str]:
    seen: list[str] = []
    for item in items:
        if item and item not in seen:
            seen.append(item)
    return seen
