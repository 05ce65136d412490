"""Step 5, drop: failure cleanup that removes only what this restore created.

A schema is ours when its comment ends with this restore id's marker (written
by `apply pre` in the transaction that created it). `DROP SCHEMA … CASCADE`
would also remove objects in *other* schemas that came to depend on ours — a
production view on a restored table, a foreign key from another schema, a
column or domain whose type lives in our schema, a default calling our
sequence, a trigger calling our function. So the drop runs in one
transaction that proves it removed nothing else:

1. find the marked schemas; lock their tables (ACCESS EXCLUSIVE, bounded by
   `lock_timeout`) so no new view or foreign key can start depending on
   them while we look;
2. snapshot every object outside them (relations, columns, defaults,
   constraints, triggers, policies, rules, functions, types, operators,
   casts, extensions, publications … keyed (classid, objid, objsubid));
3. `DROP SCHEMA … CASCADE`; snapshot again;
4. if anything outside disappeared: ROLLBACK, describe those objects with
   `pg_describe_object` and raise DropRefused; otherwise COMMIT.

What counts as ours: everything in the marked schemas, and the objects
PostgreSQL made as internal parts of them (pg_depend deptype 'i', followed
transitively) wherever they live: a range type's multirange, which
`multirange_type_name` may place in another schema, its array type, and the
range-to-multirange cast, which belongs to no schema; and every cast that
depends on them (deptype 'n': its source or target type or its function is
ours), which belongs to no schema either, dies with its type or function, and
is what pre-data restored for `pg_dump -n` (`casts.py`). (Rowtypes, array types,
identity and serial sequences, indexes, constraint triggers and view rules
live in their owner's schema anyway.) Automatic ('a') dependents are ours
only as sub-objects of our relations (constraints, triggers, policies,
rules, defaults are compared by their relation's schema): one with a home of
its own outside -- a partition, a statistics object in another schema, a
publication's membership -- was put there by someone else and refuses the
drop. A refusal lists each outside object once, without its columns,
constraints or internal parts.

Objects in other sessions' temporary schemas and in `pg_toast` (whose
tables live and die with their owners) are not compared. An object that
another session dropped concurrently is told apart after the rollback (it is
still gone) and the drop is retried.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from .conn import Endpoint
from .errors import DataPlaneError, InvalidRequest
from .marker import carries_marker, validate_restore_id
from .names import shown, validate_schema_name, visible
from .progress import Reporter

DEFAULT_LOCK_TIMEOUT = "30s"
MAX_LISTED = 20
_ATTEMPTS = 3

# Every schema but ours (and toast and temporary ones: see the docstring).
_OUTSIDE_CTE = """
outside AS (
    SELECT oid FROM pg_namespace
    WHERE NOT (oid = ANY(%(ours)s::oid[]))
      AND nspname <> 'pg_toast' AND nspname !~ '^pg_(toast_)?temp_'
)"""

# Objects outside our schemas that PostgreSQL made as internal parts of
# objects inside them (pg_depend deptype 'i', followed transitively): a range
# type's multirange (which `multirange_type_name` may put in another schema)
# and its array, the range-to-multirange cast (no schema at all). They can
# only exist with their owner, so they are ours. Extension members never are.
_COMPANIONS_CTE = """
inside(classid, objid) AS (
    SELECT 'pg_class'::regclass::oid, oid FROM pg_class
    WHERE relnamespace = ANY(%(ours)s::oid[])
    UNION ALL SELECT 'pg_type'::regclass::oid, oid FROM pg_type
    WHERE typnamespace = ANY(%(ours)s::oid[])
    UNION ALL SELECT 'pg_proc'::regclass::oid, oid FROM pg_proc
    WHERE pronamespace = ANY(%(ours)s::oid[])
    UNION ALL SELECT 'pg_constraint'::regclass::oid, oid FROM pg_constraint
    WHERE connamespace = ANY(%(ours)s::oid[])
    UNION ALL SELECT 'pg_operator'::regclass::oid, oid FROM pg_operator
    WHERE oprnamespace = ANY(%(ours)s::oid[])
    UNION ALL SELECT 'pg_opclass'::regclass::oid, oid FROM pg_opclass
    WHERE opcnamespace = ANY(%(ours)s::oid[])
    UNION ALL SELECT 'pg_opfamily'::regclass::oid, oid FROM pg_opfamily
    WHERE opfnamespace = ANY(%(ours)s::oid[])
    UNION ALL SELECT 'pg_collation'::regclass::oid, oid FROM pg_collation
    WHERE collnamespace = ANY(%(ours)s::oid[])
    UNION ALL SELECT 'pg_statistic_ext'::regclass::oid, oid FROM pg_statistic_ext
    WHERE stxnamespace = ANY(%(ours)s::oid[])
),
companions(classid, objid) AS (
    SELECT d.classid, d.objid FROM pg_depend d
    JOIN inside i ON i.classid = d.refclassid AND i.objid = d.refobjid
    WHERE d.deptype = 'i'
    UNION
    SELECT d.classid, d.objid FROM pg_depend d
    JOIN companions c ON c.classid = d.refclassid AND c.objid = d.refobjid
    WHERE d.deptype = 'i'
),
-- casts on our types or functions (and on their companions): no schema of
-- their own, they die with them, and pre-data restores them (casts.py)
dependent_casts(classid, objid) AS (
    SELECT DISTINCT d.classid, d.objid FROM pg_depend d
    WHERE d.classid = 'pg_cast'::regclass AND d.deptype = 'n'
      AND ((d.refclassid, d.refobjid) IN (SELECT classid, objid FROM inside)
           OR (d.refclassid, d.refobjid) IN (SELECT classid, objid FROM companions))
),
ours_too AS (
    SELECT c.classid, c.objid
    FROM (SELECT * FROM companions UNION SELECT * FROM dependent_casts) c
    WHERE NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.deptype = 'e'
                      AND e.classid = c.classid AND e.objid = c.objid)
)
"""

# Everything outside our schemas that a CASCADE could remove, as
# (classid, objid, objsubid, owning relation or 0). Sub-objects of relations
# (columns, defaults, constraints, triggers, policies, rules) carry their
# relation so a report can fold them under it.
_SNAPSHOT_SQL = """
SELECT 'pg_class'::regclass::oid, c.oid, 0, c.oid
FROM pg_class c WHERE c.relnamespace IN (SELECT oid FROM outside)
UNION ALL
SELECT 'pg_class'::regclass::oid, a.attrelid, a.attnum, a.attrelid
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
WHERE c.relnamespace IN (SELECT oid FROM outside) AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'pg_attrdef'::regclass::oid, d.oid, 0, d.adrelid
FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid
WHERE c.relnamespace IN (SELECT oid FROM outside)
UNION ALL
SELECT 'pg_constraint'::regclass::oid, co.oid, 0, co.conrelid
FROM pg_constraint co WHERE co.connamespace IN (SELECT oid FROM outside)
UNION ALL
SELECT 'pg_trigger'::regclass::oid, t.oid, 0, t.tgrelid
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE NOT t.tgisinternal AND c.relnamespace IN (SELECT oid FROM outside)
UNION ALL
SELECT 'pg_policy'::regclass::oid, p.oid, 0, p.polrelid
FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
WHERE c.relnamespace IN (SELECT oid FROM outside)
UNION ALL
SELECT 'pg_rewrite'::regclass::oid, r.oid, 0, r.ev_class
FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
WHERE r.rulename <> '_RETURN' AND c.relnamespace IN (SELECT oid FROM outside)
UNION ALL
SELECT 'pg_proc'::regclass::oid, p.oid, 0, 0
FROM pg_proc p WHERE p.pronamespace IN (SELECT oid FROM outside)
UNION ALL
SELECT 'pg_type'::regclass::oid, t.oid, 0, 0
FROM pg_type t
WHERE t.typnamespace IN (SELECT oid FROM outside) AND t.typrelid = 0
  AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid)
