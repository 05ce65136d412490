"""rights: whether the connecting role may restore the schemas, checked first.

On RDS and Aurora the master user is not a superuser: it reads and restores
an object only through its owner's role. Without that, pg_dump fails late
with a raw `permission denied` after the copy was paid for, and pre-data's
`ALTER … OWNER TO` fails in production. So before extraction this module
reads the owner of every object in the schemas (in the copy) and checks:

- in the copy: the role has the owners' privileges (`pg_has_role … USAGE`)
  for the schemas (extract renames them), the routines (it rewrites their
  text) and the tables of inheritance and partition links (it detaches
  them), and can read every table and sequence (membership, a grant, or
  `pg_read_all_data`);
- in production: it may make each owner an object's owner (membership; the
  SET option on PostgreSQL 16+) and it may create schemas in the database
  (CREATE on it, which `ALTER SCHEMA … OWNER` also checks for the role
  running it); and, where a role owns objects of a schema without holding
  CREATE on it, it has the privileges of the schema's owner (`pg_has_role …
  USAGE`): pre-data lends that role CREATE on the schema as its owner for
  `ALTER … OWNER TO` (`schema_grants.py`).

What is missing ends the step with `MissingRoleMembership`, listing each
role and the exact SQL to run. With `grant_membership` the missing
memberships are granted instead (`grant`) and revoked afterwards (`revoke`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from . import privileges
from .errors import MissingRoleMembership
from .names import shown

COPY = "copy"
PRODUCTION = "production"
_EXAMPLES = 3   # objects named per role in a message

# Routines PostgreSQL makes for another object (a range type's constructors,
# owned by the bootstrap superuser whoever creates the range): CREATE TYPE
# makes them again, nobody restores or owns them.
_MADE_BY_POSTGRESQL_SQL = """
SELECT p.oid::regprocedure::text FROM pg_proc p
JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'i'
WHERE p.pronamespace IN (SELECT oid FROM pg_namespace WHERE nspname = ANY(%(schemas)s))
"""

# Both tables of an inheritance or partition link with one end in the schemas:
# extract detaches such links in the copy (links.py, inheritance.py), which
# needs their owners' privileges, also for a table outside the schemas.
_LINKED_SQL = """
SELECT DISTINCT t.oid::regclass::text, r.rolname
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
JOIN pg_namespace cn ON cn.oid = c.relnamespace JOIN pg_namespace pn ON pn.oid = p.relnamespace
CROSS JOIN LATERAL (VALUES (c.oid, c.relowner), (p.oid, p.relowner)) AS t(oid, owner)
JOIN pg_roles r ON r.oid = t.owner
WHERE (cn.nspname = ANY(%(schemas)s) OR pn.nspname = ANY(%(schemas)s))
  AND c.relkind IN ('r', 'p') AND NOT pg_has_role(current_user, t.owner, 'USAGE')
"""

# Tables and sequences the role cannot read (pg_dump and COPY read them).
_UNREADABLE_SQL = """
SELECT c.oid::regclass::text, r.rolname FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_roles r ON r.oid = c.relowner
WHERE n.nspname = ANY(%(schemas)s)
  AND ((c.relkind IN ('r', 'p', 'm') AND NOT has_table_privilege(c.oid, 'SELECT'))
    OR (c.relkind = 'S' AND NOT has_sequence_privilege(c.oid, 'SELECT')))
