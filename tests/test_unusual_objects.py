"""Unusual-but-realistic schemas through the real CLI (`python -m ddl_job from-copy`).

Each case builds a small schema in a "restored copy" (a plain database on
`copyhost`) and in "production" (a database on `prod`, usually holding the
same schema, sometimes damaged so that reads of the old and new schema can be
told apart), runs from-copy, and checks that

- the run exits 0 and verify passes;
- every table of the restored schema holds exactly the source's rows;
- the restored objects *work* in the new schema;
- nothing that existed in production before the run changed (full dump of
  everything outside the new schemas, before == after).

Some cases pin what a schema restore cannot bring back (unlogged table
contents, large objects): the run succeeds and extract says so in warnings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import errors, sql
from test_rich_restore import (
    assert_unchanged,
    db_state,
    ident,
    index_defs,
    one,
    table_rows,
)

from support.ddl_job_cli import Run, run_ddl_job
from support.pg import MASTER, as_superuser, cluster_roles, restore_point

pytestmark = pytest.mark.e2e

SUFFIX = "_r1"
OWNER = "pgsr_u_owner"
READER = "pgsr_u_reader"
OWNER_PASSWORD = "ownerpw-" + os.urandom(6).hex()


# -- fixtures and helpers --------------------------------------------------------

@pytest.fixture(scope="module")
def roles(copyhost, prod):
    """A non-superuser owner (LOGIN) and a reader, on both clusters (roles are global)."""
    with cluster_roles((copyhost, prod), {OWNER: OWNER_PASSWORD, READER: None}):
        yield OWNER, READER


@dataclass
class Scenario:
    copyhost: object
    prod: object
    src: str
    tgt: str
    artifacts: Path
    expected: dict = field(default_factory=dict)
    before: dict = field(default_factory=dict)
    mapping: dict = field(default_factory=dict)

    def source(self, **kw) -> str:
        return self.copyhost.dsn(self.src, **kw)

    def target(self, **kw) -> str:
        return self.prod.dsn(self.tgt, **kw)

    def src_conn(self, **kw) -> psycopg.Connection:
        return self.copyhost.connect(self.src, **kw)

    def tgt_conn(self, **kw) -> psycopg.Connection:
        return self.prod.connect(self.tgt, **kw)

    def run(self, schemas: list[str], *, suffix: str = SUFFIX, source: str | None = None,
            target: str | None = None) -> Run:
        """Record the source rows and production's state, then run from-copy."""
        self.mapping = {s: s + suffix for s in schemas}
        with self.src_conn() as conn:
            self.expected = {s: table_rows(conn, s) for s in schemas}
        self.before = db_state(self.prod, self.tgt)
        args = ["from-copy", "--suffix", suffix, "--disposable-source", "--jobs", "2",
                "--artifacts", str(self.artifacts)]
        for name in schemas:
            args += ["--schema", name]
        return run_ddl_job(args, source=source or self.source(),
                           target=target or self.target(), timeout=600)

    def restored(self, schemas: list[str], **kw) -> Run:
        """Run and assert success, equal data, and nothing else changed in production."""
        run = self.run(schemas, **kw)
        assert run.returncode == 0, str(run)
        assert run.last["event"] == "result", str(run)
        result = run.last["result"]
        assert result["schemas"] == self.mapping
        assert result["verify"]["ok"] is True, result["verify"]
        with self.tgt_conn() as conn:
            for old, new in self.mapping.items():
                assert table_rows(conn, new) == self.expected[old], old
        self.assert_rest_unchanged()
        return run

    def assert_rest_unchanged(self, added: bool = True) -> None:
        new = list(self.mapping.values()) if added else []
        after = db_state(self.prod, self.tgt, exclude=tuple(new))
        assert_unchanged(self.before, after, added=new)


@pytest.fixture
def superuser(copyhost, prod):
    """The suite's one restore whose data plane connects as a superuser
    (docs/testing.md): FORCE ROW LEVEL SECURITY, which a superuser bypasses."""
    with as_superuser(copyhost, prod):
        yield


@pytest.fixture
def scenario(copyhost, prod, new_db, tmp_path):
    """Factory: scenario(source_sql, target_sql=None) -> Scenario (target defaults
    to the same SQL: production holds the current version of the schemas)."""
    def make(source_sql: str, target_sql: str | None = None) -> Scenario:
        src, tgt = new_db(copyhost, "usrc"), new_db(prod, "utgt")
        copyhost.execute(source_sql, src)
        prod.execute(source_sql if target_sql is None else target_sql, tgt)
        return Scenario(copyhost, prod, src, tgt, tmp_path / "artifacts")
    return make


def fmt(template: str, **names: str) -> str:
    """Substitute {key} placeholders with identifiers (only those)."""
    out = template
    for key, value in names.items():
        out = out.replace("{" + key + "}", value)
    return out


# -- 1. privileges ---------------------------------------------------------------

GRANTS_SQL = fmt("""
CREATE SCHEMA g AUTHORIZATION {O};
SET ROLE {O};
CREATE TABLE g.t (id int PRIMARY KEY, pub text, secret text);
INSERT INTO g.t VALUES (1, 'p1', 's1'), (2, 'p2', 's2');
CREATE SEQUENCE g.s;
CREATE FUNCTION g.n() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(*) FROM g.t $$;
REVOKE EXECUTE ON FUNCTION g.n() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION g.n() TO {R};
GRANT USAGE ON SCHEMA g TO {R};
GRANT SELECT (id, pub), UPDATE (pub) ON g.t TO {R};
GRANT INSERT ON g.t TO {R};
GRANT USAGE ON SEQUENCE g.s TO {R};
ALTER DEFAULT PRIVILEGES IN SCHEMA g GRANT SELECT ON TABLES TO {R};
ALTER DEFAULT PRIVILEGES IN SCHEMA g GRANT EXECUTE ON FUNCTIONS TO {R};
CREATE TABLE g.later (id int);       -- gets the default privileges
CREATE TABLE g.shared (id int);
GRANT SELECT ON g.shared TO {R} WITH GRANT OPTION;
RESET ROLE;
SET ROLE {R};
GRANT SELECT ON g.shared TO PUBLIC;  -- grantor is not the owner (SET SESSION AUTHORIZATION)
RESET ROLE;
""", O=OWNER, R=READER)

ACL_SQL = """
SELECT 'schema', '', nspowner::regrole::text, nspacl::text FROM pg_namespace
WHERE nspname = %(s)s
UNION ALL
SELECT 'rel', c.relname, c.relowner::regrole::text, c.relacl::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %(s)s
UNION ALL
SELECT 'col', c.relname || '.' || a.attname, '', a.attacl::text
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(s)s AND a.attnum > 0 AND a.attacl IS NOT NULL
UNION ALL
SELECT 'func', p.proname, p.proowner::regrole::text, p.proacl::text
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %(s)s
UNION ALL
SELECT 'defacl', d.defaclobjtype::text, d.defaclrole::regrole::text, d.defaclacl::text
FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace
WHERE n.nspname = %(s)s
"""


