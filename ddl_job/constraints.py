"""Constraints matched by meaning, and production's names made equal to the copy's.

pg_dump cannot always bring a constraint back under its name. A constraint a
partition inherits is not dumped: post-data creates the parent's, and
PostgreSQL clones it onto each partition under the *parent's* name, while the
source partition may keep the name its own constraint had before it was
attached (`fk_partitioned_fk_4_a_b_fkey` vs `fk_partitioned_fk_a_b_fkey`,
PostgreSQL's foreign_key regression script); the per-partition constraints
of a foreign key referencing a partitioned table are numbered in creation
order (`r_x_fkey1`). Same meaning, other names.

So extract records the copy's constraints (`CONSTRAINTS` artifact), and after
post-data `rename_like_source` pairs production's constraints with them by
meaning (owner, type, definition, validated, deferrable, deferred; never by
parsing text) and renames those whose name differs, wherever PostgreSQL
allows it. It refuses for an inherited CHECK constraint (renamed only through
its parent, which renames it in every child), and never renames on a child
alone what it would recurse into; what stays different is a warning.

Definitions come from `pg_get_constraintdef` with `search_path` pinned to
`pg_catalog`, so every name in them is schema-qualified the same way on both
sides (the copy already holds the schemas under their target names).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import asdict, dataclass, field

import psycopg
from psycopg import sql

from .progress import Reporter

_CONSTRAINTS_SQL = """
SELECT n.nspname, coalesce(c.relname, t.typname), co.contypid <> 0, co.conname,
       co.contype::text, pg_get_constraintdef(co.oid), co.convalidated, co.condeferrable,
       co.condeferred, co.conislocal, co.coninhcount
FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace
LEFT JOIN pg_class c ON c.oid = co.conrelid LEFT JOIN pg_type t ON t.oid = co.contypid
WHERE n.nspname = ANY(%s)
  AND NOT EXISTS (SELECT 1 FROM pg_depend e
                  WHERE e.classid = 'pg_constraint'::regclass AND e.objid = co.oid
                    AND e.deptype = 'e')
