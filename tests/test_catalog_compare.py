"""The catalog comparison harness is itself tested: a faithful copy under
another name compares equal, and each kind of loss the corpora tests are
meant to catch is reported (tests/support/catalog_compare.py).

The "restore" here is done by hand: a FILE_COPY clone of the database with
the schema renamed and its text references rewritten, then one damage.
"""

from __future__ import annotations

import os
import secrets

import pytest
from psycopg import sql

from pg_schema_restore.local.cluster import SUPERUSER, LocalCluster
from support.catalog_compare import Renamer, compare_schema, compare_schemas

ROLE = "pgsr_compare_reader"

# Routines that name their schema in text: created as written for `app`, and
# in the clone as a correct restore rewrites them for `app_r`.
ROUTINES = """
CREATE OR REPLACE FUNCTION {s}.count_items() RETURNS bigint LANGUAGE sql STABLE
    SET search_path = {s} AS $$ SELECT count(*) FROM {s}.item $$;
CREATE OR REPLACE FUNCTION {s}.touch() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN EXECUTE format('SELECT 1 FROM %I.%I', '{s}', 'item'); RETURN NEW; END $$;
"""

SCHEMA = f"""
CREATE SCHEMA app;
COMMENT ON SCHEMA app IS 'the app';
GRANT USAGE ON SCHEMA app TO {ROLE};
ALTER DEFAULT PRIVILEGES IN SCHEMA app GRANT SELECT ON TABLES TO {ROLE};
CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE app.span AS RANGE (subtype = integer);
CREATE DOMAIN app.pos AS integer NOT NULL CHECK (VALUE > 0);
CREATE TABLE app.parent (id integer PRIMARY KEY, name text NOT NULL DEFAULT 'x',
                         mood app.mood, during app.span, self regclass);
CREATE TABLE app.child (extra text, CHECK (id > 0)) INHERITS (app.parent);
ALTER TABLE app.parent ADD COLUMN late integer;
CREATE TABLE app.item (id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                       parent_id integer REFERENCES app.parent DEFERRABLE,
                       qty app.pos, twice integer GENERATED ALWAYS AS (qty * 2) STORED,
                       CONSTRAINT qty_small CHECK (qty < 1000));
CREATE INDEX item_qty ON app.item (qty) WHERE qty > 1;
CREATE SEQUENCE app.counter START 5 INCREMENT 5;
SELECT setval('app.counter', 50);
CREATE VIEW app.v_item AS
    SELECT i.id, p.name FROM app.item i JOIN app.parent p ON p.id = i.parent_id;
{ROUTINES.format(s="app")}
CREATE TRIGGER item_touch BEFORE INSERT ON app.item
    FOR EACH ROW EXECUTE FUNCTION app.touch();
CREATE RULE parent_log AS ON DELETE TO app.parent DO ALSO NOTIFY parent_deleted;
ALTER TABLE app.item ENABLE ROW LEVEL SECURITY;
CREATE POLICY small ON app.item FOR SELECT TO {ROLE} USING (qty < 10);
GRANT SELECT ON app.item TO {ROLE};
GRANT UPDATE (qty) ON app.item TO {ROLE};
COMMENT ON COLUMN app.item.qty IS 'how many';
INSERT INTO app.parent VALUES (1, 'one', 'ok', '[1,5)', 'app.item'), (2, 'two', NULL, NULL, NULL);
INSERT INTO app.child (id, name, extra) VALUES (3, 'three', 'e');
INSERT INTO app.item (parent_id, qty) VALUES (1, 3), (2, 30);
ALTER TABLE app.item ADD CONSTRAINT qty_sane CHECK (qty > -1) NOT VALID;
"""


@pytest.fixture
def pair(copyhost: LocalCluster, new_db):
    """(connection to the original, connection to a clone whose `app` is
    renamed `app_r` with its text references rewritten)."""
    with copyhost.connect(user=SUPERUSER, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)).fetchone():
            conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(ROLE)))
    db = new_db(copyhost, "cmp")
    with copyhost.connect(db, user=SUPERUSER, autocommit=True) as conn:
        conn.execute(SCHEMA)
    clone = f"cmpclone_{os.getpid()}_{secrets.token_hex(3)}"
    copyhost.create_database(clone, template=db)
    with copyhost.connect(clone, user=SUPERUSER, autocommit=True) as conn:
        conn.execute("ALTER SCHEMA app RENAME TO app_r")
        conn.execute(ROUTINES.format(s="app_r"))
        conn.execute("UPDATE app_r.parent SET self = 'app_r.item' WHERE self IS NOT NULL")
    with copyhost.connect(db, user=SUPERUSER) as source, \
            copyhost.connect(clone, user=SUPERUSER) as target:
        yield source, target
    with copyhost.connect(user=SUPERUSER, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(clone)))


def test_a_faithful_renamed_copy_compares_equal(pair):
    source, target = pair
    assert compare_schema(source, "app", target, "app_r") == []


