"""Inheritance children restored in their own column order.

pg_dump writes a child as `CREATE TABLE child (its local columns) INHERITS
(parents)`, and PostgreSQL puts the inherited columns first, in the parents'
order, then the child's own. A child whose columns came about otherwise (a
column added to the parent after the child existed, a parent column dropped
and added again, a table that was attached with INHERIT) comes back with
another column order: `SELECT *`, positional INSERTs and `row::text` change
meaning (`b_star: class,aa,bb,a -> class,aa,a,bb`, PostgreSQL's create_misc
regression script).

pg_dump's binary-upgrade mode gets it right: it creates the child with all
its columns in attnum order, then `ALTER TABLE … INHERIT`. Here the same is
driven from the catalog: in the disposable copy, each child whose column
order pg_dump would change is detached from its parents (`NO INHERIT`) for
the dump, so pg_dump writes it as a plain table in attnum order; pre-data
ends with `ALTER TABLE child INHERIT parent` for each link, in the original
parent order; and the copy gets its links back right after the dump, so
verify compares like with like.

What DDL cannot restore: a column (or CHECK constraint) that the child only
inherited (`attislocal`/`conislocal` false) is local as well once the child
was created with it; binary-upgrade mode fixes that by writing pg_attribute
and pg_constraint, which no DDL does. Dropping it from the parent then keeps
it in the child. Each such child is a warning.

The plan is saved to the artifacts before anything is detached, so a run
that crashed between the detach and the re-attach finds it again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from .artifacts import ArtifactStore
from .conn import Endpoint
from .manifest import RELINKS
from .progress import Reporter

# Children (not partitions) of relations in the schemas, with their parents
# in inhseqno order; columns of every relation involved in attnum order.
_LINKS_SQL = """
SELECT i.inhrelid, n.nspname, c.relname, c.relkind = 'f',
       array_agg(i.inhparent ORDER BY i.inhseqno)
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY(%s) AND NOT c.relispartition AND c.relkind IN ('r', 'f')
GROUP BY 1, 2, 3, 4
ORDER BY 2, 3
"""
_COLUMNS_SQL = """
SELECT a.attrelid, n.nspname, c.relname,
       array_agg(a.attname::text ORDER BY a.attnum), array_agg(a.attislocal ORDER BY a.attnum)
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
GROUP BY 1, 2, 3
"""
_INHERITED_ONLY_SQL = """
SELECT 'columns', string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
FROM pg_attribute a
WHERE a.attrelid = %(rel)s AND a.attnum > 0 AND NOT a.attisdropped AND NOT a.attislocal
UNION ALL
SELECT 'CHECK constraints', string_agg(quote_ident(co.conname), ', ' ORDER BY co.conname)
FROM pg_constraint co WHERE co.conrelid = %(rel)s AND NOT co.conislocal
"""


@dataclass(frozen=True)
class Relink:
    """A child to create in attnum order and attach to `parents` afterwards."""

    schema: str
    table: str
    foreign: bool
    parents: tuple[tuple[str, str], ...]   # (schema, name), in inhseqno order
    inherited_only: tuple[str, ...] = ()   # "columns a, b", "CHECK constraints c": local too

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.table}"

    def warning(self) -> str:
        text = (f"{self.label} is restored in its own column order (pg_dump would put the "
                "inherited columns first): it is created with all its columns and attached "
                "to its parents afterwards")
        if self.inherited_only:
            text += (f"; its {' and '.join(self.inherited_only)} were inherited only and are now "
                     "also defined locally (no DDL makes them inherited-only again; only "
                     "pg_dump's binary-upgrade mode writes the catalog for that), so dropping "
                     "them from a parent keeps them in this table")
        return text


def dump_order(own: list[tuple[str, bool]], parents: list[list[str]]) -> list[str]:
    """The column order pg_dump's `CREATE TABLE … INHERITS` produces.

    The parents' columns come first, parent by parent, merged by name; then
    the child's own (local) columns that no parent has, in attnum order.
    """
    order: list[str] = []
    for columns in parents:
        order += [name for name in columns if name not in order]
    order += [name for name, local in own if local and name not in order]
    return order


def misordered_children(conn: psycopg.Connection, schemas: list[str]) -> list[Relink]:
    """Children in `schemas` whose column order pg_dump would not reproduce."""
    links = conn.execute(_LINKS_SQL, (schemas,)).fetchall()
    oids = {oid for row in links for oid in [row[0], *row[4]]}
    columns = {row[0]: row for row in conn.execute(_COLUMNS_SQL, (list(oids),)).fetchall()}
    found: list[Relink] = []
    for child, schema, table, foreign, parents in links:
        own = list(zip(columns[child][3], columns[child][4]))
        expected = dump_order(own, [list(columns[p][3]) for p in parents])
        if expected != [name for name, _ in own]:
            inherited_only = tuple(f"{kind} {names}" for kind, names in conn.execute(
                _INHERITED_ONLY_SQL, {"rel": child}).fetchall() if names)
            found.append(Relink(schema, table, foreign,
                                tuple((columns[p][1], columns[p][2]) for p in parents),
                                inherited_only))
    return found


def plan(source: Endpoint, schemas: list[str], store: ArtifactStore, workdir: Path,
         reporter: Reporter) -> list[Relink]:
    """This restore's children to relink: those saved by an earlier attempt
    (already detached, maybe) and those found now; saved before any change."""
    saved = _load(store)
    with source.connect(application_name="pgsr-extract") as conn:
        found = misordered_children(conn, schemas)
    known = {r.label for r in saved}
    relinks = saved + [r for r in found if r.label not in known]
    path = workdir / RELINKS
    path.write_text(json.dumps([_as_json(r) for r in relinks], indent=1, ensure_ascii=False))
    store.put_file(RELINKS, path)
    for relink in relinks:
        reporter.emit("warning", table=relink.label, message=relink.warning())
    return relinks


def _as_json(relink: Relink) -> dict[str, object]:
    return {"schema": relink.schema, "table": relink.table, "foreign": relink.foreign,
            "parents": [list(p) for p in relink.parents],
            "inherited_only": list(relink.inherited_only)}


def _load(store: ArtifactStore) -> list[Relink]:
    if RELINKS not in store.names():
        return []
    return [Relink(item["schema"], item["table"], item["foreign"],
                   tuple((p[0], p[1]) for p in item["parents"]),
                   tuple(item["inherited_only"]))
            for item in json.loads(store.read_text(RELINKS))]


@contextmanager
def detached(source: Endpoint, relinks: list[Relink]) -> Iterator[None]:
    """Children detached in the copy for the dump; linked again afterwards,
    whatever happens to the dump."""
    if not relinks:
        yield
        return
    with source.connect(application_name="pgsr-extract") as conn:
        conn.execute("SET lock_timeout = '60s'")
        for relink in relinks:
            for parent in _current_parents(conn, relink):
                conn.execute(_alter(relink, sql.SQL("NO INHERIT {}").format(
                    sql.Identifier(*parent))))
        conn.commit()
        try:
            yield
        finally:
            conn.rollback()
            reattach(conn, relinks)
            conn.commit()


def reattach(conn: psycopg.Connection, relinks: list[Relink]) -> None:
    """INHERIT every parent a child is missing, in the original order."""
    for relink in relinks:
        present = _current_parents(conn, relink)
        if present == list(relink.parents):
            continue
        for parent in present:   # a partial state: start over, keep the order
            conn.execute(_alter(relink, sql.SQL("NO INHERIT {}").format(
                sql.Identifier(*parent))))
        for parent in relink.parents:
            conn.execute(_alter(relink, sql.SQL("INHERIT {}").format(sql.Identifier(*parent))))


def statements(relinks: list[Relink]) -> sql.Composed:
    """The pre-data trailer that attaches the children in production."""
    return sql.Composed([
        sql.SQL("{};\n").format(_alter(relink, sql.SQL("INHERIT {}").format(
            sql.Identifier(*parent))))
        for relink in relinks for parent in relink.parents])


def _alter(relink: Relink, action: sql.Composable) -> sql.Composed:
    kind = sql.SQL("FOREIGN TABLE" if relink.foreign else "TABLE")
    return sql.SQL("ALTER {} {} {}").format(kind, sql.Identifier(relink.schema, relink.table),
                                            action)


def _current_parents(conn: psycopg.Connection, relink: Relink) -> list[tuple[str, str]]:
    rows = conn.execute(
        """
        SELECT pn.nspname, p.relname FROM pg_inherits i
        JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace
        WHERE i.inhrelid = (SELECT c.oid FROM pg_class c
                            JOIN pg_namespace n ON n.oid = c.relnamespace
                            WHERE n.nspname = %s AND c.relname = %s)
        ORDER BY i.inhseqno
        """, (relink.schema, relink.table)).fetchall()
    return [(r[0], r[1]) for r in rows]
