"""Fidelity beyond what pg_dump gives: column order and constraint names.

- Inheritance children whose columns came about over time come back from
  pg_dump with the inherited columns first (`b_star: class,aa,bb,a ->
  class,aa,a,bb`, PostgreSQL's create_misc regression script): `SELECT *`
  and positional INSERTs change meaning. The restore creates them in attnum
  order and attaches them afterwards (ddl_job/inheritance.py).
- Constraints a partition inherits come back under the parent's name
  (`fk_partitioned_fk_4_a_b_fkey` vs `fk_partitioned_fk_a_b_fkey`,
  PostgreSQL's foreign_key regression script): apply-post renames them
  (ddl_job/constraints.py).
- verify compares column order and constraints (meaning and name), failing
  on real differences and warning, with the reason, on what PostgreSQL makes
  impossible to reproduce.

End-to-end cases run the real CLI (`python -m ddl_job from-copy`) through the
`scenario` fixture of test_unusual_objects; verify cases call verify on a
source and a clone of it with one difference made.
"""

from __future__ import annotations

import itertools
import os

import psycopg
import pytest
from psycopg import sql
from support.ddl_job_cli import run_ddl_job
from test_rich_restore import one
from test_unusual_objects import Scenario, scenario  # noqa: F401 - the fixture

from ddl_job.conn import Endpoint
from ddl_job.constraints import Constraint, pair
from ddl_job.errors import DataPlaneError
from ddl_job.progress import NullReporter
from ddl_job.verify import verify

pytestmark = pytest.mark.e2e


# -- looking at a schema ------------------------------------------------------------

def column_orders(conn: psycopg.Connection, schema: str) -> dict[str, list[str]]:
    """Per relation: its column names in attnum order, dropped columns left out."""
    rows = conn.execute(
        """SELECT c.relname, array_agg(a.attname::text ORDER BY a.attnum)
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
           WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
           GROUP BY 1 ORDER BY 1""", (schema,)).fetchall()
    return dict(rows)


def select_star(conn: psycopg.Connection, schema: str) -> dict[str, list[tuple]]:
    """Per table: `SELECT * FROM ONLY` it, as positional tuples, in a fixed order."""
    out = {}
    for (name,) in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'r' ORDER BY 1", (schema,)).fetchall():
        out[name] = conn.execute(sql.SQL("SELECT * FROM ONLY {} t ORDER BY t::text").format(
            sql.Identifier(schema, name))).fetchall()
    return out


def parents(conn: psycopg.Connection, schema: str) -> dict[str, list[str]]:
    """Per child (partitions too): its parents' names in inhseqno order."""
    rows = conn.execute(
        """SELECT c.relname, array_agg(p.relname::text ORDER BY i.inhseqno)
           FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           JOIN pg_class p ON p.oid = i.inhparent
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s GROUP BY 1 ORDER BY 1""", (schema,)).fetchall()
    return dict(rows)


def constraint_names(conn: psycopg.Connection, schema: str) -> set[tuple[str, str, str]]:
    """(table, constraint, definition) with the schema's own name left out."""
    conn.execute("SET search_path = pg_catalog")
    rows = conn.execute(
        """SELECT c.relname, co.conname, pg_get_constraintdef(co.oid)
           FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid
           JOIN pg_namespace n ON n.oid = co.connamespace WHERE n.nspname = %s""",
        (schema,)).fetchall()
    return {(t, name, definition.replace(f"{schema}.", "S.")) for t, name, definition in rows}


def snapshot(sc: Scenario, schema: str) -> dict:
    with sc.src_conn() as conn:
        return {"columns": column_orders(conn, schema), "rows": select_star(conn, schema),
                "parents": parents(conn, schema)}


def assert_same_shape(sc: Scenario, before: dict, schema: str) -> None:
    with sc.tgt_conn() as conn:
        assert column_orders(conn, schema) == before["columns"]
        assert select_star(conn, schema) == before["rows"]
        assert parents(conn, schema) == before["parents"]


# -- (a) the b_star case ---------------------------------------------------------

