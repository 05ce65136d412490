"""Casts that involve a restored schema (ddl_job/casts.py).

A cast belongs to no schema, so `pg_dump -n` leaves it out even when its
source type, target type or function is the schema's: without casts.py the
restore lost them. Here: casts with a function and WITH INOUT,
explicit/assignment/implicit, between a restored type and a built-in type
in both directions, one with a comment, one used by a view and a CHECK (so
it must exist in the middle of pre-data), and one between two built-in
types whose function is the schema's, which production already has (its
own: kept, with a warning). Restored as the non-superuser `master` with the
real `from-copy` CLI, used in production, compared by verify, and dropped
with the schema by a failed restore and by `drop`. What only a superuser
can make (a cast WITHOUT FUNCTION, a base type) is refused up front,
naming each (`superuser_only`).

Real PostgreSQL: the source copy on `copyhost`, production on `prod`.
"""

from __future__ import annotations

import psycopg
import pytest
from support.ddl_job_cli import run_ddl_job
from test_verify_drop import _endpoint, _mark, _run

from ddl_job import marker
from ddl_job.drop import drop_restored
from ddl_job.errors import DataPlaneError
from ddl_job.progress import NullReporter
from ddl_job.verify import verify
from pg_schema_restore.local.cluster import SUPERUSER

SHARED_SQL = """
CREATE SCHEMA shared;
CREATE TABLE shared.countries (code text PRIMARY KEY);
INSERT INTO shared.countries VALUES ('FR'), ('ZZ');
"""

# Made by `master` (it owns the types its casts convert).
SCHEMA_SQL = """
CREATE SCHEMA s;
CREATE TYPE s.mood AS ENUM ('sad', 'ok', 'happy');
CREATE FUNCTION s.mood_rank(s.mood) RETURNS integer LANGUAGE sql IMMUTABLE
    AS 'SELECT array_position(enum_range(NULL::s.mood), $1)';
CREATE CAST (s.mood AS integer) WITH FUNCTION s.mood_rank(s.mood) AS ASSIGNMENT;
CREATE FUNCTION s.mood_of(integer) RETURNS s.mood LANGUAGE sql IMMUTABLE
    AS 'SELECT (enum_range(NULL::s.mood))[$1]';
CREATE CAST (integer AS s.mood) WITH FUNCTION s.mood_of(integer);
COMMENT ON CAST (integer AS s.mood) IS 'the n-th mood';
CREATE CAST (text AS s.mood) WITH INOUT AS IMPLICIT;
CREATE CAST (s.mood AS text) WITH INOUT AS ASSIGNMENT;
CREATE FUNCTION s.int8_bytes(bigint) RETURNS bytea LANGUAGE sql IMMUTABLE
    AS 'SELECT int8send($1)';
CREATE TABLE s.t (id int PRIMARY KEY, m s.mood CHECK (m::integer < 50),
                  country text REFERENCES shared.countries);
INSERT INTO s.t VALUES (1, 'ok', 'FR'), (2, 'happy', 'ZZ');
CREATE VIEW s.v AS SELECT id, m::integer AS rank FROM s.t;
"""
# Between built-in types: only their owner (the superuser) may make it.
BUILTIN_CAST_SQL = "CREATE CAST (bigint AS bytea) WITH FUNCTION s.int8_bytes(bigint)"

# Every user cast, as production sees it (types and functions qualified).
_CASTS_SQL = """
SELECT format('(%s AS %s)', format_type(castsource, NULL), format_type(casttarget, NULL)),
       castfunc::regprocedure::text, castmethod, castcontext, obj_description(oid, 'pg_cast')
FROM pg_cast WHERE oid >= 16384 ORDER BY 1
"""

RESTORED = {
    ("(integer AS s_r1.mood)", "s_r1.mood_of(integer)", "f", "e", "the n-th mood"),
    ("(s_r1.mood AS integer)", "s_r1.mood_rank(s_r1.mood)", "f", "a", None),
    ("(s_r1.mood AS text)", "-", "i", "a", None),
    ("(text AS s_r1.mood)", "-", "i", "i", None),
}


def _casts(conn: psycopg.Connection) -> set[tuple]:
    conn.execute("SET search_path = pg_catalog")
    return set(conn.execute(_CASTS_SQL).fetchall())


