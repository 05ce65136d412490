"""Before anything is created in the new schemas: their ACLs, and CREATE lent
to the owners of their objects.

A non-superuser's `ALTER TABLE … OWNER TO r` (any object) needs `r` to hold
CREATE on the object's schema at that moment; a superuser is not checked, so
a copy whose owners a superuser set may hold a table of `r` in a schema
where `r` has no CREATE (`public` as initdb leaves it: `=U/pg_database_owner`)
or has it through a grant that pg_dump's script would give only later (ACLs
are applied after it, `privileges.py`). As the RDS master user pre-data then
failed with `permission denied for schema`.

So apply pre runs pg_dump's schemas first (`PRE_SCHEMAS`), then `prepare`:
the schemas get the copy's owners and ACLs, and each role owning an object
of a schema without CREATE on it gets it lent (granted as the schema's
owner, which the restoring role may act as: `rights.py` checks it). The
final `privileges.reconcile` of the same transaction makes the ACLs equal to
the copy's again, which revokes what was lent.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from . import privileges
from .errors import DataPlaneError
from .progress import NullReporter, Reporter

_OWNED_KINDS = frozenset({"relation", "sequence", "routine", "type", "collation",
                          "conversion", "operator", "operator_class", "operator_family",
                          "text_search_dictionary", "text_search_configuration",
                          "statistics"})


def needs_lending(desired: privileges.Securables) -> dict[str, set[str]]:
    """Schema -> the roles owning an object in it other than the schema's owner."""
    schema_owner = {s.schema: s.owner for s in desired.values() if s.kind == "schema"}
    found: dict[str, set[str]] = {}
    for item in desired.values():
        if item.kind in _OWNED_KINDS and item.owner and item.owner != schema_owner.get(
                item.schema):
            found.setdefault(item.schema, set()).add(item.owner)
    return found


def prepare(conn: psycopg.Connection, desired: privileges.Securables, schemas: list[str],
            reporter: Reporter) -> list[str]:
    """Inside pre-data's transaction, right after the schemas exist: give them
    the copy's owners and ACLs, then lend CREATE where an owner lacks it.
    Returns `schema: role` for each loan (revoked by the final reconcile)."""
    own = {key: item for key, item in desired.items() if item.kind == "schema"}
    privileges.reconcile(conn, own, schemas, NullReporter())   # its notes come again later
    lent = []
    for schema, roles in sorted(needs_lending(desired).items()):
        for role in sorted(roles):
            if _has_create(conn, role, schema):
                continue
            try:
                with conn.transaction():
                    conn.execute(sql.SQL("GRANT CREATE ON SCHEMA {} TO {}").format(
                        sql.Identifier(schema), sql.Identifier(role)))
            except psycopg.errors.InsufficientPrivilege as exc:
                raise DataPlaneError(
                    "PreDataFailed",
                    f"{role} owns objects of schema {schema} but has no CREATE on it, and "
                    f"the restoring role cannot lend it as the schema's owner "
                    f"({exc.diag.message_primary or exc}); pre-data rolled back, production "
                    "unchanged") from None
            lent.append(f"{schema}: {role}")
    if lent:
        reporter.emit("create_lent", loans=lent)
    return lent


def _has_create(conn: psycopg.Connection, role: str, schema: str) -> bool:
    row = conn.execute("SELECT has_schema_privilege(%s, %s, 'CREATE')",
                       (role, schema)).fetchone()
    return bool(row and row[0])
