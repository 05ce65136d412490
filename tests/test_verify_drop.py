"""verify (source vs target comparison) and drop (marker-scoped failure cleanup).

Real PostgreSQL: source and target are two databases on `copyhost`; the
target starts as an exact clone of the source (CREATE DATABASE … TEMPLATE),
then each test makes one precise difference and checks what verify says.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import subprocess

import psycopg
import pytest
from psycopg import sql

from ddl_job import marker
from ddl_job.conn import Endpoint
from ddl_job.drop import drop_restored
from ddl_job.errors import DataPlaneError, InvalidRequest, RestoreError
from ddl_job.progress import NullReporter, Reporter
from ddl_job.verify import verify
from pg_schema_restore.local.cluster import MASTER, SUPERUSER, server_bindir

RICH_SCHEMA = """
CREATE SCHEMA s1;
CREATE SCHEMA "Mixed Case";
CREATE SCHEMA other;
CREATE TABLE other.countries (code text PRIMARY KEY);
INSERT INTO other.countries VALUES ('fr'), ('de');
CREATE TYPE s1.mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN s1.posint AS int CHECK (VALUE > 0);
CREATE TYPE s1.pair AS (a int, b text);
CREATE TABLE s1.customers (
    id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE CHECK (name <> ''),
    mood s1.mood DEFAULT 'ok',
    qty s1.posint,
    p s1.pair,
    tags text[],
    span int4range,
    country text REFERENCES other.countries(code),
    double_qty int GENERATED ALWAYS AS (qty * 2) STORED,
    EXCLUDE USING gist (span WITH &&)
);
CREATE TABLE s1.orders (
    id serial PRIMARY KEY,
    customer_id int REFERENCES s1.customers(id),
    amount numeric DEFAULT 0
);
CREATE INDEX orders_amount_idx ON s1.orders (amount) WHERE amount > 0;
CREATE INDEX orders_expr_idx ON s1.orders ((amount * 2));
CREATE INDEX customers_tags_gin ON s1.customers USING gin (tags);
CREATE TABLE s1.events (id int, at date NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE s1.events_2024 PARTITION OF s1.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE s1.events_2025 PARTITION OF s1.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE s1.base (id int);
CREATE TABLE s1.child (extra text) INHERITS (s1.base);
CREATE SEQUENCE s1.counter;
CREATE FUNCTION s1.touch() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN NEW.amount := coalesce(NEW.amount, 0); RETURN NEW; END$$;
CREATE TRIGGER orders_touch BEFORE INSERT ON s1.orders FOR EACH ROW EXECUTE FUNCTION s1.touch();
CREATE PROCEDURE s1.noop() LANGUAGE sql AS $$SELECT 1$$;
CREATE VIEW s1.big_orders AS SELECT * FROM s1.orders WHERE amount > 10;
ALTER TABLE s1.orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY orders_positive ON s1.orders USING (amount >= 0);
CREATE TABLE "Mixed Case"."Odd Table" ("Id" int PRIMARY KEY, v text);

INSERT INTO s1.customers (name, qty, tags, span, country) VALUES
  ('ann', 1, '{a}', '[1,2)', 'fr'), ('bob', 2, '{b}', '[3,4)', 'de'), ('cy', 3, NULL, NULL, NULL);
INSERT INTO s1.orders (customer_id, amount) VALUES (1, 5), (1, 20), (2, 30), (3, 0), (3, 11);
INSERT INTO s1.events VALUES (1, '2024-05-01'), (2, '2025-05-01'), (3, '2025-06-01');
INSERT INTO s1.base VALUES (1), (2);
INSERT INTO s1.child VALUES (3, 'x');
INSERT INTO "Mixed Case"."Odd Table" VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd');
SELECT nextval('s1.counter') FROM generate_series(1, 3);
CREATE MATERIALIZED VIEW s1.order_totals AS
  SELECT customer_id, sum(amount) AS total FROM s1.orders GROUP BY customer_id;
"""
SCHEMAS = ["s1", "Mixed Case"]


def _endpoint(cluster, db: str, role: str) -> Endpoint:
    return Endpoint.from_dsn(role, cluster.dsn(db))


def _run(cluster, db: str, statement: str, user: str | None = None) -> None:
    with cluster.connect(db, user=user, autocommit=True) as conn:
        conn.execute(statement)


@pytest.fixture(scope="module")
def rich_source(copyhost):
    name = f"verify_src_{os.getpid()}"
    copyhost.create_database(name)
    _run(copyhost, name, RICH_SCHEMA)
    yield name
    with copyhost.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


_clones = itertools.count()


@pytest.fixture
def pair(copyhost, rich_source):
    """(source endpoint, target endpoint, target db name): target = clone of source."""
    target = f"verify_tgt_{os.getpid()}_{next(_clones)}"
    copyhost.create_database(target, template=rich_source)
    yield (_endpoint(copyhost, rich_source, "source"), _endpoint(copyhost, target, "target"),
           target)
    with copyhost.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(target)))


def _failure(source, target) -> DataPlaneError:
    with pytest.raises(DataPlaneError) as info:
        verify(source, target, SCHEMAS, reporter=NullReporter())
    assert info.value.reason == "VerifyFailed"
    return info.value


# -- verify ------------------------------------------------------------------

def test_verify_identical_schemas_pass(pair):
    source, target, _ = pair
    stream = io.StringIO()
    report = verify(source, target, SCHEMAS, reporter=Reporter("verify", stream))
    assert report["ok"] is True and report["mismatches"] == []
    # customers, orders, 2 partitions, base, child, "Odd Table"
    assert report["tables"] == 7
    assert report["rows"] == 3 + 5 + 3 + 2 + 1 + 4
    assert report["sequences"] == 3        # identity, serial, counter
    assert report["matviews"] == 1
    s1 = report["objects"]["s1"]
    assert s1["tables"] == 7               # partitioned parent, not "Odd Table"
    assert s1["views"] == 1 and s1["materialized_views"] == 1
    assert s1["triggers"] == 1 and s1["policies"] == 1
    assert s1["functions"] == 1 and s1["procedures"] == 1
    assert s1["enums"] == 1 and s1["domains"] == 1 and s1["composite_types"] == 1
    assert s1["constraints_p"] == 2 and s1["constraints_f"] == 2
    assert s1["constraints_x"] == 1 and s1["constraints_u"] == 1
    assert s1["constraints_c"] == 2        # table CHECK + domain CHECK
    assert s1["indexes"] == 7              # 2 PKs, unique, exclusion, partial, expr, gin
    assert report["objects"]["Mixed Case"]["tables"] == 1
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert events[0]["event"] == "verify_started"
    assert events[-1] == {**events[-1], "event": "verify_finished", "ok": True}
    assert {e["side"] for e in events if e["event"] == "verify_read"} == {"source", "target"}


def test_verify_passes_after_a_real_dump_and_restore(copyhost, rich_source, new_db, tmp_path):
    """No false alarm on what pg_dump/pg_restore really produce (names, order, clones)."""
    db = new_db(copyhost, "verify_rt")
    _run(copyhost, db, "CREATE SCHEMA other; CREATE TABLE other.countries (code text PRIMARY KEY);"
                       "INSERT INTO other.countries VALUES ('fr'), ('de')")
    source = _endpoint(copyhost, rich_source, "source")
    target = _endpoint(copyhost, db, "target")
    bindir = server_bindir()
    dump = tmp_path / "rich.dump"
    subprocess.run([str(bindir / "pg_dump"), "-Fc", "--strict-names", "-n", "s1",
                    "-n", '"Mixed Case"', "-f", str(dump)],
                   env=source.libpq_env(), check=True, capture_output=True)
    subprocess.run([str(bindir / "pg_restore"), "--exit-on-error", "-d", db, str(dump)],
                   env=target.libpq_env(), check=True, capture_output=True)
    report = verify(source, target, SCHEMAS, reporter=NullReporter())
    assert report["ok"] and report["rows"] == 18 and report["objects"]["s1"]["indexes"] == 7


def test_verify_row_deleted_in_target(pair, copyhost):
    source, target, tdb = pair
    _run(copyhost, tdb, "DELETE FROM s1.orders WHERE id = 4")
    error = _failure(source, target)
    assert "s1.orders rows: source 5, target 4" in error.message
    report = error.report  # type: ignore[attr-defined]
    assert report["ok"] is False
    assert [(m["kind"], m["schema"], m["object"], m["source"], m["target"])
            for m in report["mismatches"]] == [("rows", "s1", "orders", 5, 4)]


def test_verify_quotes_mixed_case_names(pair, copyhost):
    source, target, tdb = pair
    _run(copyhost, tdb, 'DELETE FROM "Mixed Case"."Odd Table" WHERE "Id" = 2')
    error = _failure(source, target)
    assert error.message.splitlines()[1] == '"Mixed Case"."Odd Table" rows: source 4, target 3'


def test_verify_missing_index(pair, copyhost):
    source, target, tdb = pair
    _run(copyhost, tdb, "DROP INDEX s1.orders_amount_idx")
    error = _failure(source, target)
    lines = error.message.splitlines()[1:]
    assert lines == ["s1 indexes: source 7, target 6; missing in target: orders_amount_idx"]


def test_verify_missing_table_and_extra_table(pair, copyhost):
    source, target, tdb = pair
    _run(copyhost, tdb, "DROP TABLE s1.child; CREATE TABLE s1.stray (x int); "
                        "INSERT INTO s1.stray VALUES (1), (2)")
    message = _failure(source, target).message
    assert "s1 tables: source 7, target 7; missing in target: child; only in target: stray" \
        in message
    assert "s1.child: table missing in target (source 1 rows)" in message
    assert "s1.stray: table missing in source (target 2 rows)" in message
    assert "s1 columns: source 26, target 25" in message   # child's 2 columns, stray's 1


@pytest.mark.parametrize("change, expected", [
    ("SELECT setval('s1.counter', 100)",
     "s1.counter sequence value: source 3 (called), target 100 (called)"),
    ("SELECT setval('s1.counter', 3, false)",
     "s1.counter sequence value: source 3 (called), target 3 (not called)"),
])
def test_verify_sequence_value_differs(pair, copyhost, change, expected):
    source, target, tdb = pair
    _run(copyhost, tdb, change)
    assert _failure(source, target).message.splitlines()[1:] == [expected]


def test_verify_matview_not_populated_in_target(pair, copyhost):
    source, target, tdb = pair
    _run(copyhost, tdb, "REFRESH MATERIALIZED VIEW s1.order_totals WITH NO DATA")
    assert _failure(source, target).message.splitlines()[1:] == [
        "s1.order_totals materialized view rows: source 3, target not populated"]


def test_verify_matview_with_other_rows(pair, copyhost):
    source, target, tdb = pair
    # base table rows restored, but the matview was refreshed before the copy ended
    _run(copyhost, tdb, "CREATE TEMP TABLE keep AS SELECT * FROM s1.orders; "
                        "DELETE FROM s1.orders WHERE customer_id = 3; "
                        "REFRESH MATERIALIZED VIEW s1.order_totals; "
                        "INSERT INTO s1.orders SELECT * FROM keep WHERE customer_id = 3")
    assert _failure(source, target).message.splitlines()[1:] == [
        "s1.order_totals materialized view rows: source 3, target 2"]


@pytest.mark.parametrize("change, expected", [
    ("CREATE OR REPLACE VIEW s1.big_orders AS SELECT * FROM s1.orders WHERE amount > 11",
     "s1 views big_orders: definition differs"),
    ("ALTER TABLE s1.customers ALTER COLUMN mood SET DEFAULT 'sad'",
     "s1 columns customers.mood: definition differs"),
    ("CREATE OR REPLACE FUNCTION s1.touch() RETURNS trigger LANGUAGE plpgsql AS "
     "$$BEGIN RETURN NEW; END$$",
     "s1 functions touch(): definition differs"),
    ("ALTER POLICY orders_positive ON s1.orders USING (amount > 0)",
     "s1 policies orders.orders_positive: definition differs"),
    ("ALTER TABLE s1.orders DISABLE TRIGGER orders_touch",
     "s1 triggers orders.orders_touch: definition differs"),
])
def test_verify_definition_differs(pair, copyhost, change, expected):
    source, target, tdb = pair
    _run(copyhost, tdb, change)
    lines = _failure(source, target).message.splitlines()[1:]
    assert len(lines) == 1 and lines[0].startswith(expected), lines


def test_verify_missing_schema(pair, copyhost):
    source, target, tdb = pair
    _run(copyhost, tdb, 'DROP SCHEMA "Mixed Case" CASCADE')
    message = _failure(source, target).message
    assert 'schema "Mixed Case": missing in target' in message
    assert '"Mixed Case"."Odd Table": table missing in target (source 4 rows)' in message


def test_verify_fails_on_a_schema_missing_on_both_sides(pair):
    source, target, _ = pair
    with pytest.raises(DataPlaneError) as info:
        verify(source, target, ["s1", "s1_typo"], reporter=NullReporter())
    assert info.value.message.splitlines()[1:] == [
        "schema s1_typo: missing in source and target"]


def test_verify_compares_injection_shaped_names_as_names(pair, copyhost):
    """A legal name that reads like SQL is only ever a quoted identifier."""
    source, target, tdb = pair
    name = 's1"; DROP SCHEMA s1 CASCADE; --'
    _run(copyhost, tdb, sql.SQL("CREATE SCHEMA {}; CREATE TABLE {} (id int)").format(
        sql.Identifier(name), sql.Identifier(name, "t")).as_string(None))
    with pytest.raises(DataPlaneError) as info:
        verify(source, target, [name], reporter=NullReporter())
    lines = info.value.message.splitlines()[1:]
    assert lines[0] == 'schema "s1""; DROP SCHEMA s1 CASCADE; --": missing in source'
    assert '"s1""; DROP SCHEMA s1 CASCADE; --".t: table missing in source (target 0 rows)' \
        in lines
    assert verify(source, target, SCHEMAS, reporter=NullReporter())["ok"]   # s1 untouched


def test_verify_refuses_names_postgres_refuses(pair):
    source, target, _ = pair
    with pytest.raises(InvalidRequest) as info:
        verify(source, target, ["pg_catalog"], reporter=NullReporter())
    assert info.value.reason == "InvalidSchemaName"


# -- drop --------------------------------------------------------------------

def _mark(conn: psycopg.Connection, schema: str, comment: str) -> None:
    conn.execute(sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
        sql.Identifier(schema), sql.Literal(comment)))


_CHECKSUM_QUERIES = [
    "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %(s)s",
    """SELECT c.relname, c.relkind, obj_description(c.oid, 'pg_class') FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %(s)s ORDER BY 1""",
    """SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
              pg_get_expr(d.adbin, d.adrelid)
       FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
       WHERE n.nspname = %(s)s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 1, 2""",
    """SELECT co.conname, pg_get_constraintdef(co.oid) FROM pg_constraint co
       JOIN pg_namespace n ON n.oid = co.connamespace WHERE n.nspname = %(s)s ORDER BY 1""",
    """SELECT c.relname, pg_get_indexdef(c.oid) FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = %(s)s AND c.relkind = 'i' ORDER BY 1""",
    """SELECT c.relname, pg_get_viewdef(c.oid) FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = %(s)s AND c.relkind IN ('v', 'm') ORDER BY 1""",
    """SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid) FROM pg_proc p
       JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %(s)s ORDER BY 1""",
    """SELECT t.typname, t.typtype FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
       WHERE n.nspname = %(s)s ORDER BY 1""",
    """SELECT c.relname, tg.tgname, pg_get_triggerdef(tg.oid) FROM pg_trigger tg
       JOIN pg_class c ON c.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = %(s)s ORDER BY 1, 2""",
]


def _checksum(conn: psycopg.Connection, schema: str) -> str:
    """Catalog definitions and table contents of one schema, hashed."""
    digest = hashlib.sha256()
    for query in _CHECKSUM_QUERIES:
        digest.update(repr(conn.execute(query, {"s": schema}).fetchall()).encode())
    tables = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind = 'r' ORDER BY 1", (schema,)).fetchall()
    for (table,) in tables:
        row = conn.execute(sql.SQL(
            "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
            "FROM {} t").format(sql.Identifier(schema, table))).fetchone()
        digest.update(f"{table}:{row}".encode())
    return digest.hexdigest()


def _schemas(conn: psycopg.Connection) -> set[str]:
    return {r[0] for r in conn.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname !~ '^(pg_|information_schema)'")}


@pytest.fixture
def drop_db(copyhost, new_db):
    """A target database holding schemas restored by 'A', by 'B', and production ones."""
    db = new_db(copyhost, "drop")
    with copyhost.connect(db, autocommit=True) as conn:
        conn.execute("""
            CREATE SCHEMA ra;
            CREATE TYPE ra.kind AS ENUM ('x', 'y');
            CREATE SEQUENCE ra.ids;
            CREATE TABLE ra.t (id int PRIMARY KEY, v text);
            INSERT INTO ra.t VALUES (1, 'one'), (2, 'two');
            CREATE FUNCTION ra.stamp() RETURNS trigger LANGUAGE plpgsql AS
              $$BEGIN RETURN NEW; END$$;
            CREATE VIEW ra.v AS SELECT * FROM ra.t;
            CREATE TABLE ra.ev (id int, at int) PARTITION BY RANGE (at);
            CREATE TABLE ra.ev1 PARTITION OF ra.ev FOR VALUES FROM (0) TO (100);
            CREATE MATERIALIZED VIEW ra.mv AS SELECT count(*) AS n FROM ra.t;
            CREATE SCHEMA "Ra Two";
            CREATE TABLE "Ra Two".t2 (id int REFERENCES ra.t(id));
            CREATE VIEW "Ra Two".v2 AS SELECT t.id FROM ra.t JOIN "Ra Two".t2 USING (id);
            CREATE SCHEMA rb;
            CREATE TABLE rb.t (id int PRIMARY KEY, v text);
            INSERT INTO rb.t VALUES (1, 'kept');
            CREATE SCHEMA plain;
            CREATE TABLE plain.t (id int, note text DEFAULT 'x');
            INSERT INTO plain.t VALUES (7, 'prod');
            CREATE SCHEMA ra_later;
            CREATE TABLE ra_later.t (id int);
            CREATE SCHEMA not_last;
            CREATE SCHEMA "odd; --name";
            CREATE SCHEMA prod;
            CREATE TABLE prod.accounts (id int PRIMARY KEY);
            INSERT INTO prod.accounts VALUES (10), (20);
        """)
        # a pg_ name takes a superuser (setup only); the master user owns it
        with copyhost.connect(db, user=SUPERUSER, autocommit=True) as su:
            su.execute("SET allow_system_table_mods = on")
            su.execute(sql.SQL("CREATE SCHEMA pg_copied AUTHORIZATION {}").format(
                sql.Identifier(MASTER)))
        _mark(conn, "ra", marker.with_marker(None, "ra1", "ra_src"))
        _mark(conn, "Ra Two", marker.with_marker("tenant two\nsecond line", "ra1", "Ra Src"))
        _mark(conn, "rb", marker.with_marker(None, "rb1", "rb_src"))
        _mark(conn, "ra_later", marker.with_marker(None, "ra12", "ra_src"))
        _mark(conn, "not_last", marker.with_marker(None, "ra1", "x") + "\nedited by a human")
        _mark(conn, "odd; --name", marker.with_marker(None, "ra1", "odd; --"))
        _mark(conn, "pg_copied", marker.with_marker(None, "ra1", "x"))
        _mark(conn, "prod", "production schema")
    return db


UNTOUCHED = ["rb", "plain", "ra_later", "not_last", "pg_copied", "prod", "public"]
MARKED_RA1 = sorted(["ra", "Ra Two", "odd; --name"])


def test_drop_removes_only_schemas_marked_with_the_restore_id(copyhost, drop_db):
    target = _endpoint(copyhost, drop_db, "target")
    with copyhost.connect(drop_db) as conn:
        before = {s: _checksum(conn, s) for s in UNTOUCHED}
        all_before = _schemas(conn)
    stream = io.StringIO()
    dropped = drop_restored(target, "ra1", reporter=Reporter("drop", stream))
    assert dropped == MARKED_RA1
    with copyhost.connect(drop_db) as conn:
        assert _schemas(conn) == all_before - set(MARKED_RA1)
        assert {s: _checksum(conn, s) for s in UNTOUCHED} == before
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert {"event": "dropped", "schemas": dropped}.items() <= events[-1].items()
    # a system schema is never ours, whatever its comment says
    assert any(e["event"] == "drop_skipped" and e["schema"] == "pg_copied" for e in events)
    # idempotent: nothing left to drop
    assert drop_restored(target, "ra1", reporter=NullReporter()) == []
    assert drop_restored(target, "rb1", reporter=NullReporter()) == ["rb"]


@pytest.mark.parametrize("dependency, expected", [
    ("CREATE VIEW prod.v AS SELECT id FROM ra.t", "view prod.v"),
    ("CREATE TABLE prod.r (id int CONSTRAINT r_t_fk REFERENCES ra.t(id))",
     "constraint r_t_fk on table prod.r"),
    ("CREATE TABLE prod.c (id int, k ra.kind)", "column k of table prod.c"),
    ("ALTER TABLE prod.accounts ADD COLUMN seq int DEFAULT nextval('ra.ids')",
     "default value for column seq of table prod.accounts"),
    ("CREATE TRIGGER acc_stamp BEFORE INSERT ON prod.accounts "
     "FOR EACH ROW EXECUTE FUNCTION ra.stamp()", "trigger acc_stamp on table prod.accounts"),
    ("CREATE FUNCTION prod.f(ra.t) RETURNS int LANGUAGE sql AS 'SELECT 1'",
     "function prod.f(ra.t)"),
    ("CREATE VIEW prod.on_mv AS SELECT n FROM ra.mv", "view prod.on_mv"),
    ("CREATE VIEW public.pv AS SELECT id FROM ra.t", "view public.pv"),
    ("CREATE TABLE prod.ev2 PARTITION OF ra.ev FOR VALUES FROM (100) TO (200)",
     "table prod.ev2"),
])
def test_drop_refuses_when_cascade_reaches_outside(copyhost, drop_db, dependency, expected):
    target = _endpoint(copyhost, drop_db, "target")
    _run(copyhost, drop_db, dependency)
    watched = UNTOUCHED + MARKED_RA1
    with copyhost.connect(drop_db) as conn:
        before = {s: _checksum(conn, s) for s in watched}
        all_before = _schemas(conn)
    with pytest.raises(DataPlaneError) as info:
        drop_restored(target, "ra1", reporter=NullReporter())
    assert info.value.reason == "DropRefused"
    assert f"would also remove 1 object(s) outside them: {expected}." in info.value.message
    with copyhost.connect(drop_db) as conn:
        assert _schemas(conn) == all_before
        assert {s: _checksum(conn, s) for s in watched} == before


def test_drop_refusal_lists_every_outside_object(copyhost, drop_db):
    target = _endpoint(copyhost, drop_db, "target")
    _run(copyhost, drop_db, "CREATE VIEW prod.v AS SELECT id FROM ra.t; "
                            "CREATE VIEW plain.w AS SELECT * FROM prod.v; "
                            "CREATE TABLE plain.r (id int CONSTRAINT r_fk REFERENCES ra.t(id))")
    with pytest.raises(DataPlaneError) as info:
        drop_restored(target, "ra1", reporter=NullReporter())
    message = info.value.message
    assert "would also remove 3 object(s) outside them" in message
    for item in ("view prod.v", "view plain.w", "constraint r_fk on table plain.r"):
        assert item in message
    with copyhost.connect(drop_db) as conn:
        assert conn.execute("SELECT count(*) FROM plain.w").fetchone() == (2,)


def test_drop_gives_up_on_lock_timeout(copyhost, drop_db):
    target = _endpoint(copyhost, drop_db, "target")
    reader = copyhost.connect(drop_db)
    try:
        reader.execute("SELECT count(*) FROM ra.t")      # holds ACCESS SHARE until rollback
        with pytest.raises(DataPlaneError) as info:
            drop_restored(target, "ra1", reporter=NullReporter(), lock_timeout="200ms")
        assert info.value.reason == "DropLockTimeout"
    finally:
        reader.rollback()
        reader.close()
    with copyhost.connect(drop_db) as conn:
        assert {"ra", "Ra Two"} <= _schemas(conn)
    assert drop_restored(target, "ra1", reporter=NullReporter()) == MARKED_RA1


def test_drop_validates_restore_id(copyhost, drop_db):
    target = _endpoint(copyhost, drop_db, "target")
    for bad in ["", "a from schema x", "a; DROP SCHEMA prod", "-a", "A"]:
        with pytest.raises(RestoreError) as info:
            drop_restored(target, bad, reporter=NullReporter())
        assert info.value.reason == "InvalidRestoreId"
    with copyhost.connect(drop_db) as conn:
        assert {"ra", "Ra Two", "prod"} <= _schemas(conn)


def test_drop_with_nothing_marked_is_a_no_op(copyhost, new_db):
    db = new_db(copyhost, "drop_empty")
    target = _endpoint(copyhost, db, "target")
    assert drop_restored(target, "nothing-here", reporter=NullReporter()) == []


def test_drop_retries_when_another_session_drops_something_meanwhile(copyhost, drop_db,
                                                                      monkeypatch):
    import ddl_job.drop as drop_module

    target = _endpoint(copyhost, drop_db, "target")
    real_snapshot = drop_module._snapshot
    calls = []

    def snapshot_then_concurrent_drop(conn, ours):
        result = real_snapshot(conn, ours)
        calls.append(len(result))
        if len(calls) == 1:   # right after the first "before" snapshot
            _run(copyhost, drop_db, "DROP TABLE plain.t")
        return result

    monkeypatch.setattr(drop_module, "_snapshot", snapshot_then_concurrent_drop)
    stream = io.StringIO()
    assert drop_restored(target, "ra1", reporter=Reporter("drop", stream)) == MARKED_RA1
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events.count("drop_retry") == 1 and events[-1] == "dropped"
    assert len(calls) == 5    # before, after, after-rollback; then before, after
