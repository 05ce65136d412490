"""Objects only a superuser can create: refused up front when production's
connecting role is none (an RDS master user never is).

pre-data would fail on each of them (`permission denied for language c`,
`must be superuser to create an operator class`, …) after the copy was paid
for; a cast WITHOUT FUNCTION of the schemas' types would be skipped with a
warning and fail verify after the copy. On RDS none of these can exist outside an extension (members of an
extension are not dumped with a schema, so they need nothing here); a copy
of a self-managed server may hold them. Each is named, with why.
"""

from __future__ import annotations

import psycopg

from .errors import DataPlaneError

# kind, identity, why; extension members excluded (pg_dump leaves them out),
# and what PostgreSQL makes itself for another object (`internal`
# dependents: a range type's constructors, in language internal).
_SQL = """
WITH nsp AS (SELECT oid FROM pg_namespace WHERE nspname = ANY(%(schemas)s)),
found(classid, objid, why) AS (
    SELECT 'pg_proc'::regclass, p.oid, 'its language ' || l.lanname || ' is untrusted'
    FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
    WHERE p.pronamespace IN (SELECT oid FROM nsp) AND NOT l.lanpltrusted
      AND p.prokind <> 'a'   -- an aggregate's row names internal; it needs no superuser
    UNION ALL
    SELECT 'pg_type'::regclass, t.oid, 'a base type (its input and output functions are C)'
    FROM pg_type t WHERE t.typnamespace IN (SELECT oid FROM nsp) AND t.typtype = 'b'
      AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid)
    UNION ALL   -- DefineAggregate: an internal state needs a superuser
    SELECT 'pg_proc'::regclass, p.oid, 'an aggregate whose transition type is internal'
    FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid
    WHERE p.pronamespace IN (SELECT oid FROM nsp)
      AND 'internal'::regtype IN (a.aggtranstype, a.aggmtranstype)
    UNION ALL   -- `CREATE TYPE name;` needs a superuser too (DefineType)
    SELECT 'pg_type'::regclass, t.oid, 'a shell type (CREATE TYPE without a definition)'
    FROM pg_type t WHERE t.typnamespace IN (SELECT oid FROM nsp) AND t.typtype = 'p'
      AND NOT t.typisdefined
    UNION ALL
    SELECT 'pg_opclass'::regclass, x.oid, 'an operator class'
    FROM pg_opclass x WHERE x.opcnamespace IN (SELECT oid FROM nsp)
    UNION ALL
    SELECT 'pg_opfamily'::regclass, x.oid, 'an operator family'
    FROM pg_opfamily x WHERE x.opfnamespace IN (SELECT oid FROM nsp)
    UNION ALL
    SELECT 'pg_ts_parser'::regclass, x.oid, 'a text search parser'
    FROM pg_ts_parser x WHERE x.prsnamespace IN (SELECT oid FROM nsp)
    UNION ALL
    SELECT 'pg_ts_template'::regclass, x.oid, 'a text search template'
    FROM pg_ts_template x WHERE x.tmplnamespace IN (SELECT oid FROM nsp)
    UNION ALL   -- restored with the schemas (casts.py); binary coercible
    SELECT 'pg_cast'::regclass, c.oid, 'a cast WITHOUT FUNCTION (binary coercible)'
    FROM pg_cast c JOIN pg_type s ON s.oid = c.castsource JOIN pg_type t ON t.oid = c.casttarget
    WHERE c.castmethod = 'b' AND (s.typnamespace IN (SELECT oid FROM nsp)
                                  OR t.typnamespace IN (SELECT oid FROM nsp))
)
SELECT i.type, i.identity, f.why FROM found f
CROSS JOIN LATERAL pg_identify_object(f.classid, f.objid, 0) i
WHERE NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = f.classid
                  AND d.objid = f.objid AND d.deptype IN ('e', 'i'))
ORDER BY 1, 2
"""

# Security labels need the label provider's module loaded (a superuser setting).
_LABELS_SQL = """
SELECT l.objtype, l.objname, 'a security label of provider ' || l.provider
FROM pg_seclabels l JOIN pg_namespace n ON n.oid = l.objnamespace
WHERE n.nspname = ANY(%(schemas)s) ORDER BY 1, 2
"""

_LISTED = 10


def superuser(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    return bool(row and row[0])


def found(src: psycopg.Connection, schemas: list[str]) -> list[tuple[str, str, str]]:
    """(kind, identity, why) of every such object of `schemas` in the copy."""
    rows = src.execute(_SQL, {"schemas": schemas}).fetchall()
    rows += src.execute(_LABELS_SQL, {"schemas": schemas}).fetchall()
    src.rollback()
    return [(r[0], r[1], r[2]) for r in rows]


def refuse(src: psycopg.Connection, tgt: psycopg.Connection, schemas: list[str],
           where: str) -> None:
    """Raise `SuperuserRequired` naming each object production's role cannot create."""
    if superuser(tgt):
        tgt.rollback()
        return
    tgt.rollback()
    objects = found(src, schemas)
    if not objects:
        return
    listed = "; ".join(f"{kind} {identity}: {why}" for kind, identity, why in objects[:_LISTED])
    more = len(objects) - _LISTED
    raise DataPlaneError(
        "SuperuserRequired",
        f"only a superuser can create {len(objects)} object(s) of the schemas, and the role "
        f"connecting to {where} is none (an RDS master user never is); nothing was changed: "
        f"{listed}" + (f" and {more} more" if more > 0 else "")
        + ". Replace them in production by hand (an extension RDS allows, a trusted "
          "language) or restore as a superuser on a self-managed server")
