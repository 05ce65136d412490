"""Any schema name PostgreSQL accepts is restored, and nothing else is.

`Tenant "Q"` once ended InvalidSchemaName, and so did quotes, backslashes,
semicolons, `--`, `/*` and line breaks: legal names, refused because they
looked like injections. Names now reach SQL only as quoted identifiers or
parameters, so the refusal is left to what PostgreSQL itself refuses (empty,
NUL, over 63 bytes, the reserved `pg_` prefix) plus information_schema.

Pure checks first (spec, CRD pattern, argv, marker, tokenizer, pg_restore
output handling), then pg_dump's `--schema` pattern against real pg_dump,
then end-to-end `from-copy` runs of the real CLI between real clusters:
schemas with such names, their tables, sequence, view, trigger and
functions whose text names the schema come back whole and working, a
forced failure drops exactly them, and a name cannot forge a marker.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import yaml
from psycopg import sql
from test_rich_restore import assert_unchanged, db_state, one, table_rows

from ddl_job import clients, dump, marker, requests
from ddl_job.artifacts import LocalStore
from ddl_job.conn import Endpoint
from ddl_job.errors import DataPlaneError, InvalidRequest, InvalidSpec
from ddl_job.names import shown, target_names, validate_schema_name
from ddl_job.progress import NullReporter
from ddl_job.rewrite import quote_ident, rewrite_sql
from ddl_job.verify import verify
from pg_schema_restore.engine.spec import RestoreSpec
from support.ddl_job_cli import Run, run_ddl_job

CRD = Path(__file__).resolve().parent.parent / "crds" / "schemarestores.pgschemarestore.io.yaml"
SUFFIX = "_r1"

# The names of the issue, and the ones that stretch every other path.
BRIEF_NAMES = ['Tenant "Q"', "it's; --x", "back\\slash /*c*/", "ünï cødé"]
ODD_NAMES = ["new\nline", "cr\rname\r\n", "x\n\\unrestrict k\ny", " lead and trail ",
             'a$b*c?d.e[]"', "-x", "PG_upper", ":v :'v' \\gexec", "tab\there\x7f"]
# a name whose second line is another restore's marker (60 bytes, 63 with SUFFIX)
FORGER = "f\n" + marker.PREFIX + "v1 from schema y"
LEGAL = BRIEF_NAMES + ODD_NAMES + [FORGER, "a--b", "a/*b", "*/", " ", "Pg_x", "ä" * 30]
REFUSED = ["", "a\x00b", "pg_x", "pg_toast", "information_schema", "x" * 64, "é" * 32,
           "bad\udc80utf8"]


# -- the spec, the CRD and the command lines -------------------------------------------

def _spec(names: list[str]) -> dict:
    return {"database": "d", "schemas": names, "snapshotId": "s", "targetSuffix": SUFFIX}


@pytest.fixture(scope="module")
def crd_pattern() -> re.Pattern:
    crd = yaml.safe_load(CRD.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    items = spec["properties"]["schemas"]["items"]
    assert items["minLength"] == 1 and items["maxLength"] == 63
    return re.compile(items["pattern"].removesuffix("$") + r"\Z")   # RE2's `$` ends the text


@pytest.mark.parametrize("name", LEGAL, ids=repr)
def test_spec_and_crd_accept_every_legal_name(crd_pattern, name):
    assert crd_pattern.match(name)
    spec = RestoreSpec.from_dict(_spec([name, "plain"]))
    assert spec.schemas == (name, "plain")
    assert spec.target_names() == {name: name + SUFFIX, "plain": "plain" + SUFFIX}


@pytest.mark.parametrize("name", REFUSED, ids=repr)
def test_names_postgres_refuses_are_refused(name):
    with pytest.raises(InvalidSpec):
        RestoreSpec.from_dict(_spec([name]))
    with pytest.raises(InvalidRequest) as info:
        validate_schema_name(name)
    assert info.value.reason == "InvalidSchemaName"
    assert "\n" not in info.value.message and "\x00" not in info.value.message


def test_crd_refuses_a_nul_byte(crd_pattern):
    assert not crd_pattern.match("a\x00b")


def test_suffixed_name_over_63_bytes_is_refused():
    with pytest.raises(InvalidRequest) as info:
        target_names(["ä" * 31], "_r1")   # 62 + 3 bytes
    assert info.value.reason == "NameTooLong"


def test_our_rule_is_postgres_rule(copyhost, new_db):
    """For every name, PostgreSQL creates it exactly when we accept it (the
    exceptions: information_schema exists already, and PostgreSQL truncates
    longer names where we refuse them)."""
    db = new_db(copyhost, "names")
    with copyhost.connect(db, autocommit=True) as conn:
        for name in LEGAL + ["pg_x", "pg_toast", "pg_temp_9"]:
            try:
                with conn.transaction():
                    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
                accepted = True
            except psycopg.errors.ReservedName:
                accepted = False
            try:
                validate_schema_name(name)
                ours = True
            except InvalidRequest:
                ours = False
            assert accepted == ours, name
            if accepted:
                found = one(conn, "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (name,))
                assert found == 1, name


@pytest.mark.parametrize("name", ["-x", "--x", "--", "a=b", "new\nline", 'Tenant "Q"', " "])
def test_step_argv_carries_any_name(name):
    """`--schema -x` read `-x` as a flag: argv now says `--schema=-x`."""
    request = requests.Precheck((name, "b"), "_x")
    assert requests.from_argv(request.to_argv()) == request


def test_command_line_lists_and_repeated_names():
    """`--schemas` is for people (split on commas, items trimmed); `--schema`
    gives a name exactly: commas, leading and trailing spaces included."""
    argv = ["precheck", "--schemas", "a, b", "--schema= c,d ", "--schema=--x", "--suffix=_x"]
    assert requests.from_argv(argv).schemas == ("a", "b", " c,d ", "--x")


def test_both_command_lines_take_names_that_look_like_flags():
    """`--schema=--`: argparse (Python < 3.13) dropped the value `--`."""
    from ddl_job.cli import build_parser as data_plane_parser
    from pg_schema_restore.cli import build_parser as operator_parser
    from pg_schema_restore.commands import spec_from_args

    args = operator_parser().parse_args(["plan", "--database", "d", "--schema=--",
                                         "--schema=-x", "--snapshot-id", "s"])
    assert spec_from_args(args).schemas == ("--", "-x")
    args = data_plane_parser().parse_args(["from-copy", "--schema=--", "--schema=-x"])
    assert requests.schemas_from(args) == ["--", "-x"]


# -- messages and the marker -----------------------------------------------------------

def test_shown_never_breaks_a_line():
    assert shown("plain_1") == "plain_1"
    assert shown('Tenant "Q"') == '"Tenant ""Q"""'
    assert shown("new\nline") == repr("new\nline")
    for name in LEGAL:
        assert shown(name).isprintable(), name


