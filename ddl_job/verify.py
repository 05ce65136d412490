"""Step 4, verify: the restored schemas in production equal the source copy.

After extract, the disposable copy holds the schemas under their *target*
names, so both sides are compared name for name:

- every table's exact row count (`count(*)` from ONLY that table), tables
  present on one side only included;
- per schema, per kind, the objects and their definitions: tables, columns
  (type, NOT NULL, default, identity, generated), indexes, constraints (one
  kind per contype), non-internal triggers, functions, procedures,
  aggregates, views, materialized views, sequences, policies, rules,
  extended statistics, enums, domains, composite and range types;
- materialized views are populated and hold the same number of rows;
- sequence values (`last_value`, `is_called`);
- owners and effective ACLs of the schemas and of every object in them
  (columns and default privileges included; `privileges.py`): a difference
  fails, except grantors the target's role could not have acted as, which
  are warnings saying why.

Each side is read by its own connection in its own thread, inside one
REPEATABLE READ READ ONLY transaction with `search_path` pinned to
`pg_catalog` (so every deparsed name is schema-qualified the same way on both
sides). Names only ever reach SQL as parameters or `sql.Identifier`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from . import catalog, privileges
from .conn import Endpoint
from .errors import DataPlaneError
from .names import validate_schema_list
from .progress import Reporter

MAX_NAMES_LISTED = 10     # object names listed per count mismatch
MAX_MESSAGE_LINES = 100   # lines of the VerifyFailed message

# One row per object: (schema, kind, name, detail). `detail` is what must be
# equal on both sides besides the name (a definition, or its md5 when long).
# Objects that belong to an extension are left out (pg_dump does not dump
# them; the extension is a prerequisite of the target, not restored).
_NOT_EXTENSION_MEMBER = """
    NOT EXISTS (SELECT 1 FROM pg_depend e
                WHERE e.classid = {catalog}::regclass AND e.objid = {oid} AND e.deptype = 'e')
"""

_OBJECTS_SQL = """
WITH nsp AS (SELECT oid, nspname FROM pg_namespace WHERE nspname = ANY(%(schemas)s))
-- relations
SELECT n.nspname, CASE c.relkind WHEN 'r' THEN 'tables' WHEN 'p' THEN 'tables'
                                 WHEN 'v' THEN 'views' WHEN 'm' THEN 'materialized_views'
                                 WHEN 'S' THEN 'sequences' WHEN 'f' THEN 'foreign_tables' END,
       quote_ident(c.relname),
       CASE WHEN c.relkind IN ('v', 'm') THEN 'md5 ' || md5(pg_get_viewdef(c.oid))
            WHEN c.relkind = 'S' THEN (
                SELECT concat_ws(' ', s.seqtypid::regtype, 'start', s.seqstart,
                                 'increment', s.seqincrement, 'min', s.seqmin, 'max', s.seqmax,
                                 'cache', s.seqcache, CASE WHEN s.seqcycle THEN 'cycle' END)
                FROM pg_sequence s WHERE s.seqrelid = c.oid)
            ELSE concat_ws(' ', 'relkind', c.relkind, 'persistence', c.relpersistence,
                           CASE WHEN c.relrowsecurity THEN 'rls' END,
                           CASE WHEN c.relforcerowsecurity THEN 'force-rls' END,
                           CASE WHEN c.relispartition
                                THEN 'partition ' || pg_get_expr(c.relpartbound, c.oid) END,
                           CASE WHEN c.relkind = 'p'
                                THEN 'partitioned by ' || pg_get_partkeydef(c.oid) END,
                           'inherits', ARRAY(SELECT i.inhparent::regclass::text
                                             FROM pg_inherits i WHERE i.inhrelid = c.oid
                                             ORDER BY i.inhseqno)::text)
       END
