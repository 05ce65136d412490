"""Foreign keys from restored tables to tables the restore leaves alone.

A tenant's `customers.country` references `shared.countries`, which is not
restored: production keeps its own. When production no longer has a row the
restore point referenced (`XX`, deleted after the point in time), the
restored rows cannot satisfy that key. The restore must not fail after the
copy for that: by default the key is added NOT VALID, validated, and kept
NOT VALID with a warning naming it and its orphan rows; `fail` ends the
restore with ForeignKeyViolation and leaves production as it was.

Real PostgreSQL: production on `prod`, genuine point-in-time copies (or a
plain database on `copyhost` when production did not change), the real
`python -m ddl_job from-copy`.
"""

from __future__ import annotations

import argparse
import secrets
from datetime import timezone
from pathlib import Path

import psycopg
import pytest
from test_rich_restore import assert_unchanged, db_state, one, table_rows

from ddl_job import cli as ddl_job_cli
from ddl_job import requests
from ddl_job.errors import InvalidRequest, InvalidSpec
from pg_schema_restore.commands import add_spec_args, spec_from_args
from pg_schema_restore.engine import phases
from pg_schema_restore.engine.record import RestoreRecord
from pg_schema_restore.engine.spec import RestoreSpec
from support.ddl_job_cli import Run, run_ddl_job
from support.pg import restore_point

TENANT = "Tenant X"
SUFFIX = "_r1"
TARGET = TENANT + SUFFIX
QUOTED_TARGET = '"Tenant X_r1"'

SHARED = """
CREATE SCHEMA shared;
CREATE TABLE shared.countries (code text PRIMARY KEY);
CREATE TABLE shared.regions (country text, code text, PRIMARY KEY (country, code));
CREATE TABLE shared.currencies (code text PRIMARY KEY);
INSERT INTO shared.countries VALUES ('DE'), ('FR'), ('XX');
INSERT INTO shared.regions VALUES ('DE', 'BY'), ('DE', 'ZZ'), ('XX', 'R1');
INSERT INTO shared.currencies VALUES ('EUR');
"""

# A column FK (quoted name, with a comment), a composite MATCH FULL FK, a
# valid FK to another table outside, and FKs inside the schema.
TENANT_SQL = """
CREATE SCHEMA "Tenant X";
CREATE TABLE "Tenant X".customers (
    id int PRIMARY KEY,
    country text CONSTRAINT "Country FK" REFERENCES shared.countries(code),
    region text,
    CONSTRAINT region_fk FOREIGN KEY (country, region)
        REFERENCES shared.regions (country, code) MATCH FULL);
COMMENT ON CONSTRAINT "Country FK" ON "Tenant X".customers IS 'a known country';
CREATE TABLE "Tenant X".orders (
    id int PRIMARY KEY,
    customer_id int NOT NULL REFERENCES "Tenant X".customers(id),
    currency text NOT NULL REFERENCES shared.currencies(code));
INSERT INTO "Tenant X".customers VALUES
    (1, 'DE', 'BY'), (2, 'XX', 'R1'), (3, 'DE', 'ZZ'), (4, NULL, NULL);
INSERT INTO "Tenant X".orders VALUES (1, 1, 'EUR'), (2, 2, 'EUR'), (3, 3, 'EUR');
"""

# After the restore point production forgets country XX and region DE/ZZ.
FORGET = """
DELETE FROM "Tenant X".orders WHERE customer_id IN (2, 3);
DELETE FROM "Tenant X".customers WHERE id IN (2, 3);
DELETE FROM shared.regions WHERE (country, code) IN (('XX', 'R1'), ('DE', 'ZZ'));
DELETE FROM shared.countries WHERE code = 'XX';
"""

COUNTRY_FK = f'{QUOTED_TARGET}.customers."Country FK"'
REGION_FK = f"{QUOTED_TARGET}.customers.region_fk"


