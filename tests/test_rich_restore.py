"""End to end on real PostgreSQL with a genuine point-in-time copy.

A rich schema (tests/sql/rich_schema.sql) is built for two tenants in a
"production" database, a restore point is taken, production is damaged, a
PITR copy is made at the restore point, and the real CLI (`python -m ddl_job
from-copy`) brings the tenants back next to the damaged ones under suffixed
names. Then the restored schemas are *used*: their functions, procedures and
triggers must read and write the new schemas, constraints must hold, data
must equal the restore point -- and everything that existed in production
before the run must be byte-for-byte unchanged, after a successful run and
after a failed one.
"""

from __future__ import annotations

import difflib
import os
import re
import secrets
import subprocess
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg import errors, sql

from support.ddl_job_cli import Run, run_ddl_job
from support.pg import PASSWORD, restore_point

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
RICH_SQL = Path(__file__).resolve().parent / "sql" / "rich_schema.sql"
SUFFIX = "_rst"
MARKER_PREFIX = "pg-schema-restore: restored by restore-id="
_RESTRICT = re.compile(r"^\\(un)?restrict \S+\s*$")
_PLAIN = re.compile(r"[a-z_][a-z0-9_]*")


# -- building the schema ----------------------------------------------------

def ident(name: str) -> str:
    return name if _PLAIN.fullmatch(name) else '"' + name.replace('"', '""') + '"'


