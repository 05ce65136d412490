"""Casts that involve the restored schemas.

A cast belongs to no schema, so `pg_dump -n` never dumps one: a cast whose
source type, target type or function lives in a restored schema would be
lost (PostgreSQL's regression corpus: `(text AS casttesttype)`). Extract
reads such casts from the renamed copy (`find`), saves them as
`casts.json`, and pre-data creates them in production in its transaction
(`create`): pre-data is cut into parts (`place`) so that each cast comes
right after the last TOC entry it needs (its types, its function) and before
the views, defaults and CHECKs that may use it, as in a full pg_dump. Every statement is composed
from catalog names with `sql.Identifier`; no SQL text is edited.

A cast between two types that both live outside the restored schemas (only
its function is ours) may already exist in production, with production's
own function: it is not ours, so it is kept and the copy's is skipped with
a warning. A cast that PostgreSQL made itself (a range's cast to its
multirange: `pg_depend` `'i'`) comes with its type and is left out, as are
extension members.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from .artifacts import ArtifactStore
from .dump import TocEntry
from .manifest import CASTS
from .progress import Reporter

QualifiedName = tuple[str, str]   # (schema, name)
PG_TYPE, PG_CLASS, PG_PROC = 1247, 1259, 1255

_METHODS = {"f": "WITH FUNCTION", "b": "WITHOUT FUNCTION", "i": "WITH INOUT"}
_CONTEXTS = {"e": "", "a": " AS ASSIGNMENT", "i": " AS IMPLICIT"}

# User casts (not PostgreSQL's own, not an extension's, not made by CREATE
# TYPE) whose source type, target type or function is in one of %(schemas)s.
_FIND_SQL = """
SELECT sn.nspname, s.typname, tn.nspname, t.typname,
       format_type(c.castsource, NULL), format_type(c.casttarget, NULL),
       pn.nspname, p.proname,
       ARRAY(SELECT an.nspname::text FROM unnest(p.proargtypes) WITH ORDINALITY a(oid, i)
             JOIN pg_type at ON at.oid = a.oid JOIN pg_namespace an ON an.oid = at.typnamespace
             ORDER BY a.i),
       ARRAY(SELECT at.typname::text FROM unnest(p.proargtypes) WITH ORDINALITY a(oid, i)
             JOIN pg_type at ON at.oid = a.oid ORDER BY a.i),
       c.castmethod, c.castcontext, obj_description(c.oid, 'pg_cast'),
       ARRAY[c.castsource, c.casttarget, s.typelem, t.typelem], ARRAY[s.typrelid, t.typrelid],
       c.castfunc
FROM pg_cast c
JOIN pg_type s ON s.oid = c.castsource JOIN pg_namespace sn ON sn.oid = s.typnamespace
JOIN pg_type t ON t.oid = c.casttarget JOIN pg_namespace tn ON tn.oid = t.typnamespace
LEFT JOIN pg_proc p ON p.oid = c.castfunc
LEFT JOIN pg_namespace pn ON pn.oid = p.pronamespace
WHERE c.oid >= 16384
  AND (sn.nspname = ANY(%(schemas)s) OR tn.nspname = ANY(%(schemas)s)
       OR pn.nspname = ANY(%(schemas)s))
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_cast'::regclass
                  AND d.objid = c.oid AND d.deptype IN ('e', 'i'))
ORDER BY 5, 6
"""

_EXISTS_SQL = """
SELECT EXISTS (
    SELECT 1 FROM pg_cast c
    JOIN pg_type s ON s.oid = c.castsource JOIN pg_namespace sn ON sn.oid = s.typnamespace
    JOIN pg_type t ON t.oid = c.casttarget JOIN pg_namespace tn ON tn.oid = t.typnamespace
    WHERE sn.nspname = %s AND s.typname = %s AND tn.nspname = %s AND t.typname = %s)
