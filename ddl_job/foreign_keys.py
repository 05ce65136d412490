"""Foreign keys from restored tables to tables outside the restored schemas.

Such a key points at a table the restore leaves alone (`shared.countries`
in production), and production may have deleted rows the restore point
still referenced. Rows inside the restored schemas come from one snapshot,
so keys between restored tables are applied as pg_dump made them; keys that
leave the schemas are applied here instead of by pg_restore, so that a
missing referenced row cannot fail the restore after every row was copied
(nor kill a pg_restore worker in the middle of index builds):

1. before the other post-data entries: `ADD CONSTRAINT … NOT VALID` (catalog
   only: it guards new writes at once, and a comment on the key finds it);
2. after them: `VALIDATE CONSTRAINT`, up to `jobs` at a time (it takes no
   lock that blocks production's writes to the referenced table);
3. a key whose validation fails is kept NOT VALID with a warning naming it
   and counting its orphan rows (`keepNotValid`), or fails the step with
   ForeignKeyViolation (`fail`) once no statement of ours is running.

PostgreSQL before 18 refuses NOT VALID keys on partitioned tables: such a
key is added (and validated) at once when it has no orphan rows; otherwise
it is left out with a warning, or fails the step.

Extract finds these keys by catalog (the post-data TOC entries' OIDs,
pg_constraint.confrelid's namespace), never by reading SQL text, and they
travel in the manifest.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from .conn import Endpoint
from .dump import PG_CONSTRAINT, TocEntry
from .errors import DataPlaneError, InvalidRequest
from .progress import Reporter

KEEP_NOT_VALID = "keepNotValid"
FAIL = "fail"
POLICIES = (KEEP_NOT_VALID, FAIL)
LOCK_TIMEOUT = "30s"
NOT_VALID_ON_PARTITIONED = 180000   # server_version from which a partitioned table may
#                                     hold a NOT VALID foreign key
_APP = "pgsr-apply-post"

# Names come back quoted by the server itself (quote_ident knows keywords);
# pg_get_constraintdef with search_path = pg_catalog qualifies the
# referenced table.
_FIND_SQL = """
SELECT c.oid, n.nspname, t.relname, c.conname, pg_get_constraintdef(c.oid),
       ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY AS k(num, i)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.num
             ORDER BY k.i),
       rn.nspname, r.relname,
       ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY AS k(num, i)
             JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.num
             ORDER BY k.i),
       c.confmatchtype = 'f', t.relkind = 'p', r.relkind = 'p',
       quote_ident(n.nspname) || '.' || quote_ident(t.relname) || '.' || quote_ident(c.conname),
       quote_ident(rn.nspname) || '.' || quote_ident(r.relname)
FROM pg_constraint c
JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_class r ON r.oid = c.confrelid JOIN pg_namespace rn ON rn.oid = r.relnamespace
WHERE c.contype = 'f' AND c.convalidated AND c.oid = ANY(%(oids)s::oid[])
  AND NOT (rn.nspname = ANY(%(schemas)s::text[]))
ORDER BY n.nspname, t.relname, c.conname
"""


@dataclass(frozen=True)
class OutsideKey:
    """A restored table's foreign key to a table outside the restored schemas."""

    dump_id: int             # its post-data TOC entry (left out of pg_restore's list)
    schema: str              # the restored (target) schema
    table: str
    name: str
    definition: str          # pg_get_constraintdef: FOREIGN KEY (…) REFERENCES s.t(…) …
    columns: tuple[str, ...]
    ref_schema: str
    ref_table: str
    ref_columns: tuple[str, ...]
    match_full: bool
    partitioned: bool        # the restored table is partitioned
    ref_partitioned: bool
    label: str               # "schema".table."name", quoted by the server
    references: str          # the referenced table, quoted by the server

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "OutsideKey":
        return cls(**{**data, "columns": tuple(data["columns"]),
                      "ref_columns": tuple(data["ref_columns"])})


def validate_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise InvalidRequest("InvalidArgument",
                             f"invalid foreign keys policy must be one of {list(POLICIES)}, "
                             f"not {policy!r}")
    return policy