def acls(conn: psycopg.Connection, schema: str) -> set[tuple]:
    return set(conn.execute(ACL_SQL, {"s": schema}).fetchall())


def test_grants_owner_and_default_privileges(scenario, roles):
    sc = scenario(GRANTS_SQL)
    sc.restored(["g"])
    with sc.tgt_conn(autocommit=True) as conn:
        # exactly the same owners and ACLs as production's original schema
        assert acls(conn, "g_r1") == acls(conn, "g")
        assert one(conn, "SELECT nspowner::regrole::text FROM pg_namespace "
                         "WHERE nspname = 'g_r1'") == OWNER
        conn.execute(f"SET ROLE {READER}")
        assert conn.execute("SELECT id, pub FROM g_r1.t ORDER BY id").fetchall() == \
            [(1, "p1"), (2, "p2")]
        assert one(conn, "SELECT g_r1.n()") == 2
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT secret FROM g_r1.t")
        conn.execute("RESET ROLE")
        # ALTER DEFAULT PRIVILEGES IN SCHEMA works for new objects of the owner
        conn.execute(f"SET ROLE {OWNER}")
        conn.execute("CREATE TABLE g_r1.brand_new (id int)")
        conn.execute("RESET ROLE")
        assert one(conn, "SELECT has_table_privilege(%s, 'g_r1.brand_new', 'SELECT')",
                   (READER,)) is True


# -- 2. extension types living in public -------------------------------------------

EXT_SQL = """
CREATE EXTENSION IF NOT EXISTS citext;
CREATE EXTENSION IF NOT EXISTS hstore;
CREATE SCHEMA e;
CREATE DOMAIN e.email AS public.citext CHECK (VALUE LIKE '%@%');
CREATE TYPE e.contact AS (name public.citext, attrs public.hstore);
CREATE TABLE e.users (
    id int PRIMARY KEY,
    login public.citext NOT NULL UNIQUE,
    mail e.email,
    aliases public.citext[],
    attrs public.hstore,
    contacts e.contact[]
);
CREATE INDEX users_attrs_gin ON e.users USING gin (attrs);
CREATE FUNCTION e.attr(p_login public.citext, p_key text) RETURNS text LANGUAGE sql STABLE AS
    $$ SELECT attrs -> p_key FROM e.users WHERE login = p_login $$;
INSERT INTO e.users VALUES
    (1, 'Alice', 'Alice@Example.com', '{AL,Ally}', 'color=>red, "a b"=>"c d"',
     ARRAY[ROW('Bob', 'k=>v')::e.contact]),
    (2, 'bob', NULL, '{}', NULL, NULL),
    (3, 'ÉLODIE', 'e@x', NULL, '', '{}');
"""


def _available(cluster, names: list[str]) -> bool:
    with cluster.connect() as conn:
        found = {r[0] for r in conn.execute(
            "SELECT name FROM pg_available_extensions WHERE name = ANY(%s)", (names,))}
    return found == set(names)


def test_extension_types_from_public(scenario, copyhost, prod):
    if not (_available(copyhost, ["citext", "hstore"]) and _available(prod, ["citext", "hstore"])):
        pytest.skip("citext/hstore (contrib) not installed")
    sc = scenario(EXT_SQL)
    sc.restored(["e"])
    with sc.tgt_conn(autocommit=True) as conn:
        assert one(conn, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                         "WHERE attrelid = 'e_r1.users'::regclass AND attname = 'login'") \
            == "citext"
        assert one(conn, "SELECT id FROM e_r1.users WHERE login = 'ALICE'") == 1
        assert one(conn, "SELECT e_r1.attr('alice', 'a b')") == "c d"
        assert one(conn, "SELECT count(*) FROM e_r1.users WHERE attrs ? 'color'") == 1
        assert one(conn, "SELECT (contacts[1]).attrs -> 'k' FROM e_r1.users WHERE id = 1") \
            == "v"
        with pytest.raises(errors.UniqueViolation):
            conn.execute("INSERT INTO e_r1.users (id, login) VALUES (9, 'BOB')")
        with pytest.raises(errors.CheckViolation):
            conn.execute("INSERT INTO e_r1.users (id, login, mail) VALUES (9, 'z', 'nomail')")


# -- 3. unlogged, no PK with duplicates, empty, zero columns ------------------------

ODD_TABLES_SQL = """
CREATE SCHEMA o;
CREATE UNLOGGED TABLE o.cache (k text PRIMARY KEY, v text);
INSERT INTO o.cache SELECT 'k' || g, 'v' || g FROM generate_series(1, 50) g;
CREATE TABLE o.dups (a int, b text);
INSERT INTO o.dups VALUES (1, 'x'), (1, 'x'), (1, 'x'), (2, NULL), (2, NULL), (NULL, NULL);
CREATE TABLE o.empty (id int PRIMARY KEY, v text);
CREATE TABLE o.nocols ();
INSERT INTO o.nocols DEFAULT VALUES;
INSERT INTO o.nocols DEFAULT VALUES;
INSERT INTO o.nocols DEFAULT VALUES;
CREATE TABLE o.dropped_all (gone int);
INSERT INTO o.dropped_all VALUES (1), (2);
ALTER TABLE o.dropped_all DROP COLUMN gone;  -- zero columns, two rows, a dropped attribute
-- > 2048 pages (16 MB): copied as several ctid ranges of `SELECT FROM` (no columns)
CREATE TABLE o.nocols_big ();
INSERT INTO o.nocols_big SELECT FROM generate_series(1, 650000);
"""


def test_unlogged_duplicates_empty_and_zero_column_tables(scenario):
    sc = scenario(ODD_TABLES_SQL)
    run = sc.restored(["o"])
    chunks = {e["table"]: e["chunks"] for e in run.find("table_done")}
    assert chunks["o_r1.nocols_big"] >= 2, chunks
    with sc.tgt_conn() as conn:
        assert one(conn, "SELECT relpersistence FROM pg_class "
                         "WHERE oid = 'o_r1.cache'::regclass") == "u"
        assert conn.execute("SELECT a, b, count(*) FROM o_r1.dups GROUP BY 1, 2 "
                            "ORDER BY 1, 2").fetchall() == [(1, "x", 3), (2, None, 2),
                                                           (None, None, 1)]
        assert one(conn, "SELECT count(*) FROM o_r1.empty") == 0
        assert one(conn, "SELECT count(*) FROM o_r1.nocols") == 3
        assert one(conn, "SELECT count(*) FROM o_r1.dropped_all") == 2
        assert one(conn, "SELECT count(*) FROM o_r1.nocols_big") == 650000


