"""copy step: parallel piped-psql COPY streams, exact rows, sequences, failures."""

from __future__ import annotations

import io
import json
import os

import pytest
from psycopg import sql

from ddl_job import catalog, dump
from ddl_job.conn import Endpoint
from ddl_job.copy import copy_data, plan_units, sync_sequences
from ddl_job.errors import DataPlaneError
from ddl_job.marker import with_marker
from ddl_job.progress import Reporter
from pg_schema_restore.local.cluster import SUPERUSER

SCHEMAS = ["plain", "Mixed Case Schema"]

DDL = """
CREATE SCHEMA plain;
CREATE SCHEMA "Mixed Case Schema";
CREATE TYPE plain.mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE plain.pair AS (a int, m plain.mood);
CREATE DOMAIN plain.posint AS int CHECK (VALUE > 0);
CREATE TABLE plain.big (id bigint, payload text, n plain.posint);
CREATE TABLE plain.ident (
    id int GENERATED ALWAYS AS IDENTITY,
    s serial,
    doubled int GENERATED ALWAYS AS (s * 2) STORED,
    moods plain.mood[],
    pairs plain.pair[],
    note text);
CREATE TABLE plain.parent (id int, kind text);
CREATE TABLE plain.child (extra text) INHERITS (plain.parent);
CREATE TABLE plain.events (id int, day date, v numeric) PARTITION BY RANGE (day);
CREATE TABLE plain.events_2024 PARTITION OF plain.events
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE plain.events_other PARTITION OF plain.events DEFAULT;
CREATE TABLE plain.empty (id int);
CREATE TABLE plain.nocols ();
CREATE SEQUENCE plain.standalone;
-- aclitem has no binary I/O: this table goes through text COPY.
CREATE TABLE plain.textual (acl aclitem[], note text, f float8, ts timestamptz, d date,
                            iv interval, b bytea);
CREATE TABLE "Mixed Case Schema"."Mixed Table" (
    "Col A" text, "ünïcödé col" int, "with space" timestamptz, f float8, i interval);
"""

# Source only: a dropped column, so physical layouts differ between the sides.
SOURCE_EXTRA = """
ALTER TABLE plain.big ADD COLUMN junk int;
ALTER TABLE plain.big DROP COLUMN junk;
ALTER TABLE plain.big ADD COLUMN late text;
"""
TARGET_EXTRA = "ALTER TABLE plain.big ADD COLUMN late text;"

FILL = r"""
INSERT INTO plain.big (id, payload, n, late)
    SELECT g, repeat(md5(g::text), 3), g, CASE WHEN g % 7 = 0 THEN NULL ELSE 'l' || g END
    FROM generate_series(1, 8000) g;
UPDATE plain.big SET payload = 'updated' WHERE id % 100 = 0;   -- new tuple versions at the end
DELETE FROM plain.big WHERE id % 97 = 0;
INSERT INTO plain.ident (moods, pairs, note)
    SELECT ARRAY['sad', 'happy']::plain.mood[], ARRAY[ROW(g, 'ok')::plain.pair],
           E'tab\there, quote '' "dq" \\ backslash ' || g
    FROM generate_series(1, 50) g;
INSERT INTO plain.ident (moods, note) VALUES (NULL, NULL), ('{}', '');
SELECT nextval('plain.standalone') FROM generate_series(1, 41);
SELECT setval('plain.ident_s_seq', 500, false);
INSERT INTO plain.parent SELECT g, 'p' FROM generate_series(1, 2000) g;
INSERT INTO plain.child VALUES (3, 'c', 'x'), (4, 'c', 'y'), (5, 'c', NULL);
INSERT INTO plain.events SELECT g, date '2024-01-01' + g, g / 3.0 FROM generate_series(0, 400) g;
INSERT INTO plain.textual VALUES
    ('{postgres=arwd/postgres}', E'tab\t nl\n cr\r bs\\ \\N', 0.1, '2024-03-04 05:06:07.5+02',
     '2024-03-04', '1 mon -2 days 03:00', '\x00ff0a5c'),
    (NULL, '\N', 1e-320, '-infinity', '0001-01-01 BC', '-178000000 years', ''),
    ('{}', 'ß∂ƒ', 'NaN', '2000-01-01 00:00:00+14', 'infinity', '0', NULL);
INSERT INTO plain.nocols DEFAULT VALUES;
INSERT INTO plain.nocols DEFAULT VALUES;
INSERT INTO plain.nocols DEFAULT VALUES;
INSERT INTO "Mixed Case Schema"."Mixed Table" VALUES
    ('ß∂ƒ 漢字 🙂', 1, '2024-02-29 23:59:59.123456+05:30', 'NaN',
     '1 year 2 mons 3 days 04:05:06'),
    (NULL, NULL, NULL, '-Infinity', NULL),
    ('0.1', 3, '1999-12-31 00:00:00+00', 0.1, '-1 day'),
    ('x', 4, 'infinity', 1e-320, '0');
"""