# PostgreSQL's src/test/regress/sql/create_misc.sql, the *_star tables: their
# DDL as there, one row per table, then the renames and added columns.
STAR_SQL = """
CREATE SCHEMA star;
SET search_path = star;
CREATE TABLE a_star (class char, a int4);
CREATE TABLE b_star (b text) INHERITS (a_star);
CREATE TABLE c_star (c name) INHERITS (a_star);
CREATE TABLE d_star (d float8) INHERITS (b_star, c_star);
CREATE TABLE e_star (e int2) INHERITS (c_star);
CREATE TABLE f_star (f polygon) INHERITS (e_star);
INSERT INTO a_star (class, a) VALUES ('a', 1);
INSERT INTO b_star (class, a, b) VALUES ('b', 3, 'mumble'::text);
INSERT INTO c_star (class, a, c) VALUES ('c', 5, 'hi mike'::name);
INSERT INTO d_star (class, a, b, c, d)
   VALUES ('d', 7, 'grumble'::text, 'hi sunita'::name, '0.0'::float8);
INSERT INTO e_star (class, a, c, e) VALUES ('e', 15, 'hi carol'::name, '-1'::int2);
INSERT INTO f_star (class, a, c, e, f)
   VALUES ('f', 19, 'hi claire'::name, '-5'::int2, '(1,3),(2,4)'::polygon);
ALTER TABLE f_star RENAME COLUMN f TO ff;
ALTER TABLE e_star* RENAME COLUMN e TO ee;
ALTER TABLE d_star* RENAME COLUMN d TO dd;
ALTER TABLE c_star* RENAME COLUMN c TO cc;
ALTER TABLE b_star* RENAME COLUMN b TO bb;
ALTER TABLE a_star* RENAME COLUMN a TO aa;
ALTER TABLE f_star ADD COLUMN f int4;
UPDATE f_star SET f = 10;
ALTER TABLE e_star* ADD COLUMN e int4;
ALTER TABLE a_star* ADD COLUMN a text;
UPDATE b_star SET a = 'gazpacho';
RESET search_path;
"""


def test_inheritance_children_keep_their_column_order(scenario):  # noqa: F811
    sc = scenario(STAR_SQL)
    before = snapshot(sc, "star")
    assert before["columns"]["b_star"] == ["class", "aa", "bb", "a"]   # the case
    assert before["parents"]["d_star"] == ["b_star", "c_star"]
    run = sc.restored(["star"])
    assert_same_shape(sc, before, "star_r1")
    with sc.tgt_conn(autocommit=True) as conn:
        # a positional INSERT means what it meant in the source
        conn.execute("INSERT INTO star_r1.b_star VALUES ('z', 99, 'bb value', 'a value')")
        assert conn.execute("SELECT bb, a FROM star_r1.b_star WHERE aa = 99").fetchone() == \
            ("bb value", "a value")
        # the hierarchy works: the root sees every child's rows
        assert one(conn, "SELECT count(*) FROM star_r1.a_star") == 7
        assert one(conn, "SELECT count(*) FROM star_r1.c_star") == 4
    warnings = run.last["result"]["warnings"]
    b_star = [w for w in warnings if w.startswith("star_r1.b_star ")]
    assert len(b_star) == 1, warnings
    assert "its columns class, aa, a were inherited only" in b_star[0]
    assert "binary-upgrade" in b_star[0]
    assert sorted(w.split(" ")[0] for w in warnings) == [
        "star_r1.b_star", "star_r1.c_star", "star_r1.d_star", "star_r1.e_star",
        "star_r1.f_star"]
    assert run.last["result"]["verify"]["warnings"] == []


# -- (b) dropped and added columns --------------------------------------------------

DROPPED_ADDED_SQL = """
CREATE SCHEMA dd;
CREATE TABLE dd.t (a int, b text, c int, d date);
INSERT INTO dd.t VALUES (1, 'gone', 2, '2024-01-01');
ALTER TABLE dd.t DROP COLUMN b;
ALTER TABLE dd.t ADD COLUMN b text DEFAULT 'new';
ALTER TABLE dd.t ALTER COLUMN c TYPE bigint;
INSERT INTO dd.t VALUES (3, 4, '2024-02-02', 'y');
-- a parent column dropped and added again moves behind the child's own
CREATE TABLE dd.p (id int NOT NULL, x text, y text DEFAULT 'y0',
                   CONSTRAINT p_id_pos CHECK (id > 0));
CREATE TABLE dd.ch (z int) INHERITS (dd.p);
INSERT INTO dd.ch (id, x, y, z) VALUES (1, 'lost', 'y1', 10);
ALTER TABLE dd.p DROP COLUMN x;
ALTER TABLE dd.p ADD COLUMN x text;
ALTER TABLE dd.p ADD COLUMN g int GENERATED ALWAYS AS (id * 2) STORED;
ALTER TABLE dd.p ADD CONSTRAINT p_y_nonempty CHECK (y <> '') NOT VALID;
-- a table that joined the hierarchy later, with its own order
CREATE TABLE dd.lone (y text, id int NOT NULL, extra int, x text,
                      g int GENERATED ALWAYS AS (id * 2) STORED,
                      CONSTRAINT p_id_pos CHECK (id > 0),
                      CONSTRAINT p_y_nonempty CHECK (y <> ''));
ALTER TABLE dd.lone INHERIT dd.p;
INSERT INTO dd.p (id, y, x) VALUES (5, 'p', 'px');
INSERT INTO dd.ch (id, y, z, x) VALUES (2, 'y2', 20, 'x2');
INSERT INTO dd.lone (y, id, extra, x) VALUES ('ly', 3, 30, 'lx');
"""