def test_unlogged_table_from_a_real_pitr_copy_comes_back_empty(prod, new_db, make_pitr_copy,
                                                             tmp_path):
    """Characterisation: a point-in-time copy (base backup + WAL, like RDS) never holds
    the contents of unlogged tables, so the restored unlogged table is empty. The run
    succeeds, verify passes (0 = 0), and extract warns about it."""
    db = new_db(prod, "unlog")
    prod.execute("""
        CREATE SCHEMA u;
        CREATE UNLOGGED TABLE u.cache (k int PRIMARY KEY);
        CREATE TABLE u.kept (k int PRIMARY KEY);
        INSERT INTO u.cache SELECT generate_series(1, 50);
        INSERT INTO u.kept SELECT generate_series(1, 50);
    """, db)
    copy = make_pitr_copy(restore_point())
    run = run_ddl_job(["from-copy", "--schemas", "u", "--suffix", SUFFIX, "--disposable-source",
                       "--artifacts", str(tmp_path / "a")],
                      source=copy.dsn(db), target=prod.dsn(db))
    assert run.returncode == 0, str(run)
    assert run.last["result"]["verify"]["ok"] is True
    assert [(w["caveat"], w["objects"]) for w in run.find("warning")] == \
        [("UnloggedTables", ["u.cache"])], str(run)
    assert [w.split(":")[0] for w in run.last["result"]["warnings"]] == ["UnloggedTables"]
    with prod.connect(db) as conn:
        assert one(conn, "SELECT count(*) FROM u_r1.kept") == 50
        assert one(conn, "SELECT count(*) FROM u.cache") == 50
        assert one(conn, "SELECT count(*) FROM u_r1.cache") == 0     # silently empty


# -- 4. awkward values, a domain with a CHECK over an enum ----------------------------

VALUES_SQL = r"""
CREATE SCHEMA w;
CREATE TYPE w.mood AS ENUM ('sad', 'ok', 'happy', 'ünïcode mood');
CREATE DOMAIN w.cheerful AS w.mood CHECK (VALUE <> 'sad');
CREATE TABLE w.v (
    id int PRIMARY KEY,
    b bytea, j jsonb, js json, ia int[], ta text[], m2 int[][], ma w.mood[],
    n numeric, f float8, ts timestamptz, d date, txt text, c w.cheerful, ca w.cheerful[]
);
INSERT INTO w.v VALUES
 (1, '\x00ff5c0a0d09', '{"k": "tab\t nl\n q\" bs\\", "n": 1.50, "u": "é漢🙂", "z": null}',
  '{"dup": 1, "dup": 2,  "spacing" : [1, 2]}', '{1,NULL,3}',
  '{"a,b","q\"uote","back\\slash",NULL,"","NULL"}', '{{1,2},{3,4}}', '{sad,"ünïcode mood"}',
  'NaN', 'NaN', 'infinity', 'infinity',
  E'tab\there\nnew\rline\\back \u0001 \u001f \u200b \ufeff \u00a0 \U0001F600 \\N', 'happy',
  '{ok,happy}'),
 (2, '', '[]', 'null', '{}', '{}', '{}', '{}', 'Infinity', '-Infinity', '-infinity',
  '-infinity', '', 'ok', '{}'),
 (3, NULL, '"just a string"', '"x"', '[0:2]={7,8,9}', '{"\\N"}', NULL, NULL, '-Infinity',
  '-0', '0001-01-01 00:00:00+00 BC', '4713-01-01 BC', '\N', NULL, NULL),
 (4, '\x', '{"deep": {"deeper": [[[]]]}}', '{}', NULL, NULL, NULL, NULL,
  '123456789012345678901234567890.000000000000000000001', 1e-320,
  '294276-12-31 23:59:59.999999+00', '5874897-12-31', repeat('x', 100000), 'ok', NULL);
"""


