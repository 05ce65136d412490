"""The `local` temporary-database provider: genuine PITR from a WAL archive.

The same contract as RDS: the copy is created from a base backup plus
archived WAL at the requested instant (or at the backup itself, for a
"snapshot"), keeps production's password until it is reset, and is deleted
with everything named after the restore id.
"""

from __future__ import annotations

import re
import secrets as random
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import psycopg
from psycopg import sql

from ddl_job.errors import InvalidSpec, ProviderError

from ..engine.ports import SourceInfo
from ..engine.record import RestoreRecord
from ..engine.spec import RestoreSpec
from .cluster import LocalCluster, RecoveryStopped, log_errors, pitr_copy, server_bindir
from .secrets import LocalSecrets


@dataclass
class LocalSource:
    """A local production cluster that can be restored from."""

    base_backup: Path
    wal_archive: Path
    production_secret: str      # id in LocalSecrets: host, port, username, password
    workdir: Path               # temporary copies live here


def backup_start_time(base_backup: Path) -> datetime:
    label = (Path(base_backup) / "backup_label").read_text()
    match = re.search(r"^START TIME: (.+)$", label, re.M)
    if not match:
        raise ProviderError("InvalidSource", "base backup has no START TIME")
    return datetime.strptime(match[1].strip(), "%Y-%m-%d %H:%M:%S %Z").replace(
        tzinfo=timezone.utc)


def engine_version(text: str) -> str:
    """`15.18` from `postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)`."""
    match = re.search(r"\(PostgreSQL\) ([0-9][^\s]*)", text)
    if not match:
        raise ProviderError("InvalidSource", f"unknown PostgreSQL version: {text.strip()!r}")
    return match[1]


def latest_archived(wal_archive: Path, earliest: datetime) -> datetime:
    """The latest restorable time: when the newest WAL file was archived.

    WAL written since is not in the archive yet, so a copy could not
    replay to a later time (RDS's LatestRestorableTime lags the same way)."""
    times = [p.stat().st_mtime for p in Path(wal_archive).iterdir() if p.is_file()]
    if not times:
        return earliest
    return max(earliest, datetime.fromtimestamp(max(times), timezone.utc))


