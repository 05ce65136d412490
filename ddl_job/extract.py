"""extract: from the disposable restored copy, produce the DDL to create the
schemas in production under their new names.

The schemas are renamed *inside the copy* (`ALTER SCHEMA … RENAME`), and the
schema references that PostgreSQL keeps as text (function bodies,
`search_path` settings, dynamic SQL) are rewritten there too; then pg_dump
dumps the renamed schemas. No SQL text is ever edited with regexes
(docs/facts.md, defects 2-5). Because the copy is modified, extract refuses to
run without an explicit "source is disposable" acknowledgement and refuses
when source and target are the same database.

Two things pg_dump alone gets wrong are prepared here too: inheritance
children whose column order it would change are detached in the copy for
the dump and attached again by pre-data (`inheritance.py`), and the copy's
constraints are recorded so that apply-post can give production's the same
names (`constraints.py`). Casts involving the schemas, which belong to no
schema and which `pg_dump -n` therefore leaves out, are read from the copy
for pre-data to create (`casts.py`).
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import psycopg
from psycopg import sql

from . import casts, clients, constraints, dump, foreign_keys, inheritance, privileges
from .artifacts import ArtifactStore
from .catalog import existing_schemas, schemas_marked_by
from .caveats import report_caveats
from .conn import Endpoint, refuse_same_database
from .errors import DataPlaneError
from .links import cut_cross_schema_links
from .manifest import (
    ARCHIVE,
    CONSTRAINTS,
    FULL_SQL,
    POST_LIST,
    POST_SQL,
    PRE_SCHEMAS,
    PRE_SQL,
    Manifest,
)
from .marker import carries_marker, validate_restore_id, with_marker
from .names import target_names
from .progress import NullReporter, Reporter
from .rewrite import Rewriter, rewrite_sql

MODES = ("copy", "dms")


def extract(source: Endpoint, target: Endpoint, schemas: list[str], suffix: str,
            store: ArtifactStore, *, restore_id: str, mode: str = "copy",
            disposable_source: bool = False, reporter: Reporter | None = None) -> Manifest:
    """Rename in the copy, dump, split, and store the artifacts + manifest."""
    reporter = reporter or NullReporter()
    require_disposable(disposable_source)
    validate_restore_id(restore_id)
    if mode not in MODES:
        raise DataPlaneError("InvalidMode", f"mode must be one of {MODES}, not {mode!r}")
    mapping = target_names(schemas, suffix)
    clients.require(source, target)   # before the copy is changed
    dump.require_comment_safe(list(mapping), source)

    with source.connect(application_name="pgsr-extract") as src, \
            target.connect(application_name="pgsr-extract") as tgt:
        refuse_same_database(src, tgt, source, target)
        check_targets_free(tgt, mapping, target, restore_id)
        # old and new names: a resumed run finds some schemas already renamed
        privileges.check_roles_exist(src, tgt, list(mapping) + list(mapping.values()),
                                     target.describe())
        tgt.rollback()
        src.rollback()
        reporter.emit("checked", schemas=mapping, target=target.describe())
        rewritten, warnings = rename_in_copy(src, mapping, restore_id, source, reporter)
        version = src.info.server_version
        owners_and_acls = privileges.collect(src, list(mapping.values()))
        src.rollback()

    with tempfile.TemporaryDirectory(prefix="pgsr-extract-") as tmp:
        workdir = Path(tmp)
        relinks = inheritance.plan(source, list(mapping.values()), store, workdir, reporter)
        warnings += [relink.warning() for relink in relinks]
        with inheritance.detached(source, relinks):
            outside, parts = write_artifacts(
                source, _namespace_oids(source, list(mapping.values())), mapping, mode,
                workdir, store, relinks)
        privileges.save(owners_and_acls, store, workdir)
        manifest = Manifest(restore_id=restore_id, mode=mode, schemas=mapping,
                            source_database=source.dbname, server_version=version,
                            rewritten_functions=rewritten, warnings=warnings,
                            outside_foreign_keys=[key.to_dict() for key in outside],
                            pre_parts=parts)
        manifest.save(store, workdir)
    reporter.emit("artifacts", location=store.location, files=store.names())
    return manifest


def require_disposable(disposable_source: bool) -> None:
    """Extract changes the source: only with the caller's acknowledgement."""
    if not disposable_source:
        raise DataPlaneError(
            "SourceNotDisposable",
            "extract renames the schemas inside the source database; confirm that the "
            "source is a disposable restored copy (--disposable-source)")