def test_awkward_values_and_domain_over_enum(scenario):
    sc = scenario(VALUES_SQL)
    rows = "SELECT id, v::text, b, md5(txt) FROM {}.v v ORDER BY id"
    with sc.src_conn() as conn:
        conn.execute("SET TimeZone = 'UTC'")
        source_rows = conn.execute(rows.format("w")).fetchall()
    sc.restored(["w"])
    with sc.tgt_conn(autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        assert conn.execute(rows.format("w_r1")).fetchall() == source_rows
        assert one(conn, "SELECT j->>'u' FROM w_r1.v WHERE id = 1") == "é漢🙂"
        assert one(conn, "SELECT js::text FROM w_r1.v WHERE id = 1") == \
            '{"dup": 1, "dup": 2,  "spacing" : [1, 2]}'   # json keeps its text
        assert one(conn, "SELECT array_lower(ia, 1) FROM w_r1.v WHERE id = 3") == 0
        with pytest.raises(errors.CheckViolation):
            conn.execute("INSERT INTO w_r1.v (id, c) VALUES (9, 'sad')")
        with pytest.raises(errors.CheckViolation):
            conn.execute("INSERT INTO w_r1.v (id, ca) VALUES (9, '{ok,sad}')")


REG_SQL = """
CREATE SCHEMA rg;
CREATE TYPE rg.status AS ENUM ('new', 'done');
CREATE TEXT SEARCH CONFIGURATION rg.cfg (COPY = pg_catalog.simple);
CREATE TABLE rg.docs (id int PRIMARY KEY, lang regconfig NOT NULL, body text,
                      tsv tsvector GENERATED ALWAYS AS (to_tsvector(lang, body)) STORED);
CREATE FUNCTION rg.touch() RETURNS int LANGUAGE sql AS 'SELECT 1';
-- an audit log keyed by table, the usual per-row text search configuration
CREATE TABLE rg.audit (id int PRIMARY KEY, tbl regclass, typ regtype, fn regproc);
INSERT INTO rg.docs VALUES (1, 'rg.cfg', 'The Cats'), (2, 'english', 'The Cats');
INSERT INTO rg.audit VALUES (1, 'rg.docs', 'rg.status', 'rg.touch'),
                            (2, 'pg_class', 'int4', 'now');
"""


def test_reg_type_columns_naming_objects_of_the_restored_schema(scenario):
    sc = scenario(REG_SQL)
    run = sc.run(["rg"])
    assert run.returncode == 0, str(run)
    with sc.tgt_conn() as conn:
        conn.execute("SET search_path = pg_catalog")
        assert conn.execute("SELECT id, lang::text FROM rg_r1.docs ORDER BY id").fetchall() \
            == [(1, "rg_r1.cfg"), (2, "english")]
        assert conn.execute("SELECT tbl::text, typ::text, fn::text FROM rg_r1.audit "
                            "ORDER BY id").fetchall() == [
            ("rg_r1.docs", "rg_r1.status", "rg_r1.touch"), ("pg_class", "integer", "now")]
    sc.assert_rest_unchanged()


NOT_VALID_SQL = """
CREATE SCHEMA nv;
CREATE DOMAIN nv.pos AS int;
CREATE TABLE nv.parent (id int PRIMARY KEY);
CREATE TABLE nv.legacy (id int, qty int, p nv.pos, parent_id int);
INSERT INTO nv.parent VALUES (1);
INSERT INTO nv.legacy VALUES (1, -5, -1, 1), (2, 3, 2, 99);   -- violate what comes next
ALTER TABLE nv.legacy ADD CONSTRAINT qty_pos CHECK (qty > 0) NOT VALID;
ALTER TABLE nv.legacy ADD CONSTRAINT parent_fk FOREIGN KEY (parent_id)
    REFERENCES nv.parent NOT VALID;
ALTER DOMAIN nv.pos ADD CONSTRAINT pos_check CHECK (VALUE > 0) NOT VALID;
"""


def test_not_valid_constraints_over_violating_rows(scenario):
    sc = scenario(NOT_VALID_SQL)
    sc.restored(["nv"])
    with sc.tgt_conn(autocommit=True) as conn:
        assert one(conn, "SELECT count(*) FROM pg_constraint WHERE NOT convalidated "
                         "AND connamespace = 'nv_r1'::regnamespace") == 3
        with pytest.raises(errors.CheckViolation):
            conn.execute("INSERT INTO nv_r1.legacy (id, qty) VALUES (3, -1)")
        with pytest.raises(errors.CheckViolation):
            conn.execute("INSERT INTO nv_r1.legacy (id, p) VALUES (3, -1)")
        with pytest.raises(errors.ForeignKeyViolation):
            conn.execute("INSERT INTO nv_r1.legacy (id, parent_id) VALUES (3, 98)")


# -- 5. partitioning, and inheritance from another schema -------------------------------

PARTITIONS_SQL = """
CREATE SCHEMA p;
CREATE TABLE p.customers (id int PRIMARY KEY, name text);
CREATE TABLE p.m (
    id int, region text, day date, cust int REFERENCES p.customers (id), amount numeric,
    PRIMARY KEY (id, region, day)
) PARTITION BY LIST (region);
CREATE TABLE p.m_eu PARTITION OF p.m FOR VALUES IN ('eu') PARTITION BY RANGE (day);
CREATE TABLE p.m_eu_2024 PARTITION OF p.m_eu FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE p.m_eu_rest PARTITION OF p.m_eu DEFAULT;
CREATE TABLE p.m_us PARTITION OF p.m FOR VALUES IN ('us');
CREATE TABLE p.m_rest PARTITION OF p.m DEFAULT;
CREATE INDEX m_day_idx ON p.m (day);
CREATE UNIQUE INDEX m_uniq ON p.m (region, id, day) WHERE amount > 0;
-- a foreign key *to* a partitioned table
CREATE TABLE p.notes (id int, region text, day date, note text,
                      FOREIGN KEY (id, region, day) REFERENCES p.m ON DELETE CASCADE);
INSERT INTO p.customers SELECT g, 'c' || g FROM generate_series(1, 10) g;
INSERT INTO p.m SELECT g, (ARRAY['eu', 'us', 'apac'])[1 + g % 3],
                       date '2023-12-01' + g * 3, 1 + g % 10, g
FROM generate_series(1, 300) g;
INSERT INTO p.notes SELECT id, region, day, 'n' FROM p.m WHERE id % 10 = 0;
"""


def test_multilevel_partitions_default_partition_index_and_fk(scenario):
    sc = scenario(PARTITIONS_SQL, PARTITIONS_SQL + "DELETE FROM p.m WHERE region = 'eu';")
    sc.restored(["p"])
    with sc.tgt_conn(autocommit=True) as conn:
        tree = conn.execute("SELECT relid::text, parentrelid::text, level "
                            "FROM pg_partition_tree('p_r1.m') ORDER BY 3, 1").fetchall()
        assert tree == [("p_r1.m", None, 0), ("p_r1.m_eu", "p_r1.m", 1),
                        ("p_r1.m_rest", "p_r1.m", 1), ("p_r1.m_us", "p_r1.m", 1),
                        ("p_r1.m_eu_2024", "p_r1.m_eu", 2), ("p_r1.m_eu_rest", "p_r1.m_eu", 2)]
        assert one(conn, "SELECT count(*) FROM p_r1.m") == 300
        assert one(conn, "SELECT count(*) FROM p_r1.m WHERE region = 'eu'") == 100
        # the same indexes as production's original, attached on every level
        assert set(index_defs(conn, "p_r1")) == set(index_defs(conn, "p"))
        assert one(conn, """SELECT count(*) FROM pg_index x JOIN pg_class c
                            ON c.oid = x.indexrelid WHERE x.indrelid IN (
                                SELECT relid FROM pg_partition_tree('p_r1.m'))
                              AND c.relispartition""") == 3 * 5
        conn.execute("INSERT INTO p_r1.m VALUES (1000, 'eu', '2024-05-05', 1, 1)")
        assert one(conn, "SELECT tableoid::regclass::text FROM p_r1.m WHERE id = 1000") == \
            "p_r1.m_eu_2024"
        with pytest.raises(errors.ForeignKeyViolation):
            conn.execute("INSERT INTO p_r1.m VALUES (1001, 'us', '2024-05-05', 999, 1)")
        with pytest.raises(errors.ForeignKeyViolation):
            conn.execute("INSERT INTO p_r1.notes VALUES (999999, 'eu', '2024-01-01', 'x')")
        with pytest.raises(errors.UniqueViolation):
            conn.execute("INSERT INTO p_r1.m VALUES (1000, 'eu', '2024-05-05', 1, 1)")
        # ON DELETE CASCADE through the partitioned FK
        victim = conn.execute("SELECT id, region, day FROM p_r1.notes LIMIT 1").fetchone()
        conn.execute("DELETE FROM p_r1.m WHERE (id, region, day) = (%s, %s, %s)", victim)
        assert one(conn, "SELECT count(*) FROM p_r1.notes WHERE id = %s", (victim[0],)) == 0


INHERIT_SQL = """
CREATE SCHEMA core;
CREATE TABLE core.vehicles (id int, name text NOT NULL);
INSERT INTO core.vehicles VALUES (1, 'prod bike'), (2, 'prod truck');
CREATE SCHEMA fleet;
CREATE TABLE fleet.cars (doors int NOT NULL DEFAULT 4) INHERITS (core.vehicles);
INSERT INTO fleet.cars VALUES (10, 'sedan', 4), (11, 'coupe', 2), (12, 'van', 5);
"""


def test_inheritance_from_a_table_in_another_schema(scenario):
    sc = scenario(INHERIT_SQL)
    with sc.tgt_conn() as conn:
        parent_rows = one(conn, "SELECT count(*) FROM core.vehicles")
    run = sc.restored(["fleet"])
    warnings = [e for e in run.find("warning") if "link" in e]
    assert [w["link"] for w in warnings] == ["fleet.cars -> core.vehicles"], str(run)
    assert "standalone" in warnings[0]["message"]
    with sc.tgt_conn() as conn:
        assert one(conn, "SELECT count(*) FROM fleet_r1.cars") == 3
        assert one(conn, "SELECT count(*) FROM pg_inherits "
                         "WHERE inhrelid = 'fleet_r1.cars'::regclass") == 0
        # the inherited columns are the restored table's own
        assert conn.execute("SELECT * FROM fleet_r1.cars ORDER BY id LIMIT 1").fetchone() == \
            (10, "sedan", 4)
        # what production sees through its own parent table must not change
        assert one(conn, "SELECT count(*) FROM core.vehicles") == parent_rows


HUB_SQL = """
CREATE SCHEMA hub;
CREATE TABLE hub.events (tenant text NOT NULL, id int, v text) PARTITION BY LIST (tenant);
CREATE TABLE hub.events_other PARTITION OF hub.events DEFAULT;
CREATE SCHEMA acme;
CREATE TABLE acme.events PARTITION OF hub.events FOR VALUES IN ('acme');
CREATE TABLE acme.customers (id int PRIMARY KEY);
INSERT INTO hub.events VALUES ('acme', 1, 'a'), ('acme', 2, 'b'), ('zeta', 3, 'z');
INSERT INTO acme.customers VALUES (1);
"""


def test_partition_of_a_table_in_another_schema(scenario):
    sc = scenario(HUB_SQL, HUB_SQL + "DROP TABLE acme.events;")
    run = sc.restored(["acme"])
    assert [e["link"] for e in run.find("warning") if "link" in e] == \
        ["acme.events -> hub.events"], str(run)
    with sc.tgt_conn() as conn:
        assert one(conn, "SELECT count(*) FROM acme_r1.events") == 2
        assert one(conn, "SELECT count(*) FROM hub.events WHERE tenant = 'acme'") == 0
        assert one(conn, "SELECT relispartition FROM pg_class "
                         "WHERE oid = 'acme_r1.events'::regclass") is False


OUTER_PARTITION_SQL = """
CREATE SCHEMA sales;
CREATE TABLE sales.orders (region text NOT NULL, id int) PARTITION BY LIST (region);
CREATE TABLE sales.orders_eu PARTITION OF sales.orders FOR VALUES IN ('eu');
CREATE SCHEMA archive;
CREATE TABLE archive.orders_old PARTITION OF sales.orders FOR VALUES IN ('old');
INSERT INTO sales.orders VALUES ('eu', 1), ('eu', 2), ('old', 3);
"""


def test_partition_outside_the_restored_schema_is_left_out(scenario):
    sc = scenario(OUTER_PARTITION_SQL)
    with sc.tgt_conn() as conn:
        production_parent = one(conn, "SELECT count(*) FROM sales.orders")
    run = sc.restored(["sales"])
    warnings = [e for e in run.find("warning") if "link" in e]
    assert [w["link"] for w in warnings] == ["archive.orders_old -> sales.orders"], str(run)
    assert "not part of the restore" in warnings[0]["message"]
    with sc.tgt_conn() as conn:
        assert one(conn, "SELECT count(*) FROM sales_r1.orders") == 2
        assert one(conn, "SELECT count(*) FROM sales.orders") == production_parent
        # production's partition still belongs to production's parent only
        assert conn.execute("SELECT inhparent::regclass::text FROM pg_inherits WHERE "
                            "inhrelid = 'archive.orders_old'::regclass").fetchall() == \
            [("sales.orders",)]


# -- 6. references across schemas ------------------------------------------------------

CROSS_SQL = """
CREATE SCHEMA lookup;
CREATE TABLE lookup.codes (code text PRIMARY KEY, label text NOT NULL);
INSERT INTO lookup.codes VALUES ('a', 'Alpha'), ('b', 'Beta'), ('c', 'Gamma');
CREATE FUNCTION public.bump_touched() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.touched := coalesce(OLD.touched, 0) + 1;
    RETURN NEW;
END $$;
CREATE FUNCTION public.audit_into_own_schema() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('INSERT INTO %I.audit (msg) VALUES ($1)', TG_TABLE_SCHEMA)
        USING TG_OP || ' ' || NEW.id;
    RETURN NEW;
END $$;
CREATE SCHEMA x;
CREATE TABLE x.items (id int PRIMARY KEY, code text NOT NULL REFERENCES lookup.codes,
                      touched int NOT NULL DEFAULT 0);
CREATE TABLE x.audit (msg text);
CREATE VIEW x.v_items AS
    SELECT i.id, c.label FROM x.items i JOIN lookup.codes c USING (code);
CREATE FUNCTION x.count_items() RETURNS bigint LANGUAGE plpgsql STABLE
    SET search_path = x, public AS $$ BEGIN RETURN (SELECT count(*) FROM items); END $$;
CREATE FUNCTION x.path() RETURNS text LANGUAGE sql STABLE
    SET search_path = x, public AS $$ SELECT current_setting('search_path') $$;
CREATE TRIGGER items_touch BEFORE UPDATE ON x.items
    FOR EACH ROW EXECUTE FUNCTION public.bump_touched();
CREATE TRIGGER items_audit AFTER INSERT ON x.items
    FOR EACH ROW EXECUTE FUNCTION public.audit_into_own_schema();
INSERT INTO x.items SELECT g, (ARRAY['a', 'b', 'c'])[1 + g % 3] FROM generate_series(1, 30) g;
-- and the other way round: objects outside x that name x
CREATE VIEW lookup.v_x_count AS SELECT count(*) AS n FROM x.items;
CREATE FUNCTION public.x_count() RETURNS bigint LANGUAGE plpgsql STABLE
    SET search_path = x, public AS $$ BEGIN RETURN (SELECT count(*) FROM items); END $$;
"""


def test_cross_schema_view_search_path_and_public_trigger_function(scenario):
    sc = scenario(CROSS_SQL, CROSS_SQL + "DELETE FROM x.items WHERE id > 10;")
    sc.restored(["x"])
    with sc.tgt_conn(autocommit=True) as conn:
        assert one(conn, "SELECT count(*) FROM x_r1.items") == 30
        assert one(conn, "SELECT count(*) FROM x.items") == 10
        assert one(conn, "SELECT x_r1.count_items()") == 30
        assert one(conn, "SELECT x_r1.path()") == "x_r1, public"
        assert one(conn, "SELECT label FROM x_r1.v_items WHERE id = 2") == "Gamma"
        # production objects naming x still read production's x
        assert one(conn, "SELECT n FROM lookup.v_x_count") == 10
        assert one(conn, "SELECT public.x_count()") == 10
        # triggers with functions in public act on the restored table
        audit_prod = one(conn, "SELECT count(*) FROM x.audit")
        conn.execute("INSERT INTO x_r1.items VALUES (100, 'a')")
        assert one(conn, "SELECT count(*) FROM x_r1.audit WHERE msg = 'INSERT 100'") == 1
        assert one(conn, "SELECT count(*) FROM x.audit") == audit_prod
        conn.execute("UPDATE x_r1.items SET code = 'b' WHERE id = 100")
        assert one(conn, "SELECT touched FROM x_r1.items WHERE id = 100") == 1
        with pytest.raises(errors.ForeignKeyViolation):
            conn.execute("INSERT INTO x_r1.items VALUES (101, 'zz')")


# -- 7. identifiers ---------------------------------------------------------------------

LONG_48 = "tenant_" + "x" * 41                # 48 bytes: + "_20240128143000" = 63
LONG_49 = "tenant_" + "x" * 42                # 49 bytes: 64 with the suffix
IDENT_SCHEMAS = ["UPPER Case", "with space", "a.b", "tenant_é", LONG_48]
TS_SUFFIX = "_20240128143000"


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def ident_sql(names: list[str]) -> str:
    parts = []
    for i, name in enumerate(names):
        S, L = ident(name), _literal(name)
        parts.append(fmt("""
CREATE SCHEMA {S};
CREATE TABLE {S}.t (id serial PRIMARY KEY, v text NOT NULL);
INSERT INTO {S}.t (v) SELECT 'v' || g FROM generate_series(1, 20 + {I}) g;
CREATE TABLE {S}.{S} (id int PRIMARY KEY REFERENCES {S}.t (id));
INSERT INTO {S}.{S} VALUES (1), (2);
CREATE VIEW {S}.v AS SELECT t.id, t.v FROM {S}.t JOIN {S}.{S} s USING (id);
CREATE FUNCTION {S}.cnt() RETURNS bigint LANGUAGE plpgsql STABLE AS $$
BEGIN RETURN (SELECT count(*) FROM {S}.t); END $$;
CREATE FUNCTION {S}.dyn() RETURNS bigint LANGUAGE plpgsql STABLE AS $$
DECLARE n bigint;
BEGIN EXECUTE format('SELECT count(*) FROM %I.t', {L}) INTO n; RETURN n; END $$;
CREATE FUNCTION {S}.sp() RETURNS bigint LANGUAGE plpgsql STABLE SET search_path = {S}
AS $$ BEGIN RETURN (SELECT count(*) FROM t); END $$;
CREATE FUNCTION {S}.add(p text) RETURNS int LANGUAGE sql
BEGIN ATOMIC INSERT INTO {S}.t (v) VALUES (p) RETURNING id; END;
""", S=S, L=L, I=str(i)))
    return "".join(parts)


def test_odd_identifiers(scenario):
    assert len(LONG_48.encode()) == 48 and len((LONG_48 + TS_SUFFIX).encode()) == 63
    damage = "".join(f"DELETE FROM {ident(n)}.t WHERE id > 15;" for n in IDENT_SCHEMAS)
    sc = scenario(ident_sql(IDENT_SCHEMAS), ident_sql(IDENT_SCHEMAS) + damage)
    sc.restored(IDENT_SCHEMAS, suffix=TS_SUFFIX)
    with sc.tgt_conn(autocommit=True) as conn:
        for i, name in enumerate(IDENT_SCHEMAS):
            S = ident(name + TS_SUFFIX)
            n = 20 + i
            assert one(conn, f"SELECT count(*) FROM {S}.t") == n
            assert one(conn, f"SELECT count(*) FROM {ident(name)}.t") == 15
            assert one(conn, f"SELECT {S}.cnt()") == n, name
            assert one(conn, f"SELECT {S}.dyn()") == n, name
            assert one(conn, f"SELECT {S}.sp()") == n, name
            assert one(conn, f"SELECT count(*) FROM {S}.v") == 2
            new_id = one(conn, f"SELECT {S}.add('new')")
            assert new_id == n + 1                          # serial continues
            assert one(conn, f"SELECT count(*) FROM {S}.t") == n + 1


def test_schema_name_with_a_double_quote_is_restored(scenario):
    """Once refused (InvalidSchemaName): a legal name, restored like any other
    (more odd names: tests/test_identifiers.py)."""
    name = 'Tenant "Q"'
    sc = scenario(f"CREATE SCHEMA {ident(name)}; CREATE TABLE {ident(name)}.t (id int); "
                  f"INSERT INTO {ident(name)}.t VALUES (1), (2);")
    sc.restored([name])
    with sc.tgt_conn() as conn:
        assert one(conn, f"SELECT count(*) FROM {ident(name + SUFFIX)}.t") == 2


def test_49_byte_name_with_timestamp_suffix_is_refused(scenario):
    assert len((LONG_49 + TS_SUFFIX).encode()) == 64
    sc = scenario(f"CREATE SCHEMA {LONG_49}; CREATE TABLE {LONG_49}.t (id int);")
    run = sc.run([LONG_49], suffix=TS_SUFFIX)
    assert run.returncode == 1, str(run)
    assert run.last["reason"] == "NameTooLong", str(run)
    assert "64 bytes" in run.last["message"]
    sc.assert_rest_unchanged(added=False)


# -- 8. sequences -------------------------------------------------------------------------

SEQ_SQL = """
CREATE SCHEMA q;
CREATE SEQUENCE q.free_seq;                                       -- owned by nobody
CREATE TABLE q.a (id bigint PRIMARY KEY DEFAULT nextval('q.free_seq'), v text);
CREATE SEQUENCE q.down INCREMENT -1 MINVALUE -5 MAXVALUE -1 START -1 CYCLE;
CREATE TABLE q.b (n int NOT NULL DEFAULT nextval('q.down'), v text);
CREATE SEQUENCE q.tiny AS smallint MAXVALUE 5 CYCLE;
CREATE TABLE q.c (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, v text);
CREATE SEQUENCE q.unused;                                          -- never called
INSERT INTO q.a (v) SELECT 'x' FROM generate_series(1, 7);
INSERT INTO q.b (v) SELECT 'y' FROM generate_series(1, 8);          -- wrapped around once
SELECT nextval('q.tiny') FROM generate_series(1, 5);               -- at its maximum
INSERT INTO q.c (id, v) VALUES (100, 'explicit'), (101, 'explicit');
INSERT INTO q.c (v) VALUES ('auto');                               -- id 1
"""

def seq_state(conn: psycopg.Connection, schema: str) -> dict[str, tuple]:
    out = {}
    for (name,) in conn.execute("SELECT c.relname FROM pg_class c WHERE c.relkind = 'S' "
                                "AND c.relnamespace = %s::regnamespace ORDER BY 1",
                                (ident(schema),)).fetchall():
        out[name] = conn.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(
            sql.Identifier(schema, name))).fetchone()
    return out


