"""apply: create the schemas in production (pre-data), finish them (post-data).

Pre-data runs in ONE transaction together with the check that no target
schema exists, the casts involving the schemas (`casts.py`), the copy's
owners and privileges (`privileges.py`; the schemas' own right after they
are created, with CREATE lent to their objects' owners: `schema_grants.py`)
and the ownership marker: either
every schema is created, granted and marked, or
production is untouched. Post-data (PKs, indexes, FKs, triggers, policies,
matview refresh) runs after the copy through `pg_restore --jobs`, which
builds independent indexes side by side and PKs before the FKs that need
them. Foreign keys to tables outside the restored schemas are added NOT
VALID and validated by `foreign_keys`, so that production rows deleted since
the restore point cannot fail the restore after the copy; then constraints
PostgreSQL created under other names than the copy's (clones on partitions)
are renamed (`constraints.py`); the schemas' default privileges come last.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from . import casts, clients, constraints, dump, foreign_keys, privileges, schema_grants
from .artifacts import ArtifactStore
from .catalog import existing_schemas, schemas_marked_by
from .conn import Endpoint
from .errors import DataPlaneError
from .manifest import (
    ARCHIVE,
    CONSTRAINTS,
    POST_DONE,
    POST_LIST,
    POST_RESULT,
    PRE_SCHEMAS,
    PRE_SQL,
    Manifest,
)
from .marker import carries_marker, with_marker
from .progress import NullReporter, Reporter


def apply_pre(target: Endpoint, store: ArtifactStore,
              reporter: Reporter | None = None) -> list[str]:
    """Create the target schemas (tables without PKs, types, functions, views…)."""
    reporter = reporter or NullReporter()
    clients.require(target)   # before production is changed: post-data needs it
    manifest = Manifest.load(store)
    names = manifest.pre_parts or [PRE_SQL]
    parts = [store.read_text(name) for name in names]
    planned = casts.load(store)
    owners_and_acls = privileges.load(store)
    with target.connect(application_name="pgsr-apply-pre") as conn:
        _session_timeouts(conn)
        existing = existing_schemas(conn, manifest.targets)
        ours = schemas_marked_by(conn, manifest.targets, manifest.restore_id)
        if existing and ours == set(manifest.targets):
            reporter.emit("already_applied", schemas=manifest.targets)
            return manifest.targets  # a resumed run: this restore created them
        taken = sorted(existing)
        if taken:
            raise DataPlaneError(
                "TargetExists",
                f"schemas already exist in {target.describe()}: {taken}; nothing was changed")
        try:
            for index, script in enumerate(parts):
                conn.execute(script)
                if names[index] == PRE_SCHEMAS and owners_and_acls is not None:
                    # before the objects: their owners may need the schemas' grants
                    schema_grants.prepare(conn, owners_and_acls, manifest.targets, reporter)
                # pg_dump -n leaves casts out: each after the part that made
                # what it needs, before anything that may use it
                casts.create(conn, [c for c in planned
                                    if min(c.after, len(parts) - 1) == index], reporter)
            _align_multirange_owners(conn, manifest.targets, reporter)
            if owners_and_acls is not None:
                # every GRANT (extract leaves pg_dump's out), as each grantor
                privileges.reconcile(conn, owners_and_acls, manifest.targets, reporter)
            _mark_created(conn, manifest)
            conn.commit()
        except psycopg.Error as exc:
            conn.rollback()
            raise DataPlaneError("PreDataFailed",
                                 f"pre-data rolled back, production unchanged: "
                                 f"{_describe(exc, target)}") from None
    reporter.emit("created", schemas=manifest.targets)
    return manifest.targets


def _session_timeouts(conn: psycopg.Connection) -> None:
    """No statement or transaction limit from production's defaults (pre-data
    is one transaction, as long as the schemas are big), but a lock wait
    bounded: a DDL queued behind a long production transaction would block
    every query queued behind it in turn."""
    conn.execute("SET statement_timeout = 0")
    conn.execute("SET idle_in_transaction_session_timeout = 0")
    if conn.info.server_version >= 170000:
        conn.execute("SET transaction_timeout = 0")
    conn.execute("SET lock_timeout = '30s'")


def _align_multirange_owners(conn: psycopg.Connection, schemas: list[str],
                             reporter: Reporter) -> None:
    """Give each restored range type's multirange the range's owner.

    PostgreSQL makes the multirange (and its array) for the role that runs
    `CREATE TYPE … AS RANGE`, and pg_dump's `ALTER TYPE … OWNER` on the range
    does not carry over to it (PostgreSQL 15), so without this it would
    belong to the restoring role. The multirange may live in another schema
    (`multirange_type_name`), where a non-superuser restoring role may not
    give it away (the new owner needs CREATE there): that is a warning, not
    a failed restore. Constructor functions are left alone: PostgreSQL always
    gives them to the bootstrap superuser, in the source too.
    """
    rows = conn.execute(
        """
        SELECT mn.nspname, m.typname, pg_get_userbyid(r.typowner)
        FROM pg_range g
        JOIN pg_type r ON r.oid = g.rngtypid
        JOIN pg_namespace rn ON rn.oid = r.typnamespace
        JOIN pg_type m ON m.oid = g.rngmultitypid
        JOIN pg_namespace mn ON mn.oid = m.typnamespace
        WHERE rn.nspname = ANY(%s) AND m.typowner <> r.typowner
        ORDER BY 1, 2
        """, (schemas,)).fetchall()
    for schema, name, owner in rows:
        try:
            with conn.transaction():   # a savepoint: a refusal keeps the rest
                conn.execute(sql.SQL("ALTER TYPE {} OWNER TO {}").format(
                    sql.Identifier(schema, name), sql.Identifier(owner)))
        except psycopg.errors.InsufficientPrivilege as exc:
            reporter.emit("warning", type=f"{schema}.{name}", message=(
                f"multirange type {schema}.{name} keeps the restoring role as owner "
                f"instead of {owner}: {exc.diag.message_primary or exc}"))


def _mark_created(conn: psycopg.Connection, manifest: Manifest) -> None:
    """Make sure each created schema carries this restore's marker."""
    for old, new in manifest.schemas.items():
        row = conn.execute(
            "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s",
            (new,)).fetchone()
        if row is None:
            raise DataPlaneError("PreDataFailed", f"pre-data did not create schema {new!r}")
        if not carries_marker(row[0], manifest.restore_id):
            conn.execute(sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
                sql.Identifier(new),
                sql.Literal(with_marker(row[0], manifest.restore_id, old))))