def check_targets_free(tgt: psycopg.Connection, mapping: dict[str, str],
                       target: Endpoint, restore_id: str) -> None:
    """Refuse if any target schema already exists in production (unless this
    very restore created it: a resumed run)."""
    targets = list(mapping.values())
    taken = sorted(existing_schemas(tgt, targets) - schemas_marked_by(tgt, targets, restore_id))
    if taken:
        raise DataPlaneError(
            "TargetExists",
            f"schemas already exist in {target.describe()}: {taken}; nothing was changed "
            "(choose another suffix or drop them)")


def rename_in_copy(src: psycopg.Connection, mapping: dict[str, str], restore_id: str,
                   source: Endpoint, reporter: Reporter) -> tuple[list[str], list[str]]:
    """Rename the schemas in the copy and rewrite text references; one transaction.

    Returns the rewritten routines and the warnings (caveats, links cut).

    Idempotent: a schema already renamed by this restore (its marker is on the
    new name) is left as it is, so a re-run after a crash continues.
    """
    present = existing_schemas(src, list(mapping) + list(mapping.values()))
    missing, clashing, to_rename = [], [], {}
    for old, new in mapping.items():
        if old in present and new in present:
            clashing.append(new)
        elif old in present:
            to_rename[old] = new
        elif new in present and carries_marker(_schema_comment(src, new), restore_id):
            reporter.emit("already_renamed", schema=old, target=new)
        else:
            missing.append(old)
    if missing:
        raise DataPlaneError("MissingSchema",
                             f"schemas not found in source {source.describe()}: {missing} "
                             "(names are matched exactly, case and spaces included)")
    if clashing:
        raise DataPlaneError("NameCollision",
                             f"the source copy already has schemas named {clashing}; "
                             "choose another suffix")
    _refuse_extension_members(src, list(mapping))
    # A resumed run finds some schemas already renamed: look at them as they are.
    current = [old if old in to_rename else new for old, new in mapping.items()]
    warnings = report_caveats(src, current, reporter)
    warnings += cut_cross_schema_links(src, list(to_rename), reporter)

    src.execute("SET LOCAL search_path = pg_catalog")
    src.execute("SET LOCAL check_function_bodies = off")
    src.execute("SET LOCAL lock_timeout = '60s'")
    for old, new in to_rename.items():
        comment = _schema_comment(src, old)
        src.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
            sql.Identifier(old), sql.Identifier(new)))
        src.execute(sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
            sql.Identifier(new), sql.Literal(with_marker(comment, restore_id, old))))
        reporter.emit("renamed", schema=old, target=new)
    rewritten = rewrite_routines(src, mapping, reporter)
    src.commit()
    return rewritten, warnings


def _schema_comment(conn: psycopg.Connection, name: str) -> str | None:
    row = conn.execute(
        "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s",
        (name,)).fetchone()
    return row[0] if row else None


def _refuse_extension_members(src: psycopg.Connection, schemas: list[str]) -> None:
    """Extension objects are not dumped with a schema: production would lack them."""
    rows = src.execute(
        """
        SELECT DISTINCT e.extname FROM pg_extension e
        JOIN pg_namespace n ON n.oid = e.extnamespace WHERE n.nspname = ANY(%s)
        """, (schemas,)).fetchall()
    if rows:
        raise DataPlaneError(
            "ExtensionInSchema",
            f"extensions {[r[0] for r in rows]} are installed inside the requested schemas; "
            "pg_dump does not dump extension members, so the restored schema would be "
            "incomplete. Install the extension in another schema or restore by hand.")


def rewrite_routines(src: psycopg.Connection, mapping: dict[str, str],
                     reporter: Reporter) -> list[str]:
    """Rewrite old schema names in function/procedure text inside the copy."""
    rows = src.execute(
        """
        SELECT p.oid, p.oid::regprocedure::text, l.lanname, p.prosqlbody IS NOT NULL,
               p.prosrc, p.proconfig
        FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace
        JOIN pg_language l ON l.oid = p.prolang
        WHERE n.nspname = ANY(%s) AND p.prokind IN ('f', 'p')
        ORDER BY p.oid
        """, (list(mapping.values()),)).fetchall()
    rewritten: list[str] = []
    qualifiers = column_qualifiers(src, mapping)
    for oid, signature, language, atomic, body, config in rows:
        if language in ("sql", "plpgsql") and not atomic:
            definition = src.execute("SELECT pg_get_functiondef(%s)", (oid,)).fetchone()[0]
            new_definition, changes = rewrite_sql(definition, mapping, qualifiers)
            if changes:
                src.execute(new_definition)
        else:
            changes = _rewrite_search_path_setting(src, signature, config or [], mapping)
            if language not in ("sql", "plpgsql") and body and _mentions(body, mapping):
                reporter.emit("warning", routine=signature, message=(
                    f"{language} routine mentions an old schema name; its body is not "
                    "rewritten (only sql and plpgsql are)"))
        if changes:
            rewritten.append(signature)
            reporter.emit("rewritten", routine=signature, changes=changes)
    return rewritten