def test_sequences_unowned_descending_cycling_and_identity(scenario):
    sc = scenario(SEQ_SQL)
    sc.restored(["q"])
    with sc.tgt_conn(autocommit=True) as conn:
        # production's original never moved, so it holds the source's values
        assert seq_state(conn, "q_r1") == seq_state(conn, "q")
        assert one(conn, "SELECT pg_get_serial_sequence('q_r1.a', 'id')") is None
        assert one(conn, "INSERT INTO q_r1.a (v) VALUES ('n') RETURNING id") == 8
        assert one(conn, "INSERT INTO q_r1.b (v) VALUES ('n') RETURNING n") == -4
        assert one(conn, "SELECT nextval('q_r1.tiny')") == 1
        assert one(conn, "INSERT INTO q_r1.c (v) VALUES ('n') RETURNING id") == 2
        assert one(conn, "SELECT nextval('q_r1.unused')") == 1
        # defaults point at the restored sequences, production's did not move
        assert seq_state(conn, "q")["free_seq"] == (7, True)


# -- 9. statistics, collation, text search, operators -------------------------------------

def misc_sql(icu: bool, operator_class: bool = True) -> str:
    """`operator_class`: with `z.abs_ops` (only a superuser may create one) and
    the unique index that uses it."""
    text = _misc_sql(icu)
    if not operator_class:
        for piece in (_OPCLASS_SQL, _OPCLASS_INDEX_SQL):
            assert piece in text
            text = text.replace(piece, "")
    return text