def apply_post(target: Endpoint, store: ArtifactStore, *, jobs: int = 2,
               reporter: Reporter | None = None,
               maintenance_work_mem: str = dump.DEFAULT_MAINTENANCE_WORK_MEM,
               invalid_foreign_keys: str = foreign_keys.KEEP_NOT_VALID) -> dict[str, Any]:
    """Indexes, constraints, triggers, policies… with `jobs` parallel connections;
    then constraint names made equal to the copy's (`constraints.py`).

    Returns {"schemas", "warnings", "notValidForeignKeys", "omittedForeignKeys",
    "renamed"}: what became of the foreign keys to tables outside the schemas
    whose rows production no longer has (`invalid_foreign_keys`: keepNotValid
    or fail), and the constraints renamed."""
    reporter = reporter or NullReporter()
    foreign_keys.validate_policy(invalid_foreign_keys)
    clients.require(target)
    manifest = Manifest.load(store)
    with target.connect() as conn:
        missing = sorted(set(manifest.targets) - existing_schemas(conn, manifest.targets))
    if missing:
        raise DataPlaneError("PostDataFailed", f"target schemas missing: {missing}")
    if POST_DONE in store.names():
        reporter.emit("already_applied", schemas=manifest.targets)
        return post_result(store, manifest)
    keys = [foreign_keys.OutsideKey.from_dict(k) for k in manifest.outside_foreign_keys]
    report = foreign_keys.KeyReport()
    with tempfile.TemporaryDirectory(prefix="pgsr-post-") as tmp:
        archive = store.fetch(ARCHIVE, Path(tmp))
        toc_list = store.fetch(POST_LIST, Path(tmp))
        # Before the passes: a comment on such a key must find it.
        pending = foreign_keys.add_not_valid(target, keys, report, reporter)
        foreign_keys.raise_on_violations(report, invalid_foreign_keys)
        lines = dump.without_entries(toc_list.read_text().splitlines(),
                                     {key.dump_id for key in keys})
        for number, (chunk, parallel) in enumerate(dump.post_data_passes(lines), 1):
            pass_list = Path(tmp) / f"post-pass-{number}.list"
            pass_list.write_text("".join(line + "\n" for line in chunk))
            dump.restore_list(archive, pass_list, target, jobs if parallel else 1,
                              maintenance_work_mem)
        foreign_keys.validate(target, pending, report, jobs=jobs, reporter=reporter)
        foreign_keys.raise_on_violations(report, invalid_foreign_keys)
        names = rename_constraints(target, store, manifest, reporter)
        keys = report.to_result()
        result = {"schemas": manifest.targets, **keys, "renamed": names["renamed"],
                  "warnings": keys["warnings"] + names["warnings"]}
        _apply_default_privileges(target, store, manifest, reporter)
        _put_json(store, Path(tmp) / POST_RESULT, result)
        done = Path(tmp) / POST_DONE
        done.write_text(manifest.restore_id + "\n")
        store.put_file(POST_DONE, done)
    reporter.emit("post_data_applied", schemas=manifest.targets, jobs=jobs,
                  not_valid_foreign_keys=len(report.not_valid),
                  omitted_foreign_keys=len(report.omitted))
    return result


