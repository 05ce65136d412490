"""Catalog queries shared by copy and verify (both sides have the same names).

After extract, the disposable copy holds the schemas under their *target*
names, so source and target are compared name for name.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from .names import shown


@dataclass(frozen=True)
class Table:
    """A relation that stores rows: plain tables, partitions, inheritance children."""

    schema: str
    name: str
    pages: int           # relpages-based size, used to balance the copy
    bytes: int
    columns: tuple[str, ...]  # copyable columns (not dropped, not generated), attnum order

    @property
    def label(self) -> str:
        return f"{shown(self.schema)}.{shown(self.name)}"


def existing_schemas(conn: psycopg.Connection, names: list[str]) -> set[str]:
    rows = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)",
                        (names,)).fetchall()
    return {r[0] for r in rows}


def schemas_marked_by(conn: psycopg.Connection, names: list[str], restore_id: str) -> set[str]:
    """Those of `names` that exist and carry this restore's ownership marker."""
    from .marker import carries_marker

    rows = conn.execute(
        "SELECT nspname, obj_description(oid, 'pg_namespace') FROM pg_namespace "
        "WHERE nspname = ANY(%s)", (names,)).fetchall()
    return {name for name, comment in rows if carries_marker(comment, restore_id)}


def list_tables(conn: psycopg.Connection, schemas: list[str]) -> list[Table]:
    """Every table with its own storage in `schemas`, largest first.

    Partitioned parents (relkind 'p') hold no rows, their leaves do; foreign
    tables, views and materialized views are not copied (matviews are
    refreshed by post-data).
    """
    rows = conn.execute(
        """
        SELECT n.nspname, c.relname,
               pg_relation_size(c.oid) / current_setting('block_size')::int AS pages,
               pg_total_relation_size(c.oid) AS bytes,
               ARRAY(SELECT a.attname FROM pg_attribute a
                     WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                       AND a.attgenerated = ''
                     ORDER BY a.attnum) AS columns
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%s) AND c.relkind = 'r'
        ORDER BY pg_relation_size(c.oid) DESC, n.nspname, c.relname
        """, (schemas,)).fetchall()
    return [Table(r[0], r[1], int(r[2]), int(r[3]), tuple(r[4])) for r in rows]


def list_sequences(conn: psycopg.Connection, schemas: list[str]) -> list[tuple[str, str]]:
    """(schema, name) of every sequence, identity and serial ones included."""
    rows = conn.execute(
        """
        SELECT n.nspname, c.relname FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%s) AND c.relkind = 'S'
        ORDER BY 1, 2
        """, (schemas,)).fetchall()
    return [(r[0], r[1]) for r in rows]