_OPCLASS_SQL = """CREATE OPERATOR CLASS z.abs_ops FOR TYPE int USING btree AS
    OPERATOR 1 z.|<|, OPERATOR 2 z.|<=|, OPERATOR 3 z.|=|, OPERATOR 4 z.|>=|,
    OPERATOR 5 z.|>|, FUNCTION 1 z.abs_cmp(int, int);
"""
_OPCLASS_INDEX_SQL = "CREATE UNIQUE INDEX nums_abs_uniq ON z.nums (n z.abs_ops);\n"


def _misc_sql(icu: bool) -> str:
    collation = ("CREATE COLLATION z.ci (provider = icu, locale = 'und-u-ks-level2', "
                 "deterministic = false);" if icu else
                 "CREATE COLLATION z.ci FROM \"C\";")
    return collation + """
CREATE TEXT SEARCH DICTIONARY z.simple_d (TEMPLATE = pg_catalog.simple, STOPWORDS = english);
CREATE TEXT SEARCH CONFIGURATION z.cfg (COPY = pg_catalog.english);
ALTER TEXT SEARCH CONFIGURATION z.cfg ALTER MAPPING FOR asciiword WITH z.simple_d;
CREATE FUNCTION z.abs_cmp(int, int) RETURNS int LANGUAGE sql IMMUTABLE STRICT AS
    $$ SELECT CASE WHEN abs($1) < abs($2) THEN -1 WHEN abs($1) > abs($2) THEN 1 ELSE 0 END $$;
CREATE FUNCTION z.abs_lt(int, int) RETURNS bool LANGUAGE sql IMMUTABLE STRICT AS
    $$ SELECT abs($1) < abs($2) $$;
CREATE FUNCTION z.abs_le(int, int) RETURNS bool LANGUAGE sql IMMUTABLE STRICT AS
    $$ SELECT abs($1) <= abs($2) $$;
CREATE FUNCTION z.abs_eq(int, int) RETURNS bool LANGUAGE sql IMMUTABLE STRICT AS
    $$ SELECT abs($1) = abs($2) $$;
CREATE FUNCTION z.abs_ge(int, int) RETURNS bool LANGUAGE sql IMMUTABLE STRICT AS
    $$ SELECT abs($1) >= abs($2) $$;
CREATE FUNCTION z.abs_gt(int, int) RETURNS bool LANGUAGE sql IMMUTABLE STRICT AS
    $$ SELECT abs($1) > abs($2) $$;
CREATE OPERATOR z.|<| (LEFTARG = int, RIGHTARG = int, FUNCTION = z.abs_lt);
CREATE OPERATOR z.|<=| (LEFTARG = int, RIGHTARG = int, FUNCTION = z.abs_le);
CREATE OPERATOR z.|=| (LEFTARG = int, RIGHTARG = int, FUNCTION = z.abs_eq);
CREATE OPERATOR z.|>=| (LEFTARG = int, RIGHTARG = int, FUNCTION = z.abs_ge);
CREATE OPERATOR z.|>| (LEFTARG = int, RIGHTARG = int, FUNCTION = z.abs_gt);
CREATE OPERATOR CLASS z.abs_ops FOR TYPE int USING btree AS
    OPERATOR 1 z.|<|, OPERATOR 2 z.|<=|, OPERATOR 3 z.|=|, OPERATOR 4 z.|>=|,
    OPERATOR 5 z.|>|, FUNCTION 1 z.abs_cmp(int, int);
CREATE TABLE z.words (
    id int PRIMARY KEY,
    w text COLLATE z.ci,
    body text,
    tsv tsvector GENERATED ALWAYS AS (to_tsvector('z.cfg', body)) STORED
);
CREATE INDEX words_w_idx ON z.words (w);
CREATE INDEX words_tsv_idx ON z.words USING gin (tsv);
CREATE STATISTICS z.words_stats (ndistinct, dependencies) ON id, w FROM z.words;
CREATE TABLE z.nums (n int NOT NULL);
CREATE UNIQUE INDEX nums_abs_uniq ON z.nums (n z.abs_ops);
CREATE FUNCTION z.search(q text) RETURNS SETOF int LANGUAGE sql STABLE AS
    $$ SELECT id FROM z.words WHERE tsv @@ plainto_tsquery('z.cfg', q) ORDER BY id $$;
INSERT INTO z.words (id, w, body) VALUES
    (1, 'hello', 'The cats are running'), (2, 'World', 'a dog and the cat'),
    (3, 'ÉTÉ', 'running dogs');
INSERT INTO z.nums VALUES (1), (-2), (3), (-4);
ANALYZE z.words;
"""


