"""The local provider's source checks and its point-in-time copy (issue 13)."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ddl_job.errors import ProviderError
from pg_schema_restore.engine.record import RestoreRecord
from pg_schema_restore.engine.spec import RestoreSpec, rfc3339
from pg_schema_restore.local.provider import (LocalSource, LocalTemporaryDatabases,
                                              engine_version)
from pg_schema_restore.local.secrets import LocalSecrets
from support.pg import restore_point


def test_engine_version_has_no_stray_parenthesis():
    assert engine_version("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n") == "15.18"
    assert engine_version("postgres (PostgreSQL) 17beta1\n") == "17beta1"
    assert engine_version("postgres (PostgreSQL) 16.4\n") == "16.4"


def _provider(tmp_path: Path, base_backup: Path, wal_archive: Path,
              production: dict | None = None) -> LocalTemporaryDatabases:
    secrets = LocalSecrets(tmp_path / "secrets")
    secrets.write("production", production or {})
    (tmp_path / "temporary").mkdir()
    return LocalTemporaryDatabases(
        LocalSource(base_backup, wal_archive, "production", tmp_path / "temporary"), secrets)


def _spec(point: datetime) -> RestoreSpec:
    return RestoreSpec.from_dict({"database": "d", "schemas": ["a"],
                                  "restoreTime": rfc3339(point)})


def test_a_time_after_the_last_archived_wal_is_refused_at_once(tmp_path):
    """Restorable up to the newest archived WAL, as on RDS: not up to now."""
    backup, archive = tmp_path / "backup", tmp_path / "wal"
    backup.mkdir(), archive.mkdir()
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    (backup / "backup_label").write_text(f"START TIME: {start:%Y-%m-%d %H:%M:%S} UTC\n")
    segment = archive / "000000010000000000000003"
    segment.write_bytes(b"")
    archived = start + timedelta(minutes=30)
    os.utime(segment, (archived.timestamp(), archived.timestamp()))
    provider = _provider(tmp_path, backup, archive)
    info = provider.describe_source(_spec(archived - timedelta(seconds=1)))
    assert info.latest_restorable == archived and ")" not in info.engine_version
    with pytest.raises(ProviderError) as refused:
        provider.describe_source(_spec(archived + timedelta(seconds=5)))
    assert refused.value.reason == "RestoreTimeOutOfWindow"
    assert "last WAL archived" in refused.value.message


def test_a_copy_that_cannot_reach_its_time_fails_quickly_quoting_its_log(
        prod, prod_base_backup, wal_archive, tmp_path):
    """No WAL after the point is archived yet: recovery stops short of it. The
    copy fails at once (it used to wait 5 minutes) and its message quotes the
    server's log instead of naming a file cleanup deletes."""
    point = restore_point()   # nothing archived after it
    provider = _provider(tmp_path, prod_base_backup, wal_archive,
                         {"host": "127.0.0.1", "port": prod.port, "username": prod.user,
                          "password": prod.password})
    spec = _spec(point)
    record = RestoreRecord(restore_id="pitrfail01", spec=spec)
    try:
        with pytest.raises(ProviderError) as failed:
            provider.create(record, spec, lambda: None)
    finally:
        provider.delete(record)
    assert failed.value.reason == "TemporaryDatabaseFailed"
    assert "recovery ended before configured recovery target was reached" in \
        failed.value.message, failed.value.message
    assert ".log" not in failed.value.message
