"""Real PostgreSQL for every test: throwaway clusters on loopback ports.

- `prod` (per worker): the "production" cluster, WAL archiving on.
- `copyhost` (per worker): a second cluster that hosts plain databases used
  as "restored copies" by tests that do not need a real PITR.
- `new_db`: each test gets its own databases, so tests never share state.
- `prod_base_backup`: a base backup of `prod` taken for the test that asks
  for it, so a point-in-time copy replays only the WAL written since the
  test began (a backup shared by the whole run made every copy replay all
  the WAL of every earlier test: 2.75 s alone, 50 s late in a run).
- `make_pitr_copy`: a genuine point-in-time copy (base backup + WAL replay).

Every cluster carries the roles RDS gives an instance (`rds_roles`): the
data plane connects as `MASTER` (`master_dsn`), which like RDS's master user
is no superuser, and test databases are owned by it. `APP_OWNER` and
`APP_READER` stand for application roles; `MASTER` created them, so it may
grant itself their membership (PostgreSQL 16+: ADMIN OPTION) but is not a
member. The superuser is only for setting up what a test needs.

Databases are created with STRATEGY FILE_COPY (`LocalCluster.create_database`):
the default WAL_LOG strategy writes each template into the archived WAL.
Every name is unique per xdist worker (the process id is in it) and every
cluster listens on a free port, so workers never meet.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pg_schema_restore.local.cluster import MASTER, SUPERUSER, LocalCluster, pitr_copy
from pg_schema_restore.local.cluster import rds_roles as cluster_rds_roles

PASSWORD = "pw-" + secrets.token_hex(8)
_counter = itertools.count()

APP_OWNER = "app_owner"      # owns application schemas
APP_READER = "app_reader"    # reads them through grants


def rds_roles(cluster: LocalCluster) -> None:
    """The RDS-shaped role set on a cluster (roles are cluster-wide; a
    point-in-time copy of `prod` has them already); from then on the
    cluster's connections log in as MASTER unless told otherwise."""
    cluster_rds_roles(cluster, cluster.password, (APP_OWNER, APP_READER))
    cluster.user = MASTER


@contextmanager
def as_superuser(*clusters: LocalCluster) -> Iterator[None]:
    """The clusters' connections (setup and data plane) log in as the
    superuser for a while: for what only a superuser may create and restore."""
    users = [cluster.user for cluster in clusters]
    for cluster in clusters:
        cluster.user = SUPERUSER
    try:
        yield
    finally:
        for cluster, user in zip(clusters, users):
            cluster.user = user


def master_dsn(cluster: LocalCluster, dbname: str = "postgres") -> str:
    """What the data plane connects with: the non-superuser master user."""
    return cluster.dsn(dbname, user=MASTER)


@contextmanager
def cluster_roles(clusters: Iterable[LocalCluster], roles: dict[str, str | None],
                  also_drop: tuple[str, ...] = (), *, member: bool = True) -> Iterator[None]:
    """Roles on each cluster (roles are cluster-wide, as on RDS): name ->
    password (LOGIN) or None (NOLOGIN), created by the cluster's login role
    (MASTER, as on RDS), which is made a member of each (`member`) so that it
    may give them objects and restore what they own. Afterwards they are
    dropped, with `also_drop` (roles a test made itself), where nothing still
    needs them."""
    clusters = list(clusters)
    for cluster in clusters:
        for role, password in roles.items():
            statement = (sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)) if password is not None
                else sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
            cluster.execute(statement.as_string(None))
            if member and cluster.user != SUPERUSER:
                cluster.execute(sql.SQL("GRANT {} TO {}").format(
                    sql.Identifier(role), sql.Identifier(cluster.user)).as_string(None))
    try:
        yield
    finally:
        for cluster in clusters:
            for role in (*also_drop, *reversed(list(roles))):
                try:
                    cluster.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(
                        sql.Identifier(role)).as_string(None))
                except psycopg.Error:
                    pass  # still referenced somewhere: the cluster dies with the session


def restore_point() -> datetime:
    """Now, after the last commit and before the next (recovery uses commit times)."""
    time.sleep(0.05)
    point = datetime.now(timezone.utc)
    time.sleep(0.05)
    return point


@pytest.fixture(scope="session")
def pg_base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pg")


@pytest.fixture(scope="session")
def wal_archive(pg_base: Path) -> Path:
    """Where `prod` archives its WAL (read by every point-in-time copy)."""
    return pg_base / "wal"


@pytest.fixture(scope="session")
def prod(pg_base: Path, wal_archive: Path):
    cluster = LocalCluster.create(pg_base / "prod", PASSWORD, archive_dir=wal_archive)
    cluster.start()
    rds_roles(cluster)
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="session")
def copyhost(pg_base: Path):
    cluster = LocalCluster.create(pg_base / "copyhost", PASSWORD)
    cluster.start()
    rds_roles(cluster)
    yield cluster
    cluster.destroy()


@pytest.fixture
def new_db(request):
    """Factory: `new_db(cluster)` -> name of a fresh database, owned by MASTER
    (as the databases an RDS master user creates), dropped after the test."""
    created: list[tuple[LocalCluster, str]] = []

    def make(cluster: LocalCluster, prefix: str = "db") -> str:
        name = f"{prefix}_{os.getpid()}_{next(_counter)}"
        cluster.create_database(name)   # by MASTER (CREATEDB): its owner
        created.append((cluster, name))
        return name

    yield make
    # Teardown as the superuser: WITH (FORCE) ends sessions of other roles (a
    # test's application roles), which its owner may not signal.
    for cluster, name in created:
        try:
            with cluster.connect(user=SUPERUSER, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)))
        except psycopg.OperationalError:
            pass  # cluster already gone (a PITR copy destroyed first)


@pytest.fixture
def prod_base_backup(prod: LocalCluster, pg_base: Path) -> Path:
    """A fresh base backup of `prod`, deleted after the test.

    Point-in-time targets must come after it: take restore points in the
    test (or in fixtures that depend on this one), not before.
    """
    backup = prod.base_backup(pg_base / f"basebackup_{next(_counter)}")
    yield backup
    shutil.rmtree(backup, ignore_errors=True)


@pytest.fixture
def make_pitr_copy(prod: LocalCluster, prod_base_backup: Path, wal_archive: Path,
                   pg_base: Path):
    """Factory: `make_pitr_copy(t)` -> a started cluster restored to instant `t`."""
    copies: list[LocalCluster] = []

    def make(target_time: datetime) -> LocalCluster:
        prod.archive_current_wal(wal_archive)
        copy = pitr_copy(prod_base_backup, wal_archive,
                         pg_base / f"pitr_{os.getpid()}_{next(_counter)}", target_time, PASSWORD)
        copy.user = MASTER   # prod's roles came with the copy
        copies.append(copy)
        return copy

    yield make
    for copy in copies:
        copy.destroy()
