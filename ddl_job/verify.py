"""Step 4, verify: the restored schemas in production equal the source copy.

After extract, the disposable copy holds the schemas under their *target*
names, so both sides are compared name for name:

- every table's exact row count (`count(*)` from ONLY that table), tables
  present on one side only included;
- per schema, per kind, the objects and their definitions: tables, columns
  (type, NOT NULL, default, identity, generated), indexes, non-internal
  triggers, functions, procedures, aggregates, views, materialized views,
  sequences, policies, rules, extended statistics, enums, domains, composite
  and range types;
- every relation's column order (names in attnum order, dropped columns
  left out): `SELECT *` and positional INSERTs depend on it;
- per table and domain, the constraints by meaning (type, definition,
  validated, deferrable) and by name; a name PostgreSQL makes impossible to
  reproduce, and inheritance flags no DDL can set, are warnings that say why;
- materialized views are populated and hold the same number of rows;
- sequence values (`last_value`, `is_called`);
- the casts whose source type, target type or function lives in the schemas
  (they belong to no schema): count and definition (`_compare_casts`);
- owners and effective ACLs of the schemas and of every object in them
  (columns and default privileges included; `privileges.py`): a difference
  fails, except grantors the target's role could not have acted as, which
  are warnings saying why.

A foreign key to a table outside the schemas that post-data kept NOT VALID
(or left out: a partitioned table before PostgreSQL 18) because production
no longer has the rows it referenced is accepted as post-data reported it.

Each side is read by its own connection in its own thread, inside one
REPEATABLE READ READ ONLY transaction with `search_path` pinned to
`pg_catalog` (so every deparsed name is schema-qualified the same way on both
sides). Names only ever reach SQL as parameters or `sql.Identifier`.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from . import catalog, constraints, privileges
from .conn import Endpoint
from .errors import DataPlaneError
from .names import shown, validate_schema_list, visible
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

# Materialized views in the schemas that read, directly or through views of
# the schemas, a relation outside them: a refresh in production reads
# production's current rows there, not the restore point's.
_READS_OUTSIDE_SQL = """
WITH RECURSIVE refs AS (
    SELECT DISTINCT r.ev_class AS reader, d.refobjid AS read
    FROM pg_rewrite r
    JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
     AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> r.ev_class),
inside AS (
    SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = ANY(%(schemas)s)),
tainted(oid) AS (
    SELECT f.reader FROM refs f JOIN inside i ON i.oid = f.reader
    JOIN pg_class o ON o.oid = f.read JOIN pg_namespace ns ON ns.oid = o.relnamespace
    WHERE ns.nspname <> ALL(%(schemas)s)
      AND ns.nspname NOT IN ('pg_catalog', 'information_schema')
    UNION
    SELECT f.reader FROM refs f JOIN tainted t ON t.oid = f.read
    JOIN inside i ON i.oid = f.reader)
SELECT n.nspname, c.relname FROM tainted t JOIN pg_class c ON c.oid = t.oid
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'm'
"""

_OUTSIDE_REASON = ("it reads relations outside the restored schemas, so it was refreshed "
                   "from production's current rows there, not the restore point's (a "
                   "materialized view's rows can only come from a refresh)")


def _q(name: str) -> str:
    """An identifier as a human would type it (quoted only when needed; escaped
    when it holds a line break or another invisible character)."""
    return shown(name)


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
    # materialized views reading relations outside the schemas (_READS_OUTSIDE_SQL)
    reads_outside: set[tuple[str, str]] = field(default_factory=set)
    # (schema, table, constraint) -> "notValid" / "omitted": what post-data reported
    relaxed: dict[tuple[str, str, str], str] = field(default_factory=dict)
    # (schema, relation) -> its columns in attnum order: (name, attislocal, attinhcount)
    column_order: dict[tuple[str, str], tuple[tuple[str, bool, int], ...]] = field(
        default_factory=dict)
    constraints: list[constraints.Constraint] = field(default_factory=list)
    privileges: privileges.Securables = field(default_factory=dict)
    acting: privileges.ActingRoles | None = None   # the roles this side's role may act as
    # casts involving the schemas: "(source AS target)" -> method, context, comment
    casts: dict[str, str] = field(default_factory=dict)
    all_casts: set[str] = field(default_factory=set)   # every cast's "(source AS target)"


# The reported keys and, on partitioned tables, their partitions' clones.
_RELAXED_SQL = """
WITH RECURSIVE reported(s, t, c, st) AS (
    SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[])),