def test_marker_stays_on_one_line_whatever_the_name():
    comment = marker.with_marker("original\ncomment", "mine", FORGER)
    assert marker.carries_marker(comment, "mine")
    assert not marker.carries_marker(comment, "v1")
    assert comment.splitlines()[-1] == marker.marker_line("mine", FORGER)
    for name in LEGAL:
        line = marker.marker_line("mine", name)
        assert line.isprintable(), name
        assert marker.carries_marker(marker.with_marker(None, "mine", name), "mine")
    # printable names are written as before
    assert marker.marker_line("r1", "Tenant B") == marker.PREFIX + "r1 from schema Tenant B"


def test_verify_message_shows_odd_names_escaped(copyhost, new_db):
    db = new_db(copyhost, "vmsg")
    endpoint = Endpoint.from_dsn("source", copyhost.dsn(db))
    with pytest.raises(DataPlaneError) as info:
        verify(endpoint, Endpoint.from_dsn("target", copyhost.dsn(db)),
               ["new\nline", 'Tenant "Q"'], reporter=NullReporter())
    assert info.value.message.splitlines()[1:] == [
        "schema 'new\\nline': missing in source and target",
        'schema "Tenant ""Q""": missing in source and target']


def test_terminal_lines_show_odd_names_on_one_line():
    import io

    from pg_schema_restore.events import HumanReporter, line

    stream = io.StringIO()
    HumanReporter("extract", stream).emit("renamed", schema=FORGER, target=FORGER + SUFFIX)
    assert len(stream.getvalue().splitlines()) == 1
    assert line({"event": "renamed", "schema": "new\nline"}) == "  renamed schema='new\\nline'"


# -- the tokenizer -----------------------------------------------------------------------

MAPPING = {name: name + SUFFIX for name in BRIEF_NAMES + ["new\nline"]}


