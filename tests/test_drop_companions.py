"""Objects PostgreSQL creates *with* a restored object, wherever they live.

A range type brings a multirange type (PostgreSQL 14+; it may live in
another schema when `multirange_type_name` says so), their array types,
constructor functions and a range-to-multirange cast, which belongs to no
schema at all. Tables bring rowtypes, toast tables, identity and serial
sequences; constraints bring indexes and triggers; views bring rules. The
failure drop must remove all of them with the restored schemas and leave
nothing behind, and still refuse, with the list, when something truly
outside (production's own objects) would go too.

Pre-data must also give a restored range's multirange the range type's
owner: PostgreSQL makes it for the role running the restore, and `ALTER
TYPE … OWNER` on the range does not carry over to it (PostgreSQL 15).

Real PostgreSQL: "production" databases on `copyhost` (drop) and `prod`
(apply), the source copy on `copyhost`.
"""

from __future__ import annotations

import io
import json
import os
from contextlib import nullcontext

import psycopg
import pytest
from pg_schema_restore.local.cluster import SUPERUSER
from psycopg import sql
from support.ddl_job_cli import run_ddl_job
from support.pg import as_superuser
from test_verify_drop import _checksum, _endpoint, _mark, _run, _schemas

from ddl_job import marker
from ddl_job.apply import apply_pre
from ddl_job.artifacts import open_store
from ddl_job.conn import Endpoint
from ddl_job.drop import drop_restored
from ddl_job.errors import DataPlaneError
from ddl_job.extract import extract
from ddl_job.progress import NullReporter, Reporter

RESTORE_ID = "dc1"

# Production: its own range type (whose cast must survive), a schema that
# will be the home of a restored range's multirange, rows everywhere.
PRODUCTION_SQL = """
CREATE SCHEMA prod;
CREATE TYPE prod.span8 AS RANGE (subtype = int8);
CREATE TABLE prod.accounts (id int PRIMARY KEY, span prod.span8,
                            spans prod.span8_multirange);
INSERT INTO prod.accounts VALUES (1, '[1,5)', '{[1,2),[3,4)}'), (2, NULL, '{}');
CREATE FUNCTION prod.total() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM prod.accounts';
CREATE VIEW prod.v AS SELECT id FROM prod.accounts;
CREATE SCHEMA elsewhere;
CREATE TABLE elsewhere.notes (id int, note text);
INSERT INTO elsewhere.notes VALUES (1, 'kept');
CREATE TABLE public.keep (id int);
INSERT INTO public.keep VALUES (42);
"""
PRODUCTION_SCHEMAS = ["prod", "elsewhere", "public"]

# Every user object of the database (oid >= FirstNormalObjectId), with its
# dependencies, owners and comments: equal before a restored-like schema is
# created and after it is dropped means nothing was left behind.
_USER_OBJECTS_SQL = """
SELECT 'pg_namespace', nspname FROM pg_namespace WHERE oid >= 16384
UNION ALL SELECT 'pg_class', oid::regclass::text FROM pg_class WHERE oid >= 16384
UNION ALL SELECT 'pg_type', oid::regtype::text FROM pg_type WHERE oid >= 16384
UNION ALL SELECT 'pg_proc', oid::regprocedure::text FROM pg_proc WHERE oid >= 16384
UNION ALL SELECT 'pg_cast', format('%s -> %s', castsource::regtype, casttarget::regtype)
          FROM pg_cast WHERE oid >= 16384
UNION ALL SELECT 'pg_range', rngtypid::regtype::text FROM pg_range WHERE rngtypid >= 16384
UNION ALL SELECT 'pg_constraint', conname FROM pg_constraint WHERE oid >= 16384
UNION ALL SELECT 'pg_trigger', tgname FROM pg_trigger WHERE oid >= 16384
UNION ALL SELECT 'pg_rewrite', rulename FROM pg_rewrite WHERE oid >= 16384
UNION ALL SELECT 'pg_attrdef', oid::text FROM pg_attrdef WHERE oid >= 16384
UNION ALL SELECT 'pg_policy', polname FROM pg_policy WHERE oid >= 16384
UNION ALL SELECT 'pg_operator', oid::regoperator::text FROM pg_operator WHERE oid >= 16384
UNION ALL SELECT 'pg_opclass', opcname FROM pg_opclass WHERE oid >= 16384
UNION ALL SELECT 'pg_opfamily', opfname FROM pg_opfamily WHERE oid >= 16384
UNION ALL SELECT 'pg_collation', collname FROM pg_collation WHERE oid >= 16384
UNION ALL SELECT 'pg_statistic_ext', stxname FROM pg_statistic_ext WHERE oid >= 16384
UNION ALL SELECT 'pg_ts_config', cfgname FROM pg_ts_config WHERE oid >= 16384
UNION ALL SELECT 'pg_depend', format('%s/%s/%s %s %s/%s/%s', classid, objid, objsubid, deptype,
                                     refclassid, refobjid, refobjsubid)
          FROM pg_depend WHERE objid >= 16384 OR refobjid >= 16384
UNION ALL SELECT 'pg_shdepend', format('%s/%s %s %s', classid, objid, deptype, refobjid)
          FROM pg_shdepend WHERE dbid = (SELECT oid FROM pg_database
                                         WHERE datname = current_database())
UNION ALL SELECT 'pg_description', format('%s/%s/%s', classoid, objoid, objsubid)
          FROM pg_description WHERE objoid >= 16384
"""