def from_copy(source: str, target: str, artifacts: Path, *extra: str) -> Run:
    return run_ddl_job(["from-copy", "--schema", TENANT, "--suffix", SUFFIX,
                        "--disposable-source", "--restore-id", "fk-" + secrets.token_hex(3),
                        "--artifacts", str(artifacts), *extra],
                       source=source, target=target, timeout=600)


def constraints(conn: psycopg.Connection, schema: str) -> dict[str, bool]:
    """conname -> convalidated, for the foreign keys of `schema`."""
    rows = conn.execute(
        "SELECT c.conname, c.convalidated FROM pg_constraint c "
        "JOIN pg_namespace n ON n.oid = c.connamespace "
        "WHERE n.nspname = %s AND c.contype = 'f'", (schema,)).fetchall()
    return dict(rows)


@pytest.fixture
def forgotten(prod, new_db, make_pitr_copy):
    """(db, copy, expected rows): production forgot XX after the restore point."""
    db = new_db(prod, "fk")
    with prod.connect(db, autocommit=True) as conn:
        conn.execute(SHARED)
        conn.execute(TENANT_SQL)
        expected = table_rows(conn, TENANT)
    point = restore_point()
    with prod.connect(db, autocommit=True) as conn:
        conn.execute(FORGET)
    return db, make_pitr_copy(point), expected


@pytest.mark.e2e
def test_orphaned_outside_key_is_kept_not_valid_with_a_warning(prod, forgotten, tmp_path):
    db, copy, expected = forgotten
    run = from_copy(copy.dsn(db), prod.dsn(db), tmp_path / "a")
    assert run.returncode == 0, str(run)
    result = run.last["result"]
    assert result["verify"]["ok"] is True
    warnings = [w for w in result["warnings"] if "orphan" in w]
    assert len(warnings) == 2, warnings
    country = next(w for w in warnings if COUNTRY_FK in w)
    assert "shared.countries" in country and "1 orphan row " in country, country
    region = next(w for w in warnings if REGION_FK in w)
    assert "shared.regions" in region and "2 orphan rows" in region, region
    assert sorted(fk["constraint"] for fk in result["not_valid_foreign_keys"]) == \
        sorted([COUNTRY_FK, REGION_FK])
    with prod.connect(db) as conn:
        assert constraints(conn, TARGET) == {
            "Country FK": False, "region_fk": False,      # kept NOT VALID
            "orders_customer_id_fkey": True,              # inside: as pg_dump made it
            "orders_currency_fkey": True}                 # outside, still satisfied
        assert table_rows(conn, TARGET) == expected
        assert one(conn, """SELECT obj_description(c.oid, 'pg_constraint') FROM pg_constraint c
                            WHERE c.conname = 'Country FK' AND c.connamespace = %s::regnamespace
                         """, (QUOTED_TARGET,)) == "a known country"
        # NOT VALID still guards new rows
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute('INSERT INTO "Tenant X_r1".customers VALUES (9, %s, NULL)', ("XX",))


@pytest.mark.e2e
def test_fail_policy_fails_and_leaves_production_as_it_was(prod, forgotten, tmp_path):
    db, copy, _ = forgotten
    before = db_state(prod, db)
    run = from_copy(copy.dsn(db), prod.dsn(db), tmp_path / "b", "--invalid-foreign-keys", "fail")
    assert run.returncode == 1, str(run)
    assert run.last["event"] == "error", str(run)
    assert run.last["reason"] == "ForeignKeyViolation", str(run)
    message = run.last["message"]
    assert f"{COUNTRY_FK} (references shared.countries): 1 orphan row " in message, message
    assert f"{REGION_FK} (references shared.regions): 2 orphan rows" in message, message
    assert "worker process died" not in run.stdout + run.stderr
    assert [e.get("schemas") for e in run.find("dropped_after_failure")] == [[TARGET]]
    assert_unchanged(before, db_state(prod, db))