@pytest.mark.parametrize("text,expected", [
    ('SELECT * FROM "Tenant ""Q""".items',
     'SELECT * FROM "Tenant ""Q""_r1".items'),
    ('SELECT "it\'s; --x".f(), 1 -- "it\'s; --x".g\n',
     'SELECT "it\'s; --x_r1".f(), 1 -- "it\'s; --x".g\n'),
    ('SELECT "back\\slash /*c*/" . t /* "back\\slash /*c*/".t */',
     'SELECT "back\\slash /*c*/_r1" . t /* "back\\slash /*c*/".t */'),
    ('SELECT "ünï cødé".t, ünï.t', 'SELECT "ünï cødé_r1".t, ünï.t'),
    ('SELECT "new\nline".t', 'SELECT "new\nline_r1".t'),
    # literals: whole value only, quotes doubled; E'' keeps its backslashes
    ("SELECT format('%I.t', 'it''s; --x')", "SELECT format('%I.t', 'it''s; --x_r1')"),
    ("SELECT format('%I.t', E'back\\\\slash /*c*/')",
     "SELECT format('%I.t', E'back\\\\slash /*c*/_r1')"),
    ("SELECT 'Tenant \"Q\" rocks'", "SELECT 'Tenant \"Q\" rocks'"),
    # search_path, in clauses and in literals
    ("SET search_path TO 'it''s; --x', public", "SET search_path TO 'it''s; --x_r1', public"),
    ("SET search_path = \"Tenant \"\"Q\"\"\", public",
     "SET search_path = \"Tenant \"\"Q\"\"_r1\", public"),
    # dynamic SQL inside a string inside a dollar body
    ("$b$ EXECUTE 'SELECT count(*) FROM \"Tenant \"\"Q\"\"\".t' $b$",
     "$b$ EXECUTE 'SELECT count(*) FROM \"Tenant \"\"Q\"\"_r1\".t' $b$"),
    # a longer quoted name is another name
    ('SELECT "Tenant ""Q"" 2".t', 'SELECT "Tenant ""Q"" 2".t'),
])
def test_rewrite_odd_names(text, expected):
    assert rewrite_sql(text, MAPPING)[0] == expected


def test_new_names_are_quoted_with_doubled_quotes():
    assert quote_ident('Tenant "Q"_r1') == '"Tenant ""Q""_r1"'
    assert quote_ident("it's; --x") == '"it\'s; --x"'


# -- pg_dump and pg_restore --------------------------------------------------------------

# name -> schemas that a pattern read as a regex or a wildcard would also select
DECOYS = {
    'Tenant "Q"': ["Tenant Q", 'Tenant "q"'],
    "a$b*c?d.e": ["a$bXXcQdZe", "a$b"],
    "back\\slash": ["back lash", "backslash"],
    "a\\": ["a"],
    "\\": ["x"],
    "x[]": ["x"],
    "a|b(c)^": ["a", "b(c)"],
    "Mixed.Case": ["mixed.case", "MixedXCase"],
    "new\nline": ["new line"],
}


def test_schema_pattern_selects_exactly_the_named_schema(copyhost, new_db, tmp_path):
    """pg_dump 15 (the client here) with `--schema="…"`: quotes doubled, `*`,
    `?`, `.`, `$`, brackets and backslashes literal."""
    db = new_db(copyhost, "patterns")
    endpoint = Endpoint.from_dsn("source", copyhost.dsn(db))
    with copyhost.connect(db, autocommit=True) as conn:
        oids = {}
        for name in set(DECOYS) | {d for decoys in DECOYS.values() for d in decoys}:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
            oids[name] = one(conn, "SELECT oid FROM pg_namespace WHERE nspname = %s", (name,))
    for name in DECOYS:
        archive = tmp_path / "a.dump"
        dump.dump_schemas(endpoint, [name], archive)
        dumped = {e.oid for e in dump.toc(archive, "pre-data", endpoint)
                  if e.catalog == dump.PG_NAMESPACE}
        assert dumped == {oids[name]}, name


def test_restrict_lines_of_a_name_are_kept():
    """Only the header's `\\restrict KEY` pair goes; a name's line that reads
    like one (another key) is part of the name."""
    text = ("\\restrict Abc123\nSET x = 1;\nCREATE SCHEMA \"x\n\\unrestrict k\ny\";\n"
            "\\unrestrict Abc123\n")
    assert dump.without_restrict(text) == "SET x = 1;\nCREATE SCHEMA \"x\n\\unrestrict k\ny\";\n"
    assert dump.without_restrict("SELECT 1;\n") == "SELECT 1;\n"