def _user_objects(conn: psycopg.Connection) -> set[tuple[str, str]]:
    conn.execute("SET search_path = pg_catalog")
    return set(conn.execute(_USER_OBJECTS_SQL).fetchall())


def _production_state(conn: psycopg.Connection) -> dict[str, str]:
    return {s: _checksum(conn, s) for s in PRODUCTION_SCHEMAS}


@pytest.fixture
def production(copyhost, new_db):
    """A database holding only production; returns its name."""
    db = new_db(copyhost, "dropc")
    _run(copyhost, db, PRODUCTION_SQL)
    return db


def _create_restored(copyhost, db: str, schemas: list[str], ddl: str) -> None:
    """Create `schemas`, run `ddl`, and mark them as restored by RESTORE_ID."""
    with copyhost.connect(db, autocommit=True) as conn:
        for name in schemas:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        conn.execute(ddl)
        for name in schemas:
            _mark(conn, name, marker.with_marker(None, RESTORE_ID, name + "_src"))


# -- every kind of companion is dropped, nothing is left ----------------------

RANGE = """
CREATE TYPE rx.fr AS RANGE (subtype = float8);
CREATE TABLE rx.t (id int, r rx.fr, m rx.fr_multirange, rs rx.fr[], ms rx.fr_multirange[]);
INSERT INTO rx.t VALUES (1, '[1,2)', '{[1,2),[3,4)}', '{"[1,2)"}', NULL);
CREATE FUNCTION rx.widest(rx.fr_multirange) RETURNS rx.fr LANGUAGE sql
    AS 'SELECT range_merge($1)';
CREATE VIEW rx.w AS SELECT id, rx.widest(m) FROM rx.t;
"""
RANGE_MULTIRANGE_ELSEWHERE = """
CREATE TYPE rx.fr AS RANGE (subtype = float8, multirange_type_name = elsewhere.fr_multi);
CREATE TABLE rx.t (id int, r rx.fr, m elsewhere.fr_multi, ms elsewhere.fr_multi[]);
INSERT INTO rx.t VALUES (1, '[1,2)', '{[1,2),[3,4)}', NULL);
"""
RANGE_WITH_ITS_OWN_FUNCTIONS = """
CREATE FUNCTION rx.diff(float8, float8) RETURNS float8 LANGUAGE sql IMMUTABLE
    AS 'SELECT $1 - $2';
CREATE TYPE rx.fr AS RANGE (subtype = float8, subtype_diff = rx.diff);
CREATE DOMAIN rx.short_fr AS rx.fr CHECK (upper(VALUE) - lower(VALUE) < 10);
CREATE TYPE rx.dr AS RANGE (subtype = date);
CREATE TABLE rx.t (id int, r rx.short_fr, d rx.dr_multirange,
                   EXCLUDE USING gist (r WITH &&));
INSERT INTO rx.t VALUES (1, '[1,2)', '{[2024-01-01,2024-02-01)}');
"""
DOMAIN_ENUM_COMPOSITE = """
CREATE TYPE rx.mood AS ENUM ('sad', 'ok');
CREATE DOMAIN rx.posint AS int CHECK (VALUE > 0);
CREATE TYPE rx.pair AS (a int, b text);
CREATE TYPE rx.mood_range AS RANGE (subtype = rx.mood);
CREATE TABLE rx.t (id int, moods rx.mood[], qty rx.posint[], pairs rx.pair[],
                   mr rx.mood_multirange);
INSERT INTO rx.t VALUES (1, '{sad,ok}', '{1,2}', ARRAY[ROW(1, 'x')::rx.pair], '{[sad,ok]}');
"""
TABLE_TOAST_IDENTITY_SERIAL = """
CREATE TABLE rx.t (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, n serial,
                   b bigserial UNIQUE, big text, doc jsonb,
                   twice int GENERATED ALWAYS AS (n * 2) STORED);
INSERT INTO rx.t (big, doc) SELECT repeat(md5(i::text), 4000), '{"a": 1}'
    FROM generate_series(1, 3) i;
CREATE SEQUENCE rx.owned;
ALTER SEQUENCE rx.owned OWNED BY rx.t.big;
"""
PARTITIONS_INSIDE = """
CREATE TABLE rx.ev (id int, at int, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE rx.ev_low PARTITION OF rx.ev FOR VALUES FROM (0) TO (100)
    PARTITION BY LIST (id);
CREATE TABLE rx.ev_low_1 PARTITION OF rx.ev_low FOR VALUES IN (1);
CREATE TABLE rx.ev_low_rest PARTITION OF rx.ev_low DEFAULT;
CREATE TABLE rx.ev_other PARTITION OF rx.ev DEFAULT;
CREATE INDEX ev_v ON rx.ev (v);
CREATE FUNCTION rx.touch() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
CREATE TRIGGER ev_touch BEFORE INSERT ON rx.ev FOR EACH ROW EXECUTE FUNCTION rx.touch();
CREATE TABLE rx.ref (id int, at int, FOREIGN KEY (id, at) REFERENCES rx.ev);
INSERT INTO rx.ev VALUES (1, 5, 'a'), (2, 5, 'b'), (3, 500, 'c');
INSERT INTO rx.ref VALUES (1, 5);
CREATE TABLE rx.base (id int);
CREATE TABLE rx.child (extra text) INHERITS (rx.base);
"""
VIEWS_AND_RULES = """
CREATE TABLE rx.t (id int PRIMARY KEY, v text);
INSERT INTO rx.t VALUES (1, 'a'), (2, 'b');
CREATE VIEW rx.v WITH (security_barrier) AS SELECT * FROM rx.t WHERE id > 0;
CREATE VIEW rx.vv AS SELECT count(*) AS n FROM rx.v;
CREATE RULE v_ins AS ON INSERT TO rx.v DO INSTEAD INSERT INTO rx.t VALUES (NEW.id, NEW.v);
CREATE RULE t_log AS ON UPDATE TO rx.t DO ALSO NOTIFY rx_changed;
CREATE MATERIALIZED VIEW rx.mv AS SELECT id, v FROM rx.v;
CREATE UNIQUE INDEX mv_id ON rx.mv (id);
"""
CONSTRAINTS_TRIGGERS_POLICIES = """
CREATE TABLE rx.p (id int PRIMARY KEY, code text UNIQUE DEFERRABLE INITIALLY DEFERRED,
                   span int4range, EXCLUDE USING gist (span WITH &&),
                   CHECK (id > 0));
CREATE TABLE rx.c (id int REFERENCES rx.p ON DELETE CASCADE, x int, y int);
CREATE FUNCTION rx.check_row() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';
CREATE CONSTRAINT TRIGGER c_check AFTER INSERT ON rx.c DEFERRABLE
    FOR EACH ROW EXECUTE FUNCTION rx.check_row();
CREATE TRIGGER c_stmt AFTER UPDATE ON rx.c FOR EACH STATEMENT EXECUTE FUNCTION rx.check_row();
CREATE INDEX c_expr ON rx.c ((x + y)) WHERE x > 0;
CREATE STATISTICS rx.c_xy ON x, y FROM rx.c;
ALTER TABLE rx.c ENABLE ROW LEVEL SECURITY;
CREATE POLICY c_pos ON rx.c USING (x >= 0);
INSERT INTO rx.p VALUES (1, 'a', '[1,2)');
INSERT INTO rx.c VALUES (1, 1, 2);
"""
ROUTINES_OPERATORS_SEARCH = """
CREATE FUNCTION rx.add3(int, int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 + $2 + 3';
CREATE AGGREGATE rx.sum3(int) (sfunc = rx.add3, stype = int, initcond = '0');
CREATE PROCEDURE rx.noop() LANGUAGE sql AS 'SELECT 1';
CREATE FUNCTION rx.eq(int, int) RETURNS bool LANGUAGE sql IMMUTABLE AS 'SELECT $1 = $2';
CREATE OPERATOR rx.=== (leftarg = int, rightarg = int, function = rx.eq,
                        commutator = OPERATOR(rx.===));
CREATE OPERATOR FAMILY rx.fam USING btree;
CREATE OPERATOR CLASS rx.rev_ops FOR TYPE int USING btree FAMILY rx.fam AS
    OPERATOR 1 >, OPERATOR 3 =, OPERATOR 5 <, FUNCTION 1 btint4cmp(int, int);
CREATE COLLATION rx.c_coll (locale = 'C');
CREATE TEXT SEARCH CONFIGURATION rx.ts (COPY = pg_catalog.simple);
CREATE CONVERSION rx.conv FOR 'LATIN1' TO 'UTF8' FROM iso8859_1_to_utf8;
CREATE TABLE rx.t (id int, name text COLLATE rx.c_coll);
CREATE INDEX t_rev ON rx.t (id rx.rev_ops);
ALTER DEFAULT PRIVILEGES IN SCHEMA rx GRANT SELECT ON TABLES TO PUBLIC;
"""
# operator classes and families: only a superuser creates them (the master user
# of an RDS instance never does; the drop still runs as the master user)
SUPERUSER_KINDS = {"routines_operators_search"}
TWO_SCHEMAS_SHARING_A_RANGE = """
CREATE TYPE rx.fr AS RANGE (subtype = float8);
CREATE TABLE ry.t (id int, m rx.fr_multirange);
CREATE FUNCTION ry.f(rx.fr_multirange) RETURNS bool LANGUAGE sql AS 'SELECT true';
CREATE TYPE ry.fr AS RANGE (subtype = int8, multirange_type_name = rx.fr_y_multi);
CREATE TABLE rx.t (id int, m rx.fr_y_multi);
"""