@pytest.fixture
def copy_and_production(copyhost, prod, new_db):
    """A "restored copy" on copyhost and a production database, both given SQL."""
    def make(copy_sql: str, production_sql: str) -> tuple[str, str]:
        src, tgt = new_db(copyhost, "fksrc"), new_db(prod, "fktgt")
        with copyhost.connect(src, autocommit=True) as conn:
            conn.execute(copy_sql)
        with prod.connect(tgt, autocommit=True) as conn:
            conn.execute(production_sql)
        return src, tgt
    return make


@pytest.mark.e2e
def test_satisfied_outside_keys_end_valid_without_warning(copyhost, prod, copy_and_production,
                                                          tmp_path):
    src, tgt = copy_and_production(SHARED + TENANT_SQL, SHARED + TENANT_SQL)
    run = from_copy(copyhost.dsn(src), prod.dsn(tgt), tmp_path / "c")
    assert run.returncode == 0, str(run)
    result = run.last["result"]
    assert result["verify"]["ok"] is True
    assert not [w for w in result["warnings"] if "foreign key" in w], result["warnings"]
    assert result["not_valid_foreign_keys"] == [] == result["omitted_foreign_keys"]
    assert len(run.find("foreign_key_validated")) == 3
    with prod.connect(tgt) as conn:
        assert constraints(conn, TARGET) == {"Country FK": True, "region_fk": True,
                                             "orders_customer_id_fkey": True,
                                             "orders_currency_fkey": True}
        assert constraints(conn, TARGET) == constraints(conn, TENANT)


PARTITIONED = """
CREATE SCHEMA "Tenant X";
CREATE TABLE "Tenant X".events (id int, country text REFERENCES shared.countries(code),
                                currency text REFERENCES shared.currencies(code))
    PARTITION BY RANGE (id);
CREATE TABLE "Tenant X".events_low PARTITION OF "Tenant X".events FOR VALUES FROM (0) TO (10);
CREATE TABLE "Tenant X".events_high PARTITION OF "Tenant X".events
    FOR VALUES FROM (10) TO (100);
INSERT INTO "Tenant X".events VALUES (1, 'DE', 'EUR'), (2, 'XX', 'EUR'), (20, 'XX', 'EUR');
"""


@pytest.mark.e2e
def test_partitioned_table_key_production_no_longer_satisfies(copyhost, prod,
                                                              copy_and_production, tmp_path):
    """PostgreSQL before 18 cannot keep a NOT VALID key on a partitioned table:
    the orphaned key is left out (with a warning), the satisfied one is added."""
    without_xx = SHARED.replace(", ('XX')", "").replace(", ('XX', 'R1')", "")
    src, tgt = copy_and_production(SHARED + PARTITIONED, without_xx)
    run = from_copy(copyhost.dsn(src), prod.dsn(tgt), tmp_path / "e")
    assert run.returncode == 0, str(run)
    result = run.last["result"]
    assert result["verify"]["ok"] is True
    label = f"{QUOTED_TARGET}.events.events_country_fkey"
    [warning] = [w for w in result["warnings"] if "foreign key" in w]
    assert f"foreign key {label} was not restored: 2 orphan rows" in warning, warning
    assert [k["constraint"] for k in result["omitted_foreign_keys"]] == [label]
    with prod.connect(tgt) as conn:
        assert constraints(conn, TARGET) == {"events_currency_fkey": True}
        assert one(conn, 'SELECT count(*) FROM "Tenant X_r1".events') == 3


# -- the choice, from every entry point to the step request ---------------------------
def _record(**spec: str) -> RestoreRecord:
    record = RestoreRecord(restore_id="fk-unit", spec=RestoreSpec.from_dict(
        {"database": "d", "schemas": ["a"], "snapshotId": "s", **spec}))
    record.resources["artifacts"] = "/tmp/artifacts/fk-unit"
    return record


@pytest.mark.parametrize("given,expected", [({}, "keepNotValid"),
                                            ({"foreignKeys": "fail"}, "fail"),
                                            ({"foreignKeys": "keepNotValid"}, "keepNotValid")])