FROM pg_class c JOIN nsp n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND """ + _NOT_EXTENSION_MEMBER.format(catalog="'pg_class'", oid="c.oid") + """
UNION ALL
-- columns of tables, views, matviews, foreign tables
SELECT n.nspname, 'columns', quote_ident(c.relname) || '.' || quote_ident(a.attname),
       concat_ws(' ', format_type(a.atttypid, a.atttypmod),
                 CASE WHEN a.attnotnull THEN 'not null' END,
                 CASE a.attidentity WHEN 'a' THEN 'identity always'
                                    WHEN 'd' THEN 'identity by default' END,
                 CASE WHEN a.attgenerated = 's' THEN 'generated' END,
                 'default ' || pg_get_expr(d.adbin, d.adrelid))
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN nsp n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped
  AND """ + _NOT_EXTENSION_MEMBER.format(catalog="'pg_class'", oid="c.oid") + """
UNION ALL
-- indexes (pg_dump skips invalid plain indexes, so they are not compared;
-- an invalid index in the target is reported separately)
SELECT n.nspname, 'indexes', quote_ident(c.relname), pg_get_indexdef(c.oid)
FROM pg_class c JOIN nsp n ON n.oid = c.relnamespace JOIN pg_index x ON x.indexrelid = c.oid
WHERE c.relkind IN ('i', 'I') AND (x.indisvalid OR c.relkind = 'I')
  AND """ + _NOT_EXTENSION_MEMBER.format(catalog="'pg_class'", oid="x.indrelid") + """
UNION ALL
-- constraints, one kind per contype (table and domain constraints)
SELECT n.nspname, 'constraints_' || co.contype::text,
       quote_ident(coalesce(c.relname, t.typname)) || '.' || quote_ident(co.conname),
       pg_get_constraintdef(co.oid)
FROM pg_constraint co JOIN nsp n ON n.oid = co.connamespace
LEFT JOIN pg_class c ON c.oid = co.conrelid LEFT JOIN pg_type t ON t.oid = co.contypid
WHERE """ + _NOT_EXTENSION_MEMBER.format(catalog="'pg_constraint'", oid="co.oid") + """
UNION ALL
-- triggers (not the internal ones behind foreign keys)
SELECT n.nspname, 'triggers', quote_ident(c.relname) || '.' || quote_ident(tg.tgname),
       pg_get_triggerdef(tg.oid) || ' enabled=' || tg.tgenabled::text
FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid JOIN nsp n ON n.oid = c.relnamespace
WHERE NOT tg.tgisinternal
UNION ALL
-- functions, procedures, aggregates
SELECT n.nspname, CASE p.prokind WHEN 'p' THEN 'procedures' WHEN 'a' THEN 'aggregates'
                                 ELSE 'functions' END,
       quote_ident(p.proname) || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       CASE WHEN p.prokind <> 'a' THEN 'md5 ' || md5(pg_get_functiondef(p.oid)) END
FROM pg_proc p JOIN nsp n ON n.oid = p.pronamespace
WHERE """ + _NOT_EXTENSION_MEMBER.format(catalog="'pg_proc'", oid="p.oid") + """
UNION ALL
-- row-level security policies
SELECT n.nspname, 'policies', quote_ident(c.relname) || '.' || quote_ident(po.polname),
       concat_ws(' ', po.polcmd, CASE WHEN po.polpermissive THEN 'permissive'
                                      ELSE 'restrictive' END,
                 'to', ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE r::regrole::text END
                             FROM unnest(po.polroles) AS r ORDER BY 1)::text,
                 'using', pg_get_expr(po.polqual, po.polrelid),
                 'check', pg_get_expr(po.polwithcheck, po.polrelid))
FROM pg_policy po JOIN pg_class c ON c.oid = po.polrelid JOIN nsp n ON n.oid = c.relnamespace
UNION ALL
-- rules (the _RETURN rule of a view is the view itself)
SELECT n.nspname, 'rules', quote_ident(c.relname) || '.' || quote_ident(r.rulename),
       pg_get_ruledef(r.oid)
FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class JOIN nsp n ON n.oid = c.relnamespace
WHERE r.rulename <> '_RETURN'
UNION ALL
-- extended statistics
SELECT n.nspname, 'statistics', quote_ident(s.stxname), pg_get_statisticsobjdef(s.oid)
FROM pg_statistic_ext s JOIN nsp n ON n.oid = s.stxnamespace
UNION ALL
-- types: enums, domains, stand-alone composites, ranges (not row or array types)
SELECT n.nspname,
       CASE t.typtype WHEN 'e' THEN 'enums' WHEN 'd' THEN 'domains'
                      WHEN 'c' THEN 'composite_types' ELSE 'range_types' END,
       quote_ident(t.typname),
       CASE t.typtype
         WHEN 'e' THEN ARRAY(SELECT e.enumlabel FROM pg_enum e WHERE e.enumtypid = t.oid
                             ORDER BY e.enumsortorder)::text
         WHEN 'd' THEN concat_ws(' ', format_type(t.typbasetype, t.typtypmod),
                                 CASE WHEN t.typnotnull THEN 'not null' END,
                                 'default ' || t.typdefault)
         WHEN 'c' THEN ARRAY(SELECT quote_ident(a.attname) || ' '
                                    || format_type(a.atttypid, a.atttypmod)
                             FROM pg_attribute a WHERE a.attrelid = t.typrelid
                               AND a.attnum > 0 AND NOT a.attisdropped
                             ORDER BY a.attnum)::text
         ELSE (SELECT format_type(rg.rngsubtype, NULL) FROM pg_range rg
               WHERE rg.rngtypid = t.oid)
       END
FROM pg_type t JOIN nsp n ON n.oid = t.typnamespace
WHERE (t.typtype IN ('e', 'd', 'r')
       OR (t.typtype = 'c' AND EXISTS (SELECT 1 FROM pg_class c
                                       WHERE c.oid = t.typrelid AND c.relkind = 'c')))
  AND """ + _NOT_EXTENSION_MEMBER.format(catalog="'pg_type'", oid="t.oid") + """
"""

_INVALID_INDEXES_SQL = """
SELECT n.nspname, c.relname FROM pg_index x
JOIN pg_class c ON c.oid = x.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY(%(schemas)s) AND NOT x.indisvalid AND c.relkind = 'i'
ORDER BY 1, 2
"""

_MATVIEWS_SQL = """
SELECT n.nspname, c.relname, c.relispopulated FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY(%(schemas)s) AND c.relkind = 'm'
ORDER BY 1, 2
"""

_PLAIN_NAME = re.compile(r"^[a-z_][a-z0-9_$]*$")


def _q(name: str) -> str:
    """An identifier as a human would type it (quoted only when needed)."""
    return name if _PLAIN_NAME.match(name) else '"' + name.replace('"', '""') + '"'


def _label(schema: str, name: str) -> str:
    return f"{_q(schema)}.{_q(name)}"


@dataclass
class _Side:
    """Everything read from one database."""

    role: str
    schemas: set[str] = field(default_factory=set)
    # (schema, kind) -> {object name: detail}
    objects: dict[tuple[str, str], dict[str, str | None]] = field(default_factory=dict)
    rows: dict[tuple[str, str], int] = field(default_factory=dict)
    matviews: dict[tuple[str, str], int | None] = field(default_factory=dict)  # None: empty
    sequences: dict[tuple[str, str], tuple[int, bool]] = field(default_factory=dict)
    invalid_indexes: list[tuple[str, str]] = field(default_factory=list)
    privileges: privileges.Securables = field(default_factory=dict)
    acting: privileges.ActingRoles | None = None   # the roles this side's role may act as


def _collect(endpoint: Endpoint, schemas: list[str], reporter: Reporter) -> _Side:
    side = _Side(endpoint.role)
    try:
        with endpoint.connect(application_name="pg-schema-restore verify") as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            conn.execute("SELECT set_config('search_path', 'pg_catalog', true)")
            # Counts filtered by row-level security would compare policies, not
            # data: with row_security off a filtered table raises instead.
            conn.execute("SELECT set_config('row_security', 'off', true)")
            side.schemas = catalog.existing_schemas(conn, schemas)
            params = {"schemas": schemas}
            for schema, kind, name, detail in conn.execute(_OBJECTS_SQL, params):
                side.objects.setdefault((schema, kind), {})[name] = detail
            side.invalid_indexes = [(r[0], r[1]) for r in
                                    conn.execute(_INVALID_INDEXES_SQL, params).fetchall()]
            _collect_privileges(conn, schemas, side)
            for schema, name in catalog.list_sequences(conn, schemas):
                row = conn.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(
                    sql.Identifier(schema, name))).fetchone()
                assert row is not None
                side.sequences[(schema, name)] = (int(row[0]), bool(row[1]))
            for schema, name, populated in conn.execute(_MATVIEWS_SQL, params).fetchall():
                count = None
                if populated:
                    count = _count(conn, schema, name)
                side.matviews[(schema, name)] = count
            tables = catalog.list_tables(conn, schemas)
            reporter.emit("verify_counting", side=endpoint.role, tables=len(tables))
            for table in tables:
                side.rows[(table.schema, table.name)] = _count(conn, table.schema, table.name)
    except psycopg.Error as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataPlaneError(
            "VerifyError",
            f"reading the {endpoint.role} database {endpoint.describe()} failed: "
            f"{endpoint.sanitize(text)}") from None
    reporter.emit("verify_read", side=endpoint.role, schemas=len(side.schemas),
                  objects=sum(len(v) for v in side.objects.values()),
                  tables=len(side.rows), rows=sum(side.rows.values()),
                  sequences=len(side.sequences), matviews=len(side.matviews))
    return side


def _collect_privileges(conn: psycopg.Connection, schemas: list[str], side: _Side) -> None:
    """Owners and ACLs of every object, and who this side's role may act as."""
    side.privileges = privileges.collect(conn, schemas)
    side.acting = privileges.ActingRoles.of(conn)