def column_qualifiers(src: psycopg.Connection, mapping: dict[str, str]) -> dict[str, set[str]]:
    """For each old name, the column names `old.x` may mean, that are not schema objects.

    A table, alias or plpgsql variable named like its schema makes `tenant.x`
    in a routine body name a column `x` of some row, not the object `x` of
    schema `tenant`. Candidates: columns of relations named like the schema
    and of every relation in the renamed schemas, minus every relation,
    routine, type, collation and text search object of the schema; the
    rewriter leaves such `tenant.x` alone.
    """
    rows = src.execute(
        """
        WITH m(old, new) AS (SELECT * FROM unnest(%s::text[], %s::text[])),
        ns AS (SELECT m.old, n.oid FROM m JOIN pg_namespace n ON n.nspname = m.new),
        members AS (
            SELECT ns.old, c.relname AS name FROM ns JOIN pg_class c ON c.relnamespace = ns.oid
            UNION SELECT ns.old, p.proname FROM ns JOIN pg_proc p ON p.pronamespace = ns.oid
            UNION SELECT ns.old, t.typname FROM ns JOIN pg_type t ON t.typnamespace = ns.oid
            UNION SELECT ns.old, o.collname FROM ns
                JOIN pg_collation o ON o.collnamespace = ns.oid
            UNION SELECT ns.old, f.cfgname FROM ns
                JOIN pg_ts_config f ON f.cfgnamespace = ns.oid
            UNION SELECT ns.old, d.dictname FROM ns
                JOIN pg_ts_dict d ON d.dictnamespace = ns.oid),
        sources AS (
            SELECT m.old, c.oid FROM m JOIN pg_class c ON c.relname = m.old
            UNION SELECT m.old, c.oid FROM m, pg_class c
                WHERE c.relnamespace IN (SELECT oid FROM ns))
        SELECT DISTINCT s.old, a.attname FROM sources s
        JOIN pg_class c ON c.oid = s.oid AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        WHERE NOT EXISTS (SELECT 1 FROM members x WHERE x.old = s.old AND x.name = a.attname)
        """, (list(mapping), list(mapping.values()))).fetchall()
    qualifiers: dict[str, set[str]] = {}
    for old, column in rows:
        qualifiers.setdefault(old, set()).add(column)
    return qualifiers


def _rewrite_search_path_setting(src: psycopg.Connection, signature: str, config: list[str],
                                 mapping: dict[str, str]) -> list[str]:
    """`SET search_path` of routines whose body is not text (BEGIN ATOMIC, C…)."""
    for entry in config:
        name, _, value = entry.partition("=")
        if name != "search_path":
            continue
        rewriter = Rewriter(mapping)
        new_value = rewriter.rewrite(value, search_path_context=True)
        if rewriter.changes:
            src.execute("SELECT set_config('search_path', %s, true)", (new_value,))
            # `signature` is regprocedure text: quoted by the server itself.
            src.execute(sql.SQL("ALTER ROUTINE {} SET search_path FROM CURRENT").format(
                sql.SQL(signature)))
            src.execute("SET LOCAL search_path = pg_catalog")
        return rewriter.changes
    return []


def _mentions(body: str, mapping: dict[str, str]) -> bool:
    return any(old in body for old in mapping)


def _namespace_oids(source: Endpoint, names: list[str]) -> set[int]:
    with source.connect() as conn:
        rows = conn.execute("SELECT oid FROM pg_namespace WHERE nspname = ANY(%s)",
                            (names,)).fetchall()
    return {int(r[0]) for r in rows}


def _primary_key_oids(source: Endpoint, names: list[str]) -> set[int]:
    with source.connect() as conn:
        rows = conn.execute(
            """
            SELECT c.oid FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
            WHERE n.nspname = ANY(%s) AND c.contype = 'p'
            """, (names,)).fetchall()
    return {int(r[0]) for r in rows}


