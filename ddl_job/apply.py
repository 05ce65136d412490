"""apply: create the schemas in production (pre-data), finish them (post-data).

Pre-data runs in ONE transaction together with the check that no target
schema exists, the copy's privileges (privileges.py) and the ownership
marker: either every schema is created, granted and marked, or production
is untouched. Post-data (PKs, indexes, FKs, triggers, policies, matview
refresh) runs after the copy through `pg_restore --jobs`, which builds
independent indexes side by side and PKs before the FKs that need them; the
schemas' default privileges come last.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import psycopg
from psycopg import sql

from . import dump, privileges
from .artifacts import ArtifactStore
from .catalog import existing_schemas, schemas_marked_by
from .conn import Endpoint
from .errors import DataPlaneError
from .manifest import ARCHIVE, POST_DONE, POST_LIST, PRE_SQL, Manifest
from .marker import carries_marker, with_marker
from .progress import NullReporter, Reporter


def apply_pre(target: Endpoint, store: ArtifactStore,
              reporter: Reporter | None = None) -> list[str]:
    """Create the target schemas (tables without PKs, types, functions, views…)."""
    reporter = reporter or NullReporter()
    manifest = Manifest.load(store)
    script = store.read_text(PRE_SQL)
    owners_and_acls = privileges.load(store)
    with target.connect(application_name="pgsr-apply-pre") as conn:
        conn.execute("SET lock_timeout = '30s'")
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
            conn.execute(script)
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
               maintenance_work_mem: str = dump.DEFAULT_MAINTENANCE_WORK_MEM) -> None:
    """Indexes, constraints, triggers, policies… with `jobs` parallel connections."""
    reporter = reporter or NullReporter()
    manifest = Manifest.load(store)
    with target.connect() as conn:
        missing = sorted(set(manifest.targets) - existing_schemas(conn, manifest.targets))
    if missing:
        raise DataPlaneError("PostDataFailed", f"target schemas missing: {missing}")
    if POST_DONE in store.names():
        reporter.emit("already_applied", schemas=manifest.targets)
        return
    with tempfile.TemporaryDirectory(prefix="pgsr-post-") as tmp:
        archive = store.fetch(ARCHIVE, Path(tmp))
        toc_list = store.fetch(POST_LIST, Path(tmp))
        lines = toc_list.read_text().splitlines()
        for number, (chunk, parallel) in enumerate(dump.post_data_passes(lines), 1):
            pass_list = Path(tmp) / f"post-pass-{number}.list"
            pass_list.write_text("".join(line + "\n" for line in chunk))
            dump.restore_list(archive, pass_list, target, jobs if parallel else 1,
                              maintenance_work_mem)
        _apply_default_privileges(target, store, manifest, reporter)
        done = Path(tmp) / POST_DONE
        done.write_text(manifest.restore_id + "\n")
        store.put_file(POST_DONE, done)
    reporter.emit("post_data_applied", schemas=manifest.targets, jobs=jobs)


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
