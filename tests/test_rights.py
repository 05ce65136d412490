"""Restoring as RDS runs: the data plane connects as `master` (no superuser),
and pagila belongs to an application role.

Without membership in that role the restore stops before extraction, with
`MissingRoleMembership` and the GRANT to run, having changed nothing; with
the membership, or with `--grant-membership` (granted for the run, revoked
after it), it restores pagila owned by the same role.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from psycopg import sql

from pg_schema_restore.local.cluster import SUPERUSER, LocalCluster
from support import corpora
from support.ddl_job_cli import Run, run_ddl_job
from support.pg import APP_OWNER, MASTER, master_dsn

pytestmark = pytest.mark.e2e
SCHEMA = "pagila"
TARGET = "pagila_r1"


@dataclass
class World:
    prod: LocalCluster
    copyhost: LocalCluster
    prod_db: str
    copy_db: str

    def restore(self, *extra: str, restore_id: str = "rights-1") -> Run:
        return run_ddl_job(
            ["from-copy", "--schema", SCHEMA, "--suffix", "_r1", "--disposable-source",
             "--restore-id", restore_id, *extra],
            source=master_dsn(self.copyhost, self.copy_db),
            target=master_dsn(self.prod, self.prod_db), timeout=600)


def _member(cluster: LocalCluster, role: str) -> bool:
    """Has the role's privileges (16+: MASTER, having created it, holds an
    ADMIN-only membership, which gives none)."""
    with cluster.connect() as conn:
        row = conn.execute("SELECT pg_has_role(%s, %s, 'USAGE')", (MASTER, role)).fetchone()
    return bool(row and row[0])


def _membership(clusters: list[LocalCluster], grant: bool) -> None:
    verb = "GRANT {} TO {}" if grant else "REVOKE {} FROM {}"
    for cluster in clusters:
        cluster.execute(sql.SQL(verb).format(sql.Identifier(APP_OWNER),
                                             sql.Identifier(MASTER)).as_string(None))


@pytest.fixture
def world(prod, copyhost, new_db) -> Iterator[World]:
    """pagila owned by APP_OWNER in the copy; production's database is MASTER's."""
    corpora.require_pagila()
    w = World(prod, copyhost, new_db(prod, "rights"), new_db(copyhost, "rights"))
    corpora.load_pagila(copyhost, w.copy_db, schema=SCHEMA, owner=APP_OWNER)
    assert not _member(prod, APP_OWNER) and not _member(copyhost, APP_OWNER)
    yield w
    with prod.connect(w.prod_db, user=SUPERUSER, autocommit=True) as conn:   # APP_OWNER's
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
            sql.Identifier(TARGET)))


def _owners(cluster: LocalCluster, db: str, schema: str) -> set[str]:
    with cluster.connect(db) as conn:
        rows = conn.execute(
            "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = %(s)s "
            "UNION SELECT relowner::regrole::text FROM pg_class "
            "WHERE relnamespace = %(s)s::regnamespace "
            "UNION SELECT proowner::regrole::text FROM pg_proc "
            "WHERE pronamespace = %(s)s::regnamespace", {"s": schema}).fetchall()
    return {r[0] for r in rows}


def _schemas(cluster: LocalCluster, db: str) -> set[str]:
    with cluster.connect(db) as conn:
        return {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")}


def test_without_membership_refused_before_extraction(world: World):
    run = world.restore()
    assert run.returncode == 1, str(run)
    assert run.last["reason"] == "MissingRoleMembership", str(run)
    message = run.last["message"]
    grant = f'GRANT "{APP_OWNER}" TO "{MASTER}";'
    assert f"copy: membership in {APP_OWNER}" in message, message
    assert f"production: membership in {APP_OWNER}" in message, message
    assert message.count(grant) == 2, message
    assert "schema pagila" in message, message
    # nothing happened: no step after rights started, the copy is not renamed,
    # production holds nothing new
    started = {e["step"].rsplit(".", 1)[-1] for e in run.find("started")}
    assert started == {"rights"}, started
    assert SCHEMA in _schemas(world.copyhost, world.copy_db)
    assert TARGET not in _schemas(world.prod, world.prod_db)
    assert "permission denied" not in run.stdout + run.stderr


def test_with_grant_membership_restored_and_revoked(world: World):
    run = world.restore("--grant-membership", restore_id="rights-2")
    assert run.returncode == 0, str(run)
    result = run.last["result"]
    assert result["granted_memberships"] == {"copy": [APP_OWNER], "production": [APP_OWNER]}
    assert result["verify"]["ok"], result["verify"]
    assert _owners(world.prod, world.prod_db, TARGET) == {APP_OWNER}
    # lent for the run only
    assert not _member(world.prod, APP_OWNER) and not _member(world.copyhost, APP_OWNER)
    revoked = [e for e in run.find("memberships_revoked")]
    assert {e["side"] for e in revoked} == {"copy", "production"}, revoked


def test_with_membership_restored(world: World):
    _membership([world.prod, world.copyhost], grant=True)
    try:
        run = world.restore(restore_id="rights-3")
    finally:
        _membership([world.prod, world.copyhost], grant=False)
    assert run.returncode == 0, str(run)
    assert run.last["result"]["granted_memberships"] == {}
    assert _owners(world.prod, world.prod_db, TARGET) == {APP_OWNER}


def test_what_only_a_superuser_creates_is_refused_up_front(prod, copyhost, new_db):
    """A routine in an untrusted language (here `internal`) cannot be created by
    the master user in production: refused before extraction, named."""
    copy_db, prod_db = new_db(copyhost, "suonly"), new_db(prod, "suonly")
    copyhost.execute("CREATE SCHEMA s; CREATE TABLE s.t (id int)", copy_db)
    copyhost.execute(sql.SQL(
        "CREATE FUNCTION s.absolute(integer) RETURNS integer LANGUAGE internal "
        "IMMUTABLE STRICT AS 'int4abs'; ALTER FUNCTION s.absolute(integer) OWNER TO {}"
    ).format(sql.Identifier(MASTER)).as_string(None), copy_db, user=SUPERUSER)
    run = run_ddl_job(["from-copy", "--schema", "s", "--suffix", "_r1",
                       "--disposable-source", "--restore-id", "suonly"],
                      source=master_dsn(copyhost, copy_db), target=master_dsn(prod, prod_db))
    assert run.returncode == 1, str(run)
    assert run.last["reason"] == "SuperuserRequired", str(run)
    assert "function s.absolute(integer): its language internal is untrusted" in \
        run.last["message"], run.last["message"]
    assert "s" in _schemas(copyhost, copy_db) and "s_r1" not in _schemas(prod, prod_db)