def test_statistics_collation_text_search_and_operators(scenario, copyhost):
    with copyhost.connect() as conn:
        icu = one(conn, "SELECT count(*) > 0 FROM pg_collation WHERE collprovider = 'i'")
    sc = scenario("CREATE SCHEMA z;" + misc_sql(icu, operator_class=False))
    sc.restored(["z"])
    with sc.tgt_conn(autocommit=True) as conn:
        assert one(conn, "SELECT collnamespace::regnamespace::text FROM pg_collation c "
                         "JOIN pg_attribute a ON a.attcollation = c.oid "
                         "WHERE a.attrelid = 'z_r1.words'::regclass AND a.attname = 'w'") \
            == "z_r1"
        if icu:
            assert one(conn, "SELECT id FROM z_r1.words WHERE w = 'HELLO'") == 1
        assert one(conn, "SELECT cfgnamespace::regnamespace::text FROM pg_ts_config "
                         "WHERE oid = 'z_r1.cfg'::regconfig") == "z_r1"
        # the simple dictionary with english stop words: "the" dropped, "cats" not stemmed
        assert one(conn, "SELECT to_tsvector('z_r1.cfg', 'the cats')::text") == "'cats':2"
        assert [r[0] for r in conn.execute("SELECT z_r1.search('running')")] == [1, 3]
        assert one(conn, "SELECT count(*) FROM pg_statistic_ext "
                         "WHERE stxnamespace = 'z_r1'::regnamespace") == 1
        assert one(conn, "SELECT count(*) FROM z_r1.nums WHERE n OPERATOR(z_r1.|<|) 3") == 2


def ident_grant_reads(role: str) -> str:
    """Let `role` read the schema's rows (the test's own before/after reading)."""
    return (f"GRANT USAGE ON SCHEMA z TO {ident(role)}; "
            f"GRANT SELECT ON ALL TABLES IN SCHEMA z TO {ident(role)};")