def write_artifacts(source: Endpoint, schema_oids: set[int], mapping: dict[str, str],
                    mode: str, workdir: Path, store: ArtifactStore,
                    relinks: list[inheritance.Relink] | None = None
                    ) -> tuple[list[foreign_keys.OutsideKey], list[str]]:
    """Dump, check the archive holds exactly our schemas, split, render, store.

    `relinks`: children detached in the copy for the dump; pre-data (and the
    full rendering) end with the statements that attach them again. Returns
    the foreign keys to tables outside the schemas (post-data applies them
    its own way) and the parts pre-data is applied in (casts between them).
    """
    targets = list(mapping.values())
    archive = workdir / ARCHIVE
    dump.dump_schemas(source, targets, archive)
    pre = dump.toc(archive, "pre-data", source)
    post = dump.toc(archive, "post-data", source)
    dumped = {e.oid for e in pre if e.catalog == dump.PG_NAMESPACE}
    if dumped != schema_oids:
        raise DataPlaneError("DumpFailed",
                             "the dump does not hold exactly the requested schemas "
                             f"({len(dumped)} dumped, {len(schema_oids)} expected)")
    # owners and ACLs: privileges.py, as each grantor where PostgreSQL allows
    pre = [e for e in pre if not dump.is_privilege_entry(e)]
    post = [e for e in post if not dump.is_privilege_entry(e)]
    if mode == "dms":
        # DMS needs primary keys on the target during its full load.
        pks = _primary_key_oids(source, targets)
        moved = [e for e in post if e.catalog == dump.PG_CONSTRAINT and e.oid in pks]
        pre += moved
        post = [e for e in post if e not in moved]
    pre_list = dump.write_list(pre, workdir / "pre-data.list")
    post_list = dump.write_list(post, workdir / POST_LIST)
    dump.render_sql(archive, pre_list, workdir / PRE_SQL, source)
    dump.render_sql(archive, post_list, workdir / POST_SQL, source)
    dump.render_sql(archive, None, workdir / FULL_SQL, source)
    with source.connect(application_name="pgsr-extract") as conn:
        found = casts.find(conn, targets)
        parts = _render_pre_parts(archive, pre, found, source, workdir, store, conn)
        if relinks:
            trailer = _RELINK_HEADER + inheritance.statements(relinks).as_string(conn)
            for name in (PRE_SQL, FULL_SQL, *parts[-1:]):
                with open(workdir / name, "a") as fh:
                    fh.write(trailer)
        (workdir / CONSTRAINTS).write_text(
            constraints.to_json(constraints.list_constraints(conn, targets)))
    for name in (ARCHIVE, PRE_SQL, POST_SQL, FULL_SQL, POST_LIST, CONSTRAINTS, *parts):
        store.put_file(name, workdir / name)
    return foreign_keys.find_outside_keys(source, post, targets), parts


def _render_pre_parts(archive: Path, pre: list[dump.TocEntry], found: list[casts.Cast],
                      source: Endpoint, workdir: Path, store: ArtifactStore,
                      conn: psycopg.Connection) -> list[str]:
    """Pre-data in parts: first the schemas alone (`PRE_SCHEMAS`: apply pre
    gives them their owners and ACLs before anything is created in them,
    `schema_grants.py`), then the rest, cut again where a cast goes (pg_dump
    -n leaves casts out: apply pre creates each between two parts, right
    after what it needs and before what may use it). Returns the parts'
    names. The full rendering lists the casts."""
    schemas = [e for e in pre if e.catalog == dump.PG_NAMESPACE]
    rest = [e for e in pre if e.catalog != dump.PG_NAMESPACE]
    parts, placed = casts.place(found, rest) if found else ([rest], [])
    # part 0 is the schemas': each cast follows one part later
    placed = [replace(c, after=c.after + 1) for c in placed]
    names = []
    for number, entries in enumerate([schemas, *parts]):
        stem = PRE_SCHEMAS.removesuffix(".sql") if number == 0 else f"pre-data-{number}"
        part_list = dump.write_list(entries, workdir / f"{stem}.list")
        names.append(f"{stem}.sql")
        dump.render_sql(archive, part_list, workdir / names[-1], source)
    casts.save(placed, store, workdir)
    if placed:
        with open(workdir / FULL_SQL, "a") as fh:
            fh.write(_CASTS_HEADER + casts.render(placed, conn))
    return names


_CASTS_HEADER = ("\n--\n-- pg-schema-restore: casts involving the schemas (pg_dump -n leaves "
                 "them out);\n-- apply pre creates them unless production has one between "
                 "the same types (ddl_job/casts.py).\n--\n\n")
_RELINK_HEADER = ("\n--\n-- pg-schema-restore: inheritance children were created with their "
                  "columns in the source's order;\n-- attach them to their parents "
                  "(ddl_job/inheritance.py).\n--\n\n")