@pytest.fixture
def databases(copyhost, prod, new_db):
    """(source copy, production): production holds the schema `s` itself, so
    its own cast (bigint AS bytea) exists there already."""
    src, tgt = new_db(copyhost, "castsrc"), new_db(prod, "casttgt")
    for cluster, db in ((copyhost, src), (prod, tgt)):
        cluster.execute(SHARED_SQL + SCHEMA_SQL, db)
        cluster.execute(BUILTIN_CAST_SQL, db, user=SUPERUSER)
    return src, tgt


def _from_copy(copyhost, prod, src: str, tgt: str, artifacts, *extra: str):
    return run_ddl_job(["from-copy", "--suffix", "_r1", "--disposable-source", "--schema", "s",
                        "--restore-id", "casts1", "--artifacts", str(artifacts), *extra],
                       source=copyhost.dsn(src), target=prod.dsn(tgt), timeout=600)


@pytest.mark.e2e
def test_from_copy_restores_casts_that_work(copyhost, prod, databases, tmp_path):
    src, tgt = databases
    with prod.connect(tgt) as conn:
        before = _casts(conn)
    run = _from_copy(copyhost, prod, src, tgt, tmp_path / "artifacts")
    assert run.returncode == 0, str(run)
    result = run.last["result"]
    assert result["verify"]["ok"] is True, str(run)
    skipped = [e for e in run.find("warning") if e.get("cast")]
    assert [e["cast"] for e in skipped] == ["(bigint AS bytea)"], str(run)
    assert any("(bigint AS bytea)" in w for w in result["warnings"]), result["warnings"]

    with prod.connect(tgt) as conn:
        assert _casts(conn) - before == RESTORED
        assert before <= _casts(conn)   # production's own (bigint AS bytea) kept
        one = lambda q: conn.execute(q).fetchone()[0]
        assert one("SELECT 2::s_r1.mood::text") == "ok"                     # explicit
        assert one("SELECT s_r1.mood_rank('sad'::text)") == 1               # implicit, inout
        assert one("SELECT 'happy'::s_r1.mood::integer") == 3
        conn.execute("CREATE TEMP TABLE ranks (r int)")
        conn.execute("INSERT INTO ranks SELECT m FROM s_r1.t WHERE id = 2")  # assignment
        assert one("SELECT r FROM ranks") == 3
        assert conn.execute("SELECT * FROM s_r1.v ORDER BY id").fetchall() == \
            [(1, 2), (2, 3)]
        assert one("SELECT 7::bigint::bytea") == b"\x00" * 7 + b"\x07"

    # verify compares casts: one dropped in production is a difference
    _run(prod, tgt, "DROP CAST (s_r1.mood AS integer)")
    with pytest.raises(DataPlaneError) as info:
        verify(_endpoint(copyhost, src, "source"), _endpoint(prod, tgt, "target"), ["s_r1"],
               reporter=NullReporter())
    assert "casts: source 5, target 3; missing in target: (s_r1.mood AS integer)" in \
        info.value.message


@pytest.mark.e2e
def test_failed_restore_drops_its_casts(copyhost, prod, databases, tmp_path):
    """Post-data fails (production no longer knows country ZZ, `--invalid-foreign-keys
    fail`) after pre-data created the casts: the drop takes them with the schema."""
    src, tgt = databases
    _run(prod, tgt, "DELETE FROM s.t WHERE country = 'ZZ'; "
                    "DELETE FROM shared.countries WHERE code = 'ZZ'")
    with prod.connect(tgt) as conn:
        before = _casts(conn)
    run = _from_copy(copyhost, prod, src, tgt, tmp_path / "artifacts",
                     "--invalid-foreign-keys", "fail")
    assert run.returncode == 1, str(run)
    assert run.last["reason"] == "ForeignKeyViolation", str(run)
    assert len(run.find("cast_created")) == len(RESTORED), str(run)
    assert [e.get("schemas") for e in run.find("dropped_after_failure")] == [["s_r1"]], str(run)
    with prod.connect(tgt) as conn:
        assert _casts(conn) == before


# -- drop: a cast on a restored type or function is the restore's ------------

RESTORE_ID = "casts2"