def post_result(store: ArtifactStore, manifest: Manifest) -> dict[str, Any]:
    """What post-data reported (a resumed run and verify read it back)."""
    if POST_RESULT in store.names():
        return json.loads(store.read_text(POST_RESULT))
    return {"schemas": manifest.targets, **foreign_keys.KeyReport().to_result(), "renamed": []}


def _put_json(store: ArtifactStore, path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False))
    store.put_file(path.name, path)


def rename_constraints(target: Endpoint, store: ArtifactStore, manifest: Manifest,
                       reporter: Reporter) -> dict[str, list[str]]:
    """Give production's constraints the copy's names where pg_dump could not."""
    if CONSTRAINTS not in store.names():   # artifacts of an older extract
        return {"renamed": [], "warnings": []}
    expected = constraints.from_json(store.read_text(CONSTRAINTS))
    with target.connect(application_name="pgsr-apply-post") as conn:
        try:
            return constraints.rename_like_source(conn, expected, manifest.targets,
                                                  manifest.restore_id, reporter)
        except psycopg.Error as exc:
            raise DataPlaneError("PostDataFailed",
                                 f"renaming constraints failed: {_describe(exc, target)}"
                                 ) from None


def _apply_default_privileges(target: Endpoint, store: ArtifactStore, manifest: Manifest,
                              reporter: Reporter) -> None:
    """The copy's `ALTER DEFAULT PRIVILEGES … IN SCHEMA`, last: they must not reach
    the restored objects (extract leaves pg_dump's DEFAULT ACL entries out)."""
    owners_and_acls = privileges.load(store)
    if owners_and_acls is None:
        return
    with target.connect(application_name="pgsr-apply-post") as conn:
        privileges.reconcile_default_privileges(conn, owners_and_acls, manifest.targets,
                                                reporter)
        conn.commit()


def _describe(exc: psycopg.Error, endpoint: Endpoint) -> str:
    diag = exc.diag
    parts = [diag.message_primary or str(exc).splitlines()[0]]
    if diag.context:
        parts.append(f"(context: {diag.context.splitlines()[0]})")
    return endpoint.sanitize(" ".join(parts))