def test_dropped_and_added_columns_keep_their_order(scenario):  # noqa: F811
    sc = scenario(DROPPED_ADDED_SQL)
    before = snapshot(sc, "dd")
    assert before["columns"] == {"t": ["a", "c", "d", "b"], "p": ["id", "y", "x", "g"],
                                 "ch": ["id", "y", "z", "x", "g"],
                                 "lone": ["y", "id", "extra", "x", "g"]}
    run = sc.restored(["dd"])
    assert_same_shape(sc, before, "dd_r1")
    with sc.tgt_conn(autocommit=True) as conn:
        assert conn.execute("SELECT g FROM dd_r1.lone").fetchall() == [(6,)]
        assert one(conn, "SELECT count(*) FROM dd_r1.p") == 4
        # the parent's constraints still reach the children
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("INSERT INTO dd_r1.ch (id, y, z) VALUES (-1, 'y', 1)")
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("INSERT INTO dd_r1.lone (id, y) VALUES (9, '')")
    assert sorted(w.split(" ")[0] for w in run.last["result"]["warnings"]) == [
        "dd_r1.ch", "dd_r1.lone"]


RESUMED_SQL = """
CREATE SCHEMA rs;
CREATE TABLE rs.p (id int, name text);
CREATE TABLE rs.ch (extra int) INHERITS (rs.p);
ALTER TABLE rs.p ADD COLUMN late text;
INSERT INTO rs.ch VALUES (1, 'one', 10, 'l1');
"""


def test_a_crash_between_detach_and_reattach_loses_no_link(scenario):  # noqa: F811
    """extract saves its plan before it detaches a child in the copy: a re-run
    after a crash in between (the child still detached) attaches it again."""
    sc = scenario(RESUMED_SQL, "SELECT 1")
    before = snapshot(sc, "rs")
    assert before["columns"]["ch"] == ["id", "name", "extra", "late"]
    artifacts = str(sc.artifacts)

    def step(*args: str):
        run = run_ddl_job([*args, "--artifacts", artifacts], source=sc.source(),
                          target=sc.target())
        assert run.returncode == 0, str(run)
        return run

    extract = ["extract", "--schema", "rs", "--suffix", "_r1", "--restore-id", "resumed",
               "--disposable-source"]
    step(*extract)
    with sc.src_conn(autocommit=True) as conn:   # as if the first run died mid-way
        conn.execute("ALTER TABLE rs_r1.ch NO INHERIT rs_r1.p")
    step(*extract)
    with sc.src_conn() as conn:
        assert parents(conn, "rs_r1") == {"ch": ["p"]}
    for args in (["apply", "pre"], ["copy"], ["apply", "post"]):
        step(*args)
    assert step("verify").last["result"]["ok"] is True
    assert_same_shape(sc, before, "rs_r1")


# -- (c) partitions with their own column order -------------------------------------

PARTITION_ORDER_SQL = """
CREATE SCHEMA pt;
CREATE TABLE pt.m (a int, b text, c date) PARTITION BY LIST (a);
CREATE TABLE pt.m1 (c date, x int, b text, a int);
ALTER TABLE pt.m1 DROP COLUMN x;
ALTER TABLE pt.m ATTACH PARTITION pt.m1 FOR VALUES IN (1);
CREATE TABLE pt.m2 PARTITION OF pt.m FOR VALUES IN (2);
CREATE TABLE pt.m3 (b text, c date, a int CONSTRAINT a_pos CHECK (a > 0)) PARTITION BY RANGE (c);
CREATE TABLE pt.m3_1 (c date, a int CONSTRAINT a_pos CHECK (a > 0), b text);
ALTER TABLE pt.m3 ATTACH PARTITION pt.m3_1 FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
ALTER TABLE pt.m ATTACH PARTITION pt.m3 FOR VALUES IN (3);
ALTER TABLE pt.m ADD COLUMN d int DEFAULT 7;
INSERT INTO pt.m (a, b, c) VALUES (1, 'one', '2024-01-01'), (2, 'two', '2024-02-02'),
                                  (3, 'three', '2024-03-03');
"""


