"""Owners and privileges of restored schemas, through the real CLI (`from-copy`).

pg_dump writes privileges relative to an object's *initial* privileges
(`pg_init_privs`) and only for objects it dumps on their own, so a plain
dump-and-restore loses some of them:

- the `public` schema's `=U/pg_database_owner` (initdb's privileges: a schema
  renamed from `public` keeps its OID, hence its `pg_init_privs` row): the
  restored schema had no PUBLIC USAGE, so a non-superuser table owner's
  foreign-key checks and a SECURITY DEFINER routine's helpers failed;
- USAGE on a table's row type and on a range's multirange type (and the
  multirange's owner);
- objects whose ACL is the default got production's default privileges;
- a grant by a role other than the owner needs SET SESSION AUTHORIZATION,
  so a non-superuser restore failed outright.

The restored schemas must equal the copy's in every owner and ACL (exact
aclitem arrays, default privileges included), verify must say so, and verify
must fail, naming each difference, once a grant is tampered with.
"""

from __future__ import annotations

import os

import psycopg
import pytest
from psycopg import errors, sql
from support.ddl_job_cli import Run, run_ddl_job
from support.pg import MASTER, cluster_roles
from test_rich_restore import one

from ddl_job.conn import Endpoint
from ddl_job.errors import DataPlaneError
from ddl_job.progress import NullReporter
from ddl_job.verify import verify
from pg_schema_restore.local.cluster import SUPERUSER

pytestmark = pytest.mark.e2e


SUFFIX = "_r1"
OWNER = "pgsr_p_owner"     # owns the tables and routines; no superuser
READER = "pgsr_p_reader"
WRITER = "pgsr_p_writer"
GONE = "pgsr_p_gone"       # exists in the copy's cluster only
OWNER_PASSWORD = "ownerpw-" + os.urandom(6).hex()


@pytest.fixture(scope="module")
def roles(copyhost, prod):
    """The same roles on both clusters (roles are cluster-wide, as on RDS)."""
    with cluster_roles((copyhost, prod), {OWNER: OWNER_PASSWORD, READER: None, WRITER: None},
                       also_drop=(GONE,)):
        yield


def fmt(template: str) -> str:
    return (template.replace("{O}", OWNER).replace("{R}", READER).replace("{W}", WRITER)
            .replace("{G}", GONE).replace("{M}", MASTER))


# `public` is left exactly as initdb made it (owner pg_database_owner,
# `=U/pg_database_owner`); its tables and routines belong to a plain role.
PUBLIC_SQL = fmt("""
CREATE TABLE public.parent (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE public.child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES public.parent);
INSERT INTO public.parent VALUES (1, 'one'), (2, 'two');
INSERT INTO public.child VALUES (10, 1), (20, 2);
CREATE FUNCTION public.helper(p int) RETURNS text LANGUAGE sql STABLE
    AS $$ SELECT name FROM public.parent WHERE id = p $$;
CREATE FUNCTION public.api(p int) RETURNS text LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = public AS $$ BEGIN RETURN helper(p); END $$;
ALTER TABLE public.parent OWNER TO {O};
ALTER TABLE public.child OWNER TO {O};
ALTER FUNCTION public.helper(int) OWNER TO {O};
ALTER FUNCTION public.api(int) OWNER TO {O};
REVOKE EXECUTE ON FUNCTION public.helper(int) FROM PUBLIC;   -- reached through api() only
GRANT SELECT ON public.child TO {R};
""")