"""


@dataclass(frozen=True)
class Cast:
    """One cast as the catalog holds it, by (schema, name) of each part."""

    source: QualifiedName
    target: QualifiedName
    label: str                        # "(text AS s.t)", format_type's spelling, for messages
    method: str                       # pg_cast.castmethod: f, b, i
    context: str                      # pg_cast.castcontext: e, a, i
    function: QualifiedName | None = None
    arguments: tuple[QualifiedName, ...] = ()
    comment: str | None = None
    # what it needs first, as pg_dump's TOC names it: (catalog oid, object oid)
    needs: tuple[tuple[int, int], ...] = ()
    after: int = 0                    # created after this part of pre-data (place)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cast:
        return cls(source=tuple(data["source"]), target=tuple(data["target"]),  # type: ignore[arg-type]
                   label=data["label"], method=data["method"], context=data["context"],
                   function=tuple(data["function"]) if data["function"] else None,  # type: ignore[arg-type]
                   arguments=tuple(tuple(a) for a in data["arguments"]),  # type: ignore[misc]
                   comment=data["comment"],
                   needs=tuple(tuple(n) for n in data["needs"]),  # type: ignore[misc]
                   after=data["after"])

    def types(self) -> sql.Composed:
        """`(source AS target)`, as CREATE CAST and COMMENT ON CAST spell it."""
        return sql.SQL("({} AS {})").format(sql.Identifier(*self.source),
                                            sql.Identifier(*self.target))

    def create_statement(self) -> sql.Composed:
        method = sql.SQL(_METHODS[self.method])
        if self.method == "f":
            assert self.function is not None
            method = sql.SQL("WITH FUNCTION {}({})").format(
                sql.Identifier(*self.function),
                sql.SQL(", ").join(sql.Identifier(*arg) for arg in self.arguments))
        return sql.SQL("CREATE CAST {} {}{}").format(self.types(), method,
                                                    sql.SQL(_CONTEXTS[self.context]))

    def comment_statement(self) -> sql.Composed | None:
        if self.comment is None:
            return None
        return sql.SQL("COMMENT ON CAST {} IS {}").format(self.types(),
                                                          sql.Literal(self.comment))


def find(conn: psycopg.Connection, schemas: list[str]) -> list[Cast]:
    """The casts involving `schemas` (in the renamed copy: their target names)."""
    rows = conn.execute(_FIND_SQL, {"schemas": schemas}).fetchall()
    return [Cast(source=(r[0], r[1]), target=(r[2], r[3]), label=f"({r[4]} AS {r[5]})",
                 method=r[10], context=r[11],
                 function=(r[6], r[7]) if r[6] is not None else None,
                 arguments=tuple(zip(r[8], r[9])) if r[6] is not None else (),
                 comment=r[12], needs=_needs(r[13], r[14], r[15])) for r in rows]


def _needs(types: list[int], relations: list[int], function: int) -> tuple[tuple[int, int], ...]:
    """The TOC keys that may create what a cast needs: its types (an array's
    element type, a rowtype's table) and its function."""
    keys = [(PG_TYPE, int(o)) for o in types if o] + \
        [(PG_CLASS, int(o)) for o in relations if o]
    if function:
        keys.append((PG_PROC, int(function)))
    return tuple(keys)


def place(found: list[Cast], entries: list[TocEntry]) -> tuple[list[list[TocEntry]], list[Cast]]:
    """Cut pre-data's entries into parts so that each cast comes right after
    the last entry it needs, before any view, default or CHECK that may use
    it (pg_dump's full dumps put casts there too). Returns the parts and the
    casts, each with the index of the part it follows."""
    position = {(e.catalog, e.oid): i for i, e in enumerate(entries)}
    last = len(entries) - 1
    cut_after = [max((position[k] for k in c.needs if k in position), default=last)
                 for c in found]
    ends = sorted(set(cut_after) | {last})
    parts, start = [], 0
    for end in ends:
        parts.append(entries[start:end + 1])
        start = end + 1
    placed = [replace(c, after=ends.index(end)) for c, end in zip(found, cut_after)]
    return parts, placed


def save(casts: list[Cast], store: ArtifactStore, workdir: Path) -> None:
    path = Path(workdir) / CASTS
    path.write_text(json.dumps([asdict(c) for c in casts], indent=2, ensure_ascii=False))
    store.put_file(CASTS, path)


def load(store: ArtifactStore) -> list[Cast]:
    """The saved casts; none for artifacts of an older extract."""
    if CASTS not in store.names():
        return []
    return [Cast.from_dict(item) for item in json.loads(store.read_text(CASTS))]


def render(casts: list[Cast], conn: psycopg.Connection) -> str:
    """The statements as text, for the human-readable full rendering."""
    lines = []
    for cast in casts:
        lines.append(cast.create_statement().as_string(conn) + ";\n")
        comment = cast.comment_statement()
        if comment is not None:
            lines.append(comment.as_string(conn) + ";\n")
    return "".join(lines)


def _exists(conn: psycopg.Connection, cast: Cast) -> bool:
    row = conn.execute(_EXISTS_SQL, (*cast.source, *cast.target)).fetchone()
    return bool(row and row[0])


def create(conn: psycopg.Connection, casts: list[Cast], reporter: Reporter) -> list[str]:
    """Create `casts` in the caller's transaction; return the labels skipped.

    A cast production already has between the same two types is production's
    own (both types are outside the restored schemas): kept, with a warning.
    A refusal for lack of privilege (a binary-coercible cast needs a
    superuser; any cast needs ownership of one of its types) is a warning
    too, in a savepoint so the rest of pre-data stands; other errors fail
    pre-data.
    """
    skipped: list[str] = []
    for cast in casts:
        if _exists(conn, cast):
            skipped.append(cast.label)
            reporter.emit("warning", cast=cast.label, message=(
                f"cast {cast.label} not restored: production already has a cast between "
                "these types (not one of the restored schemas'; kept as it is)"))
            continue
        try:
            with conn.transaction():
                conn.execute(cast.create_statement())
                comment = cast.comment_statement()
                if comment is not None:
                    conn.execute(comment)
        except psycopg.errors.InsufficientPrivilege as exc:
            skipped.append(cast.label)
            reporter.emit("warning", cast=cast.label, message=(
                f"cast {cast.label} not restored: {exc.diag.message_primary or exc}"))
            continue
        reporter.emit("cast_created", cast=cast.label)
    return skipped