"""


# Owners of the schemas whose objects belong to roles without CREATE on them
# (a superuser set those owners): pre-data lends CREATE as the schema's owner.
_LENDERS_SQL = """
WITH nsp AS (SELECT oid, nspname, nspowner FROM pg_namespace WHERE nspname = ANY(%(schemas)s)),
owned(nsp, owner) AS (
    SELECT relnamespace, relowner FROM pg_class WHERE relnamespace IN (SELECT oid FROM nsp)
    UNION SELECT pronamespace, proowner FROM pg_proc WHERE pronamespace IN (SELECT oid FROM nsp)
    UNION SELECT typnamespace, typowner FROM pg_type WHERE typnamespace IN (SELECT oid FROM nsp)
)
SELECT r.rolname, array_agg(DISTINCT n.nspname ORDER BY n.nspname)
FROM owned o JOIN nsp n ON n.oid = o.nsp JOIN pg_roles r ON r.oid = n.nspowner
WHERE o.owner <> n.nspowner AND NOT has_schema_privilege(o.owner, n.oid, 'CREATE')
GROUP BY r.rolname
"""


@dataclass(frozen=True)
class Shortfall:
    """One role the connecting role lacks, on one side, and why it is needed."""

    side: str            # COPY or PRODUCTION
    role: str            # the role to be granted (or, for CREATE, to grant to)
    member: str          # the connecting role
    needed_for: tuple[str, ...]
    database_create: bool = False   # CREATE on the database, not a membership

    def fix(self, conn: psycopg.Connection) -> str:
        """The SQL that gives what is missing, quoted by the server's rules."""
        if self.database_create:
            return sql.SQL("GRANT CREATE ON DATABASE {} TO {};").format(
                sql.Identifier(conn.info.dbname), sql.Identifier(self.role)).as_string(conn)
        return sql.SQL("GRANT {} TO {};").format(
            sql.Identifier(self.role), sql.Identifier(self.member)).as_string(conn)

    def describe(self, conn: psycopg.Connection) -> str:
        objects = ", ".join(self.needed_for[:_EXAMPLES])
        more = len(self.needed_for) - _EXAMPLES
        objects += f" and {more} more" if more > 0 else ""
        what = "CREATE on the database for" if self.database_create else "membership in"
        return f"{self.side}: {what} {shown(self.role)} ({objects})"


@dataclass
class Rights:
    """What a check found, by side."""

    shortfalls: dict[str, list[Shortfall]] = field(default_factory=dict)
    fixes: dict[str, list[str]] = field(default_factory=dict)

    def all(self) -> list[Shortfall]:
        return [s for side in (COPY, PRODUCTION) for s in self.shortfalls.get(side, [])]

    def memberships(self, side: str) -> list[str]:
        """The roles to grant on `side` (CREATE on the database is not granted)."""
        return sorted({s.role for s in self.shortfalls.get(side, []) if not s.database_create})

    def to_dict(self) -> dict[str, Any]:
        return {"missing": {side: self.memberships(side) for side in (COPY, PRODUCTION)},
                "fixes": self.fixes}


def _option(conn: psycopg.Connection) -> str:
    """ALTER … OWNER TO r needs membership in r; on 16+ with the SET option."""
    return "SET" if conn.info.server_version >= 160000 else "MEMBER"


def owners(conn: psycopg.Connection, schemas: list[str]) -> dict[str, list[str]]:
    """Role -> the objects of `schemas` it owns. Default privileges are not
    objects: `ALTER DEFAULT PRIVILEGES FOR ROLE r` without membership in `r` is
    left out with a warning that names it (privileges.py), not refused."""
    found: dict[str, list[str]] = defaultdict(list)
    items = privileges.collect(conn, schemas)
    # (same transaction: collect's search_path qualifies signatures alike)
    made = {r[0] for r in conn.execute(_MADE_BY_POSTGRESQL_SQL, {"schemas": schemas})}
    for item in items.values():
        if item.owner and item.kind not in ("column", "default_acl") and not (
                item.kind == "routine" and item.signature in made):
            found[item.owner].append(item.label)
    conn.rollback()
    return dict(found)


def _lacking(conn: psycopg.Connection, roles: list[str], option: str) -> set[str]:
    """Those of `roles` (that exist) whose privileges the current role lacks."""
    rows = conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s) "
                        "AND NOT pg_has_role(current_user, oid, %s)", (roles, option)).fetchall()
    return {r[0] for r in rows}


def check_copy(conn: psycopg.Connection, schemas: list[str],
               owned: dict[str, list[str]]) -> list[Shortfall]:
    """What the connecting role lacks in the copy to rename, rewrite and read."""
    member = conn.info.user
    needs: dict[str, list[str]] = defaultdict(list)
    altered = {role: [o for o in objects if o.startswith(("schema ", "routine "))]
               for role, objects in owned.items()}
    for role in _lacking(conn, [r for r, objs in altered.items() if objs], "USAGE"):
        needs[role] += altered[role]
    for label, owner in conn.execute(_UNREADABLE_SQL, {"schemas": schemas}).fetchall():
        needs[owner].append(f"read {label}")
    for label, owner in conn.execute(_LINKED_SQL, {"schemas": schemas}).fetchall():
        needs[owner].append(f"detach {label}")
    conn.rollback()
    return [Shortfall(COPY, role, member, tuple(objs)) for role, objs in sorted(needs.items())]