UNION ALL
SELECT 'pg_operator'::regclass::oid, o.oid, 0, 0
FROM pg_operator o WHERE o.oprnamespace IN (SELECT oid FROM outside)
UNION ALL
SELECT 'pg_opclass'::regclass::oid, o.oid, 0, 0
FROM pg_opclass o WHERE o.opcnamespace IN (SELECT oid FROM outside)
UNION ALL
SELECT 'pg_opfamily'::regclass::oid, o.oid, 0, 0
FROM pg_opfamily o WHERE o.opfnamespace IN (SELECT oid FROM outside)
UNION ALL
SELECT 'pg_amop'::regclass::oid, o.oid, 0, 0
FROM pg_amop o JOIN pg_opfamily f ON f.oid = o.amopfamily
WHERE f.opfnamespace IN (SELECT oid FROM outside)
UNION ALL
SELECT 'pg_amproc'::regclass::oid, o.oid, 0, 0
FROM pg_amproc o JOIN pg_opfamily f ON f.oid = o.amprocfamily
WHERE f.opfnamespace IN (SELECT oid FROM outside)
UNION ALL
SELECT 'pg_collation'::regclass::oid, o.oid, 0, 0
FROM pg_collation o WHERE o.collnamespace IN (SELECT oid FROM outside)
UNION ALL
SELECT 'pg_conversion'::regclass::oid, o.oid, 0, 0
FROM pg_conversion o WHERE o.connamespace IN (SELECT oid FROM outside)
UNION ALL
SELECT 'pg_statistic_ext'::regclass::oid, o.oid, 0, o.stxrelid
FROM pg_statistic_ext o WHERE o.stxnamespace IN (SELECT oid FROM outside)
UNION ALL
SELECT 'pg_ts_config'::regclass::oid, o.oid, 0, 0
FROM pg_ts_config o WHERE o.cfgnamespace IN (SELECT oid FROM outside)
UNION ALL
SELECT 'pg_ts_dict'::regclass::oid, o.oid, 0, 0
FROM pg_ts_dict o WHERE o.dictnamespace IN (SELECT oid FROM outside)
UNION ALL
SELECT 'pg_ts_parser'::regclass::oid, o.oid, 0, 0
FROM pg_ts_parser o WHERE o.prsnamespace IN (SELECT oid FROM outside)
UNION ALL
SELECT 'pg_ts_template'::regclass::oid, o.oid, 0, 0
FROM pg_ts_template o WHERE o.tmplnamespace IN (SELECT oid FROM outside)
UNION ALL
SELECT 'pg_default_acl'::regclass::oid, o.oid, 0, 0
FROM pg_default_acl o
WHERE o.defaclnamespace = 0 OR o.defaclnamespace IN (SELECT oid FROM outside)
-- database-wide objects: none of them is ours (pg_dump -n never creates
-- one; the casts pre-data creates are left out above, as dependent_casts),
-- so all are compared, extensions living in our schemas included.
-- (User mappings hang on foreign servers, never on a schema, and their
-- catalog is readable by superusers only: an RDS master user is not one.)
UNION ALL SELECT 'pg_cast'::regclass::oid, o.oid, 0, 0 FROM pg_cast o
UNION ALL SELECT 'pg_language'::regclass::oid, o.oid, 0, 0 FROM pg_language o
UNION ALL SELECT 'pg_transform'::regclass::oid, o.oid, 0, 0 FROM pg_transform o
UNION ALL SELECT 'pg_extension'::regclass::oid, o.oid, 0, 0 FROM pg_extension o
UNION ALL SELECT 'pg_foreign_data_wrapper'::regclass::oid, o.oid, 0, 0
          FROM pg_foreign_data_wrapper o
