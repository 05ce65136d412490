"""What a schema restore cannot bring back, said before it runs.

Some objects belong to a schema only in part. The restore still succeeds,
but the user must know what is missing, so each caveat is a `warning`
event naming the objects:

- unlogged tables: their contents are not WAL-logged, so a point-in-time
  copy or a snapshot restore holds them empty;
- large objects: they live in `pg_largeobject`, outside every schema; `oid`
  and `lo` columns are copied as numbers that point at whatever production
  holds under those OIDs today;
- trigger functions outside the restored schemas that name one of them in
  their text: they are not restored nor rewritten, so a restored trigger
  calling one acts on production's schema.
"""

from __future__ import annotations

import psycopg

from .names import shown, visible
from .progress import Reporter
from .rewrite import rewrite_sql


def report_caveats(src: psycopg.Connection, schemas: list[str],
                   reporter: Reporter) -> list[str]:
    """Emit one warning per kind of caveat found in `schemas`; return their texts."""
    found: list[str] = []

    def warn(caveat: str, objects: list[str], message: str) -> None:
        reporter.emit("warning", caveat=caveat, objects=objects, message=message)
        found.append(f"{caveat}: {message}: {', '.join(objects)}")

    unlogged = _names(src, """
        SELECT n.nspname, c.relname FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p') AND c.relpersistence = 'u'
        ORDER BY 1, 2""", schemas)
    if unlogged:
        warn("UnloggedTables", unlogged, (
            "unlogged tables are empty in a point-in-time copy or snapshot (their contents "
            "are not WAL-logged); they are restored empty"))
    large = _names(src, """
        SELECT n.nspname, c.relname, a.attname FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        JOIN pg_type t ON t.oid = a.atttypid
        WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p')
          AND (t.oid = 'oid'::regtype OR t.typname = 'lo')
        ORDER BY 1, 2, 3""", schemas)
    if large:
        warn("LargeObjectReferences", large, (
            "large objects live outside every schema and are not restored; these columns "
            "keep their OIDs, which point at production's current large objects, if any"))
    outside = [visible(signature) for signature, body in src.execute("""
        SELECT DISTINCT p.oid::regprocedure::text, p.prosrc FROM pg_trigger g
        JOIN pg_class c ON c.oid = g.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_proc p ON p.oid = g.tgfoid JOIN pg_namespace pn ON pn.oid = p.pronamespace
        WHERE n.nspname = ANY(%s) AND NOT g.tgisinternal AND pn.nspname <> ALL(%s)
        ORDER BY 1""", (schemas, schemas)).fetchall() if _names_a_schema(body, schemas)]
    if outside:
        warn("OutsideTriggerFunctions", outside, (
            "trigger functions outside the restored schemas name a restored schema in their "
            "text; they are not rewritten, so restored triggers calling them act on "
            "production's schema"))
    return found


def _names_a_schema(body: str, schemas: list[str]) -> bool:
    """Whether the rewriter would see a reference to one of `schemas` in `body`."""
    return bool(rewrite_sql(body or "", {name: name for name in schemas})[1])


def _names(src: psycopg.Connection, query: str, *params: list[str]) -> list[str]:
    """Qualified names from rows of name parts, as messages show them."""
    return [".".join(shown(part) for part in row)
            for row in src.execute(query, params).fetchall()]