TENANT_SQL = fmt("""
CREATE SCHEMA ten AUTHORIZATION {O};
GRANT USAGE ON SCHEMA ten TO {R}, {W};
SET ROLE {O};
CREATE SEQUENCE ten.ids;
CREATE TABLE ten.acct (id int PRIMARY KEY DEFAULT nextval('ten.ids'), name text,
                       balance numeric NOT NULL DEFAULT 0);
INSERT INTO ten.acct (name, balance) VALUES ('a', 10), ('b', 32);
CREATE VIEW ten.rich AS SELECT id, name FROM ten.acct WHERE balance > 20;
CREATE TYPE ten.span AS RANGE (subtype = int4);
CREATE FUNCTION ten.total() RETURNS numeric LANGUAGE sql STABLE
    AS $$ SELECT sum(balance) FROM ten.acct $$;
REVOKE EXECUTE ON FUNCTION ten.total() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ten.total() TO {R};
GRANT SELECT ON ten.acct TO {R};
GRANT SELECT (id, balance), UPDATE (balance) ON ten.acct TO {W};
GRANT USAGE ON SEQUENCE ten.ids TO {W};
GRANT USAGE ON TYPE ten.acct TO {R};             -- a table's row type: pg_dump omits it
GRANT USAGE ON TYPE ten.span_multirange TO {W};  -- a multirange: pg_dump omits it
ALTER DEFAULT PRIVILEGES IN SCHEMA ten GRANT SELECT ON TABLES TO {R};
ALTER DEFAULT PRIVILEGES IN SCHEMA ten GRANT USAGE ON SEQUENCES TO {W};
GRANT SELECT ON ten.rich TO {W} WITH GRANT OPTION;
SET ROLE {W};                                    -- a chain of grantors
GRANT SELECT ON ten.rich TO {R} WITH GRANT OPTION;
SET ROLE {R};
GRANT SELECT ON ten.rich TO PUBLIC;
RESET ROLE;
ALTER DEFAULT PRIVILEGES FOR ROLE {W} IN SCHEMA ten GRANT SELECT ON TABLES TO {R};
""")

# Every owner and raw ACL of one schema, names relative to the schema.
ACL_SQL = """
WITH s AS (SELECT oid FROM pg_namespace WHERE nspname = %(s)s)
SELECT 'schema', '', '', nspowner::regrole::text, nspacl::text FROM pg_namespace
WHERE oid = (SELECT oid FROM s)
UNION ALL
SELECT 'class', c.relname, c.relkind::text, c.relowner::regrole::text, c.relacl::text
FROM pg_class c WHERE c.relnamespace = (SELECT oid FROM s)
UNION ALL
SELECT 'column', c.relname, a.attname, '', a.attacl::text
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
WHERE c.relnamespace = (SELECT oid FROM s) AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'routine', p.proname, pg_get_function_identity_arguments(p.oid),
       p.proowner::regrole::text, p.proacl::text
FROM pg_proc p WHERE p.pronamespace = (SELECT oid FROM s)
UNION ALL
SELECT 'type', t.typname, t.typtype::text, t.typowner::regrole::text, t.typacl::text
FROM pg_type t WHERE t.typnamespace = (SELECT oid FROM s)
UNION ALL
SELECT 'default_acl', d.defaclobjtype::text, d.defaclrole::regrole::text, '',
       d.defaclacl::text
FROM pg_default_acl d WHERE d.defaclnamespace = (SELECT oid FROM s)
ORDER BY 1, 2, 3, 4
"""


def acl_rows(conn: psycopg.Connection, schema: str) -> list[tuple]:
    """Names inside the schema print unqualified (argument types of routines)."""
    conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(schema)))
    rows = conn.execute(ACL_SQL, {"s": schema}).fetchall()
    assert rows, schema
    return rows


def effective_acl_rows(conn: psycopg.Connection, schema: str) -> list[tuple]:
    """acl_rows with each ACL as its sorted items, NULL read as its acldefault: a
    GRANT/REVOKE can make an ACL equal to the default but never NULL again."""
    out = []
    for kind, name, detail, owner, acl in acl_rows(conn, schema):
        if acl is None and kind not in ("column", "default_acl"):
            code = {"schema": "n", "routine": "f", "type": "T"}.get(kind) or (
                "s" if detail == "S" else "r")
            acl = one(conn, 'SELECT acldefault(%s::"char", %s::regrole)::text', (code, owner))
        out.append((kind, name, detail, owner, sorted((acl or "{}").strip("{}").split(","))))
    return out


def from_copy(src_dsn: str, tgt_dsn: str, schemas: list[str], artifacts) -> Run:
    args = ["from-copy", "--suffix", SUFFIX, "--disposable-source", "--artifacts",
            str(artifacts)]
    for name in schemas:
        args += ["--schema", name]
    return run_ddl_job(args, source=src_dsn, target=tgt_dsn, timeout=600)


