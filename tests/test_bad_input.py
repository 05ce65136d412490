"""Bad input to the real CLI: a clear error, a non-zero exit, nothing changed.

Each case runs `python -m ddl_job from-copy …` as a subprocess against real
clusters (a plain database on `copyhost` plays the restored copy, a database
on `prod` is production) and checks that

- the exit code is non-zero and the last JSON line is an `error` with the
  expected reason and a message naming the problem;
- neither database changed: schema list and a full dump (DDL, rows,
  sequence values) before and after are identical;
- no credential appears in stdout, stderr or the artifacts directory.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pg_schema_restore.local.cluster import free_port
from support.ddl_job_cli import Run, run_ddl_job
from support.pg import PASSWORD

REPO = Path(__file__).resolve().parents[1]
_RESTRICT = re.compile(r"^\\(un)?restrict \S+\s*$")

LONG_ASCII = "t" * 60                 # 60 bytes: fits, but not with a 6-byte suffix
LONG_MULTIBYTE = "é" * 30             # 30 characters, 60 bytes

SOURCE_SQL = f"""
CREATE SCHEMA tenant_x;
CREATE TABLE tenant_x.t (id serial PRIMARY KEY, v text);
INSERT INTO tenant_x.t (v) SELECT 'v' || g FROM generate_series(1, 20) g;
CREATE FUNCTION tenant_x.f() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM tenant_x.t $$;
CREATE SCHEMA "Mixed Case";
CREATE TABLE "Mixed Case".t (id int PRIMARY KEY);
CREATE SCHEMA {LONG_ASCII};
CREATE TABLE {LONG_ASCII}.t (id int);
CREATE SCHEMA "{LONG_MULTIBYTE}";
CREATE TABLE "{LONG_MULTIBYTE}".t (id int);
"""

TARGET_SQL = """
CREATE SCHEMA tenant_x;
CREATE TABLE tenant_x.t (id serial PRIMARY KEY, v text);
INSERT INTO tenant_x.t (v) VALUES ('damaged');
CREATE SCHEMA tenant_x_r1;
COMMENT ON SCHEMA tenant_x_r1 IS 'somebody else''s schema';
CREATE TABLE tenant_x_r1.keep (id int PRIMARY KEY);
INSERT INTO tenant_x_r1.keep VALUES (1), (2);
"""


# -- helpers -------------------------------------------------------------------

def run_cli(args: list[str], *, source: str | None, target: str | None) -> Run:
    return run_ddl_job(args, source=source, target=target)


def pg_dump(cluster, db: str) -> str:
    env = dict(os.environ, PGPASSWORD=cluster.password)
    result = subprocess.run(["pg_dump", "--no-password", "-h", "127.0.0.1", "-p",
                             str(cluster.port), "-U", "postgres", "-d", db],
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return "".join(line for line in result.stdout.splitlines(keepends=True)
                   if not _RESTRICT.match(line))


def state(cluster, db: str) -> tuple[list[str], str]:
    with cluster.connect(db) as conn:
        names = [r[0] for r in conn.execute(
            "SELECT nspname FROM pg_namespace ORDER BY 1").fetchall()]
    return names, pg_dump(cluster, db)


@dataclass
class Env:
    copyhost: object
    prod: object
    source_db: str
    target_db: str
    artifacts: Path

    @property
    def source(self) -> str:
        return self.copyhost.dsn(self.source_db)

    @property
    def target(self) -> str:
        return self.prod.dsn(self.target_db)

    def snapshot(self) -> dict:
        return {"source": state(self.copyhost, self.source_db),
                "target": state(self.prod, self.target_db)}


@pytest.fixture
def env(copyhost, prod, new_db, tmp_path) -> Env:
    source_db = new_db(copyhost, "badsrc")
    target_db = new_db(prod, "badtgt")
    copyhost.execute(SOURCE_SQL, source_db)
    prod.execute(TARGET_SQL, target_db)
    return Env(copyhost, prod, source_db, target_db, tmp_path / "artifacts")


def refused(env: Env, args: list[str], reason: str, *, source: str | None = "default",
            target: str | None = "default", secrets: tuple[str, ...] = ()) -> Run:
    """Run from-copy with `args`; assert a clean refusal and that nothing changed."""
    before = env.snapshot()
    run = run_cli(["from-copy", *args, "--artifacts", str(env.artifacts)],
                  source=env.source if source == "default" else source,
                  target=env.target if target == "default" else target)
    assert run.returncode != 0, str(run)
    assert run.events, str(run)
    assert run.last["event"] == "error", str(run)
    assert run.last["reason"] == reason, str(run)
    assert run.last["message"], str(run)
    assert "Traceback" not in run.stderr, str(run)
    for secret in (PASSWORD, *secrets):
        assert secret not in run.stdout
        assert secret not in run.stderr
        if env.artifacts.exists():
            for path in env.artifacts.rglob("*"):
                if path.is_file():
                    assert secret.encode() not in path.read_bytes(), f"credential in {path}"
    after = env.snapshot()
    assert after["source"][0] == before["source"][0], "source schema list changed"
    assert after["target"][0] == before["target"][0], "target schema list changed"
    assert after["source"][1] == before["source"][1], "source database changed"
    assert after["target"][1] == before["target"][1], "target database changed"
    return run


FROM_COPY = ["--suffix", "_r2", "--disposable-source"]


def closed_port_dsn(dbname: str = "postgres") -> str:
    return make_conninfo(host="127.0.0.1", port=free_port(), dbname=dbname, user="postgres",
                         password=PASSWORD)


# -- missing schemas --------------------------------------------------------------

def test_missing_schema(env):
    run = refused(env, ["--schemas", "tenant_x,nope", *FROM_COPY], "MissingSchema")
    assert "'nope'" in run.last["message"]
    assert "'tenant_x'" not in run.last["message"].split("[", 1)[1]


def test_several_missing_schemas_are_all_reported(env):
    run = refused(env, ["--schemas", "nope_one,tenant_x", "--schema", "Nope Two",
                        "--schema", "nope_three", *FROM_COPY], "MissingSchema")
    for name in ("nope_one", "Nope Two", "nope_three"):
        assert repr(name) in run.last["message"], run.last["message"]


@pytest.mark.parametrize("name", ["TENANT_X", "Tenant_X", "mixed case", "Mixed  Case"])
def test_schema_names_match_exactly(env, name):
    """No case folding, no trimming of inner spaces: a near miss is a missing schema."""
    run = refused(env, ["--schema", name, *FROM_COPY], "MissingSchema")
    assert repr(name) in run.last["message"]


# -- target already there ----------------------------------------------------------

def test_target_schema_already_exists(env):
    run = refused(env, ["--schemas", "tenant_x", "--suffix", "_r1", "--disposable-source"],
                  "TargetExists")
    assert "tenant_x_r1" in run.last["message"]


def test_target_exists_for_one_of_several(env):
    run = refused(env, ["--schemas", "tenant_x", "--schema", "Mixed Case", "--suffix", "_r1",
                        "--disposable-source"], "TargetExists")
    assert "tenant_x_r1" in run.last["message"]


# -- names too long -----------------------------------------------------------------

def test_target_name_too_long_ascii(env):
    run = refused(env, ["--schema", LONG_ASCII, "--suffix", "_r1234", "--disposable-source"],
                  "NameTooLong")
    assert "63" in run.last["message"]
    assert "66 bytes" in run.last["message"]


def test_target_name_too_long_multibyte(env):
    # 30 characters + "_r12" = 34 characters, but 64 bytes
    run = refused(env, ["--schema", LONG_MULTIBYTE, "--suffix", "_r12", "--disposable-source"],
                  "NameTooLong")
    assert "64 bytes" in run.last["message"]


def test_name_too_long_is_refused_before_connecting(env):
    run = refused(env, ["--schema", LONG_ASCII, "--suffix", "_r1234", "--disposable-source"],
                  "NameTooLong", source=closed_port_dsn(), target=closed_port_dsn())
    assert run.seconds < 30


def test_source_name_over_63_bytes(env):
    run = refused(env, ["--schema", "x" * 64, *FROM_COPY], "InvalidSchemaName")
    assert "63 bytes" in run.last["message"]


# -- source = target ------------------------------------------------------------------

def test_source_equals_target_same_dsn(env, prod):
    same = prod.dsn(env.target_db)
    before = state(prod, env.target_db)
    refused(env, ["--schemas", "tenant_x", "--suffix", "_r2", "--disposable-source"],
            "SameDatabase", source=same, target=same)
    assert state(prod, env.target_db) == before


@pytest.mark.parametrize("spelling", ["localhost-keywords", "uri", "hostaddr"])
def test_source_equals_target_other_spelling(env, prod, spelling):
    if spelling == "localhost-keywords":
        source = (f"host=localhost port={prod.port} dbname={env.target_db} user=postgres "
                  f"password={PASSWORD}")
    elif spelling == "uri":
        source = f"postgresql://postgres:{PASSWORD}@localhost:{prod.port}/{env.target_db}"
    else:
        source = make_conninfo(hostaddr="127.0.0.1", host="prod.example.invalid",
                               port=prod.port, dbname=env.target_db, user="postgres",
                               password=PASSWORD)
    run = refused(env, ["--schemas", "tenant_x", "--suffix", "_r2", "--disposable-source"],
                  "SameDatabase", source=source, target=prod.dsn(env.target_db))
    assert "same" in run.last["message"]


# -- connections ---------------------------------------------------------------------

@pytest.mark.parametrize("side", ["source", "target"])
def test_unreachable_host_fails_fast(env, side):
    dsn = closed_port_dsn()
    run = refused(env, ["--schemas", "tenant_x", "--suffix", "_r2", "--disposable-source"],
                  "ConnectionFailed", **{side: dsn})
    assert run.seconds < 20, f"took {run.seconds:.1f}s"
    assert side in run.last["message"]


@pytest.mark.parametrize("side", ["source", "target"])
def test_wrong_password(env, copyhost, prod, side):
    wrong = "wrong-" + PASSWORD[::-1]
    cluster, db = (copyhost, env.source_db) if side == "source" else (prod, env.target_db)
    dsn = cluster.dsn(db, password=wrong)
    run = refused(env, ["--schemas", "tenant_x", "--suffix", "_r2", "--disposable-source"],
                  "ConnectionFailed", secrets=(wrong,), **{side: dsn})
    assert "password" in run.last["message"].lower()


def test_missing_connection_variable(env):
    run = refused(env, ["--schemas", "tenant_x", *FROM_COPY], "MissingConnection",
                  target=None)
    assert "PGSR_TARGET_DSN" in run.last["message"]


def test_unparsable_dsn_is_not_echoed(env):
    bad = f"host=127.0.0.1 password={PASSWORD} this is not a dsn"
    run = refused(env, ["--schemas", "tenant_x", *FROM_COPY], "InvalidConnection",
                  source=bad)
    assert "source" in run.last["message"]


# -- names shaped like injections ---------------------------------------------------------
# They are legal PostgreSQL names (once refused here); they only ever reach SQL as
# quoted identifiers, so they are restored as names and nothing else happens.

INJECTIONS = [
    'ten"ant',
    "ten'ant",
    "tenant_x; DROP SCHEMA public CASCADE",
    "tenant_x--",
    "x/*y*/",
    'tenant_x"; DROP TABLE tenant_x.t; --',
    "back\\slash",
    "new\nline",
]


def test_injection_shaped_names_are_restored_as_names(env, copyhost, prod):
    for name in INJECTIONS:
        copyhost.execute(sql.SQL("CREATE SCHEMA {s}; CREATE TABLE {t} (id int PRIMARY KEY, "
                                 "v text); INSERT INTO {t} VALUES (1, {v}), (2, 'two')").format(
            s=sql.Identifier(name), t=sql.Identifier(name, "t"),
            v=sql.Literal(name)).as_string(None), env.source_db)
    before = env.snapshot()
    run = run_cli(["from-copy", "--schemas", "tenant_x", *[f"--schema={n}" for n in INJECTIONS],
                   *FROM_COPY, "--artifacts", str(env.artifacts)],
                  source=env.source, target=env.target)
    assert run.returncode == 0, str(run)
    assert run.last["result"]["verify"]["ok"] is True
    with prod.connect(env.target_db) as conn:
        for name in INJECTIONS:
            rows = conn.execute(sql.SQL("SELECT v FROM {} ORDER BY id").format(
                sql.Identifier(name + "_r2", "t"))).fetchall()
            assert rows == [(name,), ("two",)], name
        schemas = {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")}
        # what the names spell was never run: public and tenant_x.t are still there
        assert conn.execute("SELECT v FROM tenant_x.t").fetchall() == [("damaged",)]
    assert schemas >= {"public", "tenant_x", "tenant_x_r1", "tenant_x_r2"}
    after = env.snapshot()["target"][0]
    assert sorted(after) == sorted(before["target"][0] + [n + "_r2" for n in INJECTIONS]
                                   + ["tenant_x_r2"])


@pytest.mark.parametrize("name", ["pg_x", "pg_toast", "information_schema", "", "x" * 64])
def test_names_postgres_refuses_are_refused_before_connecting(env, name):
    # Connections point nowhere: a ConnectionFailed would mean we tried to connect.
    run = refused(env, [f"--schema={name}", *FROM_COPY], "InvalidSchemaName",
                  source=closed_port_dsn(), target=closed_port_dsn())
    assert run.seconds < 30


# -- acknowledgement flag ---------------------------------------------------------------

def test_missing_disposable_source_flag(env):
    run = refused(env, ["--schemas", "tenant_x", "--suffix", "_r2"], "SourceNotDisposable")
    assert "--disposable-source" in run.last["message"]


def test_missing_disposable_source_flag_before_connecting(env):
    refused(env, ["--schemas", "tenant_x", "--suffix", "_r2"], "SourceNotDisposable",
            source=closed_port_dsn(), target=closed_port_dsn())


# -- other usage errors -------------------------------------------------------------------

@pytest.mark.parametrize("suffix", ["-r1", "_r 1", "_r;1", "", "_" + "x" * 40])
def test_bad_suffix(env, suffix):
    refused(env, ["--schemas", "tenant_x", f"--suffix={suffix}", "--disposable-source"],
            "InvalidSuffix")


def test_no_schema_given(env):
    refused(env, ["--suffix", "_r2", "--disposable-source"], "InvalidSchemaName")


def test_schema_listed_twice(env):
    refused(env, ["--schemas", "tenant_x", "--schema", "tenant_x", "--suffix", "_r2",
                  "--disposable-source"], "InvalidSchemaName")


def test_system_schema_refused(env):
    refused(env, ["--schema", "pg_catalog", *FROM_COPY], "InvalidSchemaName")


@pytest.mark.parametrize("restore_id", ["", "has space", "-leading-dash", "x" * 64])
def test_bad_restore_id(env, restore_id):
    refused(env, ["--schemas", "tenant_x", *FROM_COPY, f"--restore-id={restore_id}"],
            "InvalidRestoreId")