def test_partitions_keep_their_own_column_order(scenario):  # noqa: F811
    """pg_dump writes a partition as its own CREATE TABLE, then ATTACH PARTITION:
    each keeps its column order (pinned here, and checked by verify)."""
    sc = scenario(PARTITION_ORDER_SQL)
    before = snapshot(sc, "pt")
    assert before["columns"]["m1"] == ["c", "b", "a", "d"]
    assert before["columns"]["m3_1"] == ["c", "a", "b", "d"]
    run = sc.restored(["pt"])
    assert_same_shape(sc, before, "pt_r1")
    assert run.last["result"]["warnings"] == []


# -- (d) foreign keys on partitions attached in another order --------------------------

# PostgreSQL's src/test/regress/sql/foreign_key.sql ("Foreign keys and
# partitioned tables"): fk_partitioned_fk_4 had its own foreign key before it
# was attached, and keeps that name as an inherited constraint.
FK_PARTITIONED_SQL = """
CREATE SCHEMA fk;
SET search_path = fk;
CREATE TABLE fk_notpartitioned_pk (a int, b int, primary key (a, b));
CREATE TABLE fk_partitioned_fk (a int default 2501, b int default 142857)
  PARTITION BY LIST (a);
CREATE TABLE fk_partitioned_fk_1 PARTITION OF fk_partitioned_fk
  FOR VALUES IN (NULL,500,501,502);
CREATE TABLE fk_partitioned_fk_3 (a int, b int);
ALTER TABLE fk_partitioned_fk ATTACH PARTITION fk_partitioned_fk_3
  FOR VALUES IN (2500,2501,2502,2503);
ALTER TABLE fk_partitioned_fk ADD FOREIGN KEY (a, b)
  REFERENCES fk_notpartitioned_pk
  ON DELETE CASCADE ON UPDATE CASCADE;
CREATE TABLE fk_partitioned_fk_4 (a int, b int, FOREIGN KEY (a, b)
  REFERENCES fk_notpartitioned_pk(a, b) ON UPDATE CASCADE ON DELETE CASCADE)
  PARTITION BY RANGE (b, a);
CREATE TABLE fk_partitioned_fk_4_1 PARTITION OF fk_partitioned_fk_4
  FOR VALUES FROM (1,1) TO (100,100);
CREATE TABLE fk_partitioned_fk_4_2 (a int, b int, FOREIGN KEY (a, b)
  REFERENCES fk_notpartitioned_pk(a, b) ON UPDATE SET NULL);
ALTER TABLE fk_partitioned_fk_4 ATTACH PARTITION fk_partitioned_fk_4_2
  FOR VALUES FROM (100,100) TO (1000,1000);
ALTER TABLE fk_partitioned_fk ATTACH PARTITION fk_partitioned_fk_4 FOR VALUES IN (3500,3502);
ALTER TABLE fk_partitioned_fk DETACH PARTITION fk_partitioned_fk_4;
ALTER TABLE fk_partitioned_fk ATTACH PARTITION fk_partitioned_fk_4 FOR VALUES IN (3500,3502);
CREATE TABLE fk_partitioned_fk_5 (a int, b int,
	FOREIGN KEY (a, b) REFERENCES fk_notpartitioned_pk(a, b)
	  ON UPDATE CASCADE ON DELETE CASCADE DEFERRABLE,
	FOREIGN KEY (a, b) REFERENCES fk_notpartitioned_pk(a, b)
	  MATCH FULL ON UPDATE CASCADE ON DELETE CASCADE)
  PARTITION BY RANGE (a);
CREATE TABLE fk_partitioned_fk_5_1 (a int, b int,
  FOREIGN KEY (a, b) REFERENCES fk_notpartitioned_pk);
ALTER TABLE fk_partitioned_fk ATTACH PARTITION fk_partitioned_fk_5 FOR VALUES IN (4500);
ALTER TABLE fk_partitioned_fk_5 ATTACH PARTITION fk_partitioned_fk_5_1 FOR VALUES FROM (0) TO (10);
ALTER TABLE fk_partitioned_fk DETACH PARTITION fk_partitioned_fk_5;
ALTER TABLE fk_partitioned_fk ATTACH PARTITION fk_partitioned_fk_5 FOR VALUES IN (4500);
ALTER TABLE fk_partitioned_fk_5 DETACH PARTITION fk_partitioned_fk_5_1;
ALTER TABLE fk_partitioned_fk_5 ATTACH PARTITION fk_partitioned_fk_5_1 FOR VALUES FROM (0) TO (10);
INSERT INTO fk_notpartitioned_pk VALUES (500, 501), (2501, 142857), (3500, 1), (3502, 200);
INSERT INTO fk_partitioned_fk VALUES (500, 501), (2501, 142857), (3500, 1), (3502, 200);
-- a foreign key to a partitioned table: one constraint per referenced
-- partition, numbered in creation order (pp2's before pp1's here)
CREATE TABLE pp (id int PRIMARY KEY) PARTITION BY RANGE (id);
CREATE TABLE pp2 PARTITION OF pp FOR VALUES FROM (10) TO (20);
CREATE TABLE r (x int);
ALTER TABLE r ADD FOREIGN KEY (x) REFERENCES pp;
CREATE TABLE pp1 PARTITION OF pp FOR VALUES FROM (0) TO (10);
INSERT INTO pp VALUES (1), (11);
INSERT INTO r VALUES (1), (11);
RESET search_path;
"""


