"""Cut inheritance and partition links that cross the restored schemas' border.

pg_dump writes a child's link to its parent into the child's DDL
(`INHERITS (core.vehicles)`, `ATTACH PARTITION hub.events …`). Restored as
dumped, a table of the restored schema would join *production's* parent:
production queries on the parent would return the restored rows, and new
production rows could be routed into the restored schema. A parent inside
with children outside is the mirror case: the restored parent would claim
rows it cannot have.

The copy is disposable, so the links are cut there, before the dump: the
restored tables come back standalone, with their own columns, constraints
and indexes, and each cut is reported as a warning.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from .errors import DataPlaneError
from .names import shown
from .progress import Reporter


def cut_cross_schema_links(src: psycopg.Connection, schemas: list[str],
                           reporter: Reporter) -> list[str]:
    """Detach/un-inherit every pair with exactly one side in `schemas`; return warnings."""
    rows = src.execute(
        """
        SELECT cn.nspname, c.relname, pn.nspname, p.relname, c.relispartition,
               cn.nspname = ANY(%(s)s)
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
        JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace
        WHERE c.relkind IN ('r', 'p', 'f')
          AND (cn.nspname = ANY(%(s)s)) <> (pn.nspname = ANY(%(s)s))
        ORDER BY 1, 2, 3, 4
        """, {"s": schemas}).fetchall()
    cut: list[str] = []
    for child_schema, child, parent_schema, parent, is_partition, child_inside in rows:
        child_id = sql.Identifier(child_schema, child)
        parent_id = sql.Identifier(parent_schema, parent)
        child_label = f"{shown(child_schema)}.{shown(child)}"
        parent_label = f"{shown(parent_schema)}.{shown(parent)}"
        label = f"{child_label} -> {parent_label}"
        statement = (sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(parent_id, child_id)
                     if is_partition else
                     sql.SQL("ALTER TABLE {} NO INHERIT {}").format(child_id, parent_id))
        try:
            src.execute(statement)
        except psycopg.Error as exc:
            raise DataPlaneError(
                "CrossSchemaLink",
                f"cannot cut the {'partition' if is_partition else 'inheritance'} link "
                f"{label} in the source copy: {exc.diag.message_primary or exc}") from None
        kind = "a partition of" if is_partition else "a child of"
        message = (f"{child_label} was {kind} {parent_label}, which is "
                   "not restored: it is restored as a standalone table"
                   if child_inside else
                   f"{child_label} (not restored) was {kind} "
                   f"{parent_label}: its rows are not part of the restore")
        reporter.emit("warning", link=label, message=message)
        cut.append(message)
    return cut