def _compare_privileges(source: _Side, target: _Side) -> tuple[list[dict[str, Any]], list[str]]:
    """Owner/ACL mismatches, and the warnings for grantors the target's (restoring)
    role could not have reproduced."""
    assert target.acting is not None
    differences, warnings = privileges.compare(source.privileges, target.privileges,
                                               target.acting)
    mismatches = [{"kind": d.kind, "schema": d.schema, "object": d.object, "source": d.source,
                   "target": d.target, "message": d.message} for d in differences]
    return mismatches, warnings


def _count(conn: psycopg.Connection, schema: str, name: str) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(
        sql.Identifier(schema, name))).fetchone()
    assert row is not None
    return int(row[0])


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_NAMES_LISTED])
    more = len(items) - MAX_NAMES_LISTED
    return shown + (f" (and {more} more)" if more > 0 else "")


def _shorten(text: str | None, limit: int = 160) -> str:
    if text is None:
        return "none"
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _compare(source: _Side, target: _Side, schemas: list[str]) -> list[dict[str, Any]]:
    mismatches: list[dict[str, Any]] = []

    def add(kind: str, schema: str, obj: str | None, src: Any, tgt: Any, message: str) -> None:
        mismatches.append({"kind": kind, "schema": schema, "object": obj,
                           "source": src, "target": tgt, "message": message})

    for schema in schemas:
        s_has, t_has = schema in source.schemas, schema in target.schemas
        if not (s_has and t_has):
            where = "source and target" if not (s_has or t_has) else (
                "target" if s_has else "source")
            add("schema", schema, None, s_has, t_has, f"schema {_q(schema)}: missing in {where}")

    # objects per schema and kind
    keys = sorted(set(source.objects) | set(target.objects))
    for schema, kind in keys:
        src = source.objects.get((schema, kind), {})
        tgt = target.objects.get((schema, kind), {})
        missing = sorted(set(src) - set(tgt))
        extra = sorted(set(tgt) - set(src))
        if missing or extra:
            parts = [f"{_q(schema)} {kind}: source {len(src)}, target {len(tgt)}"]
            if missing:
                parts.append(f"missing in target: {_names(missing)}")
            if extra:
                parts.append(f"only in target: {_names(extra)}")
            add(kind, schema, None, len(src), len(tgt), "; ".join(parts))
        for name in sorted(set(src) & set(tgt)):
            if src[name] != tgt[name]:
                add(kind, schema, name, src[name], tgt[name],
                    f"{_q(schema)} {kind} {name}: definition differs "
                    f"(source: {_shorten(src[name])}; target: {_shorten(tgt[name])})")

    # row counts
    for key in sorted(set(source.rows) | set(target.rows)):
        label = _label(*key)
        if key not in target.rows:
            add("rows", key[0], key[1], source.rows[key], None,
                f"{label}: table missing in target (source {source.rows[key]} rows)")
        elif key not in source.rows:
            add("rows", key[0], key[1], None, target.rows[key],
                f"{label}: table missing in source (target {target.rows[key]} rows)")
        elif source.rows[key] != target.rows[key]:
            add("rows", key[0], key[1], source.rows[key], target.rows[key],
                f"{label} rows: source {source.rows[key]}, target {target.rows[key]}")

    # materialized views must hold their rows
    def mv(count: int | None) -> str:
        return "not populated" if count is None else f"{count}"

    for key in sorted(set(source.matviews) & set(target.matviews)):
        s_rows, t_rows = source.matviews[key], target.matviews[key]
        if s_rows != t_rows:
            add("matview_rows", key[0], key[1], s_rows, t_rows,
                f"{_label(*key)} materialized view rows: source {mv(s_rows)}, "
                f"target {mv(t_rows)}")

    # sequence values
    def seq(value: tuple[int, bool]) -> str:
        return f"{value[0]} ({'called' if value[1] else 'not called'})"

    for key in sorted(set(source.sequences) & set(target.sequences)):
        s_val, t_val = source.sequences[key], target.sequences[key]
        if s_val != t_val:
            add("sequence_value", key[0], key[1], list(s_val), list(t_val),
                f"{_label(*key)} sequence value: source {seq(s_val)}, target {seq(t_val)}")

    for schema, name in target.invalid_indexes:
        add("invalid_index", schema, name, None, "invalid",
            f"{_label(schema, name)}: index is invalid in target (failed build)")
    return mismatches