KINDS = {
    "range": (["rx"], RANGE),
    "range_multirange_elsewhere": (["rx"], RANGE_MULTIRANGE_ELSEWHERE),
    "range_with_its_own_functions": (["rx"], RANGE_WITH_ITS_OWN_FUNCTIONS),
    "domain_enum_composite": (["rx"], DOMAIN_ENUM_COMPOSITE),
    "table_toast_identity_serial": (["rx"], TABLE_TOAST_IDENTITY_SERIAL),
    "partitions_inside": (["rx"], PARTITIONS_INSIDE),
    "views_rules_matview": (["rx"], VIEWS_AND_RULES),
    "constraints_triggers_policies": (["rx"], CONSTRAINTS_TRIGGERS_POLICIES),
    "routines_operators_search": (["rx"], ROUTINES_OPERATORS_SEARCH),
    "two_schemas_sharing_a_range": (["rx", "ry"], TWO_SCHEMAS_SHARING_A_RANGE),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_drop_removes_every_companion_and_nothing_else(copyhost, production, kind):
    schemas, ddl = KINDS[kind]
    with copyhost.connect(production) as conn:
        objects_before = _user_objects(conn)
        state_before = _production_state(conn)
        names_before = _schemas(conn)
    with as_superuser(copyhost) if kind in SUPERUSER_KINDS else nullcontext():
        _create_restored(copyhost, production, schemas, ddl)
        assert drop_restored(_endpoint(copyhost, production, "target"), RESTORE_ID,
                             reporter=NullReporter()) == sorted(schemas)
    with copyhost.connect(production) as conn:
        assert _schemas(conn) == names_before
        assert _user_objects(conn) ^ objects_before == set()
        assert _production_state(conn) == state_before
        # production's own range type still works, cast included
        assert conn.execute("SELECT '[1,3)'::prod.span8::prod.span8_multirange::text"
                            ).fetchone() == ("{[1,3)}",)


def test_multirange_elsewhere_is_really_created_in_the_other_schema(copyhost, production):
    """The case above is real: PostgreSQL accepts a multirange in another schema."""
    _create_restored(copyhost, production, ["rx"], RANGE_MULTIRANGE_ELSEWHERE)
    with copyhost.connect(production) as conn:
        rows = conn.execute(
            "SELECT m.typnamespace::regnamespace::text, p.pronamespace::regnamespace::text "
            "FROM pg_range r JOIN pg_type m ON m.oid = r.rngmultitypid "
            "JOIN pg_proc p ON p.prorettype = m.oid "
            "WHERE r.rngtypid = 'rx.fr'::regtype").fetchall()
    # the multirange lives in `elsewhere`; its constructors stay with the range
    assert rows == [("elsewhere", "rx")] * 3


# -- still refused: objects outside that depend on companions -----------------
# (A cast on a restored type is no longer among them: it belongs to no schema,
# pre-data restores such casts and the drop takes them: tests/test_casts.py.)

@pytest.mark.parametrize("restored, dependency, expected", [
    # a production range over a restored subtype: folded under the type itself
    ("CREATE TYPE rx.mood AS ENUM ('a', 'b')",
     "CREATE TYPE prod.mood_range AS RANGE (subtype = rx.mood)", "type prod.mood_range"),
    ("CREATE TYPE rx.fr AS RANGE (subtype = float8)",
     "CREATE TABLE prod.uses (m rx.fr_multirange)", "column m of table prod.uses"),
    ("CREATE TYPE rx.fr AS RANGE (subtype = float8, multirange_type_name = elsewhere.frm)",
     "ALTER TABLE prod.accounts ADD COLUMN m elsewhere.frm",
     "column m of table prod.accounts"),
    ("CREATE TYPE rx.fr AS RANGE (subtype = float8)",
     "CREATE FUNCTION prod.f(rx.fr_multirange) RETURNS int LANGUAGE sql AS 'SELECT 1'",
     "function prod.f(rx.fr_multirange)"),
    ("CREATE TYPE rx.fr AS RANGE (subtype = float8)",
     "CREATE DOMAIN prod.d AS rx.fr_multirange", "type prod.d"),
    # automatic dependents with a home of their own outside stay outside
    ("CREATE TABLE rx.t (id int, v int)",
     "CREATE STATISTICS prod.st ON id, v FROM rx.t", "statistics object prod.st"),
    ("CREATE TABLE rx.t (id int, v int)",
     "CREATE PUBLICATION pub_rx FOR TABLE rx.t", "publication of table rx.t in publication pub_rx"),
    ("CREATE TABLE rx.t (id int, v int)",
     "CREATE PUBLICATION pub_ns FOR TABLES IN SCHEMA rx",
     "publication of schema rx in publication pub_ns"),
])
def test_drop_refuses_outside_objects_depending_on_companions(copyhost, production, restored,
                                                              dependency, expected):
    _create_restored(copyhost, production, ["rx"], restored)
    # a publication of a whole schema takes a superuser (setup only)
    _run(copyhost, production, dependency,
         user=SUPERUSER if "FOR TABLES IN SCHEMA" in dependency else None)
    with copyhost.connect(production) as conn:
        objects_before = _user_objects(conn)
        state_before = _production_state(conn)
    with pytest.raises(DataPlaneError) as info:
        drop_restored(_endpoint(copyhost, production, "target"), RESTORE_ID,
                      reporter=NullReporter())
    assert info.value.reason == "DropRefused"
    assert f"would also remove 1 object(s) outside them: {expected}." in info.value.message
    with copyhost.connect(production) as conn:
        assert _user_objects(conn) == objects_before
        assert _production_state(conn) == state_before


# -- owners of the companions after pre-data ----------------------------------

OWNER = "pgsr_dc_owner"

RANGE_OWNED_SQL = """
CREATE SCHEMA elsewhere;
CREATE SCHEMA s AUTHORIZATION {owner};
SET ROLE {owner};
CREATE TYPE s.fr AS RANGE (subtype = float8);
CREATE TYPE s.dr AS RANGE (subtype = date);
CREATE TABLE s.t (id int PRIMARY KEY, r s.fr, m s.fr_multirange, d s.dr_multirange);
INSERT INTO s.t VALUES (1, '[1,2)', '{[1,2),[5,6)}', '{[2024-01-01,2024-03-01)}'), (2, NULL, '{}', NULL);
RESET ROLE;
"""

# The owner of each range type of a schema, of its multirange (wherever it
# lives) and of every function PostgreSQL made for them.
RANGE_FAMILY_OWNERS_SQL = """
WITH ranges AS (
    SELECT r.rngtypid, r.rngmultitypid FROM pg_range r JOIN pg_type t ON t.oid = r.rngtypid
    WHERE t.typnamespace = %(s)s::regnamespace)
SELECT t.oid::regtype::text, pg_get_userbyid(t.typowner) FROM pg_type t
WHERE t.oid IN (SELECT rngtypid FROM ranges UNION ALL SELECT rngmultitypid FROM ranges)
   OR t.typelem IN (SELECT rngtypid FROM ranges UNION ALL SELECT rngmultitypid FROM ranges)
UNION ALL
SELECT p.oid::regprocedure::text, pg_get_userbyid(p.proowner) FROM pg_proc p
JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'i'
WHERE d.refclassid = 'pg_type'::regclass
  AND d.refobjid IN (SELECT rngtypid FROM ranges UNION ALL SELECT rngmultitypid FROM ranges)
"""


def _range_family_owners(conn: psycopg.Connection, schema: str) -> dict[str, str]:
    conn.execute("SET search_path = pg_catalog")
    return dict(conn.execute(RANGE_FAMILY_OWNERS_SQL, {"s": schema}).fetchall())


RESTORER = "pgsr_dc_restorer"
RESTORER_PASSWORD = "restorerpw-" + os.urandom(6).hex()


@pytest.fixture(scope="module")
def owner_role(copyhost, prod):
    """A non-superuser owner on both clusters (roles are cluster-wide), and on
    `prod` a non-superuser restoring role that is a member of it."""
    for cluster in (copyhost, prod):   # made by the master user, who may act as it
        cluster.execute(sql.SQL("CREATE ROLE {o} NOLOGIN; GRANT {o} TO {m}").format(
            o=sql.Identifier(OWNER), m=sql.Identifier(cluster.user)).as_string(None))
    prod.execute(sql.SQL("CREATE ROLE {r} LOGIN PASSWORD {pw}; GRANT {o} TO {r}").format(
        r=sql.Identifier(RESTORER), o=sql.Identifier(OWNER),
        pw=sql.Literal(RESTORER_PASSWORD)).as_string(None))
    yield OWNER
    for cluster, role in ((prod, RESTORER), (copyhost, OWNER), (prod, OWNER)):
        try:
            cluster.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(
                sql.Identifier(role)).as_string(None))
        except psycopg.Error:
            pass  # still owns something somewhere: the cluster dies with the session