def test_foreign_keys_on_partitions_keep_their_names(scenario):  # noqa: F811
    sc = scenario(FK_PARTITIONED_SQL)
    with sc.src_conn() as conn:
        expected = constraint_names(conn, "fk")
    assert ("fk_partitioned_fk_4_1", "fk_partitioned_fk_4_a_b_fkey",
            ("FOREIGN KEY (a, b) REFERENCES S.fk_notpartitioned_pk(a, b) "
             "ON UPDATE CASCADE ON DELETE CASCADE")) in expected
    run = sc.restored(["fk"])
    with sc.tgt_conn() as conn:
        assert constraint_names(conn, "fk_r1") == expected
    renamed = run.find("constraint_renamed")
    assert {(e["table"], e["to"]) for e in renamed} >= {
        ("fk_r1.fk_partitioned_fk_4", "fk_partitioned_fk_4_a_b_fkey"),
        ("fk_r1.fk_partitioned_fk_4_1", "fk_partitioned_fk_4_a_b_fkey"),
        ("fk_r1.fk_partitioned_fk_4_2", "fk_partitioned_fk_4_a_b_fkey")}, str(run)
    assert run.last["result"]["warnings"] == []
    assert run.last["result"]["verify"]["warnings"] == []


# -- (e) verify notices order and constraints -----------------------------------------

VERIFY_SQL = """
CREATE SCHEMA v;
CREATE TABLE v.pk (id int PRIMARY KEY);
CREATE TABLE v.t (a int, b text, c int REFERENCES v.pk, CONSTRAINT t_a_pos CHECK (a > 0));
CREATE TABLE v.par (id int, name text, CONSTRAINT par_name CHECK (name <> ''));
CREATE TABLE v.kid (w int) INHERITS (v.par);
CREATE TABLE v.m (id int REFERENCES v.pk) PARTITION BY RANGE (id);
CREATE TABLE v.m1 PARTITION OF v.m FOR VALUES FROM (0) TO (10);
INSERT INTO v.pk VALUES (1), (2);
INSERT INTO v.t VALUES (1, 'x', 1), (2, 'y', 2);
INSERT INTO v.kid VALUES (1, 'k', 0);
INSERT INTO v.m VALUES (1);
"""
_clones = itertools.count()


@pytest.fixture(scope="module")
def verify_source(copyhost):
    name = f"fidelity_src_{os.getpid()}"
    copyhost.create_database(name)
    copyhost.execute(VERIFY_SQL, name)
    yield name
    _drop_database(copyhost, name)


@pytest.fixture
def tampered(copyhost, verify_source):
    """Factory: tampered(statement) -> (source, target) endpoints, the target a clone of
    the source with `statement` run in it."""
    made: list[str] = []

    def make(statement: str) -> tuple[Endpoint, Endpoint]:
        name = f"fidelity_tgt_{os.getpid()}_{next(_clones)}"
        copyhost.create_database(name, template=verify_source)
        made.append(name)
        copyhost.execute(statement, name)
        return (Endpoint.from_dsn("source", copyhost.dsn(verify_source)),
                Endpoint.from_dsn("target", copyhost.dsn(name)))

    yield make
    for name in made:
        _drop_database(copyhost, name)


def _drop_database(cluster, name: str) -> None:
    with cluster.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