DAMAGES = [
    ("ALTER TABLE app_r.item OWNER TO {role}", "[relation] app.item: owner"),
    ("REVOKE USAGE ON SCHEMA app_r FROM {role}", "[schema] app: acl"),
    ("REVOKE UPDATE (qty) ON app_r.item FROM {role}", "[column] app.item.qty: acl"),
    ("GRANT EXECUTE ON FUNCTION app_r.count_items() TO {role}",
     "[function] app.count_items(): acl"),
    ("ALTER DEFAULT PRIVILEGES IN SCHEMA app_r REVOKE SELECT ON TABLES FROM {role}",
     "[default privileges]"),
    ("COMMENT ON SCHEMA app_r IS NULL", "[schema] app: comment"),
    ("COMMENT ON COLUMN app_r.item.qty IS 'many'", "[column] app.item.qty: comment"),
    ("ALTER TABLE app_r.parent DROP COLUMN late; ALTER TABLE app_r.parent ADD COLUMN late integer;"
     "ALTER TABLE app_r.child DROP COLUMN extra; ALTER TABLE app_r.child ADD COLUMN extra text",
     "[relation] app.child: columns"),
    ("ALTER TABLE app_r.parent ALTER COLUMN name DROP DEFAULT",
     "[column] app.parent.name: default"),
    ("ALTER TABLE app_r.item RENAME CONSTRAINT qty_small TO qty_tiny",
     "[constraint] app.item.qty_small: named 'qty_tiny' in target"),
    ("ALTER TABLE app_r.item VALIDATE CONSTRAINT qty_sane",
     "[constraint] app.item.qty_sane: validated"),
    ("ALTER TABLE app_r.item ALTER CONSTRAINT item_parent_id_fkey NOT DEFERRABLE",
     "[constraint] app.item.item_parent_id_fkey: deferrable"),
    ("DROP INDEX app_r.item_qty; CREATE INDEX item_qty ON app_r.item (qty)",
     "[index] app.item_qty: definition"),
    ("CREATE OR REPLACE FUNCTION app_r.count_items() RETURNS bigint LANGUAGE sql STABLE "
     "SET search_path = app_r AS $$ SELECT count(*) FROM app.item $$",
     "[function] app.count_items(): definition"),
    ("CREATE OR REPLACE FUNCTION app_r.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
     "EXECUTE format('SELECT 1 FROM %I.%I', 'app', 'item'); RETURN NEW; END $$",
     "[function] app.touch(): definition"),
    ("ALTER TABLE app_r.item DISABLE TRIGGER item_touch", "[trigger] app.item.item_touch: enabled"),
    ("DROP RULE parent_log ON app_r.parent", "[rule] app.parent.parent_log: missing in target"),
    ("ALTER POLICY small ON app_r.item USING (qty < 20)", "[policy] app.item.small: using"),
    ("CREATE OR REPLACE VIEW app_r.v_item AS SELECT i.id, p.name FROM app_r.item i "
     "LEFT JOIN app_r.parent p ON p.id = i.parent_id", "[relation] app.v_item: definition"),
    ("SELECT setval('app_r.counter', 55)", "[sequence value] app.counter: last_value"),
    ("ALTER SEQUENCE app_r.counter INCREMENT 1", "[sequence] app.counter: increment"),
    ("ALTER TYPE app_r.mood ADD VALUE 'meh'", "[type] app.mood: labels"),
    ("ALTER DOMAIN app_r.pos DROP NOT NULL", "[type] app.pos: not_null"),
    ("UPDATE app_r.item SET qty = 4 WHERE qty = 3", "[data] app.item"),
    ("UPDATE app_r.parent SET self = 'pg_class'", "[data] app.parent"),
    ("DELETE FROM ONLY app_r.child", "[data] app.child"),
]


def test_every_loss_is_reported(pair):
    """All damages on one clone (a clone per damage would cost a checkpoint
    each); none of them hides another."""
    source, target = pair
    target.execute("SET check_function_bodies = off")
    for damage, _ in DAMAGES:
        target.execute(damage.format(role=ROLE))
    target.commit()
    differences = compare_schemas(source, target, {"app": "app_r"})
    unreported = [expected for _, expected in DAMAGES
                  if not any(line.startswith(expected) for line in differences)]
    assert unreported == [], "\n".join(["unreported:", *unreported, "reported:", *differences])


def test_the_restore_marker_is_not_a_difference(pair):
    source, target = pair
    target.execute(sql.SQL("COMMENT ON SCHEMA app_r IS {}").format(
        sql.Literal("the app\n\npg-schema-restore: restored by restore-id=x from schema app")))
    target.commit()
    prefix = "pg-schema-restore: restored by restore-id="
    assert compare_schema(source, "app", target, "app_r", marker_prefix=prefix) == []
    target.execute("COMMENT ON SCHEMA app_r IS 'the app'")
    target.commit()
    assert compare_schema(source, "app", target, "app_r", marker_prefix=prefix)[0].startswith(
        "[schema] app: comment: no restore marker")


def test_a_missing_target_schema_is_reported(pair):
    source, target = pair
    assert compare_schema(source, "app", target, "app_s") == \
        ["[schema] app: target schema 'app_s' does not exist"]


def test_renamer_rules():
    rename = Renamer({"app_r": "app"})
    assert rename("SET search_path TO 'app_r', 'public'") == \
        "SET search_path TO '«app»', 'public'"
    assert rename("SELECT app_r.f(x) FROM app_rx.t, y.app_r") == \
        "SELECT «app».f(x) FROM app_rx.t, y.app_r"
    assert rename("SET search_path TO app_r, public") == "SET search_path TO «app», public"
    assert rename("set_config('search_path', 'app_r, public', false)") == \
        "set_config('search_path', '«app», public', false)"
    assert rename("'hello app_r'") == "'hello app_r'"
    assert Renamer({"Tenant B": "T"})('SELECT "Tenant B".x') == "SELECT «T».x"