def _endpoint(cluster, db: str, role: str, **kw) -> Endpoint:
    return Endpoint.from_dsn(role, cluster.dsn(db, **kw))


def _fingerprints(conn, schemas: list[str]) -> dict[str, tuple[int, str]]:
    """Per table: (row count, md5 of all rows as text, order-independent)."""
    conn.execute("SET DateStyle = ISO; SET TimeZone = UTC; SET IntervalStyle = postgres;"
                 " SET extra_float_digits = 3")
    out = {}
    for table in catalog.list_tables(conn, schemas):
        row = conn.execute(sql.SQL(
            "SELECT count(*), md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), ''))"
            " FROM ONLY {} x").format(sql.Identifier(table.schema, table.name))).fetchone()
        out[table.label] = (row[0], row[1])
    return out


def _sequences(conn, schemas: list[str]) -> dict[str, tuple]:
    return {f"{s}.{n}": tuple(conn.execute(sql.SQL("SELECT last_value, is_called FROM {}")
                                           .format(sql.Identifier(s, n))).fetchone())
            for s, n in catalog.list_sequences(conn, schemas)}


@pytest.fixture
def pair(copyhost, new_db):
    """(source db, target db) with the same tables; only the source is filled."""
    src, tgt = new_db(copyhost, "src"), new_db(copyhost, "tgt")
    copyhost.execute(DDL + SOURCE_EXTRA + FILL, src)
    copyhost.execute(DDL + TARGET_EXTRA, tgt)
    # Different session defaults on each side: text COPY must not depend on them.
    for db, style, zone, digits in ((src, "German, DMY", "Asia/Tokyo", "-15"),
                                    (tgt, "SQL, MDY", "America/Chicago", "0")):
        copyhost.execute(sql.SQL(
            "ALTER DATABASE {db} SET DateStyle = {s}; ALTER DATABASE {db} SET TimeZone = {z};"
            " ALTER DATABASE {db} SET extra_float_digits = {d};"
            " ALTER DATABASE {db} SET IntervalStyle = sql_standard").format(
                db=sql.Identifier(db), s=sql.Literal(style), z=sql.Literal(zone),
                d=sql.Literal(digits)).as_string(None))
    return src, tgt


def test_plan_units_splits_large_tables_with_open_last_range():
    big = catalog.Table("s", "big", 1000, 0, ("a",))
    small = catalog.Table("s", "small", 30, 0, ("a",))
    units, chunk = plan_units([big, small], jobs=2, chunk_pages=300)
    assert chunk == 300
    ranges = sorted((u.first_page, u.end_page) for u in units if u.table is big)
    assert ranges == [(0, 300), (300, 600), (600, 900), (900, None)]
    assert [u for u in units if u.table is small][0].first_page is None
    assert [u.weight for u in units] == sorted((u.weight for u in units), reverse=True)
    # Equal chunks alternate between tables (workers seldom append to one
    # table at once), and each table's chunks stay in page order.
    other = catalog.Table("s", "other", 650, 0, ("a",))
    units, _ = plan_units([big, other], jobs=2, chunk_pages=300)
    assert [(u.table.name, u.first_page) for u in units] == [
        ("big", 0), ("other", 0), ("big", 300), ("other", 300), ("big", 600),
        ("big", 900), ("other", 600)]
    # Old servers (no TID range scans) copy whole tables.
    units, _ = plan_units([big, small], jobs=2, chunk_pages=300, split=False)
    assert all(u.first_page is None for u in units)
    # Default: at least 16 MB per chunk.
    _, chunk = plan_units([big], jobs=2, block_size=8192)
    assert chunk == 2048