def test_drop_takes_casts_on_restored_types_and_functions(copyhost, new_db):
    """The casts depend normally ('n') on the schema's types and functions and
    belong to no schema: DROP SCHEMA … CASCADE removes them, and they are the
    restore's, not outside objects that refuse the drop. Production's own
    cast between built-in types stays."""
    db = new_db(copyhost, "castdrop")
    _run(copyhost, db, SHARED_SQL + """
        CREATE FUNCTION public.bool_bytes(boolean) RETURNS bytea LANGUAGE sql IMMUTABLE
            AS 'SELECT int4send($1::int4)';
    """)
    # a cast between built-in types: only their owner (the superuser) may make it
    _run(copyhost, db, "CREATE CAST (boolean AS bytea) WITH FUNCTION public.bool_bytes(boolean)",
         user=SUPERUSER)
    with copyhost.connect(db) as conn:
        before = _casts(conn)
    with copyhost.connect(db, autocommit=True) as conn:
        conn.execute(SCHEMA_SQL)
        _mark(conn, "s", marker.with_marker(None, RESTORE_ID, "s_src"))
    _run(copyhost, db, BUILTIN_CAST_SQL, user=SUPERUSER)
    with copyhost.connect(db) as conn:
        assert len(_casts(conn) - before) == len(RESTORED) + 1

    assert drop_restored(_endpoint(copyhost, db, "target"), RESTORE_ID,
                         reporter=NullReporter()) == ["s"]
    with copyhost.connect(db) as conn:
        assert _casts(conn) == before
        assert conn.execute("SELECT true::bytea").fetchone() == (b"\x00\x00\x00\x01",)


# -- what only a superuser can make ------------------------------------------------

# A range master could own; only its binary-coercible cast needs a superuser.
CAST_SQL = """
CREATE SCHEMA su;
CREATE TYPE su.span AS RANGE (subtype = int4);
CREATE CAST (su.span AS bytea) WITHOUT FUNCTION;
CREATE TABLE su.t (id int, s su.span);
"""
# `su.tt` is a text-like base type (PostgreSQL's create_cast regression script).
BASE_TYPE_SQL = """
CREATE TYPE su.tt;
CREATE FUNCTION su.tt_in(cstring) RETURNS su.tt AS 'textin' LANGUAGE internal STRICT IMMUTABLE;
CREATE FUNCTION su.tt_out(su.tt) RETURNS cstring AS 'textout' LANGUAGE internal STRICT
    IMMUTABLE;
CREATE TYPE su.tt (internallength = variable, input = su.tt_in, output = su.tt_out,
                   alignment = int4);
CREATE CAST (text AS su.tt) WITHOUT FUNCTION AS IMPLICIT;
"""

# PostgreSQL's own percentile state functions: an `internal` state.
INTERNAL_AGGREGATE_SQL = """
CREATE AGGREGATE su.med(numeric) (SFUNC = pg_catalog.ordered_set_transition,
    STYPE = internal, FINALFUNC = pg_catalog.numeric_avg);
"""


@pytest.mark.e2e
@pytest.mark.parametrize("objects", ["base type and casts", "cast only", "shell type",
                                     "internal aggregate state"])
def test_superuser_only_casts_and_types_refused_up_front(copyhost, prod, new_db, tmp_path,
                                                         objects):
    """As `master`, a cast WITHOUT FUNCTION (binary coercible) cannot be
    created (pre-data skipped it with a warning, then verify failed after the
    copy); nor can a base type with `internal` functions. The `rights` step
    refuses them before extraction, naming each; production unchanged."""
    src, tgt = new_db(copyhost, "susrc"), new_db(prod, "sutgt")
    script = CAST_SQL + {"base type and casts": BASE_TYPE_SQL,
                         "shell type": "CREATE TYPE su.shell;",
                         "internal aggregate state": INTERNAL_AGGREGATE_SQL}.get(objects, "")
    copyhost.execute(script, src, user=SUPERUSER)
    run = run_ddl_job(["from-copy", "--suffix", "_r1", "--disposable-source", "--schema", "su",
                       "--restore-id", "casts3", "--artifacts", str(tmp_path / "a")],
                      source=copyhost.dsn(src), target=prod.dsn(tgt), timeout=600)
    assert run.returncode == 1, str(run)
    assert run.last["reason"] == "SuperuserRequired", str(run)
    message = run.last["message"]
    assert "cast (su.span AS pg_catalog.bytea): a cast WITHOUT FUNCTION" in message, message
    if objects == "internal aggregate state":   # pre-data failed on it
        assert "aggregate su.med(numeric): an aggregate whose transition type is internal" \
            in message, message
    if objects == "shell type":   # pre-data failed on it: `must be superuser`
        assert "type su.shell: a shell type" in message, message
    if objects == "base type and casts":
        assert "cast (pg_catalog.text AS su.tt): a cast WITHOUT FUNCTION" in message, message
        assert "type su.tt: a base type" in message, message
    assert [e["step"] for e in run.find("started")] == ["rights"], str(run)
    with prod.connect(tgt) as conn:
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'su%'"
                            ).fetchone() == (0,)