@pytest.mark.parametrize("version,safe", [
    ("pg_restore (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)", True),
    ("pg_restore (PostgreSQL) 15.14", True),
    ("pg_restore (PostgreSQL) 15.13", False),
    ("pg_restore (PostgreSQL) 17.6", True),
    ("pg_restore (PostgreSQL) 17.5", False),
    ("pg_restore (PostgreSQL) 16.9", False),
    ("pg_restore (PostgreSQL) 13.22", True),
    ("pg_restore (PostgreSQL) 12.22", False),
    ("pg_restore (PostgreSQL) 18.0", True),
    ("pg_restore (PostgreSQL) 19devel", True),
    ("pg_restore (PostgreSQL) 17beta1", False),
    ("something else", False),
])
def test_comment_safe_pg_restore_versions(version, safe):
    assert dump.comment_safe(version) is safe


def test_local_artifacts_keep_carriage_returns(tmp_path):
    """Text mode turned `\\r` inside a quoted name into `\\n`: another name."""
    store = LocalStore(tmp_path / "store")
    source = tmp_path / "pre.sql"
    source.write_bytes('CREATE SCHEMA "cr\rname\r\n";\n'.encode())
    store.put_file("pre.sql", source)
    assert store.read_text("pre.sql") == 'CREATE SCHEMA "cr\rname\r\n";\n'


# -- end to end: the real CLI between real clusters ----------------------------------------

TENANT_SQL = """
CREATE SCHEMA {s};
COMMENT ON SCHEMA {s} IS {comment};
CREATE TABLE {s}.items (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                        name text NOT NULL UNIQUE, qty int NOT NULL DEFAULT 0);
CREATE SEQUENCE {s}.ticket;
CREATE TABLE {s}.log (id bigint PRIMARY KEY DEFAULT nextval({ticket}::regclass),
                      what text NOT NULL);
CREATE INDEX log_what ON {s}.log (what);
CREATE VIEW {s}.big AS SELECT id, name FROM {s}.items WHERE qty > 5;
CREATE FUNCTION {s}.add_item(n text, q int) RETURNS int LANGUAGE plpgsql AS $body$
DECLARE r int;
BEGIN
  INSERT INTO {s}.items (name, qty) VALUES (n, q) RETURNING id INTO r;
  RETURN r;
END $body$;
CREATE FUNCTION {s}.total() RETURNS bigint LANGUAGE sql
  AS $body$ SELECT coalesce(sum(qty), 0) FROM {s}.items $body$;
CREATE FUNCTION {s}.dyn_count() RETURNS bigint LANGUAGE plpgsql AS $body$
DECLARE c bigint;
BEGIN
  EXECUTE format('SELECT count(*) FROM %I.items', {name}) INTO c;
  RETURN c;
END $body$;
CREATE FUNCTION {s}.path_count() RETURNS bigint LANGUAGE sql SET search_path = {s}
  AS $body$ SELECT count(*) FROM log $body$;
CREATE FUNCTION {s}.atomic_count() RETURNS bigint LANGUAGE sql SET search_path = {s}
  BEGIN ATOMIC SELECT count(*) FROM {s}.items; END;
CREATE FUNCTION {s}.stamp() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
  INSERT INTO {s}.log (what) VALUES ('added ' || NEW.name);
  RETURN NEW;
END $body$;
CREATE TRIGGER items_stamp AFTER INSERT ON {s}.items
  FOR EACH ROW EXECUTE FUNCTION {s}.stamp();
INSERT INTO {s}.items (name, qty) SELECT 'item ' || g, g FROM generate_series(1, 30) g;
"""
# atomic_count: its body follows the rename by OID, its SET search_path is rewritten
REWRITTEN = {"add_item", "total", "dyn_count", "path_count", "atomic_count", "stamp"}
DAMAGE_SQL = "DELETE FROM {s}.items WHERE qty > 10; SELECT setval({ticket}, 1000)"
# A foreign key to production data that production no longer has: post-data fails.
COUNTRY_FK_SQL = """
CREATE TABLE {s}.customers (id int PRIMARY KEY, country text REFERENCES public.countries);
INSERT INTO {s}.customers VALUES (1, 'FR'), (2, 'ZZ');
"""


def tenant_sql(name: str, template: str = TENANT_SQL) -> str:
    """The template for one schema, every name composed by psycopg."""
    ident = sql.Identifier(name)
    return sql.SQL(template).format(
        s=ident, name=sql.Literal(name), comment=sql.Literal(f"tenant {name}"),
        ticket=sql.Literal(sql.Identifier(name, "ticket").as_string(None))).as_string(None)