def test_copy_is_exact(copyhost, pair):
    src, tgt = pair
    stream = io.StringIO()
    summary = copy_data(_endpoint(copyhost, src, "source"), _endpoint(copyhost, tgt, "target"),
                        SCHEMAS, jobs=2, reporter=Reporter("copy", stream), chunk_pages=8)

    with copyhost.connect(src) as s, copyhost.connect(tgt) as t:
        expected = _fingerprints(s, SCHEMAS)
        assert _fingerprints(t, SCHEMAS) == expected
        assert _sequences(t, SCHEMAS) == _sequences(s, SCHEMAS)
        # Inheritance: the parent holds only its own rows, the child its own.
        assert expected["plain.parent"][0] == 2000 and expected["plain.child"][0] == 3
        assert t.execute("SELECT count(*) FROM plain.parent").fetchone()[0] == 2003
        assert t.execute("SELECT count(*) FROM plain.events").fetchone()[0] == 401
        assert expected["plain.nocols"][0] == 3 and expected["plain.empty"][0] == 0
        # Generated column recomputed, identity and serial continue after the copy.
        assert t.execute("SELECT count(*) FROM plain.ident WHERE doubled <> s * 2"
                         ).fetchone()[0] == 0
        max_id = t.execute("SELECT max(id) FROM plain.ident").fetchone()[0]
        t.execute("INSERT INTO plain.ident (note) VALUES ('after')")
        new_id, new_s = t.execute("SELECT id, s FROM plain.ident WHERE note = 'after'"
                                  ).fetchone()
        assert new_id == max_id + 1 and new_s == 500
        assert t.execute("SELECT nextval('plain.standalone')").fetchone()[0] == 42
        rows = t.execute('SELECT "Col A" FROM "Mixed Case Schema"."Mixed Table" '
                         'WHERE "ünïcödé col" = 1').fetchone()
        assert rows[0] == "ß∂ƒ 漢字 🙂"

    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    done = {e["table"]: e for e in events if e["event"] == "table_done"}
    assert set(done) == set(expected)
    assert done["plain.parent"]["chunks"] >= 2  # split ranges of a parent: FROM ONLY
    assert done["plain.big"]["chunks"] > 3
    assert done["plain.big"]["rows"] == expected["plain.big"][0]
    assert done["plain.big"]["bytes"] > 0
    assert done["plain.textual"]["format"] == "text" and done["plain.big"]["format"] == "binary"
    assert summary["tables"] == len(expected)
    assert summary["rows"] == sum(count for count, _ in expected.values())
    assert summary["sequences"] == 3

    # Running it again would duplicate rows: refused.
    with pytest.raises(DataPlaneError) as err:
        copy_data(_endpoint(copyhost, src, "source"), _endpoint(copyhost, tgt, "target"),
                  SCHEMAS, reporter=Reporter("copy", io.StringIO()))
    assert err.value.reason == "TargetNotEmpty"

    # A resumed restore may start over, but only in schemas carrying its marker.
    with copyhost.connect(tgt, autocommit=True) as t:
        for schema in SCHEMAS:
            t.execute(sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
                sql.Identifier(schema), sql.Literal(with_marker(None, "r1", schema))))
    with pytest.raises(DataPlaneError) as err:
        copy_data(_endpoint(copyhost, src, "source"), _endpoint(copyhost, tgt, "target"),
                  SCHEMAS, reporter=Reporter("copy", io.StringIO()), restart_for="r2")
    assert err.value.reason == "TargetNotEmpty"
    copy_data(_endpoint(copyhost, src, "source"), _endpoint(copyhost, tgt, "target"),
              SCHEMAS, reporter=Reporter("copy", io.StringIO()), restart_for="r1")
    with copyhost.connect(tgt) as t:
        assert _fingerprints(t, SCHEMAS) == expected