keys(oid, st) AS (
    SELECT co.oid, r.st FROM reported r
    JOIN pg_namespace n ON n.nspname = r.s
    JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = r.t
    JOIN pg_constraint co ON co.conrelid = c.oid AND co.conname = r.c
    UNION ALL
    SELECT co.oid, k.st FROM pg_constraint co JOIN keys k ON co.conparentid = k.oid)
SELECT n.nspname, c.relname, co.conname, k.st
FROM keys k JOIN pg_constraint co ON co.oid = k.oid
JOIN pg_class c ON c.oid = co.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
"""


def _relaxed_names(conn: psycopg.Connection, keys: list[tuple[str, str, str, str]]
                   ) -> dict[tuple[str, str, str], str]:
    """Read on the source, where every reported key and its clones exist."""
    if not keys:
        return {}
    rows = conn.execute(_RELAXED_SQL, [list(column) for column in zip(*keys)]).fetchall()
    return {(r[0], r[1], r[2]): r[3] for r in rows}


def _collect(endpoint: Endpoint, schemas: list[str], reporter: Reporter,
             relaxed: list[tuple[str, str, str, str]] | None = None) -> _Side:
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
            side.relaxed = _relaxed_names(conn, relaxed or [])
            params = {"schemas": schemas}
            for schema, kind, name, detail in conn.execute(_OBJECTS_SQL, params):
                side.objects.setdefault((schema, kind), {})[name] = detail
            side.invalid_indexes = [(r[0], r[1]) for r in
                                    conn.execute(_INVALID_INDEXES_SQL, params).fetchall()]
            _collect_column_order(conn, schemas, side)
            _collect_constraints(conn, schemas, side)
            _collect_privileges(conn, schemas, side)
            _collect_casts(conn, schemas, side)
            for schema, name in catalog.list_sequences(conn, schemas):
                row = conn.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(
                    sql.Identifier(schema, name))).fetchone()
                assert row is not None
                side.sequences[(schema, name)] = (int(row[0]), bool(row[1]))
            side.reads_outside = {(r[0], r[1]) for r in
                                  conn.execute(_READS_OUTSIDE_SQL, params).fetchall()}
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


# -- column order ---------------------------------------------------------------
# Columns are compared by name elsewhere (type, default…); here their order,
# which `SELECT *`, positional INSERTs and `row::text` depend on.

_COLUMN_ORDER_SQL = """
SELECT n.nspname, c.relname,
       array_agg(a.attname::text ORDER BY a.attnum), array_agg(a.attislocal ORDER BY a.attnum),
       array_agg(a.attinhcount ORDER BY a.attnum)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p', 'f', 'v', 'm')
  AND """ + _NOT_EXTENSION_MEMBER.format(catalog="'pg_class'", oid="c.oid") + """
GROUP BY 1, 2
"""

# Why an inheritance flag can differ although the restore did what DDL can.
_LOCAL_REASON = ("no DDL makes a column or CHECK constraint inherited-only again once a table "
                 "defines it itself (pg_dump's binary-upgrade mode writes the catalog for "
                 "that); it behaves the same, except that dropping it from the parent keeps "
                 "it in this table")


def _collect_column_order(conn: psycopg.Connection, schemas: list[str], side: _Side) -> None:
    for schema, rel, names, local, inherited in conn.execute(
            _COLUMN_ORDER_SQL, {"schemas": schemas}).fetchall():
        side.column_order[(schema, rel)] = tuple(zip(names, local, inherited))


def _compare_column_order(source: _Side, target: _Side
                          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A different order fails; different inheritance flags only warn (why: _LOCAL_REASON)."""
    mismatches: list[dict[str, Any]] = []
    warnings: list[dict[str, Any]] = []
    for key in sorted(set(source.column_order) & set(target.column_order)):
        src, tgt = source.column_order[key], target.column_order[key]
        s_names, t_names = [c[0] for c in src], [c[0] for c in tgt]
        if s_names != t_names and sorted(s_names) == sorted(t_names):
            mismatches.append(_item(
                "column_order", key[0], key[1], s_names, t_names,
                f"{_label(*key)}: column order differs (source: {', '.join(s_names)}; "
                f"target: {', '.join(t_names)})"))
        t_flags = {c[0]: c[1:] for c in tgt}
        for name, local, inherited in src:
            flags = t_flags.get(name)
            if flags is not None and flags != (local, inherited):
                warnings.append(_item(
                    "column_inheritance", key[0], f"{key[1]}.{name}",
                    _flags(local, inherited), _flags(*flags),
                    f"{_label(*key)}.{_q(name)}: {_flags(local, inherited)} in the source, "
                    f"{_flags(*flags)} in the target: {_LOCAL_REASON}"))
    return mismatches, warnings