def lenders(conn: psycopg.Connection, schemas: list[str]) -> dict[str, list[str]]:
    """Schema owner -> `lend CREATE on schema s`, for each schema of the copy
    where a role owns objects without CREATE on it."""
    rows = conn.execute(_LENDERS_SQL, {"schemas": schemas}).fetchall()
    conn.rollback()
    return {role: [f"lend CREATE on schema {shown(s)}" for s in names] for role, names in rows}


def check_production(conn: psycopg.Connection, owned: dict[str, list[str]],
                     lend: dict[str, list[str]] | None = None) -> list[Shortfall]:
    """What the connecting role lacks in production to create the schemas and
    give every object its owner. (`ALTER SCHEMA … OWNER` checks CREATE on the
    database for the role running it, not for the new owner.) `lend`: schema
    owners whose privileges pre-data needs to lend CREATE (`lenders`)."""
    member = conn.info.user
    lacking = _lacking(conn, sorted(owned), _option(conn))
    found = [Shortfall(PRODUCTION, role, member, tuple(owned[role])) for role in sorted(lacking)]
    lend = lend or {}
    found += [Shortfall(PRODUCTION, role, member, tuple(lend[role]))
              for role in sorted(_lacking(conn, sorted(lend), "USAGE") - lacking)]
    row = conn.execute("SELECT has_database_privilege(current_database(), 'CREATE')").fetchone()
    if not (row and row[0]):
        found.append(Shortfall(PRODUCTION, member, member, ("create the schemas",),
                               database_create=True))
    conn.rollback()
    return found


def check(src: psycopg.Connection, tgt: psycopg.Connection, schemas: list[str]) -> Rights:
    """Both sides, from the owners in the copy (`schemas`: their names there)."""
    owned = owners(src, schemas)
    rights = Rights({COPY: check_copy(src, schemas, owned),
                     PRODUCTION: check_production(tgt, owned, lenders(src, schemas))})
    rights.fixes = {COPY: [s.fix(src) for s in rights.shortfalls[COPY]],
                    PRODUCTION: [s.fix(tgt) for s in rights.shortfalls[PRODUCTION]]}
    return rights


def refusal(shortfalls: list[Shortfall], conns: dict[str, psycopg.Connection],
            grant_membership: bool) -> MissingRoleMembership | None:
    """The error to stop with, or None. With `grant_membership`, only what
    cannot be granted (CREATE on the database) stops the restore.
    `conns`: side -> connection (identifiers are quoted by its rules)."""
    refused = [s for s in shortfalls if not (grant_membership and not s.database_create)]
    if not refused:
        return None
    fixes: dict[str, list[str]] = defaultdict(list)
    for s in refused:
        fixes[s.side].append(s.fix(conns[s.side]))
    place = {COPY: "in the copy", PRODUCTION: "in production"}
    run = " and ".join(f"{place[side]}: {' '.join(text)}" for side, text in fixes.items())
    return MissingRoleMembership(
        "the connecting role lacks rights on roles that own the schemas' objects; nothing "
        "was changed. Missing: " + "; ".join(s.describe(conns[s.side]) for s in refused)
        + f". Run {run}" + ("" if grant_membership else
                            " (or set grantMembership / --grant-membership to lend the "
                            "memberships for the restore's duration)"))


def grant(conn: psycopg.Connection, roles: list[str], where: str) -> list[str]:
    """GRANT each role to the connecting role, all or none (one transaction)."""
    if not roles:
        return []
    member = conn.info.user
    try:
        with conn.transaction():
            for role in roles:
                conn.execute(sql.SQL("GRANT {} TO {}").format(
                    sql.Identifier(role), sql.Identifier(member)))
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MissingRoleMembership(
            f"could not grant {', '.join(shown(r) for r in roles)} to {shown(member)} in "
            f"{where} ({first}); nothing was granted. On PostgreSQL 16+ (and RDS) the "
            "connecting role needs ADMIN OPTION on each role (it has it on roles it "
            "created); a superuser can run the GRANT instead") from None
    return roles


def revoke(conn: psycopg.Connection, roles: list[str]) -> list[str]:
    """REVOKE what `grant` gave (only those roles; a missing grant is no error)."""
    member = conn.info.user
    revoked = []
    for role in roles:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        if exists is None:
            continue
        with conn.transaction():
            conn.execute(sql.SQL("REVOKE {} FROM {}").format(
                sql.Identifier(role), sql.Identifier(member)))
        revoked.append(role)
    return revoked