@pytest.mark.parametrize("statement, expected", [
    ("ALTER TABLE v.t DROP COLUMN b; ALTER TABLE v.t ADD COLUMN b text",
     "v.t: column order differs (source: a, b, c; target: a, c, b)"),
    ("ALTER TABLE v.t RENAME CONSTRAINT t_a_pos TO t_a_check",
     ("v.t: constraint t_a_pos is named t_a_check in the target (same definition: "
      "CHECK ((a > 0)))")),
    (("ALTER TABLE v.t DROP CONSTRAINT t_a_pos; "
      "ALTER TABLE v.t ADD CONSTRAINT t_a_pos CHECK (a >= 1)"),
     "v.t: constraint t_a_pos differs (source: CHECK ((a > 0)); target: CHECK ((a >= 1)))"),
    (("ALTER TABLE v.t DROP CONSTRAINT t_c_fkey; "
      "ALTER TABLE v.t ADD CONSTRAINT t_c_fkey FOREIGN KEY (c) REFERENCES v.pk NOT VALID"),
     ("v.t: constraint t_c_fkey differs (source: FOREIGN KEY (c) REFERENCES v.pk(id); "
      "target: FOREIGN KEY (c) REFERENCES v.pk(id) NOT VALID)")),
    ("ALTER TABLE v.t ALTER CONSTRAINT t_c_fkey DEFERRABLE INITIALLY DEFERRED",
     ("v.t: constraint t_c_fkey differs (source: FOREIGN KEY (c) REFERENCES v.pk(id); "
      "target: FOREIGN KEY (c) REFERENCES v.pk(id) DEFERRABLE INITIALLY DEFERRED)")),
    ("ALTER TABLE v.t DROP CONSTRAINT t_a_pos",
     "v.t: constraint t_a_pos missing in target (CHECK ((a > 0)))"),
])
def test_verify_fails_on_a_tampered_column_order_or_constraint(tampered, statement, expected):
    source, target = tampered(statement)
    with pytest.raises(DataPlaneError) as info:
        verify(source, target, ["v"], reporter=NullReporter())
    assert info.value.reason == "VerifyFailed"
    assert info.value.message.splitlines()[1:] == [expected]


def test_verify_warns_on_what_postgresql_cannot_reproduce(tampered):
    """An inherited constraint's name, and inheritance flags, only warn (with why)."""
    source, target = tampered(
        "ALTER TABLE v.m1 RENAME CONSTRAINT m_id_fkey TO m1_id_fkey; "
        "ALTER TABLE v.kid NO INHERIT v.par; ALTER TABLE v.kid INHERIT v.par")
    report = verify(source, target, ["v"], reporter=NullReporter())
    assert report["ok"] is True and report["mismatches"] == []
    by_kind = {}
    for warning in report["warnings"]:
        by_kind.setdefault(warning["kind"], []).append(warning)
    assert [w["object"] for w in by_kind["constraint_name"]] == ["m1.m_id_fkey"]
    assert "clones it onto the partition" in by_kind["constraint_name"][0]["message"]
    assert [(w["object"], w["source"], w["target"])
            for w in by_kind["column_inheritance"]] == [
        ("kid.id", "inherited (1) only", "inherited (1) and local"),
        ("kid.name", "inherited (1) only", "inherited (1) and local")]
    assert [w["object"] for w in by_kind["constraint_inheritance"]] == ["kid.par_name"]
    assert "binary-upgrade" in by_kind["column_inheritance"][0]["message"]


def test_pairing_by_meaning_swaps_and_keeps_real_differences():
    """Names that swap pair by meaning; a changed definition stays a difference."""
    def con(name: str, definition: str) -> Constraint:
        return Constraint("s", "t", False, name, "f", definition, True, False, False, True, 0)

    pairing = pair([con("r_x_fkey1", "to pp2"), con("r_x_fkey2", "to pp1"), con("c", "old"),
                    con("gone", "g")],
                   [con("r_x_fkey1", "to pp1"), con("r_x_fkey2", "to pp2"), con("c", "new"),
                    con("more", "m")])
    assert [(s.name, t.name) for s, t in pairing.renamed] == [("r_x_fkey1", "r_x_fkey2"),
                                                             ("r_x_fkey2", "r_x_fkey1")]
    assert [(s.definition, t.definition) for s, t in pairing.changed] == [("old", "new")]
    assert [c.name for c in pairing.missing] == ["gone"]
    assert [c.name for c in pairing.extra] == ["more"]
    assert pairing.same == []