@pytest.fixture
def restored(copyhost, prod, new_db, roles, tmp_path):
    """public + ten restored from a copy into a fresh production database:
    (copy db, production db, the copy's ACL rows before the run by target name, run)."""
    src, tgt = new_db(copyhost, "psrc"), new_db(prod, "ptgt")
    # as the source's superuser set them: the tables' owner has no CREATE on `public`
    copyhost.execute(PUBLIC_SQL + TENANT_SQL, src, user=SUPERUSER)
    with copyhost.connect(src) as conn:
        before = {s + SUFFIX: acl_rows(conn, s) for s in ("public", "ten")}
    run = from_copy(copyhost.dsn(src), prod.dsn(tgt), ["public", "ten"], tmp_path / "a")
    assert run.returncode == 0, str(run)
    assert run.last["event"] == "result", str(run)
    return src, tgt, before, run


def test_owners_and_privileges_equal_the_copy(copyhost, prod, restored):
    src, tgt, before, run = restored
    with prod.connect(tgt) as conn, copyhost.connect(src) as copy:
        for schema, rows in before.items():
            assert acl_rows(conn, schema) == rows, schema
            assert acl_rows(copy, schema) == rows, schema   # the rename kept them
        # initdb's privileges of `public`, owner included (pg_database_owner can own
        # an ordinary schema: in production it stands for the database's owner)
        assert conn.execute("SELECT nspowner::regrole::text, nspacl::text FROM pg_namespace "
                            "WHERE nspname = 'public_r1'").fetchone() == \
            ("pg_database_owner", "{pg_database_owner=UC/pg_database_owner,=U/pg_database_owner}")
    assert run.last["result"]["verify"]["ok"] is True
    assert run.last["result"]["verify"]["warnings"] == []


def test_restored_privileges_work_for_plain_roles(prod, restored):
    _, tgt, _, _ = restored
    with prod.connect(tgt, autocommit=True) as conn:
        conn.execute(f"SET ROLE {OWNER}")
        # the foreign-key check runs as the tables' owner: it needs USAGE on the schema
        conn.execute("INSERT INTO public_r1.child VALUES (30, 2)")
        with pytest.raises(errors.ForeignKeyViolation):
            conn.execute("INSERT INTO public_r1.child VALUES (40, 9)")
        conn.execute(f"SET ROLE {READER}")
        assert one(conn, "SELECT public_r1.api(1)") == "one"   # SECURITY DEFINER + helper
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT public_r1.helper(1)")
        assert one(conn, "SELECT ten_r1.total()") == 42
        assert one(conn, "SELECT count(*) FROM ten_r1.rich") == 1
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("UPDATE ten_r1.acct SET balance = 0")
        conn.execute(f"SET ROLE {WRITER}")
        conn.execute("UPDATE ten_r1.acct SET balance = balance + 1 WHERE id = 1")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("UPDATE ten_r1.acct SET name = 'x'")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT ten_r1.total()")
        assert one(conn, "SELECT nextval('ten_r1.ids')") == 3
        conn.execute("RESET ROLE")
        # default privileges of the schema's owner apply to its new objects
        conn.execute(f"SET ROLE {OWNER}")
        conn.execute("CREATE TABLE ten_r1.later (id int)")
        conn.execute("RESET ROLE")
        assert one(conn, "SELECT has_table_privilege(%s, 'ten_r1.later', 'SELECT')",
                   (READER,)) is True


def test_production_default_privileges_do_not_leak_into_restored_objects(
        copyhost, prod, new_db, roles, tmp_path):
    """Production's own default privileges for the restoring role apply to every object
    pre-data creates; pg_dump writes nothing for an object whose ACL is the default,
    so without reconciling the restored objects got production's extra grants and
    lost PUBLIC's EXECUTE."""
    src, tgt = new_db(copyhost, "psrc"), new_db(prod, "ptgt")
    copyhost.execute(TENANT_SQL, src)
    prod.execute(fmt("""
        ALTER DEFAULT PRIVILEGES FOR ROLE {M} GRANT SELECT ON TABLES TO {W};
        ALTER DEFAULT PRIVILEGES FOR ROLE {M} GRANT USAGE ON SCHEMAS TO {R};
        ALTER DEFAULT PRIVILEGES FOR ROLE {M} REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
    """), tgt)
    with copyhost.connect(src) as conn:
        expected = effective_acl_rows(conn, "ten")
    run = from_copy(copyhost.dsn(src), prod.dsn(tgt), ["ten"], tmp_path / "a")
    assert run.returncode == 0, str(run)
    with prod.connect(tgt) as conn:
        assert effective_acl_rows(conn, "ten_r1") == expected
        assert one(conn, "SELECT has_function_privilege('public', 'ten_r1.span(int, int)', "
                         "'EXECUTE')") is True
    assert run.last["result"]["verify"]["warnings"] == []