# -- extract: find them --------------------------------------------------------------
def find_outside_keys(source: Endpoint, post: list[TocEntry],
                      schemas: list[str]) -> list[OutsideKey]:
    """The post-data FK entries whose referenced table is outside `schemas`.

    Keys already NOT VALID in the copy are left to pg_dump (dumped NOT VALID,
    they cannot fail)."""
    dump_ids = {e.oid: e.dump_id for e in post if e.catalog == PG_CONSTRAINT}
    if not dump_ids:
        return []
    with source.connect(application_name="pgsr-extract") as conn:
        conn.execute("SET LOCAL search_path = pg_catalog")
        rows = conn.execute(_FIND_SQL, {"oids": list(dump_ids),
                                        "schemas": schemas}).fetchall()
    return [OutsideKey(dump_ids[int(r[0])], r[1], r[2], r[3], r[4], tuple(r[5]), r[6], r[7],
                       tuple(r[8]), bool(r[9]), bool(r[10]), bool(r[11]), r[12], r[13])
            for r in rows]


# -- apply post: add, validate, report -----------------------------------------------
@dataclass
class KeyReport:
    """What became of the outside keys: the step's result and its warnings."""

    warnings: list[str] = field(default_factory=list)
    not_valid: list[dict[str, Any]] = field(default_factory=list)
    omitted: list[dict[str, Any]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def to_result(self) -> dict[str, Any]:
        return {"warnings": self.warnings, "notValidForeignKeys": self.not_valid,
                "omittedForeignKeys": self.omitted}


def _orphan_rows(count: int | None) -> str:
    if count is None:
        return "an unknown number of orphan rows"
    return f"{count} orphan row{'' if count == 1 else 's'}"


def _settle(key: OutsideKey, orphans: int | None, *, kept: bool, report: KeyReport,
            reporter: Reporter) -> None:
    """A key production's rows no longer satisfy: note it (the policy is applied later)."""
    what = (f"{_orphan_rows(orphans)} (restored rows whose key has no match in "
            f"{key.references} in production)")
    report.violations.append(f"foreign key {key.label} (references {key.references}): {what}")
    entry = {"constraint": key.label, "references": key.references, "orphanRows": orphans,
             "schema": key.schema, "table": key.table, "name": key.name}
    if kept:
        message = (f"foreign key {key.label} is kept NOT VALID: {what}; it still checks "
                   "new and updated rows (VALIDATE CONSTRAINT once the orphans are fixed)")
        report.not_valid.append(entry)
    else:
        message = (f"foreign key {key.label} was not restored: {what}, and this PostgreSQL "
                   "version cannot keep a NOT VALID foreign key on a partitioned table")
        report.omitted.append(entry)
    report.warnings.append(message)
    reporter.emit("warning", constraint=key.label, orphan_rows=orphans, message=message)


def raise_on_violations(report: KeyReport, policy: str) -> None:
    """`fail`: the restore ends here (the caller's cleanup drops the schemas)."""
    if policy == FAIL and report.violations:
        raise DataPlaneError("ForeignKeyViolation", "; ".join(report.violations))


def _add_statement(key: OutsideKey, *, not_valid: bool) -> sql.Composed:
    only = sql.SQL("") if key.partitioned else sql.SQL("ONLY ")
    # The definition is the server's own rendering of the constraint.
    return sql.SQL("ALTER TABLE {only}{table} ADD CONSTRAINT {name} {definition}{nv}").format(
        only=only, table=sql.Identifier(key.schema, key.table), name=sql.Identifier(key.name),
        definition=sql.SQL(key.definition), nv=sql.SQL(" NOT VALID" if not_valid else ""))


def orphan_query(key: OutsideKey) -> sql.Composed:
    """Rows of the restored table that the key would reject.

    MATCH SIMPLE checks only rows whose key columns are all set; MATCH FULL
    also rejects rows with some, but not all, of them set."""
    child = [sql.Identifier("child", c) for c in key.columns]
    parent = [sql.Identifier("parent", c) for c in key.ref_columns]
    all_set = sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(c) for c in child)
    matches = sql.SQL(" AND ").join(sql.SQL("{} = {}").format(p, c)
                                    for p, c in zip(parent, child))
    rejected = sql.SQL("({all_set}) AND NOT EXISTS (SELECT 1 FROM {ponly}{ref} AS {p} "
                       "WHERE {matches})").format(
        all_set=all_set, ponly=sql.SQL("" if key.ref_partitioned else "ONLY "),
        ref=sql.Identifier(key.ref_schema, key.ref_table), p=sql.Identifier("parent"),
        matches=matches)
    if key.match_full and len(child) > 1:
        some_set = sql.SQL(" OR ").join(sql.SQL("{} IS NOT NULL").format(c) for c in child)
        rejected = sql.SQL("({}) OR (({}) AND NOT ({}))").format(rejected, some_set, all_set)
    return sql.SQL("SELECT count(*) FROM {only}{table} AS {c} WHERE {rejected}").format(
        only=sql.SQL("" if key.partitioned else "ONLY "),
        table=sql.Identifier(key.schema, key.table), c=sql.Identifier("child"),
        rejected=rejected)