def _assert_made_by(owners: dict[str, str], role: str, *, types: int, functions: int) -> None:
    """Types belong to the role that made the range; constructor functions always
    to the bootstrap superuser (PostgreSQL's choice, whoever runs CREATE TYPE)."""
    type_owners = [o for name, o in owners.items() if "(" not in name]
    function_owners = [o for name, o in owners.items() if "(" in name]
    assert type_owners == [role] * types, owners
    assert function_owners == [SUPERUSER] * functions, owners   # initdb -U SUPERUSER


def _owner_source(copyhost, prod, new_db, ddl: str) -> tuple[str, str]:
    src, tgt = new_db(copyhost, "dcsrc"), new_db(prod, "dctgt")
    copyhost.execute(ddl, src)
    prod.execute("CREATE SCHEMA elsewhere", tgt)
    return src, tgt


@pytest.mark.e2e
def test_from_copy_gives_range_companions_the_range_owner(copyhost, prod, new_db, tmp_path,
                                                         owner_role):
    src, tgt = _owner_source(copyhost, prod, new_db,
                             RANGE_OWNED_SQL.replace("{owner}", owner_role))
    with copyhost.connect(src) as conn:
        source_owners = _range_family_owners(conn, "s")
    _assert_made_by(source_owners, owner_role, types=2 * 4, functions=2 * 5)

    run = run_ddl_job(["from-copy", "--suffix", "_r1", "--disposable-source", "--schema", "s",
                       "--restore-id", "dcown", "--artifacts", str(tmp_path / "artifacts")],
                      source=copyhost.dsn(src), target=prod.dsn(tgt), timeout=600)
    assert run.returncode == 0, str(run)
    with prod.connect(tgt) as conn:
        restored = _range_family_owners(conn, "s_r1")
        assert conn.execute("SELECT m::text FROM s_r1.t WHERE id = 1").fetchone() == \
            ("{[1,2),[5,6)}",)
    with copyhost.connect(src) as conn:   # extract renamed the schema inside the copy
        assert _range_family_owners(conn, "s_r1") == restored