class LocalTemporaryDatabases:
    def __init__(self, source: LocalSource, secrets: LocalSecrets) -> None:
        self.source = source
        self.secrets = secrets

    # -- phase 1 -----------------------------------------------------------
    def describe_source(self, spec: RestoreSpec) -> SourceInfo:
        version = engine_version(subprocess.run(
            [str(server_bindir() / "postgres"), "--version"],
            capture_output=True, text=True).stdout)
        earliest = backup_start_time(self.source.base_backup)
        latest = latest_archived(self.source.wal_archive, earliest)
        if spec.snapshot_id is not None:
            if spec.snapshot_id != self.source.base_backup.name:
                raise ProviderError("SnapshotNotFound",
                                    f"snapshot {spec.snapshot_id!r} not found (local snapshots "
                                    f"are base backups: {self.source.base_backup.name!r})")
            return SourceInfo("local", version, snapshot_time=earliest)
        point = spec.restore_time
        assert point is not None
        if not earliest <= point <= latest:
            raise ProviderError(
                "RestoreTimeOutOfWindow",
                f"restoreTime {point.isoformat()} is outside the restorable window "
                f"[{earliest.isoformat()}, {latest.isoformat()}] (its end is the last WAL "
                "archived: a time after it is not restorable yet, as on RDS)")
        return SourceInfo("local", version, earliest, latest)

    def production_secret(self, spec: RestoreSpec) -> str:
        return self.source.production_secret

    # -- phase 2 -----------------------------------------------------------
    def _datadir(self, record: RestoreRecord) -> Path:
        return self.source.workdir / record.resource_name("db")

    def create(self, record: RestoreRecord, spec: RestoreSpec,
               checkpoint: Callable[[], None]) -> None:
        datadir = self._datadir(record)
        existing = record.resources.get("temporaryDatabase")
        if existing and datadir.exists():
            cluster = LocalCluster(datadir, existing["port"], "")
            if not (datadir / "postmaster.pid").exists():
                cluster.start()
            return
        if datadir.exists():  # crashed half-way through a copy: start again
            shutil.rmtree(datadir)
        production = self.secrets.read(self.source.production_secret)
        from .cluster import free_port
        port = free_port()
        record.resources["temporaryDatabase"] = {"kind": "local", "id": datadir.name,
                                                 "port": port}
        checkpoint()
        point = spec.restore_time
        try:
            pitr_copy(self.source.base_backup, self.source.wal_archive, datadir,
                      point, production["password"], port=port)
        except RecoveryStopped as exc:
            raise ProviderError("TemporaryDatabaseFailed", str(exc)) from None
        except RuntimeError as exc:   # pg_ctl refused to start it
            raise ProviderError("TemporaryDatabaseFailed",
                                f"the point-in-time copy did not start: "
                                f"{log_errors(LocalCluster(datadir, port, '').logfile)}"
                                ) from exc

    def wait_ready(self, record: RestoreRecord) -> list[str]:
        port = record.resources["temporaryDatabase"]["port"]
        production = self.secrets.read(self.source.production_secret)
        try:
            with psycopg.connect(host="127.0.0.1", port=port, user=production["username"],
                                 password=production["password"], dbname="postgres",
                                 connect_timeout=10) as conn:
                in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        except psycopg.OperationalError as exc:
            raise ProviderError("TemporaryDatabaseFailed",
                                f"temporary database not reachable: {exc}") from None
        if in_recovery:
            raise ProviderError("TemporaryDatabaseFailed", "temporary copy still in recovery")
        return []

    # -- phase 3 -----------------------------------------------------------
    def credentials(self, record: RestoreRecord, spec: RestoreSpec,
                    checkpoint: Callable[[], None]) -> str:
        if spec.credentials != "resetMasterPassword":
            raise InvalidSpec("local copies only support resetMasterPassword")
        secret_id = record.resource_name("secret")
        record.resources["temporarySecret"] = secret_id
        checkpoint()
        production = self.secrets.read(self.source.production_secret)
        port = record.resources["temporaryDatabase"]["port"]
        new_password = random.token_urlsafe(24)
        # Like RDS: the copy keeps production's password until we reset it.
        for password in (production["password"], self._current(secret_id)):
            if password is None:
                continue
            try:
                with psycopg.connect(host="127.0.0.1", port=port, dbname="postgres",
                                     user=production["username"], password=password,
                                     autocommit=True) as conn:
                    conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        sql.Identifier(production["username"]), sql.Literal(new_password)))
                break
            except psycopg.OperationalError:
                continue
        else:
            raise ProviderError("CredentialsFailed", "cannot log in to the temporary copy")
        self.secrets.write(secret_id, {"host": "127.0.0.1", "port": port,
                                       "username": production["username"],
                                       "password": new_password})
        return secret_id

    def _current(self, secret_id: str) -> str | None:
        try:
            return self.secrets.read(secret_id)["password"]
        except ProviderError:
            return None

    # -- phase 6 -----------------------------------------------------------
    def delete(self, record: RestoreRecord) -> list[str]:
        """By recorded id and by name (our 'tag'); missing counts as done."""
        deleted: list[str] = []
        prefix = f"pgsr-{record.restore_id}-"
        for datadir in sorted(self.source.workdir.glob(prefix + "*")):
            if datadir.is_dir():
                LocalCluster(datadir, 0, "").destroy()
                deleted.append(f"database {datadir.name}")
        for secret_id in self.secrets.ids():
            if secret_id.startswith(prefix) and self.secrets.delete(secret_id):
                deleted.append(f"secret {secret_id}")
        return deleted