def count_orphans(conn: psycopg.Connection, key: OutsideKey) -> int | None:
    """None when production will not let us look (e.g. no SELECT on the referenced table)."""
    try:
        with conn.transaction():
            row = conn.execute(orphan_query(key)).fetchone()
    except psycopg.Error:
        return None
    return int(row[0]) if row else None


def _failed(key: OutsideKey, target: Endpoint, exc: psycopg.Error) -> DataPlaneError:
    text = exc.diag.message_primary or str(exc).splitlines()[0]
    return DataPlaneError("PostDataFailed",
                          f"foreign key {key.label}: {target.sanitize(text)}")


def _validated(conn: psycopg.Connection, key: OutsideKey) -> bool | None:
    """None: the key is not there yet; else whether it is validated (a resumed run)."""
    row = conn.execute(
        "SELECT c.convalidated FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
        "JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE n.nspname = %s AND t.relname = %s AND c.conname = %s",
        (key.schema, key.table, key.name)).fetchone()
    return None if row is None else bool(row[0])


def add_not_valid(target: Endpoint, keys: list[OutsideKey], report: KeyReport,
                  reporter: Reporter) -> list[OutsideKey]:
    """Step 1: add each key NOT VALID; return those left to validate."""
    pending: list[OutsideKey] = []
    if not keys:
        return pending
    with target.connect(autocommit=True, application_name=_APP) as conn:
        conn.execute("SELECT set_config('lock_timeout', %s, false)", (LOCK_TIMEOUT,))
        for key in keys:
            state = _validated(conn, key)
            if state is None:
                state = _add(conn, key, target, report, reporter)
            if state is False:
                pending.append(key)
    return pending


def _add(conn: psycopg.Connection, key: OutsideKey, target: Endpoint, report: KeyReport,
         reporter: Reporter) -> bool | None:
    """Add one key NOT VALID (False), validated at once (True), or not at all (None)."""
    if key.partitioned and conn.info.server_version < NOT_VALID_ON_PARTITIONED:
        return _add_validated(conn, key, target, report, reporter)
    try:
        with conn.transaction():
            conn.execute(_add_statement(key, not_valid=True))
    except psycopg.Error as exc:
        raise _failed(key, target, exc) from None
    reporter.emit("foreign_key_added", constraint=key.label, references=key.references,
                  not_valid=True)
    return False


def _add_validated(conn: psycopg.Connection, key: OutsideKey, target: Endpoint,
                   report: KeyReport, reporter: Reporter) -> bool | None:
    """A key that cannot be NOT VALID: add it if production satisfies it, else report."""
    orphans = count_orphans(conn, key)
    if orphans == 0:
        try:
            with conn.transaction():
                conn.execute(_add_statement(key, not_valid=False))
            reporter.emit("foreign_key_added", constraint=key.label,
                          references=key.references, not_valid=False)
            return True
        except psycopg.errors.ForeignKeyViolation:
            orphans = count_orphans(conn, key)   # production changed in between
        except psycopg.Error as exc:
            raise _failed(key, target, exc) from None
    _settle(key, orphans, kept=False, report=report, reporter=reporter)
    return None


def _validate_one(target: Endpoint, key: OutsideKey) -> tuple[bool, int | None]:
    """(valid, orphan rows when not: None if they cannot be counted)."""
    with target.connect(autocommit=True, application_name=_APP) as conn:
        conn.execute("SELECT set_config('lock_timeout', %s, false)", (LOCK_TIMEOUT,))
        try:
            conn.execute(sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
                sql.Identifier(key.schema, key.table), sql.Identifier(key.name)))
            return True, 0
        except psycopg.errors.ForeignKeyViolation:
            return False, count_orphans(conn, key)
        except psycopg.Error as exc:
            raise _failed(key, target, exc) from None


def validate(target: Endpoint, keys: list[OutsideKey], report: KeyReport, *, jobs: int,
             reporter: Reporter) -> None:
    """Step 2: validate, `jobs` at a time; a failing key stays NOT VALID (reported).

    Every validation finishes before this returns: nothing of ours still runs
    when a `fail` policy ends the step and cleanup drops the schemas."""
    if not keys:
        return
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(keys))),
                            thread_name_prefix="fk-validate") as pool:
        outcomes = list(pool.map(lambda key: _validate_one(target, key), keys))
    for key, (valid, orphans) in zip(keys, outcomes):
        if valid:
            reporter.emit("foreign_key_validated", constraint=key.label)
        else:
            _settle(key, orphans, kept=True, report=report, reporter=reporter)
