"""Objects owned by roles other than their schema's owner, restored as `master`.

A non-superuser's `ALTER TABLE … OWNER TO r` needs `r` to hold CREATE on the
schema at that moment. A superuser set these owners in the copy (it bypasses
that check): `r` may have CREATE only through a grant on the schema (which
pre-data made after pg_dump's script), or not at all (`public`, as initdb
leaves it, grants none). Pre-data failed then, as the RDS master user. Now
the schemas' owners and ACLs come right after the schemas are created, and
CREATE is lent to each owner lacking it until the copy's ACLs are applied
at the end of the same transaction: the restored ACLs equal the copy's.
"""

from __future__ import annotations

import os

import pytest
from psycopg import sql
from support.ddl_job_cli import run_ddl_job
from support.pg import cluster_roles, master_dsn

from pg_schema_restore.local.cluster import SUPERUSER

pytestmark = pytest.mark.e2e

SCHEMA_OWNER = "pgsr_fo_schema"    # owns schema s
TABLES = "pgsr_fo_tables"          # owns tables in s and public; no CREATE on either
GRANTED = "pgsr_fo_granted"        # CREATE on s through a grant only
OTHERS = "pgsr_fo_others"          # a sequence, a view, a function, a type
ROLES = (SCHEMA_OWNER, TABLES, GRANTED, OTHERS)

# Run as the superuser, as in a source where owners were set by one.
SOURCE_SQL = """
CREATE SCHEMA s AUTHORIZATION {S};
GRANT USAGE ON SCHEMA s TO {T}, {O};
GRANT USAGE, CREATE ON SCHEMA s TO {G};
CREATE TABLE s.items (id int PRIMARY KEY, name text);
INSERT INTO s.items VALUES (1, 'one'), (2, 'two');
ALTER TABLE s.items OWNER TO {T};
CREATE TABLE s.notes (id int PRIMARY KEY, item int REFERENCES s.items, body text);
INSERT INTO s.notes VALUES (1, 1, 'n');
ALTER TABLE s.notes OWNER TO {G};
CREATE SEQUENCE s.ids;
ALTER SEQUENCE s.ids OWNER TO {O};
CREATE VIEW s.named AS SELECT id, name FROM s.items;
ALTER VIEW s.named OWNER TO {O};
CREATE FUNCTION s.item_count() RETURNS bigint LANGUAGE sql STABLE
    AS $$ SELECT count(*) FROM s.items $$;
ALTER FUNCTION s.item_count() OWNER TO {O};
CREATE TYPE s.mood AS ENUM ('ok', 'sad');
ALTER TYPE s.mood OWNER TO {O};
CREATE TABLE s.own (id int);   -- the schema owner's: needs nothing lent
ALTER TABLE s.own OWNER TO {S};
CREATE TABLE public.pub (id int PRIMARY KEY);
INSERT INTO public.pub VALUES (7);
ALTER TABLE public.pub OWNER TO {T};
"""

# Owners and the schema ACLs of one schema, names relative to it.
STATE_SQL = """
SELECT 'schema', nspowner::regrole::text, nspacl::text FROM pg_namespace WHERE nspname = %(s)s
UNION ALL
SELECT c.relname, c.relowner::regrole::text, c.relacl::text FROM pg_class c
WHERE c.relnamespace = %(s)s::regnamespace AND c.relkind IN ('r', 'S', 'v')
UNION ALL
SELECT p.proname, p.proowner::regrole::text, p.proacl::text FROM pg_proc p
WHERE p.pronamespace = %(s)s::regnamespace
UNION ALL
SELECT t.typname, t.typowner::regrole::text, t.typacl::text FROM pg_type t
WHERE t.typnamespace = %(s)s::regnamespace AND t.typtype = 'e'
ORDER BY 1
"""


def _fmt(template: str) -> str:
    names = {"S": SCHEMA_OWNER, "T": TABLES, "G": GRANTED, "O": OTHERS}
    return sql.SQL(template).format(**{k: sql.Identifier(v) for k, v in names.items()}
                                    ).as_string(None)