RANGE_ELSEWHERE_OWNED_SQL = """
CREATE SCHEMA elsewhere;
CREATE SCHEMA s AUTHORIZATION {owner};
GRANT USAGE, CREATE ON SCHEMA elsewhere TO {owner};
SET ROLE {owner};
CREATE TYPE s.fr AS RANGE (subtype = float8, multirange_type_name = elsewhere.fr_multi);
CREATE TABLE s.t (id int, m elsewhere.fr_multi);
RESET ROLE;
"""


def test_apply_pre_gives_a_multirange_in_another_schema_the_range_owner(
        copyhost, prod, new_db, tmp_path, owner_role):
    src, tgt = _owner_source(copyhost, prod, new_db,
                             RANGE_ELSEWHERE_OWNED_SQL.replace("{owner}", owner_role))
    # the range's owner may own a type there (a non-superuser cannot give it one otherwise)
    prod.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA elsewhere TO {}").format(
        sql.Identifier(owner_role)).as_string(None), tgt)
    source, target = Endpoint.from_dsn("source", copyhost.dsn(src)), \
        Endpoint.from_dsn("target", prod.dsn(tgt))
    store = open_store(str(tmp_path / "artifacts"))
    extract(source, target, ["s"], "_r1", store, restore_id="dcown2",
            disposable_source=True)
    with copyhost.connect(src) as conn:
        source_owners = _range_family_owners(conn, "s_r1")
    assert "elsewhere.fr_multi" in source_owners
    _assert_made_by(source_owners, owner_role, types=4, functions=5)

    assert apply_pre(target, store) == ["s_r1"]
    with prod.connect(tgt) as conn:
        assert _range_family_owners(conn, "s_r1") == source_owners