def _flags(local: bool, inherited: int) -> str:
    if not inherited:
        return "local"
    return f"inherited ({inherited})" + (" and local" if local else " only")


# -- constraints ------------------------------------------------------------------
# Compared per table (or domain) by meaning: type, definition, validated,
# deferrable, deferred. A name that differs fails, unless PostgreSQL makes it
# impossible to reproduce (an inherited constraint apply-post could not rename).

def _collect_constraints(conn: psycopg.Connection, schemas: list[str], side: _Side) -> None:
    side.constraints = constraints.list_constraints(conn, schemas)


def _compare_constraints(source: _Side, target: _Side
                         ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    pairing = constraints.pair(*_as_reported(source, target))
    mismatches: list[dict[str, Any]] = []
    warnings: list[dict[str, Any]] = []
    for s in pairing.missing:
        mismatches.append(_item("constraint", s.schema, _con(s), s.definition, None,
                                f"{_where(s)}: constraint {_q(s.name)} missing in target "
                                f"({_shorten(s.definition)})"))
    for t in pairing.extra:
        mismatches.append(_item("constraint", t.schema, _con(t), None, t.definition,
                                f"{_where(t)}: constraint {_q(t.name)} only in target "
                                f"({_shorten(t.definition)})"))
    for s, t in pairing.changed:
        src, tgt = ((s.definition, t.definition) if s.definition != t.definition
                    else (_meaning(s), _meaning(t)))
        mismatches.append(_item("constraint", s.schema, _con(s), src, tgt,
                                f"{_where(s)}: constraint {_q(s.name)} differs (source: "
                                f"{_shorten(src)}; target: {_shorten(tgt)})"))
    for s, t in pairing.renamed:
        text = (f"{_where(s)}: constraint {_q(s.name)} is named {_q(t.name)} in the target "
                f"(same definition: {_shorten(s.definition)})")
        if t.inherited:
            reason = (constraints.INHERITED_CHECK_REASON if t.contype == "c"
                      else constraints.INHERITED_REASON)
            warnings.append(_item("constraint_name", s.schema, _con(s), s.name, t.name,
                                  f"{text}: {reason}"))
        else:
            mismatches.append(_item("constraint_name", s.schema, _con(s), s.name, t.name, text))
    for s, t in pairing.same + pairing.renamed:
        if (s.local, s.inherited) != (t.local, t.inherited):
            warnings.append(_item(
                "constraint_inheritance", s.schema, _con(s), _flags(s.local, s.inherited),
                _flags(t.local, t.inherited),
                f"{_where(s)}: constraint {_q(s.name)} is {_flags(s.local, s.inherited)} in "
                f"the source, {_flags(t.local, t.inherited)} in the target: {_LOCAL_REASON}"))
    return mismatches, warnings


def _as_reported(source: _Side, target: _Side
                 ) -> tuple[list[constraints.Constraint], list[constraints.Constraint]]:
    """Accept the foreign keys post-data reported: left out (omitted) or kept
    NOT VALID because production no longer has rows they reference."""
    def state(c: constraints.Constraint) -> str | None:
        return source.relaxed.get((c.schema, c.owner, c.name))

    src = [s for s in source.constraints if state(s) != "omitted"]
    tgt = [dataclasses.replace(t, definition=t.definition.removesuffix(" NOT VALID"),
                               validated=True)
           if state(t) == "notValid" and not t.validated
           and t.definition.endswith(" NOT VALID") else t
           for t in target.constraints]
    return src, tgt


def _where(c: constraints.Constraint) -> str:
    return ("domain " if c.domain else "") + _label(c.schema, c.owner)


def _con(c: constraints.Constraint) -> str:
    return f"{c.owner}.{c.name}"


def _meaning(c: constraints.Constraint) -> str:
    """The definition and the flags pg_get_constraintdef may leave out."""
    return (f"{c.definition} [validated={c.validated}, deferrable={c.deferrable}, "
            f"deferred={c.deferred}]")


def _item(kind: str, schema: str, obj: str | None, src: Any, tgt: Any,
          message: str) -> dict[str, Any]:
    return {"kind": kind, "schema": schema, "object": obj, "source": src, "target": tgt,
            "message": message}



def _collect_privileges(conn: psycopg.Connection, schemas: list[str], side: _Side) -> None:
    """Owners and ACLs of every object, and who this side's role may act as."""
    side.privileges = privileges.collect(conn, schemas)
    side.acting = privileges.ActingRoles.of(conn)


def _compare_privileges(source: _Side, target: _Side
                        ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Owner/ACL mismatches, and the warnings for grantors the target's (restoring)
    role could not have reproduced."""
    assert target.acting is not None
    differences, warnings = privileges.compare(source.privileges, target.privileges,
                                               target.acting)
    mismatches = [{"kind": d.kind, "schema": d.schema, "object": d.object, "source": d.source,
                   "target": d.target, "message": d.message} for d in differences]
    return mismatches, [_item("privileges", "", None, None, None, text) for text in warnings]


# -- casts ---------------------------------------------------------------------
# A cast belongs to no schema: one whose source type, target type or function
# lives in a restored schema is restored with it (casts.py). Casts PostgreSQL
# made itself (a range's cast to its multirange) are compared too.

_CASTS_SQL = """
SELECT format('(%%s AS %%s)', format_type(c.castsource, NULL), format_type(c.casttarget, NULL)),
       concat_ws(' ', CASE c.castmethod WHEN 'f' THEN 'WITH FUNCTION '
                          || c.castfunc::regprocedure::text
                      WHEN 'b' THEN 'WITHOUT FUNCTION' ELSE 'WITH INOUT' END,
                 CASE c.castcontext WHEN 'a' THEN 'AS ASSIGNMENT'
                      WHEN 'i' THEN 'AS IMPLICIT' END,
                 'COMMENT ' || quote_literal(obj_description(c.oid, 'pg_cast'))),
       EXISTS (SELECT 1 FROM pg_namespace n
               LEFT JOIN pg_proc p ON p.oid = c.castfunc
               WHERE n.nspname = ANY(%(schemas)s)
                 AND n.oid IN (s.typnamespace, t.typnamespace, p.pronamespace))
       AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_cast'::regclass
                       AND e.objid = c.oid AND e.deptype = 'e')
FROM pg_cast c JOIN pg_type s ON s.oid = c.castsource JOIN pg_type t ON t.oid = c.casttarget
"""


def _collect_casts(conn: psycopg.Connection, schemas: list[str], side: _Side) -> None:
    """The casts involving `schemas`, and every cast's types (see _compare_casts)."""
    for label, definition, involved in conn.execute(_CASTS_SQL, {"schemas": schemas}):
        side.all_casts.add(label)
        if involved:
            side.casts[label] = definition


def _compare_casts(source: _Side, target: _Side
                   ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Casts involving the schemas: count and definitions equal.

    A cast missing in the target where production has another cast between
    the same types is production's own, kept by pre-data: a warning."""
    mismatches: list[dict[str, Any]] = []
    warnings: list[dict[str, Any]] = []
    missing = sorted(set(source.casts) - set(target.casts))
    kept = [label for label in missing if label in target.all_casts]
    missing = [label for label in missing if label not in target.all_casts]
    extra = sorted(set(target.casts) - set(source.casts))
    if missing or extra:
        mismatches.append(_item("casts", "", None, len(source.casts), len(target.casts),
                                _set_difference("casts", len(source.casts), len(target.casts),
                                                missing, extra)))
    for label in sorted(set(source.casts) & set(target.casts)):
        if source.casts[label] != target.casts[label]:
            mismatches.append(_item(
                "cast", "", label, source.casts[label], target.casts[label],
                f"cast {visible(label)}: definition differs (source: "
                f"{_shorten(source.casts[label])}; target: {_shorten(target.casts[label])})"))
    for label in kept:
        warnings.append(_item("cast", "", label, source.casts[label], None,
                              f"cast {visible(label)} not restored: production already had "
                              "a cast between these types, which was kept"))
    return mismatches, warnings


def _count(conn: psycopg.Connection, schema: str, name: str) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(
        sql.Identifier(schema, name))).fetchone()
    assert row is not None
    return int(row[0])


def _names(items: list[str]) -> str:
    listed = ", ".join(visible(item) for item in items[:MAX_NAMES_LISTED])
    more = len(items) - MAX_NAMES_LISTED
    return listed + (f" (and {more} more)" if more > 0 else "")


def _set_difference(what: str, sources: int, targets: int, missing: list[str],
                    extra: list[str]) -> str:
    """`what: source n, target m; missing in target: …; only in target: …`."""
    parts = [f"{what}: source {sources}, target {targets}"]
    if missing:
        parts.append(f"missing in target: {_names(missing)}")
    if extra:
        parts.append(f"only in target: {_names(extra)}")
    return "; ".join(parts)


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
            add(kind, schema, None, len(src), len(tgt),
                _set_difference(f"{_q(schema)} {kind}", len(src), len(tgt), missing, extra))
        for name in sorted(set(src) & set(tgt)):
            if src[name] != tgt[name]:
                add(kind, schema, name, src[name], tgt[name],
                    f"{_q(schema)} {kind} {visible(name)}: definition differs "
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


def _compare_matview_rows(source: _Side, target: _Side
                          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Materialized views must hold the copy's rows, unless they read outside
    the schemas (then a difference is a warning: _OUTSIDE_REASON)."""
    def mv(count: int | None) -> str:
        return "not populated" if count is None else f"{count}"

    mismatches: list[dict[str, Any]] = []
    warnings: list[dict[str, Any]] = []
    for key in sorted(set(source.matviews) & set(target.matviews)):
        s_rows, t_rows = source.matviews[key], target.matviews[key]
        if s_rows == t_rows:
            continue
        text = (f"{_label(*key)} materialized view rows: source {mv(s_rows)}, "
                f"target {mv(t_rows)}")
        if key in source.reads_outside and s_rows is not None and t_rows is not None:
            warnings.append(_item("matview_rows", key[0], key[1], s_rows, t_rows,
                                  f"{text}: {_OUTSIDE_REASON}"))
        else:
            mismatches.append(_item("matview_rows", key[0], key[1], s_rows, t_rows, text))
    return mismatches, warnings


def _reported_keys(post_data: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(schema, table, constraint, state) of the keys post-data did not validate."""
    return [(k["schema"], k["table"], k["name"], state)
            for field_name, state in (("notValidForeignKeys", "notValid"),
                                      ("omittedForeignKeys", "omitted"))
            for k in post_data.get(field_name) or []]


def verify(source: Endpoint, target: Endpoint, schemas: list[str], *,
           reporter: Reporter, post_data: dict[str, Any] | None = None) -> dict[str, Any]:
    """Compare `schemas` between source and target; raise VerifyFailed on any difference.

    `post_data` is apply-post's result: the foreign keys it kept NOT VALID or
    left out are accepted as such.

    Returns {"ok": True, "schemas": [...], "tables": n, "rows": n,
    "sequences": n, "matviews": n, "objects": {schema: {kind: count}},
    "mismatches": [], "warnings": [...]}. Warnings are differences PostgreSQL
    makes impossible to remove (each says why); they do not fail. On a
    difference raises DataPlaneError("VerifyFailed") whose message has one
    readable line per mismatch and whose `report` attribute holds the same
    dict with ok=False and the mismatches (each {"kind", "schema", "object",
    "source", "target", "message"}, as are warnings).
    """
    schemas = validate_schema_list(list(schemas))
    reporter.emit("verify_started", schemas=schemas, source=source.describe(),
                  target=target.describe())
    relaxed = _reported_keys(post_data or {})
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="verify") as pool:
        futures = [pool.submit(_collect, source, schemas, reporter, relaxed),
                   pool.submit(_collect, target, schemas, reporter)]
        src_side, tgt_side = (f.result() for f in futures)

    mismatches = _compare(src_side, tgt_side, schemas)
    warnings: list[dict[str, Any]] = []
    for comparer in (_compare_column_order, _compare_constraints, _compare_privileges,
                     _compare_casts, _compare_matview_rows):
        failed, warned = comparer(src_side, tgt_side)
        mismatches += failed
        warnings += warned
    objects: dict[str, dict[str, int]] = {s: {} for s in schemas}
    for (schema, kind), items in sorted(tgt_side.objects.items()):
        objects.setdefault(schema, {})[kind] = len(items)
    for con in tgt_side.constraints:   # one kind per contype, as before
        kinds = objects.setdefault(con.schema, {})
        kinds[f"constraints_{con.contype}"] = kinds.get(f"constraints_{con.contype}", 0) + 1
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
    for item in warnings:
        reporter.emit("verify_warning", **item)
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