def test_failure_stops_and_hides_password(copyhost, pair):
    src, tgt = pair
    copyhost.execute("ALTER TABLE plain.big DROP COLUMN late", tgt)
    with pytest.raises(DataPlaneError) as err:
        copy_data(_endpoint(copyhost, src, "source"), _endpoint(copyhost, tgt, "target"),
                  SCHEMAS, jobs=2, reporter=Reporter("copy", io.StringIO()), chunk_pages=20)
    assert err.value.reason == "CopyFailed"
    assert err.value.message.startswith("plain.big: target (exit 1): ")
    assert '"late"' in err.value.message and "does not exist" in err.value.message
    assert copyhost.password not in str(err.value)
    with copyhost.connect(tgt) as t:
        # The pool stopped: the small tables queued after the big one never ran,
        # and no psql was left behind holding a COPY open.
        assert t.execute('SELECT count(*) FROM "Mixed Case Schema"."Mixed Table"'
                         ).fetchone()[0] == 0
        left = t.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                         "'pgsr-copy' AND query ILIKE 'COPY%'").fetchone()[0]
        assert left == 0


def test_row_level_security_errors_instead_of_filtering(copyhost, new_db):
    src, tgt = new_db(copyhost, "src"), new_db(copyhost, "tgt")
    role = f"reader_{os.getpid()}"
    ddl = "CREATE SCHEMA sec; CREATE TABLE sec.t (id int);"
    copyhost.execute(ddl, tgt)
    copyhost.execute(ddl + sql.SQL("""
        INSERT INTO sec.t SELECT generate_series(1, 10);
        ALTER TABLE sec.t ENABLE ROW LEVEL SECURITY;
        CREATE POLICY evens ON sec.t USING (id % 2 = 0);
        CREATE ROLE {r} LOGIN PASSWORD {pw};
        GRANT USAGE ON SCHEMA sec TO {r};
        GRANT SELECT ON sec.t TO {r};
        """).format(r=sql.Identifier(role),
                    pw=sql.Literal(copyhost.password)).as_string(None), src)
    try:
        with pytest.raises(DataPlaneError) as err:
            copy_data(_endpoint(copyhost, src, "source", user=role),
                      _endpoint(copyhost, tgt, "target"), ["sec"],
                      reporter=Reporter("copy", io.StringIO()))
        assert err.value.reason == "CopyFailed"
        assert "row-level security" in err.value.message
        with copyhost.connect(tgt) as t:
            assert t.execute("SELECT count(*) FROM sec.t").fetchone()[0] == 0
    finally:
        copyhost.execute(sql.SQL("DROP OWNED BY {r}; DROP ROLE {r}").format(
            r=sql.Identifier(role)).as_string(None), src, user=SUPERUSER)


def test_sync_sequences_alone(copyhost, pair):
    """What the DMS path uses: rows copied elsewhere, sequences set here."""
    src, tgt = pair
    result = sync_sequences(_endpoint(copyhost, src, "source"), _endpoint(copyhost, tgt, "target"),
                            SCHEMAS, reporter=Reporter("copy", io.StringIO()))
    assert result == {"sequences": 3}
    with copyhost.connect(src) as s, copyhost.connect(tgt) as t:
        assert _sequences(t, SCHEMAS) == _sequences(s, SCHEMAS)


def test_post_data_passes_serialise_index_attachments():
    lines = [
        "301; 1259 16500 INDEX p_r1 m_day_idx postgres",
        "302; 1259 16501 INDEX p_r1 m_eu_day_idx postgres",
        "303; 0 0 INDEX ATTACH p_r1 m_eu_day_idx postgres",
        "304; 2606 16510 CONSTRAINT p_r1 m m_pkey postgres",
        "305; 2606 16520 FK CONSTRAINT p_r1 notes notes_id_fkey postgres",
        "306; 0 0 COMMENT p_r1 CONSTRAINT notes_id_fkey ON notes postgres",
        "307; 2620 16530 TRIGGER p_r1 m touch postgres",
    ]
    assert dump.post_data_passes(lines) == [
        ([lines[0], lines[1], lines[3], lines[6]], True),
        ([lines[2]], False),
        ([lines[4], lines[5]], True),
    ]
    # without index attachments: one parallel pass, in the archive's order
    plain = [line for line in lines if "ATTACH" not in line]
    assert dump.post_data_passes(plain) == [(plain, True)]
    assert dump.post_data_passes([]) == []