@dataclass
class World:
    """A restored copy (a database on copyhost) and production (one on prod)."""

    copyhost: object
    prod: object
    src: str
    tgt: str
    artifacts: Path
    before: dict = field(default_factory=dict)

    runs: int = 0

    def run(self, args: list[str], schemas: list[str] = (), *, source: bool = True,
            extra_env: dict[str, str] | None = None) -> Run:
        """The real CLI; each schema as `--schema=NAME` (a name may start with `-`)."""
        argv = list(args) + [f"--schema={name}" for name in schemas]
        return run_ddl_job(argv, source=self.copyhost.dsn(self.src) if source else None,
                           target=self.prod.dsn(self.tgt), timeout=600, extra_env=extra_env)

    def from_copy(self, schemas: list[str], restore_id: str, *extra: str) -> Run:
        """from-copy with its own artifacts directory per run."""
        self.before = self.before or db_state(self.prod, self.tgt)
        self.runs += 1
        return self.run(["from-copy", "--suffix", SUFFIX, "--disposable-source",
                         "--restore-id", restore_id, "--artifacts",
                         str(self.artifacts / str(self.runs)), *extra], schemas)

    def assert_rest_unchanged(self, added: list[str] = ()) -> None:
        after = db_state(self.prod, self.tgt, exclude=tuple(added))
        assert_unchanged(self.before, after, added=list(added))


@pytest.fixture
def world(copyhost, prod, new_db, tmp_path):
    def make(source_sql: str, target_sql: str) -> World:
        src, tgt = new_db(copyhost, "idsrc"), new_db(prod, "idtgt")
        copyhost.execute(source_sql, src)
        prod.execute(target_sql, tgt)
        return World(copyhost, prod, src, tgt, tmp_path / "artifacts")
    return make


def _call(conn: psycopg.Connection, schema: str, function: str, *args):
    query = sql.SQL("SELECT {}({})").format(sql.Identifier(schema, function),
                                             sql.SQL(", ").join(map(sql.Literal, args)))
    return one(conn, query)


def _count(conn: psycopg.Connection, schema: str, relation: str) -> int:
    return one(conn, sql.SQL("SELECT count(*) FROM {}").format(
        sql.Identifier(schema, relation)))


def check_restored(conn: psycopg.Connection, old: str, new: str, restore_id: str) -> None:
    """The restored schema works, on its own rows, and production's is untouched."""
    old_items = _count(conn, old, "items")
    assert old_items == 10                                   # production is damaged
    assert _call(conn, new, "total") == sum(range(1, 31))
    assert _call(conn, new, "dyn_count") == 30
    assert _call(conn, new, "path_count") == 30             # one log row per item
    assert _count(conn, new, "big") == 25
    assert one(conn, "SELECT p.proconfig FROM pg_proc p JOIN pg_namespace n "
                     "ON n.oid = p.pronamespace WHERE n.nspname = %s "
                     "AND p.proname = 'atomic_count'", (new,)) == [
        "search_path=" + sql.Identifier(new).as_string(None)]
    assert _call(conn, new, "atomic_count") == 30
    # writing through the restored routines and trigger stays in the new schema
    new_id = _call(conn, new, "add_item", "added later", 7)
    assert new_id == 31
    assert _count(conn, new, "items") == 31 and _count(conn, new, "log") == 31
    assert one(conn, sql.SQL("SELECT max(id) FROM {}").format(
        sql.Identifier(new, "log"))) == 31                   # the copied sequence moved on
    assert _count(conn, old, "items") == old_items and _count(conn, old, "log") == 30
    comment = one(conn, "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace "
                        "WHERE nspname = %s", (new,))
    assert comment == f"tenant {old}\n\n" + marker.marker_line(restore_id, old)