ORDER BY 1, 2, 4, 6
"""

# Why a remaining name difference cannot be removed (shared with verify).
INHERITED_CHECK_REASON = (
    "PostgreSQL renames an inherited CHECK constraint only through its parent "
    "(ALTER TABLE parent RENAME CONSTRAINT renames it in every child)")
INHERITED_REASON = (
    "PostgreSQL creates a constraint inherited from a parent under the parent's name "
    "when it clones it onto the partition or child, and renaming it in production "
    "was refused (see the apply-post warnings)")


@dataclass(frozen=True)
class Constraint:
    """One pg_constraint row, as both sides can compare it."""

    schema: str
    owner: str            # the table's (or domain's) name
    domain: bool
    name: str
    contype: str
    definition: str
    validated: bool
    deferrable: bool
    deferred: bool
    local: bool           # conislocal
    inherited: int        # coninhcount

    @property
    def meaning(self) -> tuple[str, str, bool, bool, bool]:
        """What must be equal for two constraints to be the same one."""
        return (self.contype, self.definition, self.validated, self.deferrable, self.deferred)

    @property
    def owner_key(self) -> tuple[str, bool, str]:
        return (self.schema, self.domain, self.owner)

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.owner}.{self.name}"


def list_constraints(conn: psycopg.Connection, schemas: list[str]) -> list[Constraint]:
    """Every constraint of `schemas` (not extension members), definitions qualified.

    Pins `search_path` to `pg_catalog` for the rest of the transaction.
    """
    conn.execute("SELECT set_config('search_path', 'pg_catalog', true)")
    return [Constraint(*row) for row in conn.execute(_CONSTRAINTS_SQL, (schemas,)).fetchall()]


def to_json(items: list[Constraint]) -> str:
    return json.dumps([asdict(c) for c in items], indent=1, ensure_ascii=False)


def from_json(text: str) -> list[Constraint]:
    return [Constraint(**item) for item in json.loads(text)]


@dataclass
class Pairing:
    """Source constraints set against target ones, owner by owner."""

    same: list[tuple[Constraint, Constraint]] = field(default_factory=list)
    renamed: list[tuple[Constraint, Constraint]] = field(default_factory=list)  # other name
    changed: list[tuple[Constraint, Constraint]] = field(default_factory=list)  # other meaning
    missing: list[Constraint] = field(default_factory=list)   # source only
    extra: list[Constraint] = field(default_factory=list)     # target only


def pair(source: Iterable[Constraint], target: Iterable[Constraint]) -> Pairing:
    """Pair by (name, meaning), then by meaning alone, then by name alone."""
    result = Pairing()
    by_owner: dict[tuple[str, bool, str], tuple[list[Constraint], list[Constraint]]] = (
        defaultdict(lambda: ([], [])))
    for item in source:
        by_owner[item.owner_key][0].append(item)
    for item in target:
        by_owner[item.owner_key][1].append(item)
    for key in sorted(by_owner):
        _pair_owner(*by_owner[key], result)
    return result


_PASSES: tuple[tuple[Callable[[Constraint], Hashable], str], ...] = (
    (lambda c: (c.name, c.meaning), "same"),
    (lambda c: c.meaning, "renamed"),
    (lambda c: c.name, "changed"),
)


def _pair_owner(src: list[Constraint], tgt: list[Constraint], result: Pairing) -> None:
    """Each pass pairs what is left, in name order (so equal meanings pair
    name-sorted to name-sorted: the same answer every time)."""
    for key, kind in _PASSES:
        index: dict[Hashable, list[Constraint]] = defaultdict(list)
        for t in sorted(tgt, key=_order):
            index[key(t)].append(t)
        left: list[Constraint] = []
        for s in sorted(src, key=_order):
            bucket = index.get(key(s))
            if bucket:
                getattr(result, kind).append((s, bucket.pop(0)))
            else:
                left.append(s)
        src, tgt = left, [t for bucket in index.values() for t in bucket]
    result.missing += sorted(src, key=_order)
    result.extra += sorted(tgt, key=_order)


def _order(c: Constraint) -> tuple[str, str]:
    return (c.name, c.definition)


def renamable(target: Constraint) -> bool:
    """Whether PostgreSQL renames this constraint on its own table."""
    return not (target.contype == "c" and target.inherited > 0)


def rename_like_source(conn: psycopg.Connection, expected: list[Constraint],
                       schemas: list[str], tag: str, reporter: Reporter) -> dict[str, list[str]]:
    """Rename production's constraints to the copy's names; one transaction.

    Two passes through temporary names (`pgsr_<n>_<tag>`), so names that
    swap or chain never collide. A refused rename is rolled back alone (a
    savepoint) and reported. Returns {"renamed": [...], "warnings": [...]}.
    """
    conn.execute("SET LOCAL lock_timeout = '30s'")
    todo = [(s, t) for s, t in pair(expected, list_constraints(conn, schemas)).renamed
            if renamable(t)]
    renamed: list[str] = []
    warnings: list[str] = []
    moved: list[tuple[Constraint, Constraint, str]] = []
    for number, (s, t) in enumerate(todo):
        temporary = f"pgsr_{number}_{tag}"
        error = _try_rename(conn, t, t.name, temporary)
        if error:
            warnings.append(_warn(reporter, t, s.name, error))
        else:
            moved.append((s, t, temporary))
    for s, t, temporary in moved:
        error = _try_rename(conn, t, temporary, s.name)
        if error:
            _rename(conn, t, temporary, t.name)   # free: it was t's own name a moment ago
            warnings.append(_warn(reporter, t, s.name, error))
        else:
            renamed.append(f"{t.schema}.{t.owner}: {t.name} -> {s.name}")
            reporter.emit("constraint_renamed", table=f"{t.schema}.{t.owner}",
                          constraint=t.name, to=s.name)
    for s, t in pair(expected, list_constraints(conn, schemas)).renamed:
        if not renamable(t):
            warnings.append(_warn(reporter, t, s.name, INHERITED_CHECK_REASON))
    conn.commit()
    return {"renamed": renamed, "warnings": warnings}


def _warn(reporter: Reporter, target: Constraint, wanted: str, reason: str) -> str:
    message = (f"{target.schema}.{target.owner}: constraint {target.name} keeps its name "
               f"(named {wanted} in the source, same definition): {reason}")
    reporter.emit("warning", constraint=target.label, message=message)
    return message


def _try_rename(conn: psycopg.Connection, target: Constraint, old: str, new: str) -> str | None:
    """Rename inside a savepoint; PostgreSQL's refusal comes back as text."""
    try:
        with conn.transaction():
            _rename(conn, target, old, new)
    except psycopg.Error as exc:
        return exc.diag.message_primary or str(exc).strip().splitlines()[0]
    return None


def _rename(conn: psycopg.Connection, target: Constraint, old: str, new: str) -> None:
    owner = sql.SQL("DOMAIN" if target.domain else "TABLE")
    conn.execute(sql.SQL("ALTER {} {} RENAME CONSTRAINT {} TO {}").format(
        owner, sql.Identifier(target.schema, target.owner), sql.Identifier(old),
        sql.Identifier(new)))