def verify(source: Endpoint, target: Endpoint, schemas: list[str], *,
           reporter: Reporter) -> dict[str, Any]:
    """Compare `schemas` between source and target; raise VerifyFailed on any difference.

    Returns {"ok": True, "schemas": [...], "tables": n, "rows": n,
    "sequences": n, "matviews": n, "objects": {schema: {kind: count}},
    "mismatches": [], "warnings": [...]} (warnings: differences PostgreSQL would
    not let the target's role avoid, each with its reason). On a difference
    raises DataPlaneError("VerifyFailed") whose message has one readable line
    per mismatch and whose `report` attribute holds the same dict with ok=False
    and the mismatches (each {"kind", "schema", "object", "source", "target",
    "message"}; owners and ACLs: kinds "owner", "privileges",
    "default_privileges").
    """
    schemas = validate_schema_list(list(schemas))
    reporter.emit("verify_started", schemas=schemas, source=source.describe(),
                  target=target.describe())
    collect: Callable[[Endpoint], _Side] = lambda ep: _collect(ep, schemas, reporter)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="verify") as pool:
        futures = [pool.submit(collect, source), pool.submit(collect, target)]
        src_side, tgt_side = (f.result() for f in futures)

    mismatches = _compare(src_side, tgt_side, schemas)
    acl_mismatches, warnings = _compare_privileges(src_side, tgt_side)
    mismatches += acl_mismatches
    objects: dict[str, dict[str, int]] = {s: {} for s in schemas}
    for (schema, kind), items in sorted(tgt_side.objects.items()):
        objects.setdefault(schema, {})[kind] = len(items)
    report: dict[str, Any] = {
        "ok": not mismatches,
        "schemas": schemas,
        "tables": len(tgt_side.rows),
        "rows": sum(tgt_side.rows.values()),
        "sequences": len(tgt_side.sequences),
        "matviews": len(tgt_side.matviews),
        "objects": objects,
        "mismatches": mismatches,
        "warnings": warnings,
    }
    for item in mismatches:
        reporter.emit("verify_mismatch", **item)
    for warning in warnings:
        reporter.emit("warning", caveat="Privileges", message=warning)
    reporter.emit("verify_finished", ok=report["ok"], tables=report["tables"],
                  rows=report["rows"], mismatches=len(mismatches))
    if mismatches:
        lines = [m["message"] for m in mismatches]
        if len(lines) > MAX_MESSAGE_LINES:
            lines = lines[:MAX_MESSAGE_LINES] + [
                f"… and {len(mismatches) - MAX_MESSAGE_LINES} more differences"]
        error = DataPlaneError(
            "VerifyFailed",
            f"{len(mismatches)} difference(s) between source and target:\n" + "\n".join(lines))
        error.report = report  # type: ignore[attr-defined]
        raise error
    return report