def test_operator_class_refused_up_front(scenario, copyhost, prod):
    """Only a superuser may create an operator class (and its family): as
    `master` the restore refuses before extraction, naming both; production
    unchanged. (Created by the superuser, as a self-managed source would be.)"""
    with copyhost.connect() as conn:
        icu = one(conn, "SELECT count(*) > 0 FROM pg_collation WHERE collprovider = 'i'")
    with as_superuser(copyhost, prod):
        sc = scenario("CREATE SCHEMA z;" + misc_sql(icu) + ident_grant_reads(MASTER),
                      "SELECT 1")
    run = sc.run(["z"])
    assert run.returncode == 1, str(run)
    assert run.last["reason"] == "SuperuserRequired", str(run)
    message = run.last["message"]
    assert "operator class z.abs_ops USING btree: an operator class" in message, message
    assert "operator family z.abs_ops USING btree: an operator family" in message, message
    assert [e["step"] for e in run.find("started")] == ["rights"], str(run)
    sc.assert_rest_unchanged(added=False)


# -- 10. large objects --------------------------------------------------------------------

LO_SQL = """
CREATE SCHEMA lo;
CREATE TABLE lo.docs (id int PRIMARY KEY, doc oid);
SELECT lo_from_bytea(424242, 'content at the restore point');
SELECT lo_from_bytea(434343, 'unlinked after the restore point');
INSERT INTO lo.docs VALUES (1, 424242), (2, 434343);
"""
# production after the restore point: 424242 rewritten, 434343 unlinked
LO_PROD_SQL = """
CREATE SCHEMA lo;
CREATE TABLE lo.docs (id int PRIMARY KEY, doc oid);
SELECT lo_from_bytea(424242, 'content written later');
INSERT INTO lo.docs VALUES (1, 424242);
"""


def test_large_objects_are_not_restored(scenario):
    """Characterisation: pg_dump --schema never dumps large objects and the copy moves
    the oid column as a number, so restored rows point at whatever production holds
    under that oid now (changed content) or at nothing. The run succeeds, verify passes,
    and extract warns about it."""
    sc = scenario(LO_SQL, LO_PROD_SQL)
    run = sc.restored(["lo"])
    assert [(w["caveat"], w["objects"]) for w in run.find("warning")] == \
        [("LargeObjectReferences", ["lo.docs.doc"])], str(run)
    with sc.tgt_conn() as conn:
        assert conn.execute("SELECT id, doc FROM lo_r1.docs ORDER BY id").fetchall() == \
            [(1, 424242), (2, 434343)]
        assert one(conn, "SELECT convert_from(lo_get(doc), 'UTF8') FROM lo_r1.docs "
                         "WHERE id = 1") == "content written later"   # not the old content
        with pytest.raises(errors.UndefinedObject):
            conn.execute("SELECT lo_get(doc) FROM lo_r1.docs WHERE id = 2")


# -- 11. row-level security ----------------------------------------------------------------

RLS_SQL = fmt("""
CREATE SCHEMA r AUTHORIZATION {O};
CREATE TABLE r.t (id int PRIMARY KEY, visible bool NOT NULL, v text);
INSERT INTO r.t SELECT g, g % 5 = 0, 'v' || g FROM generate_series(1, 50) g;
ALTER TABLE r.t OWNER TO {O};
ALTER TABLE r.t ENABLE ROW LEVEL SECURITY;
ALTER TABLE r.t FORCE ROW LEVEL SECURITY;
CREATE POLICY only_visible ON r.t USING (visible);   -- hides 40 rows even from the owner
""", O=OWNER)


def _rls_checks(conn: psycopg.Connection) -> None:
    assert one(conn, "SELECT relrowsecurity AND relforcerowsecurity FROM pg_class "
                     "WHERE oid = 'r_r1.t'::regclass") is True
    assert one(conn, "SELECT count(*) FROM pg_policy WHERE polrelid = 'r_r1.t'::regclass") == 1


def test_force_rls_restored_by_a_superuser(superuser, scenario, roles):
    sc = scenario(RLS_SQL)
    sc.restored(["r"])
    with sc.tgt_conn(autocommit=True) as conn:
        assert one(conn, "SELECT count(*) FROM r_r1.t") == 50   # superuser bypasses RLS
        _rls_checks(conn)
        conn.execute(f"SET ROLE {OWNER}")
        assert one(conn, "SELECT count(*) FROM r_r1.t") == 10   # the policy still applies


def test_force_rls_hiding_rows_from_the_copying_role(scenario, roles, copyhost, prod):
    """The copying role owns the schema but is no superuser (as on RDS): FORCE ROW LEVEL
    SECURITY applies to it. The restore must never lose the hidden rows silently: it
    either carries all 50 rows or fails cleanly, leaving production unchanged."""
    sc = scenario(RLS_SQL)
    for cluster, db in ((copyhost, sc.src), (prod, sc.tgt)):
        cluster.execute(f"GRANT CREATE ON DATABASE {ident(db)} TO {OWNER}")
    run = sc.run(["r"], source=sc.source(user=OWNER, password=OWNER_PASSWORD),
                 target=sc.target(user=OWNER, password=OWNER_PASSWORD))
    assert OWNER_PASSWORD not in run.stdout + run.stderr
    if run.returncode == 0:
        with sc.tgt_conn() as conn:
            assert one(conn, "SELECT count(*) FROM r_r1.t") == 50
            _rls_checks(conn)
        sc.assert_rest_unchanged()
    else:
        assert run.last["event"] == "error", str(run)
        assert run.last["reason"] == "CopyFailed", str(run)
        assert "row-level security" in run.last["message"], str(run)
        assert "Traceback" not in run.stderr
        sc.assert_rest_unchanged(added=False)


# -- 12. (extra) qualifiers that are not the schema -------------------------------------
# A *table* named like its schema (`ledger.ledger`, `ledger.amount` meaning its column)
# is handled since 055ab0e (extract.column_qualifiers); an alias or a plpgsql variable
# named like the schema, with no such table, is not.

LEDGER_SQL = """
CREATE SCHEMA ledger;
CREATE TABLE ledger.entries (id int PRIMARY KEY, amount numeric NOT NULL);
INSERT INTO ledger.entries SELECT g, g FROM generate_series(1, 10) g;
-- a table alias named like the schema
CREATE FUNCTION ledger.total() RETURNS numeric LANGUAGE sql STABLE AS $$
    SELECT sum(ledger.amount) FROM ledger.entries AS ledger
$$;
-- a record variable named like the schema
CREATE FUNCTION ledger.biggest() RETURNS numeric LANGUAGE plpgsql STABLE AS $$
DECLARE ledger record;
BEGIN
    SELECT * INTO ledger FROM ledger.entries ORDER BY amount DESC LIMIT 1;
    RETURN ledger.amount;
END $$;
"""


def test_alias_or_variable_named_like_the_schema_is_not_rewritten(scenario):
    sc = scenario(LEDGER_SQL)
    sc.restored(["ledger"])
    with sc.tgt_conn() as conn:
        assert one(conn, "SELECT ledger.total()") == 55            # production's original
        assert one(conn, "SELECT ledger_r1.total()") == 55
        assert one(conn, "SELECT ledger_r1.biggest()") == 10
