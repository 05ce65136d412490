"""A schema loaded by a superuser, made restorable by the RDS master user.

PostgreSQL's regression scripts run as a superuser: their objects belong to
it, and some only a superuser can create (base types with C functions,
operator classes, casts WITHOUT FUNCTION…). On RDS neither exists in an
application schema: the master user owns what it made, application roles
own the rest, and it is a member of those roles. `adapt` makes a loaded
schema look like that, as the superuser (fixture setup): what only a
superuser can create is dropped (with what depends on it), what a superuser
owns in the database is given to `master`, and `master` joins every other
role owning objects there. The restore under test then connects as `master`.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from ddl_job import superuser_only
from pg_schema_restore.local.cluster import SUPERUSER, LocalCluster

# Every object of the schema with its owner, as pg_identify_object names it.
_OWNED_SQL = """
WITH nsp AS (SELECT oid FROM pg_namespace WHERE nspname = ANY(%(schemas)s)),
o(classid, objid, owner) AS (
    SELECT 'pg_namespace'::regclass, oid, nspowner FROM pg_namespace WHERE oid IN (SELECT oid FROM nsp)
    UNION ALL SELECT 'pg_class'::regclass, oid, relowner FROM pg_class
        WHERE relnamespace IN (SELECT oid FROM nsp) AND relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
    UNION ALL SELECT 'pg_proc'::regclass, oid, proowner FROM pg_proc
        WHERE pronamespace IN (SELECT oid FROM nsp)
    UNION ALL SELECT 'pg_type'::regclass, t.oid, t.typowner FROM pg_type t
        WHERE t.typnamespace IN (SELECT oid FROM nsp) AND t.typtype IN ('b', 'd', 'e', 'r', 'm', 'p')
          AND NOT EXISTS (SELECT 1 FROM pg_type a WHERE a.typarray = t.oid)
    UNION ALL SELECT 'pg_collation'::regclass, oid, collowner FROM pg_collation
        WHERE collnamespace IN (SELECT oid FROM nsp)
    UNION ALL SELECT 'pg_conversion'::regclass, oid, conowner FROM pg_conversion
        WHERE connamespace IN (SELECT oid FROM nsp)
    UNION ALL SELECT 'pg_operator'::regclass, oid, oprowner FROM pg_operator
        WHERE oprnamespace IN (SELECT oid FROM nsp)
    UNION ALL SELECT 'pg_ts_dict'::regclass, oid, dictowner FROM pg_ts_dict
        WHERE dictnamespace IN (SELECT oid FROM nsp)
    UNION ALL SELECT 'pg_ts_config'::regclass, oid, cfgowner FROM pg_ts_config
        WHERE cfgnamespace IN (SELECT oid FROM nsp)
    UNION ALL SELECT 'pg_statistic_ext'::regclass, oid, stxowner FROM pg_statistic_ext
        WHERE stxnamespace IN (SELECT oid FROM nsp)
)
SELECT i.type, i.identity, r.rolname, r.rolsuper
FROM o JOIN pg_roles r ON r.oid = o.owner
CROSS JOIN LATERAL pg_identify_object(o.classid, o.objid, 0) i
WHERE NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = o.classid AND d.objid = o.objid
                  AND d.objsubid = 0 AND (d.deptype = 'e' OR d.deptype = 'i'
                                          AND o.classid = 'pg_proc'::regclass))
ORDER BY 1, 2
"""

# pg_identify_object's type -> the ALTER command's keyword, where they differ.
_ALTER_AS = {"composite type": "TYPE", "statistics object": "STATISTICS"}


def adapt(cluster: LocalCluster, db: str, schema: str, master: str) -> list[str]:
    """Make `schema` what an RDS master user could restore; returns what was
    dropped or could not be changed (for the test's report)."""
    notes: list[str] = []
    with cluster.connect(db, user=SUPERUSER, autocommit=True) as conn:
        for kind, identity, why in superuser_only.found(conn, [schema]):
            if "security label" in why:
                continue
            notes += _try(conn, f"DROP {kind.upper()} {identity} CASCADE",
                          f"dropped {kind} {identity} ({why})")
        members = set()
        # the other schemas too: the schema's objects may use theirs (as the
        # master user's application would, on RDS)
        schemas = [r[0] for r in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname !~ '^(pg_|information_schema$)'")]
        for kind, identity, owner, superuser in conn.execute(_OWNED_SQL, {"schemas": schemas}
                                                              ).fetchall():
            if superuser:
                keyword = _ALTER_AS.get(kind, kind.upper())
                if kind == "aggregate" and identity.endswith("()"):
                    identity = identity[:-2] + "(*)"
                notes += _try(conn, f"ALTER {keyword} {identity} OWNER TO "
                                    f"{sql.Identifier(master).as_string(conn)}", None)
            elif owner not in (master, "pg_database_owner"):   # master owns the database
                members.add(owner)
        # the databases an RDS master user restores into are its own
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
            sql.Identifier(db), sql.Identifier(master)))
        for role in sorted(members):
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role),
                                                          sql.Identifier(master)))
        left = [f"{kind} {identity}" for kind, identity, _, superuser in
                conn.execute(_OWNED_SQL, {"schemas": schemas}).fetchall() if superuser]
    return notes + [f"still a superuser's: {left}"] if left else notes


def _try(conn: psycopg.Connection, statement: str, done: str | None) -> list[str]:
    """Run one statement built from the server's own identities (test setup)."""
    try:
        conn.execute(statement)  # type: ignore[arg-type]
    except psycopg.errors.UndefinedObject:
        return []   # gone with an earlier CASCADE
    except psycopg.errors.FeatureNotSupported as exc:
        if "sequence" in str(exc):
            return []   # a sequence owned by a column: it follows its table
        return [f"{statement}: {str(exc).splitlines()[0]}"]
    except psycopg.Error as exc:
        return [f"{statement}: {str(exc).splitlines()[0]}"]
    return [done] if done else []