def test_the_spec_choice_reaches_the_apply_post_request(given, expected):
    record = _record(**given)
    assert record.requested.foreign_keys == expected
    request = phases.post_data_request(record)
    assert request.invalid_foreign_keys == expected
    assert request.jobs == record.requested.jobs
    argv = request.to_argv()
    assert f"--invalid-foreign-keys={expected}" in argv
    assert requests.from_argv(argv) == request


def test_a_policy_nobody_knows_is_refused_everywhere():
    with pytest.raises(InvalidSpec, match="foreignKeys"):
        _record(foreignKeys="ignore")
    with pytest.raises(InvalidRequest):
        requests.ApplyPost("/a", invalid_foreign_keys="ignore")
    with pytest.raises(InvalidRequest):
        requests.from_argv(["apply", "post", "--artifacts", "/a",
                            "--invalid-foreign-keys", "ignore"])


def test_the_command_lines_take_the_choice():
    parser = argparse.ArgumentParser()
    add_spec_args(parser)
    spec = spec_from_args(parser.parse_args(["--database", "d", "--schemas", "a",
                                             "--snapshot-id", "s",
                                             "--invalid-foreign-keys", "fail"]))
    assert spec.foreign_keys == "fail"
    assert spec.to_dict()["foreignKeys"] == "fail"
    args = ddl_job_cli.build_parser().parse_args(["from-copy", "--schemas", "a"])
    assert args.invalid_foreign_keys == "keepNotValid"
    args = ddl_job_cli.build_parser().parse_args(["from-copy", "--schemas", "a",
                                                  "--invalid-foreign-keys", "fail"])
    assert args.invalid_foreign_keys == "fail"


# -- the engine: warnings reach the record and the events ------------------------------
@pytest.mark.e2e
@pytest.mark.parametrize("policy", ["keepNotValid", "fail"])
def test_engine_reports_or_fails_on_an_orphaned_outside_key(aws_world, policy):
    """The real engine (moto + real PostgreSQL, `python -m ddl_job` steps): the
    spec's foreignKeys reaches apply-post; its warnings join the record and are
    announced as restore_warning events, or the restore fails cleanly."""
    world = aws_world
    with world.prod.connect(world.database, autocommit=True) as conn:
        conn.execute("INSERT INTO shared.countries VALUES ('XX')")
        conn.execute("UPDATE customer_a1.customers SET country = 'XX' WHERE id <= 2")
    point = restore_point()
    with world.prod.connect(world.database, autocommit=True) as conn:
        conn.execute("UPDATE customer_a1.customers SET country = 'FR' WHERE country = 'XX'")
        conn.execute("DELETE FROM shared.countries WHERE code = 'XX'")
    before = world.fingerprint()
    events: list[dict] = []
    when = point.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    record = world.run(world.spec(restoreTime=when, schemas=["customer_a1"],
                                  foreignKeys=policy), events=events)
    target = record.targets["customer_a1"]
    label = f"{target}.customers.customers_country_fkey"
    assert world.leftovers(record.restore_id) == []
    if policy == "fail":
        assert record.phase == "Failed"
        assert record.error["reason"] == "ForeignKeyViolation", record.error
        assert record.error["phase"] == "PostData", record.error
        assert f"{label} (references shared.countries): 2 orphan rows" in \
            record.error["message"]
        assert world.fingerprint() == before
        assert target not in world.schemas()
        return
    assert record.phase == "Succeeded", record.error
    [warning] = record.warnings
    assert f"foreign key {label} is kept NOT VALID: 2 orphan rows" in warning
    assert [e["message"] for e in events if e.get("event") == "restore_warning"] == \
        record.warnings
    assert [(k["constraint"], k["orphanRows"]) for k in record.result["notValidForeignKeys"]] \
        == [(label, 2)]
    after = world.fingerprint()
    assert {k: after[k] for k in before} == before
    with world.prod.connect(world.database) as conn:
        assert one(conn, "SELECT convalidated FROM pg_constraint WHERE conname = "
                         "'customers_country_fkey' AND connamespace = %s::regnamespace",
                   (target,)) is False