UNION ALL SELECT 'pg_foreign_server'::regclass::oid, o.oid, 0, 0 FROM pg_foreign_server o
UNION ALL SELECT 'pg_event_trigger'::regclass::oid, o.oid, 0, 0 FROM pg_event_trigger o
UNION ALL SELECT 'pg_publication_rel'::regclass::oid, o.oid, 0, 0 FROM pg_publication_rel o
"""
# PostgreSQL 15+: publications of whole schemas
_SNAPSHOT_SQL_15 = """
UNION ALL SELECT 'pg_publication_namespace'::regclass::oid, o.oid, 0, 0
          FROM pg_publication_namespace o
"""

Key = tuple[int, int, int]


def _snapshot(conn: psycopg.Connection, ours: list[int]) -> dict[Key, int]:
    """Every object outside our schemas, except our companions living there."""
    objects = _SNAPSHOT_SQL + (_SNAPSHOT_SQL_15 if conn.info.server_version >= 150000 else "")
    query = (f"WITH RECURSIVE {_OUTSIDE_CTE},{_COMPANIONS_CTE},\n"
             f"objects(classid, objid, objsubid, owner) AS ({objects})\n"
             "SELECT o.* FROM objects o WHERE NOT EXISTS (\n"
             "    SELECT 1 FROM ours_too t WHERE t.classid = o.classid AND t.objid = o.objid)")
    rows = conn.execute(query, {"ours": ours}).fetchall()  # type: ignore[arg-type]
    return {(int(r[0]), int(r[1]), int(r[2])): int(r[3]) for r in rows}


def _marked_schemas(conn: psycopg.Connection, restore_id: str,
                    reporter: Reporter) -> list[tuple[int, str]]:
    rows = conn.execute(
        "SELECT oid, nspname, obj_description(oid, 'pg_namespace') FROM pg_namespace "
        "ORDER BY nspname").fetchall()
    found: list[tuple[int, str]] = []
    for oid, name, comment in rows:
        if not carries_marker(comment, restore_id):
            continue
        try:
            validate_schema_name(name)
        except InvalidRequest as exc:
            # apply pre never creates such a schema: someone copied the marker
            reporter.emit("drop_skipped", schema=name, reason=exc.reason)
            continue
        found.append((int(oid), name))
    return found


def _fold(missing: dict[Key, int]) -> list[Key]:
    """Leave out sub-objects (columns, defaults, triggers…) of relations listed themselves."""
    relations = {key[1] for key, owner in missing.items() if owner == key[1] and key[2] == 0}
    return [key for key, owner in sorted(missing.items())
            if (owner == key[1] and key[2] == 0) or owner not in relations]


def _fold_companions(conn: psycopg.Connection, keys: list[Key],
                     blocking: dict[Key, int]) -> list[Key]:
    """Leave out internal parts (a multirange, its cast, constructors…) of other objects listed.

    Runs after the rollback, when pg_depend holds their rows again.
    """
    if not keys:
        return keys
    owners = sorted({(k[0], k[1]) for k in blocking})
    rows = conn.execute(
        "SELECT DISTINCT d.classid, d.objid FROM pg_depend d "
        "JOIN unnest(%s::oid[], %s::oid[]) AS k(c, o) ON d.classid = k.c AND d.objid = k.o "
        "JOIN unnest(%s::oid[], %s::oid[]) AS r(c, o) "
        "  ON d.refclassid = r.c AND d.refobjid = r.o "
        "WHERE d.deptype = 'i' AND (d.refclassid, d.refobjid) <> (d.classid, d.objid)",
        ([k[0] for k in keys], [k[1] for k in keys],
         [o[0] for o in owners], [o[1] for o in owners])).fetchall()
    parts = {(int(c), int(o)) for c, o in rows}
    return [key for key in keys if (key[0], key[1]) not in parts]


def _describe(conn: psycopg.Connection, keys: list[Key]) -> list[str]:
    if not keys:
        return []
    rows = conn.execute(
        "SELECT coalesce(pg_describe_object(c, o, s), format('object %%s/%%s/%%s', c, o, s)) "
        "FROM unnest(%s::oid[], %s::oid[], %s::int[]) WITH ORDINALITY AS u(c, o, s, i) "
        "ORDER BY i",
        ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys])).fetchall()
    return [r[0] for r in rows]


def _first_line(endpoint: Endpoint, exc: BaseException) -> str:
    text = str(exc).strip()
    return endpoint.sanitize(text.splitlines()[0] if text else type(exc).__name__)


def drop_restored(target: Endpoint, restore_id: str, *, reporter: Reporter,
                  lock_timeout: str = DEFAULT_LOCK_TIMEOUT) -> list[str]:
    """Drop the schemas marked as created by `restore_id`; return their names, sorted.

    No marked schema: returns [] (idempotent). Raises DropRefused, with
    nothing dropped, when the CASCADE would remove anything outside them;
    DropLockTimeout when their tables cannot be locked within `lock_timeout`.
    """
    validate_restore_id(restore_id)
    reporter.emit("drop_started", restore_id=restore_id, target=target.describe())
    for attempt in range(1, _ATTEMPTS + 1):
        outcome = _attempt(target, restore_id, reporter, lock_timeout)
        if outcome is not None:
            return outcome
        reporter.emit("drop_retry", attempt=attempt,
                      reason="objects outside were dropped concurrently by another session")
    raise DataPlaneError(
        "DropRefused",
        f"the catalog kept changing while dropping the schemas of restore {restore_id}; "
        "nothing was dropped, try again")


def _attempt(target: Endpoint, restore_id: str, reporter: Reporter,
             lock_timeout: str) -> list[str] | None:
    """One try: the dropped names, or None when a concurrent change spoiled the check."""
    conn = target.connect(application_name="pg-schema-restore drop")
    try:
        # Session-wide (this connection is ours alone): also holds after a
        # rollback, so descriptions are always schema-qualified.
        conn.execute("SELECT set_config('lock_timeout', %s, false)", (lock_timeout,))
        conn.execute("SELECT set_config('search_path', 'pg_catalog', false)")
        conn.commit()
        marked = _marked_schemas(conn, restore_id, reporter)
        names = sorted(name for _, name in marked)
        reporter.emit("drop_found", restore_id=restore_id, schemas=names)
        if not marked:
            conn.rollback()
            return []
        ours = [oid for oid, _ in marked]

        tables = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relnamespace = ANY(%s::oid[]) AND c.relkind IN ('r', 'p') "
            "ORDER BY 1, 2", (ours,)).fetchall()
        if tables:
            conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                sql.SQL(", ").join(sql.SQL("ONLY {}").format(sql.Identifier(s, t))
                                   for s, t in tables)))

        before = _snapshot(conn, ours)
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(
            sql.SQL(", ").join(sql.Identifier(name) for name in names)))
        after = _snapshot(conn, ours)
        gone = {k: v for k, v in before.items() if k not in after}
        if not gone:
            conn.commit()
            reporter.emit("dropped", restore_id=restore_id, schemas=names)
            return names

        conn.rollback()
        # After the rollback our cascade is undone: what exists again was
        # removed by it; what is still missing was dropped by someone else.
        now = _snapshot(conn, ours)
        blocking = {k: v for k, v in gone.items() if k in now}
        conn.rollback()
        if not blocking:
            return None
        keys = _fold_companions(conn, _fold(blocking), blocking)
        descriptions = sorted(visible(text) for text in _describe(conn, keys))
        conn.rollback()
        listed = "; ".join(descriptions[:MAX_LISTED])
        more = len(descriptions) - MAX_LISTED
        if more > 0:
            listed += f"; and {more} more"
        reporter.emit("drop_refused", restore_id=restore_id, schemas=names,
                      outside=descriptions[:MAX_LISTED], outside_total=len(descriptions))
        raise DataPlaneError(
            "DropRefused",
            f"refusing to drop schema(s) {', '.join(map(shown, names))} of restore {restore_id}: "
            f"DROP SCHEMA … CASCADE would also remove {len(descriptions)} object(s) outside "
            f"them: {listed}. Nothing was dropped; remove these dependencies first "
            "(or keep the schemas).")
    except psycopg.errors.LockNotAvailable as exc:
        _safe_rollback(conn)
        raise DataPlaneError(
            "DropLockTimeout",
            f"could not lock the schemas of restore {restore_id} within {lock_timeout} "
            f"(other sessions are using them): {_first_line(target, exc)}; "
            "nothing was dropped") from None
    except psycopg.Error as exc:
        _safe_rollback(conn)
        raise DataPlaneError(
            "DropFailed",
            f"dropping the schemas of restore {restore_id} failed: "
            f"{_first_line(target, exc)}; nothing was dropped") from None
    finally:
        conn.close()


def _safe_rollback(conn: psycopg.Connection) -> None:
    try:
        conn.rollback()
    except psycopg.Error:
        pass