def test_apply_pre_warns_when_a_non_superuser_cannot_give_the_multirange_away(
        copyhost, prod, new_db, tmp_path, owner_role):
    """The range's owner lacks CREATE on the multirange's schema in production:
    a non-superuser restoring role may not give it the multirange there."""
    src, tgt = _owner_source(copyhost, prod, new_db,
                             RANGE_ELSEWHERE_OWNED_SQL.replace("{owner}", owner_role))
    prod.execute(sql.SQL("GRANT CREATE ON DATABASE {db} TO {r}, {o}; "
                         "GRANT USAGE, CREATE ON SCHEMA elsewhere TO {r}").format(
        db=sql.Identifier(tgt), r=sql.Identifier(RESTORER),
        o=sql.Identifier(owner_role)).as_string(None), tgt)
    source = Endpoint.from_dsn("source", copyhost.dsn(src))
    store = open_store(str(tmp_path / "artifacts"))
    extract(source, Endpoint.from_dsn("target", prod.dsn(tgt)), ["s"], "_r1", store,
            restore_id="dcown3", disposable_source=True)

    stream = io.StringIO()
    restorer = Endpoint.from_dsn("target", prod.dsn(tgt, user=RESTORER,
                                                    password=RESTORER_PASSWORD))
    assert apply_pre(restorer, store, Reporter("apply", stream)) == ["s_r1"]
    warnings = [e for e in map(json.loads, stream.getvalue().splitlines())
                if e["event"] == "warning"]
    assert [w["type"] for w in warnings] == ["elsewhere.fr_multi"]
    assert f"instead of {owner_role}" in warnings[0]["message"]
    with prod.connect(tgt) as conn:
        owners = _range_family_owners(conn, "s_r1")
    assert owners["s_r1.fr"] == owner_role and owners["elsewhere.fr_multi"] == RESTORER