def test_verify_fails_on_each_tampered_owner_or_privilege(copyhost, prod, restored):
    src, tgt, _, _ = restored
    source = Endpoint.from_dsn("source", copyhost.dsn(src))
    target = Endpoint.from_dsn("target", prod.dsn(tgt))
    targets = ["public" + SUFFIX, "ten" + SUFFIX]
    assert verify(source, target, targets, reporter=NullReporter())["ok"] is True
    with prod.connect(tgt, user=SUPERUSER, autocommit=True) as conn:   # W lacks CREATE
        conn.execute(fmt("""
            REVOKE USAGE ON SCHEMA public_r1 FROM PUBLIC;
            REVOKE UPDATE (balance) ON ten_r1.acct FROM {W};
            GRANT DELETE ON ten_r1.acct TO {R};
            ALTER FUNCTION ten_r1.total() OWNER TO {W};
            ALTER DEFAULT PRIVILEGES FOR ROLE {W} IN SCHEMA ten_r1
                REVOKE SELECT ON TABLES FROM {R};
        """))
    with pytest.raises(DataPlaneError) as info:
        verify(source, target, targets, reporter=NullReporter())
    assert info.value.reason == "VerifyFailed"
    found = {(m["kind"], m["schema"], m["object"])
             for m in info.value.report["mismatches"]}  # type: ignore[attr-defined]
    assert found == {
        ("privileges", "public_r1", "schema public_r1"),
        ("privileges", "ten_r1", "column ten_r1.acct.balance"),
        ("privileges", "ten_r1", "relation ten_r1.acct"),
        ("owner", "ten_r1", "routine ten_r1.total()"),
        # a new owner also becomes the grantor of the owner's grants
        ("privileges", "ten_r1", "routine ten_r1.total()"),
        ("default_privileges", "ten_r1", f"for role {WRITER} in schema ten_r1 on tables"),
    }, info.value.message
    message = info.value.message
    assert "USAGE to PUBLIC (granted by pg_database_owner): missing in target" in message
    assert f"UPDATE to {WRITER} (granted by {OWNER}): missing in target" in message
    assert f"DELETE to {READER} (granted by {OWNER}): only in target" in message
    assert f"owner: source {OWNER}, target {WRITER}" in message


def test_a_role_missing_in_production_fails_before_anything_changes(copyhost, prod, new_db,
                                                                     roles, tmp_path):
    src, tgt = new_db(copyhost, "psrc"), new_db(prod, "ptgt")
    copyhost.execute(fmt("CREATE ROLE {G}"))
    copyhost.execute(TENANT_SQL + fmt("GRANT SELECT ON ten.acct TO {G};"), src)
    run = from_copy(copyhost.dsn(src), prod.dsn(tgt), ["ten"], tmp_path / "a")
    assert run.returncode == 1, str(run)
    assert run.last["reason"] == "MissingRoles", str(run)
    assert GONE in run.last["message"] and "nothing was changed" in run.last["message"]
    with prod.connect(tgt) as conn:
        assert one(conn, "SELECT count(*) FROM pg_namespace WHERE nspname = 'ten_r1'") == 0
    with copyhost.connect(src) as conn:   # the copy was not renamed either
        assert one(conn, "SELECT count(*) FROM pg_namespace WHERE nspname = 'ten'") == 1


# -- grantors ------------------------------------------------------------------------

GRANTOR_SQL = fmt("""
CREATE SCHEMA gx AUTHORIZATION {O};
GRANT USAGE ON SCHEMA gx TO {W}, {R};
SET ROLE {O};
CREATE TABLE gx.t (id int);
CREATE TYPE gx.span AS RANGE (subtype = int4);
GRANT SELECT ON gx.t TO {W} WITH GRANT OPTION;
GRANT USAGE ON TYPE gx.span_multirange TO {W} WITH GRANT OPTION;
RESET ROLE;
""")