@pytest.mark.e2e
@pytest.mark.parametrize("names", [BRIEF_NAMES, ODD_NAMES], ids=["brief", "odd"])
def test_odd_names_are_restored_whole_and_working(world, names):
    source_sql = "".join(tenant_sql(name) for name in names)
    w = world(source_sql, source_sql + ";".join(
        tenant_sql(name, DAMAGE_SQL) for name in names))
    restore_id = "names-" + secrets.token_hex(3)
    w.before = db_state(w.prod, w.tgt)
    with w.copyhost.connect(w.src) as conn:
        expected = {name: table_rows(conn, name) for name in names}
    run = w.from_copy(names, restore_id)
    assert run.returncode == 0, str(run)
    result = run.last["result"]
    mapping = {name: name + SUFFIX for name in names}
    assert result["schemas"] == mapping
    assert result["verify"]["ok"] is True, result["verify"]
    for new in mapping.values():
        prefix = sql.Identifier(new).as_string(None) + "."
        rewritten = {sig[len(prefix):].split("(")[0] for sig in result["rewritten_functions"]
                     if sig.startswith(prefix)}
        assert rewritten == REWRITTEN, (new, result["rewritten_functions"])
    for line in run.stdout.splitlines():   # every report is one JSON line
        assert line.startswith("{"), line
    w.assert_rest_unchanged(list(mapping.values()))
    with w.prod.connect(w.tgt, autocommit=True) as conn:
        for old, new in mapping.items():
            assert table_rows(conn, new) == expected[old], old
            check_restored(conn, old, new, restore_id)
    w.assert_rest_unchanged(list(mapping.values()))


@pytest.mark.e2e
def test_failed_restore_drops_exactly_its_odd_schemas(world):
    """Post-data fails for real; the created schemas are dropped by their marker.
    Kept with --keep-on-failure, they are dropped by `drop` for their restore id,
    never for the id that FORGER's second line names."""
    names = [FORGER, 'Tenant "Q"', "back\\slash /*c*/"]
    base = "CREATE TABLE public.countries (code text PRIMARY KEY); "
    source_sql = (base + "INSERT INTO public.countries VALUES ('FR'), ('ZZ');"
                  + "".join(tenant_sql(n) + tenant_sql(n, COUNTRY_FK_SQL) for n in names))
    w = world(source_sql, base + "INSERT INTO public.countries VALUES ('FR');")
    restore_id = "odd-" + secrets.token_hex(3)
    targets = sorted(name + SUFFIX for name in names)

    # A key to a row production no longer has: refused on request (the default
    # keeps such a key NOT VALID and succeeds: tests/test_foreign_keys.py).
    run = w.from_copy(names, restore_id, "--invalid-foreign-keys=fail")
    assert run.returncode == 1, str(run)
    assert run.last["reason"] == "ForeignKeyViolation", str(run)
    assert [e.get("schemas") for e in run.find("dropped_after_failure")] == [targets]
    w.assert_rest_unchanged()

    run = w.from_copy(names, restore_id, "--invalid-foreign-keys=fail",
                      "--keep-on-failure")   # extract resumes
    assert run.last["reason"] == "ForeignKeyViolation", str(run)
    assert run.find("dropped_after_failure") == []
    w.assert_rest_unchanged(targets)

    run = w.run(["drop", "--restore-id", "v1"], source=False)
    assert run.returncode == 0 and run.last["result"] == [], str(run)
    w.assert_rest_unchanged(targets)

    run = w.run(["drop", "--restore-id", restore_id], source=False)
    assert run.returncode == 0, str(run)
    assert run.last["result"] == targets
    w.assert_rest_unchanged()


@pytest.mark.e2e
def test_old_pg_restore_is_refused_for_line_breaks(world, tmp_path):
    """A pg_restore older than CVE-2025-8715's fix would write the line break
    into a `--` comment line of pre-data: refused before anything changes."""
    w = world(tenant_sql("new\nline"), "SELECT 1")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "pg_restore").write_text("#!/bin/sh\necho 'pg_restore (PostgreSQL) 15.13'\n")
    (fake / "pg_restore").chmod(0o755)
    real = clients.choose(clients.server_major(Endpoint.from_dsn("target", w.prod.dsn(w.tgt))),
                          clients.installed(), "the test cluster")
    (fake / "pg_dump").symlink_to(real / "pg_dump")
    w.before = db_state(w.prod, w.tgt)
    run = w.run(["from-copy", "--suffix", SUFFIX, "--disposable-source"], ["new\nline"],
                extra_env={"PGSR_PG_BINDIR": str(fake)})
    assert run.returncode == 1 and run.last["reason"] == "ToolTooOld", str(run)
    assert "15.13" in run.last["message"]
    with w.copyhost.connect(w.src) as conn:   # not even renamed in the copy
        assert one(conn, "SELECT count(*) FROM pg_namespace WHERE nspname = %s",
                   ("new\nline",)) == 1
    w.assert_rest_unchanged()
