"""Real PostgreSQL for every test: throwaway clusters on loopback ports.

- `prod`: the "production" cluster, WAL archiving on, a base backup taken at
  session start so any test can make a genuine point-in-time copy.
- `copyhost`: a second cluster that hosts plain databases used as
  "restored copies" by tests that do not need a real PITR.
Each test gets its own databases (`new_db`), so tests never share state.
"""

from __future__ import annotations

import itertools
import os
import secrets
import time
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pg_schema_restore.localpg import LocalCluster, pitr_copy

PASSWORD = "pw-" + secrets.token_hex(8)
_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pg")


@pytest.fixture(scope="session")
def prod(pg_base: Path):
    cluster = LocalCluster.create(pg_base / "prod", PASSWORD, archive_dir=pg_base / "wal")
    cluster.start()
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="session")
def copyhost(pg_base: Path):
    cluster = LocalCluster.create(pg_base / "copyhost", PASSWORD)
    cluster.start()
    yield cluster
    cluster.destroy()


@pytest.fixture
def new_db(request):
    """Factory: `new_db(cluster)` -> name of a fresh database dropped after the test."""
    created: list[tuple[LocalCluster, str]] = []

    def make(cluster: LocalCluster, prefix: str = "db") -> str:
        name = f"{prefix}_{os.getpid()}_{next(_counter)}"
        cluster.create_database(name)
        created.append((cluster, name))
        return name

    yield make
    for cluster, name in created:
        try:
            with cluster.connect(autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)))
        except psycopg.OperationalError:
            pass  # cluster already gone (a PITR copy destroyed first)


@pytest.fixture(scope="session")
def prod_base_backup(prod: LocalCluster, pg_base: Path) -> Path:
    return prod.base_backup(pg_base / "basebackup")


@pytest.fixture
def make_pitr_copy(prod: LocalCluster, prod_base_backup: Path, pg_base: Path):
    """Factory: `make_pitr_copy(t)` -> a started cluster restored to instant `t`."""
    copies: list[LocalCluster] = []

    def make(target_time: datetime) -> LocalCluster:
        prod.archive_current_wal(pg_base / "wal")
        copy = pitr_copy(prod_base_backup, pg_base / "wal",
                         pg_base / f"pitr_{os.getpid()}_{next(_counter)}", target_time, PASSWORD)
        copies.append(copy)
        return copy

    yield make
    for copy in copies:
        copy.destroy()


def restore_point() -> datetime:
    """Now, after the last commit and before the next (recovery uses commit times)."""
    time.sleep(0.05)
    point = datetime.now(timezone.utc)
    time.sleep(0.05)
    return point