def test_verify_grantor_difference_is_a_warning_only_when_it_cannot_be_reproduced(
        copyhost, prod, new_db, roles):
    """The same grant by another grantor: a failure when the verifying (restoring) role
    could have acted as the copy's grantor, a warning with the reason when not."""
    src, tgt = new_db(copyhost, "gsrc"), new_db(prod, "gtgt")
    copyhost.execute(GRANTOR_SQL + fmt("SET ROLE {W}; GRANT SELECT ON gx.t TO {R};"), src)
    prod.execute(GRANTOR_SQL + fmt("SET ROLE {O}; GRANT SELECT ON gx.t TO {R};"), tgt)
    source = Endpoint.from_dsn("source", copyhost.dsn(src))
    as_owner = Endpoint.from_dsn("target", prod.dsn(tgt, user=OWNER, password=OWNER_PASSWORD))
    report = verify(source, as_owner, ["gx"], reporter=NullReporter())
    assert report["ok"] is True
    assert len(report["warnings"]) == 1, report["warnings"]
    assert report["warnings"][0]["kind"] == "privileges"
    report["warnings"] = [w["message"] for w in report["warnings"]]
    assert "relation gx.t" in report["warnings"][0]
    assert f"granted by {WRITER} in the source, by {OWNER} in the target" in \
        report["warnings"][0]
    assert f"{OWNER} cannot act as {WRITER}" in report["warnings"][0]
    with pytest.raises(DataPlaneError) as info:   # master, a member of W, could have granted it as W
        verify(source, Endpoint.from_dsn("target", prod.dsn(tgt)), ["gx"],
               reporter=NullReporter())
    assert "relation gx.t" in info.value.message and "granted by" in info.value.message


def test_non_superuser_restore_grants_as_closely_as_postgresql_allows(
        copyhost, prod, new_db, roles, tmp_path):
    """Restoring as the schema's owner (no superuser, as on RDS). pg_dump would replay a
    grant made by another role under SET SESSION AUTHORIZATION, which fails for anyone
    but a superuser; instead it is made by the owner, and so is a multirange grant
    (pg_dump has none); the other role's default privileges cannot be set at all.
    The run succeeds and verify says all three, with the reason."""
    src, tgt = new_db(copyhost, "gsrc"), new_db(prod, "gtgt")
    copyhost.execute(GRANTOR_SQL + fmt("""
        ALTER DEFAULT PRIVILEGES FOR ROLE {W} IN SCHEMA gx GRANT SELECT ON TABLES TO {R};
        SET ROLE {W};
        GRANT SELECT ON gx.t TO {R};
        GRANT USAGE ON TYPE gx.span_multirange TO {R};
    """), src)
    for cluster, db in ((copyhost, src), (prod, tgt)):
        cluster.execute(f"GRANT CREATE ON DATABASE {db} TO {OWNER}")
    run = from_copy(copyhost.dsn(src, user=OWNER, password=OWNER_PASSWORD),
                    prod.dsn(tgt, user=OWNER, password=OWNER_PASSWORD), ["gx"], tmp_path / "a")
    assert run.returncode == 0, str(run)
    warnings = [w["message"] for w in run.last["result"]["verify"]["warnings"]]
    assert [w.split(": ")[0] for w in warnings] == [
        f"gx_r1 for role {WRITER} in schema gx_r1 on tables", "gx_r1 relation gx_r1.t",
        "gx_r1 type gx_r1.span_multirange"], warnings
    assert f"{OWNER} cannot set default privileges for role {WRITER}" in warnings[0]
    assert f"SELECT to {READER} granted by {WRITER} in the source, by {OWNER} in the " \
           f"target ({OWNER} cannot act as {WRITER})" in warnings[1]
    assert f"USAGE to {READER} granted by {WRITER}" in warnings[2]
    assert run.last["result"]["warnings"][-3:] == warnings
    with prod.connect(tgt) as conn:
        assert one(conn, "SELECT relacl::text FROM pg_class WHERE oid = 'gx_r1.t'::regclass") \
            == f"{{{OWNER}=arwdDxt/{OWNER},{WRITER}=r*/{OWNER},{READER}=r/{OWNER}}}"
        assert one(conn, "SELECT typacl::text FROM pg_type "
                         "WHERE oid = 'gx_r1.span_multirange'::regtype") == \
            f"{{=U/{OWNER},{OWNER}=U/{OWNER},{WRITER}=U*/{OWNER},{READER}=U/{OWNER}}}"