def _state(cluster, db: str, schema: str) -> list[tuple]:
    with cluster.connect(db) as conn:
        return conn.execute(STATE_SQL, {"s": schema}).fetchall()


@pytest.fixture(scope="module")
def roles(prod, copyhost):
    """Cluster-wide roles, once for the module (a role that still owns objects
    in a test's databases cannot be dropped before them); `master` is a
    member of each, as an RDS master user that created its application's roles."""
    with cluster_roles((copyhost, prod), dict.fromkeys(ROLES)):
        yield


def test_objects_of_other_owners_restored_as_master(prod, copyhost, new_db, roles):
    copy_db, prod_db = new_db(copyhost, "fo"), new_db(prod, "fo")
    copyhost.execute(_fmt(SOURCE_SQL), copy_db, user=SUPERUSER)
    before = {s: _state(copyhost, copy_db, s) for s in ("s", "public")}
    run = run_ddl_job(["from-copy", "--schema", "s", "--schema", "public", "--suffix", "_r1",
                       "--disposable-source", "--restore-id", "fo-1"],
                      source=master_dsn(copyhost, copy_db), target=master_dsn(prod, prod_db),
                      timeout=300)
    assert run.returncode == 0, str(run)
    assert run.last["result"]["verify"]["ok"], run.last["result"]["verify"]
    # the same owners and ACLs: CREATE lent for pre-data is gone again
    assert _state(prod, prod_db, "s_r1") == before["s"]
    assert _state(prod, prod_db, "public_r1") == before["public"]
    with prod.connect(prod_db) as conn:
        lent = conn.execute(
            "SELECT r, has_schema_privilege(r, s, 'CREATE') FROM unnest(%s::text[]) r, "
            "unnest(ARRAY['s_r1', 'public_r1']) s ORDER BY 1, 2",
            ([TABLES, OTHERS],)).fetchall()
        rows = conn.execute("SELECT count(*) FROM s_r1.items").fetchone()
    assert not any(has for _, has in lent), lent
    assert rows == (2,)


NOINHERIT = "pgsr_fo_noinherit"   # a member of every role, without their privileges


def test_a_role_that_cannot_lend_create_is_refused_before_extraction(
        prod, copyhost, new_db, roles):
    """A connecting role that is a member of the schema's owner without its
    privileges (NOINHERIT) may set owners but not grant as the schema's owner:
    the rights check says so first, instead of pre-data failing."""
    copy_db, prod_db = new_db(copyhost, "fo"), new_db(prod, "fo")
    copyhost.execute(_fmt(SOURCE_SQL), copy_db, user=SUPERUSER)
    password = "pw-" + os.urandom(6).hex()
    with cluster_roles([prod], {NOINHERIT: password}, member=False):
        prod.execute(sql.SQL("ALTER ROLE {} NOINHERIT; GRANT {} TO {}; "
                             "GRANT CREATE ON DATABASE {} TO {}").format(
            sql.Identifier(NOINHERIT), sql.SQL(", ").join(map(sql.Identifier, ROLES)),
            sql.Identifier(NOINHERIT), sql.Identifier(prod_db), sql.Identifier(NOINHERIT)
        ).as_string(None), prod_db)
        run = run_ddl_job(["from-copy", "--schema", "s", "--suffix", "_r1",
                           "--disposable-source", "--restore-id", "fo-2"],
                          source=master_dsn(copyhost, copy_db),
                          target=prod.dsn(prod_db, user=NOINHERIT, password=password))
        with prod.connect(prod_db) as conn:
            created = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 's_r1'"
                                   ).fetchone()
        prod.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(NOINHERIT)
                                                         ).as_string(None), prod_db, user=SUPERUSER)
    assert run.returncode == 1, str(run)
    assert run.last["reason"] == "MissingRoleMembership", str(run)
    assert f"production: membership in {SCHEMA_OWNER} (lend CREATE on schema s)" in \
        run.last["message"], run.last["message"]
    assert created == (0,)