def sections() -> dict[str, str]:
    parts = re.split(r"^-- @@section (\w+)\n", RICH_SQL.read_text(), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def render_tenant(name: str) -> str:
    ref = name + "_ref"
    return (sections()["tenant"].replace("@SN@", name).replace("@S@", ident(name))
            .replace("@R@", ident(ref)))


def build(conn: psycopg.Connection, tenants: list[str]) -> None:
    conn.execute(sections()["shared"])
    for tenant in tenants:
        conn.execute(render_tenant(tenant))


# -- looking at a database ----------------------------------------------------

def pg_dump(cluster, db: str, *args: str) -> str:
    env = dict(os.environ, PGPASSWORD=cluster.password)
    result = subprocess.run(
        ["pg_dump", "--no-password", "-h", "127.0.0.1", "-p", str(cluster.port),
         "-U", "postgres", "-d", db, *args], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return "".join(line for line in result.stdout.splitlines(keepends=True)
                   if not _RESTRICT.match(line))


def dump_pattern(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def schema_names(cluster, db: str) -> list[str]:
    with cluster.connect(db) as conn:
        rows = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname !~ '^pg_' "
                            "AND nspname <> 'information_schema' ORDER BY 1").fetchall()
    return [r[0] for r in rows]


def db_state(cluster, db: str, exclude: tuple[str, ...] = ()) -> dict:
    """Schema list, each schema's full dump (DDL + rows + sequence values), and the
    whole database's dump without `exclude`."""
    names = schema_names(cluster, db)
    return {
        "schemas": names,
        "dumps": {s: pg_dump(cluster, db, f"--schema={dump_pattern(s)}")
                  for s in names if s not in exclude},
        "database": pg_dump(cluster, db, *[f"--exclude-schema={dump_pattern(s)}"
                                           for s in exclude]),
    }


def assert_unchanged(before: dict, after: dict, *, added: list[str] = ()) -> None:
    assert after["schemas"] == sorted(before["schemas"] + list(added))
    for name, text in before["dumps"].items():
        if after["dumps"][name] != text:
            diff = "".join(list(difflib.unified_diff(
                text.splitlines(True), after["dumps"][name].splitlines(True)))[:80])
            pytest.fail(f"pre-existing schema {name!r} changed:\n{diff}")
    if after["database"] != before["database"]:
        diff = "".join(list(difflib.unified_diff(
            before["database"].splitlines(True), after["database"].splitlines(True)))[:80])
        pytest.fail(f"database outside the restored schemas changed:\n{diff}")


def table_rows(conn: psycopg.Connection, schema: str) -> dict[str, tuple[int, str]]:
    """Per table and matview: row count and md5 of its rows in a fixed order."""
    rels = conn.execute(
        """SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n
           ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'm')
           ORDER BY 1""", (schema,)).fetchall()
    out = {}
    for name, kind in rels:
        query = sql.SQL(
            "SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), ''))"
            " FROM {only} {}.{} t").format(
            sql.Identifier(schema), sql.Identifier(name),
            only=sql.SQL("ONLY" if kind == "r" else ""))
        count, digest = conn.execute(query).fetchone()
        out[name] = (count, digest)
    return out


def index_defs(conn: psycopg.Connection, schema: str) -> dict[str, str]:
    rows = conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s",
                        (schema,)).fetchall()
    return dict(rows)


def one(conn: psycopg.Connection, query, params=None):
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


# -- running the real CLI -------------------------------------------------------

def run_cli(args: list[str], *, source: str | None, target: str | None,
            timeout: float = 900) -> Run:
    run = run_ddl_job(args, source=source, target=target, timeout=timeout)
    assert run.events, f"no JSON output\n{run}"
    return run


def assert_no_credentials(run: Run, *secrets_: str, artifacts: Path | None = None) -> None:
    for secret in (PASSWORD, *secrets_):
        assert secret not in run.stdout
        assert secret not in run.stderr
        if artifacts is not None and artifacts.exists():
            for path in artifacts.rglob("*"):
                if path.is_file():
                    assert secret.encode() not in path.read_bytes(), f"credential in {path}"


# -- the scenario ---------------------------------------------------------------

TENANTS = ["customer_a1", "Tenant B"]

DAMAGE = {
    "customer_a1": """
        DROP TABLE customer_a1.order_lines;
        DELETE FROM customer_a1.invoices;
        DELETE FROM customer_a1.orders WHERE id % 2 = 0;
        UPDATE customer_a1.stock SET qty = 0;
        CREATE OR REPLACE FUNCTION customer_a1.hello() RETURNS text LANGUAGE sql
            AS $$ SELECT 'damaged'::text $$;
    """,
    "Tenant B": """
        DELETE FROM "Tenant B".invoices;
        DELETE FROM "Tenant B".order_lines;
        DELETE FROM "Tenant B".orders WHERE id % 3 = 0;
        TRUNCATE "Tenant B".audit_log;
        DELETE FROM "Tenant B".events WHERE happened < '2024-01-01';
        UPDATE "Tenant B"."Tenant B" SET val = 'damaged';
    """,
}

# Routines whose text names the tenant (must be rewritten), and routines that
# must be left alone (no schema reference in text, or stored by OID).
REWRITTEN = ["add_order", "order_total", "count_orders_sp", "atomic_path", "dyn_count",
             "sp_config_count", "label_of", "self_vals", "log_order", "take_stock",
             "restock"]
NOT_REWRITTEN = ["hello", "rate_for", "valid_sku", "invoice_day", "atomic_count",
                 "cancel_order"]


@pytest.fixture
def rich_prod(prod, new_db):
    """A production database with both tenants, their reference schemas and
    `shared`; returns (db, expected) with the restore-point data."""
    db = new_db(prod, "rich")
    with prod.connect(db, autocommit=True) as conn:
        build(conn, TENANTS)
        expected = {t: {"rows": table_rows(conn, t), "indexes": index_defs(conn, t)}
                    for t in TENANTS}
    return db, expected


def test_rich_restore_from_a_pitr_copy(prod, rich_prod, make_pitr_copy, tmp_path):
    db, expected = rich_prod
    point = restore_point()
    with prod.connect(db, autocommit=True) as conn:
        for tenant in TENANTS:
            conn.execute(DAMAGE[tenant])
    copy = make_pitr_copy(point)

    before = db_state(prod, db)
    assert set(before["schemas"]) >= {"customer_a1", "customer_a1_ref", "Tenant B",
                                      "Tenant B_ref", "shared", "public"}
    restore_id = "rich-" + secrets.token_hex(3)
    artifacts = tmp_path / "artifacts"
    run = run_cli(["from-copy", "--schemas", "customer_a1", "--schema", "Tenant B",
                   "--suffix", SUFFIX, "--disposable-source", "--restore-id", restore_id,
                   "--jobs", "3", "--artifacts", str(artifacts)],
                  source=copy.dsn(db), target=prod.dsn(db))
    assert run.returncode == 0, str(run)
    assert run.last["event"] == "result", str(run)
    result = run.last["result"]
    new = {t: t + SUFFIX for t in TENANTS}
    assert result["schemas"] == new
    assert result["restore_id"] == restore_id
    assert result["verify"]["ok"] is True
    assert result["verify"]["mismatches"] == []
    assert_no_credentials(run, artifacts=artifacts)
    assert any(artifacts.iterdir())

    # the routines rewritten are exactly the ones naming their schema in text
    rewritten = result["rewritten_functions"]
    for tenant in TENANTS:
        prefix = ident(new[tenant]) + "."
        names = {sig[len(prefix):].split("(")[0] for sig in rewritten if sig.startswith(prefix)}
        assert names == set(REWRITTEN), (tenant, rewritten)

    # nothing that existed before changed; only the two new schemas appeared
    after = db_state(prod, db, exclude=tuple(new.values()))
    assert_unchanged(before, after, added=list(new.values()))

    with prod.connect(db, autocommit=True) as conn:
        for tenant in TENANTS:
            check_restored_tenant(conn, tenant, new[tenant], restore_id, expected[tenant])
        # no reference schema was restored next to the real one
        assert one(conn, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE '%%_ref_rst'") == 0

    # using the restored schemas wrote nowhere else
    after_use = db_state(prod, db, exclude=tuple(new.values()))
    assert_unchanged(before, after_use, added=list(new.values()))


def check_restored_tenant(conn: psycopg.Connection, old: str, new: str, restore_id: str,
                          expected: dict) -> None:
    S, O, R = ident(new), ident(old), ident(old + "_ref")

    def q(text: str) -> str:
        return text.replace("{S}", S).replace("{O}", O).replace("{R}", R)

    # -- data equals the restore point, table by table (matview included)
    assert table_rows(conn, new) == expected["rows"]

    # -- indexes: the same set, partial / expression / GIN among them
    indexes = index_defs(conn, new)
    assert set(indexes) == set(expected["indexes"])
    assert "lower(name)" in indexes["customers_lower_name_idx"]
    assert "WHERE (status = 'open'::text)" in indexes["orders_open_idx"]
    assert "USING gin" in indexes["customers_tags_gin"]
    assert "USING gin" in indexes["events_payload_gin"]
    assert indexes["mv_customer_totals_pk"].startswith("CREATE UNIQUE INDEX")

    n_orders = one(conn, q("SELECT count(*) FROM {S}.orders"))
    prod_orders = one(conn, q("SELECT count(*) FROM {O}.orders"))
    assert n_orders != prod_orders  # production was damaged: the tests below can tell

    # -- functions read the NEW schema
    assert one(conn, q("SELECT {S}.count_orders_sp()")) == n_orders      # SET search_path
    assert one(conn, q("SELECT {S}.atomic_count()")) == n_orders         # BEGIN ATOMIC
    assert one(conn, q("SELECT {S}.dyn_count('orders')")) == n_orders    # format('%I.%I')
    assert one(conn, q("SELECT {S}.sp_config_count()")) == n_orders      # set_config
    assert one(conn, q("SELECT {S}.atomic_path()")) == f"{S}, public"    # proconfig rewritten
    total = one(conn, q("SELECT coalesce(sum(total), 0) FROM {S}.orders "
                        "WHERE customer_id = 3 AND status <> 'cancelled'"))
    assert one(conn, q("SELECT {S}.order_total(3)")) == total            # $_$ + $1
    # a prefix-named schema keeps being used from production
    assert one(conn, q("SELECT {S}.rate_for('USD')")) == Decimal("0.9")
    assert q("FROM {R}.rates") in one(
        conn, q("SELECT pg_get_functiondef('{S}.rate_for(text)'::regprocedure)"))
    # literals and comments in bodies are untouched; the damaged original is not called
    assert one(conn, q("SELECT {S}.hello()")) == f"hello from {old} -- not a comment"
    assert one(conn, q("SELECT {O}.hello()")) == ("damaged" if old == "customer_a1"
                                                  else f"hello from {old} -- not a comment")
    some_id = one(conn, q("SELECT min(id) FROM {S}.orders"))
    assert one(conn, q("SELECT {S}.label_of(%s)"), (some_id,)) == f"label {some_id}"
    # the table named like its schema, as a column qualifier: reads the new schema
    assert one(conn, q("SELECT {S}.self_vals()")) == "v1,v2,v3,v4,v5"
    assert one(conn, q("SELECT {O}.self_vals()")) == ("damaged,damaged,damaged,damaged,damaged"
                                                      if old == "Tenant B" else "v1,v2,v3,v4,v5")

    # -- functions, triggers and procedures WRITE the new schema
    prod_audit = one(conn, q("SELECT count(*) FROM {O}.audit_log"))
    max_order = one(conn, q("SELECT max(id) FROM {S}.orders"))
    max_audit = one(conn, q("SELECT max(id) FROM {S}.audit_log"))
    order_id = one(conn, q("SELECT {S}.add_order(1, 42.00, 2)"))
    assert order_id > max_order                                  # bigserial continues
    row = conn.execute(q("SELECT total, note, status FROM {S}.orders WHERE id = %s"),
                       (order_id,)).fetchone()
    assert row == (Decimal("84.00"), f"{old} default", "open")  # generated col + default
    log = conn.execute(q("SELECT id, msg FROM {S}.audit_log ORDER BY id DESC LIMIT 1")).fetchone()
    assert log[1] == f"order {order_id} for 1"                   # dynamic-SQL trigger
    assert log[0] > max_audit                                    # serial continues

    stock = one(conn, q("SELECT qty FROM {S}.stock WHERE sku = 'ABC-1'"))
    conn.execute(q("INSERT INTO {S}.order_lines VALUES (%s, 1, 'ABC-1', 3)"), (order_id,))
    assert one(conn, q("SELECT qty FROM {S}.stock WHERE sku = 'ABC-1'")) == stock - 3
    assert one(conn, q("SELECT msg FROM {S}.audit_log ORDER BY id DESC LIMIT 1")) == "stock ABC-1"

    conn.execute(q("CALL {S}.restock('ABC-2', 5)"))
    assert one(conn, q("SELECT msg FROM {S}.audit_log ORDER BY id DESC LIMIT 1")) == \
        "restock ABC-2; qty 5"
    conn.execute(q("CALL {S}.cancel_order(%s)"), (order_id,))
    assert one(conn, q("SELECT status FROM {S}.orders WHERE id = %s"), (order_id,)) == "cancelled"
    assert one(conn, q("SELECT count(*) FROM {O}.audit_log")) == prod_audit

    # -- identity / owned sequences continue after the copied values
    for table, insert in [
        ("customers", "INSERT INTO {S}.customers (name, email, country) "
                      "VALUES ('new', 'new@example.com', 'DE') RETURNING id"),
        ("bookings", "INSERT INTO {S}.bookings (room, during, code) VALUES "
                     "(1, '[2030-01-01,2030-01-02)', 'NEW') RETURNING id"),
        ("invoices", "INSERT INTO {S}.invoices (order_id) VALUES (%s) RETURNING no"),
        ("events", "INSERT INTO {S}.events (happened) VALUES ('2023-03-03') RETURNING id"),
    ]:
        key = "no" if table == "invoices" else "id"
        top = one(conn, q(f"SELECT max({key}) FROM {{S}}.{table}"))
        new_key = one(conn, q(insert), (order_id,) if "%s" in insert else None)
        assert new_key > top, table
    assert one(conn, q("SELECT issued FROM {S}.invoices ORDER BY no DESC LIMIT 1")).isoformat() \
        == "2024-06-01"                                          # default calling a function

    # -- partition routing, inheritance
    assert one(conn, q("SELECT tableoid::regclass::text FROM {S}.events WHERE happened = "
                       "'2023-03-03'")) == f"{S}.events_2023"
    one(conn, q("INSERT INTO {S}.events (happened) VALUES ('2031-01-01') RETURNING id"))
    assert one(conn, q("SELECT tableoid::regclass::text FROM {S}.events WHERE happened = "
                       "'2031-01-01'")) == f"{S}.events_other"
    assert one(conn, q("SELECT count(*) FROM {S}.vehicles")) == 4
    assert one(conn, q("SELECT count(*) FROM ONLY {S}.vehicles")) == 2

    # -- constraints are enforced
    violations = [
        (errors.ForeignKeyViolation,   # FK to the non-restored schema `shared`
         "INSERT INTO {S}.customers (name, country) VALUES ('x', 'QQ')"),
        (errors.ForeignKeyViolation,   # FK to the non-restored prefix-named schema
         "INSERT INTO {S}.orders (customer_id, amount, currency) VALUES (1, 1, 'XXX')"),
        (errors.ForeignKeyViolation,   # FK inside the schema
         "INSERT INTO {S}.orders (customer_id, amount) VALUES (999999, 1)"),
        (errors.CheckViolation, "INSERT INTO {S}.orders (customer_id, amount) VALUES (1, -1)"),
        (errors.CheckViolation,        # domain CHECK
         "INSERT INTO {S}.customers (name, country, email) VALUES ('x', 'DE', 'not-an-email')"),
        (errors.CheckViolation, "INSERT INTO {S}.stock VALUES ('bad sku', 1)"),
        (errors.UniqueViolation,
         "INSERT INTO {S}.customers (name, country, email) VALUES ('x', 'DE', 'c1@example.com')"),
        (errors.UniqueViolation, "INSERT INTO {S}.order_lines SELECT order_id, line_no, sku, qty "
                                 "FROM {S}.order_lines LIMIT 1"),   # composite PK
        (errors.ExclusionViolation,    # gist exclusion on a range
         "INSERT INTO {S}.bookings (room, during, code) "
         "SELECT room, during, 'other' FROM {S}.bookings LIMIT 1"),
        (errors.ExclusionViolation,    # btree exclusion
         "INSERT INTO {S}.bookings (room, during, code) VALUES (1, '[2040-01-01,2040-01-02)', 'B1')"),
        (errors.GeneratedAlways, "INSERT INTO {S}.customers (id, name, country) VALUES (1, 'x', 'DE')"),
        (errors.NotNullViolation,      # domain NOT NULL
         "INSERT INTO {S}.order_lines (order_id, line_no, sku) VALUES (%s, 9, 'ABC-1')"),
    ]
    for exc, statement in violations:
        with pytest.raises(exc):
            conn.execute(q(statement), (order_id,) if "%s" in statement else None)

    # -- views, view on view, matview
    big = one(conn, q("SELECT count(*) FROM {S}.orders WHERE total >= 100"))
    assert one(conn, q("SELECT count(*) FROM {S}.v_big_orders")) == big > 0
    assert one(conn, q("SELECT labelled FROM {S}.v_self WHERE id = 1")) == f"{old}.v1"
    assert one(conn, q("SELECT count(*) FROM {S}.mv_customer_totals")) == \
        expected["rows"]["mv_customer_totals"][0] > 0
    assert one(conn, q("SELECT relispopulated FROM pg_class WHERE oid = "
                       "'{S}.mv_customer_totals'::regclass"))

    # -- row level security: enabled, the policy exists and filters
    assert one(conn, q("SELECT relrowsecurity FROM pg_class WHERE oid = '{S}.orders'::regclass"))
    assert conn.execute("SELECT policyname, cmd, roles::text[] FROM pg_policies "
                        "WHERE schemaname = %s", (new,)).fetchall() == \
        [("orders_not_cancelled", "SELECT", ["pgsr_reader"])]
    visible = one(conn, q("SELECT count(*) FROM {S}.orders WHERE status <> 'cancelled'"))
    conn.execute("SET ROLE pgsr_reader")
    try:
        assert one(conn, q("SELECT count(*) FROM {S}.orders")) == visible
    finally:
        conn.execute("RESET ROLE")
    assert visible < one(conn, q("SELECT count(*) FROM {S}.orders"))

    # -- names, literals, comments and defaults holding the old name are unchanged
    assert one(conn, "SELECT count(*) FROM pg_attribute WHERE attrelid = %s::regclass "
                     "AND attname = %s", (f"{S}.orders", old)) == 1
    assert one(conn, q("SELECT count(*) FROM {S}.orders WHERE note = %s"),
               (f"{old}.orders is a string",)) == 12
    assert one(conn, q("SELECT count(*) FROM {S}.events WHERE payload->>'tenant' = %s"),
               (old,)) == expected["rows"]["events_2023"][0] + expected["rows"]["events_2024"][0] \
        + expected["rows"]["events_other"][0]
    assert one(conn, q("SELECT obj_description('{S}.orders'::regclass, 'pg_class')")) == \
        f"orders of {old}; the {old}.orders table"
    assert one(conn, "SELECT col_description(%s::regclass, a.attnum) FROM pg_attribute a "
                     "WHERE a.attrelid = %s::regclass AND a.attname = %s",
               (f"{S}.orders", f"{S}.orders", old)) == f"column named {old}"
    assert one(conn, q("SELECT obj_description('{S}.hello()'::regprocedure, 'pg_proc')")) == \
        f"says hello from {old}"
    assert one(conn, q("SELECT obj_description('{S}.customer_kind'::regtype, 'pg_type')")) == \
        f"kinds of {old} customers"
    default = one(conn, "SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d "
                        "JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum "
                        "WHERE d.adrelid = %s::regclass AND a.attname = 'note'", (f"{S}.orders",))
    assert default == f"'{old} default'::text"

    # -- the schema comment keeps the original and carries this restore's marker
    comment = one(conn, "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace "
                        "WHERE nspname = %s", (new,))
    assert comment == (f"tenant {old} (see {old}.orders)\n\n"
                       f"{MARKER_PREFIX}{restore_id} from schema {old}")
    # the grant to the reader role came along
    assert one(conn, "SELECT has_schema_privilege('pgsr_reader', %s, 'USAGE')", (new,))


def test_failed_restore_drops_only_what_it_created(prod, new_db, make_pitr_copy, tmp_path):
    """Post-data fails for real (a foreign key to production data that no longer
    exists, with `--invalid-foreign-keys fail`): exit 1 with the reason, created
    schemas dropped, nothing else touched. Then with --keep-on-failure the schema
    stays (marked) and `drop` removes it."""
    db = new_db(prod, "richfail")
    with prod.connect(db, autocommit=True) as conn:
        build(conn, ["customer_a1"])
    point = restore_point()
    with prod.connect(db, autocommit=True) as conn:
        # After the restore point production stops knowing country ZZ: the copy's
        # customers from ZZ cannot satisfy the FK to shared.countries any more.
        conn.execute("""
            DELETE FROM customer_a1.invoices WHERE order_id IN (
                SELECT o.id FROM customer_a1.orders o JOIN customer_a1.customers c
                ON c.id = o.customer_id WHERE c.country = 'ZZ');
            DELETE FROM customer_a1.orders WHERE customer_id IN (
                SELECT id FROM customer_a1.customers WHERE country = 'ZZ');
            DELETE FROM customer_a1.customers WHERE country = 'ZZ';
            DELETE FROM shared.countries WHERE code = 'ZZ';
        """)
    copy = make_pitr_copy(point)
    before = db_state(prod, db)
    restore_id = "fail-" + secrets.token_hex(3)
    target_name = "customer_a1" + SUFFIX

    artifacts = tmp_path / "a1"
    run = run_cli(["from-copy", "--schemas", "customer_a1", "--suffix", SUFFIX,
                   "--disposable-source", "--restore-id", restore_id, "--artifacts",
                   str(artifacts), "--invalid-foreign-keys", "fail"],
                  source=copy.dsn(db), target=prod.dsn(db))
    assert run.returncode == 1, str(run)
    assert run.last["event"] == "error", str(run)
    assert run.last["reason"] == "ForeignKeyViolation", str(run)
    assert "countries" in run.last["message"], str(run)
    assert [e.get("schemas") for e in run.find("dropped_after_failure")] == [[target_name]]
    assert "Traceback" not in run.stderr
    assert_no_credentials(run, artifacts=artifacts)
    assert_unchanged(before, db_state(prod, db))

    # Same copy and restore id (extract resumes on the already renamed copy),
    # but keep the created schema for inspection.
    artifacts = tmp_path / "a2"
    run = run_cli(["from-copy", "--schemas", "customer_a1", "--suffix", SUFFIX,
                   "--disposable-source", "--restore-id", restore_id, "--keep-on-failure",
                   "--artifacts", str(artifacts), "--invalid-foreign-keys", "fail"],
                  source=copy.dsn(db), target=prod.dsn(db))
    assert run.returncode == 1, str(run)
    assert run.last["reason"] == "ForeignKeyViolation", str(run)
    assert run.find("dropped_after_failure") == []
    with prod.connect(db) as conn:
        comment = one(conn, "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace "
                            "WHERE nspname = %s", (target_name,))
        assert comment.endswith(f"{MARKER_PREFIX}{restore_id} from schema customer_a1")
        assert one(conn, f"SELECT count(*) FROM {target_name}.customers") == 40  # copied
    kept = db_state(prod, db, exclude=(target_name,))
    assert_unchanged(before, kept, added=[target_name])

    # a different restore id never drops it
    run = run_cli(["drop", "--restore-id", "someone-else"], source=None, target=prod.dsn(db))
    assert run.returncode == 0, str(run)
    assert target_name in schema_names(prod, db)

    run = run_cli(["drop", "--restore-id", restore_id], source=None, target=prod.dsn(db))
    assert run.returncode == 0, str(run)
    assert run.last["event"] == "result"
    assert run.last["result"] == [target_name]
    assert_no_credentials(run)
    assert_unchanged(before, db_state(prod, db))
