"""The seven phases. Each reads the record, acts, and leaves the record ready
for the next phase; each is safe to re-run after a crash at any point.

Nothing is created before phase 1's validation passes. Data-plane work runs
through the executor; AWS through the adapters; this module imports neither
boto3 nor kopf.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from ddl_job import requests
from ddl_job.errors import CleanupFailed, InvalidSpec, RestoreError
from ddl_job.names import shown

from . import progress
from .ports import ArtifactCleaner, Audit, DataMigration, Executor, Secrets, TemporaryDatabases
from .record import RestoreRecord
from .stopping import NEVER, Stop

log = logging.getLogger(__name__)
# The failure path: phases that run after a failure and never loop back.
CLEANUP_PHASES = ("Cleanup", "Record")


@dataclass
class Context:
    """What the phases work with; built by the composition root (`wiring`).

    `dry_run` makes Initialize check everything and create nothing (`plan`);
    `stop` is polled by the running step and between phases (deletion
    cancels the restore, shutdown interrupts this process only)."""

    temp_dbs: TemporaryDatabases
    executor: Executor
    artifacts_root: str                     # s3://bucket/prefix or a directory
    artifact_cleaner: ArtifactCleaner
    secrets: Secrets | None = None
    audit: Audit | None = None
    dms: DataMigration | None = None
    save: Callable[[RestoreRecord], None] = lambda record: None
    on_event: Callable[[dict[str, Any]], None] = lambda event: None
    dry_run: bool = False
    stop: Stop = NEVER
    steps_run: list[str] = field(default_factory=list)
    # Live progress saves the record (the status) at most this often.
    progress_seconds: float = 5.0


def artifacts_location(record: RestoreRecord, ctx: Context) -> str:
    root = record.requested.artifacts_location or ctx.artifacts_root
    return root.rstrip("/") + f"/{record.restore_id}"


def save_progress(record: RestoreRecord, ctx: Context) -> None:
    """Save the record for its progress, and say it (the CLI prints a line)."""
    ctx.save(record)
    ctx.on_event({"event": "progress", "phase": record.phase, "restoreId": record.restore_id,
                  "summary": progress.summary(record.progress)})


def _step(ctx: Context, record: RestoreRecord, request: requests.StepRequest, *,
          source: bool = True, target: bool = True, live: progress.Throttle | None = None
          ) -> Any:
    """Run a data-plane step through the executor, reporting its events; with
    `live`, its progress reports are folded into the record and saved at the
    throttle's pace."""
    spec = record.requested
    ctx.steps_run.append(request.step)

    def relay(event: dict[str, Any]) -> None:
        event = {**event, "restoreId": record.restore_id}
        ctx.on_event(event)
        if live is not None and progress.fold(record.progress, event,
                                              datetime.now(timezone.utc)) and live.ready():
            save_progress(record, ctx)

    return ctx.executor.run(
        request,
        source_secret=record.resources.get("temporarySecret") if source else None,
        target_secret=ctx.temp_dbs.production_secret(spec) if target else None,
        database=spec.database, on_event=relay,
        # Cleanup's own steps (dropping the schemas) are never cancelled.
        stop=NEVER if record.phase in CLEANUP_PHASES else ctx.stop)


def add_warnings(record: RestoreRecord, ctx: Context, result: Any) -> None:
    """A step's `warnings` join the record's once (a resumed step repeats them),
    each announced as a `restore_warning` event."""
    warnings = result.get("warnings") if isinstance(result, dict) else None
    for warning in warnings or []:
        if isinstance(warning, dict):   # verify's: {"kind", …, "message"}
            warning = warning.get("message", "")
        if warning not in record.warnings:
            record.warnings.append(warning)
            ctx.on_event({"event": "restore_warning", "restoreId": record.restore_id,
                          "message": warning})


# -- 1 -----------------------------------------------------------------------
def initialize(record: RestoreRecord, ctx: Context) -> None:
    """Validate everything before creating anything (all of it, in a dry run)."""
    spec = record.requested
    info = ctx.temp_dbs.describe_source(spec)
    record.source = info.to_dict()
    record.targets = spec.target_names(info.snapshot_time)
    suffix = spec.suffix(info.snapshot_time)
    record.resources.setdefault("suffix", suffix)
    # Target names free and ≤ 63 bytes, database reachable, the role may create
    # the schemas and own what production's schemas hold: checked in production.
    checked = _step(ctx, record, requests.Precheck(spec.schemas, suffix,
                                                   grant_membership=spec.grant_membership),
                    source=False)
    add_warnings(record, ctx, {"warnings": not_in_production_warnings(checked)})
    if spec.data_copy == "dms" and ctx.dms is None:
        raise InvalidSpec("dataCopy dms needs AWS DMS (not available here)")
    ctx.artifact_cleaner.check(artifacts_location(record, ctx))
    if ctx.dry_run:
        return
    if ctx.audit is not None:
        ctx.audit.started(record)


def not_in_production_warnings(checked: Any) -> list[str]:
    """Precheck's requested schemas that production does not hold now: said
    before the copy is paid for, so a typo shows (not a refusal: a dropped
    schema is what one restores)."""
    absent = checked.get("notInProduction") if isinstance(checked, dict) else None
    return [f"schema {shown(name)} is not in production now; it will be looked for in "
            "the copy" for name in absent or []]


def plan(record: RestoreRecord, ctx: Context) -> dict[str, Any]:
    """Initialize in a dry run, then what the restore would create."""
    ctx.dry_run = True
    initialize(record, ctx)
    spec = record.requested
    copy: dict[str, Any] = ({"cluster": record.resource_name("cluster"),
                             "writerInstance": record.resource_name("db")}
                            if record.source.get("kind") == "cluster" else
                            {"instance": record.resource_name("db")})
    # Each setting with where it came from: spec, operator default or source.
    copy["settings"] = record.source.get("settings", {})
    would_create: dict[str, Any] = {
        "temporaryDatabase": copy,
        "temporarySecret": record.resource_name("secret"),
        "artifacts": artifacts_location(record, ctx),
        "tags": {"pg-schema-restore/restore-id": record.restore_id},
    }
    if spec.data_copy == "dms":
        would_create["dms"] = {"replicationInstance": record.resource_name("dms"),
                               "endpoints": [record.resource_name("dms-source"),
                                             record.resource_name("dms-target")],
                               "tasks": len(spec.schemas)}
    return {"restoreId": record.restore_id, "source": record.source,
            "targets": record.targets, "wouldCreate": would_create,
            "notes": record.source.get("notes", []), "warnings": record.warnings}


# -- 2 -----------------------------------------------------------------------
def temporary_database(record: RestoreRecord, ctx: Context) -> None:
    """Request the copy; start DMS's instance while RDS restores (both take
    minutes, the instance fewer: it is billed from here, not from phase 1)."""
    spec = record.requested
    ctx.temp_dbs.create(record, spec, lambda: ctx.save(record))
    if spec.data_copy == "dms":
        assert ctx.dms is not None
        ctx.dms.start_instance(record, spec, lambda: ctx.save(record))
    add_warnings(record, ctx, {"warnings": ctx.temp_dbs.wait_ready(record)})


# -- 3 -----------------------------------------------------------------------
def schema_extraction(record: RestoreRecord, ctx: Context) -> None:
    spec = record.requested
    ctx.temp_dbs.credentials(record, spec, lambda: ctx.save(record))
    _borrow_memberships(record, ctx)
    location = artifacts_location(record, ctx)
    record.resources["artifacts"] = location
    ctx.save(record)
    extracted = _step(ctx, record, requests.Extract(
        spec.schemas, record.resources["suffix"], location, record.restore_id,
        mode=spec.data_copy, disposable_source=True))
    add_warnings(record, ctx, extracted)
    # From here production may hold our schemas: failure cleanup must look.
    record.schemas_created = True
    ctx.save(record)
    _step(ctx, record, requests.ApplyPre(location), source=False)


def _borrow_memberships(record: RestoreRecord, ctx: Context) -> None:
    """Before extraction: may the connecting role read and own every object, in
    the copy and in production? If not, stop (MissingRoleMembership), or with
    grantMembership grant what it lacks. Production's grants are recorded
    before they are made, so Cleanup revokes them whatever happens next; the
    copy's go with the copy."""
    spec = record.requested
    checked = _step(ctx, record, requests.Rights(spec.schemas, record.resources["suffix"],
                                                 grant_membership=spec.grant_membership))
    missing = checked.get("missing", {}) if isinstance(checked, dict) else {}
    for side in requests.SIDES:
        roles = tuple(missing.get(side) or ())
        if not roles:
            continue
        if side == "production":
            record.resources["grantedMemberships"] = list(roles)
            ctx.save(record)
        _step(ctx, record, requests.Membership(side, roles),
              source=side == "copy", target=side == "production")
        record.result.setdefault("grantedMemberships", {})[side] = list(roles)
        ctx.on_event({"event": "memberships_granted", "restoreId": record.restore_id,
                      "side": side, "roles": list(roles)})
    ctx.save(record)


def _revoke_memberships(record: RestoreRecord, ctx: Context) -> None:
    """Take back production's memberships grantMembership granted (recorded)."""
    roles = tuple(record.resources.get("grantedMemberships") or ())
    if roles and not record.result.get("revokedMemberships"):
        _step(ctx, record, requests.Membership("production", roles, revoke=True),
              source=False)
        record.result["revokedMemberships"] = list(roles)
        ctx.save(record)


# -- 4 -----------------------------------------------------------------------
def data_copy(record: RestoreRecord, ctx: Context) -> None:
    spec = record.requested
    location = record.resources["artifacts"]
    progress.start(record.progress, datetime.now(timezone.utc))
    if spec.data_copy == "copy":
        # restart: a resumed run empties what a crashed copy loaded (ours only).
        summary = _step(ctx, record, requests.Copy(location, jobs=spec.jobs, restart=True),
                        live=progress.Throttle(ctx.progress_seconds))
    else:
        assert ctx.dms is not None
        summary = ctx.dms.run_full_load(record, spec, record.resources["temporarySecret"],
                                        ctx.temp_dbs.production_secret(spec),
                                        lambda: ctx.save(record))
        # DMS copies no sequences (docs/facts.md, defect 6).
        _step(ctx, record, requests.Copy(location, sequences_only=True))
    if isinstance(summary, dict):
        record.progress.update({k: summary[k] for k in ("tables", "rows", "bytes")
                                if k in summary})
        if "tables" in summary:
            record.progress.update(tablesDone=summary["tables"], tablesTotal=summary["tables"])
        progress.update(record.progress, {}, datetime.now(timezone.utc))
    save_progress(record, ctx)       # once at the end, whatever the throttle said


# -- 5 -----------------------------------------------------------------------
def post_data_request(record: RestoreRecord) -> requests.ApplyPost:
    """Post-data as the spec asks it (jobs, what a broken outside foreign key does)."""
    spec = record.requested
    return requests.ApplyPost(record.resources["artifacts"], jobs=spec.jobs,
                              invalid_foreign_keys=spec.foreign_keys)


def post_data(record: RestoreRecord, ctx: Context) -> None:
    applied = _step(ctx, record, post_data_request(record), source=False)
    add_warnings(record, ctx, applied)
    for name in ("notValidForeignKeys", "omittedForeignKeys"):
        if isinstance(applied, dict) and applied.get(name):
            record.result[name] = applied[name]
    record.result["verify"] = _step(ctx, record, requests.Verify(record.resources["artifacts"]))
    add_warnings(record, ctx, record.result["verify"])


# -- 6 -----------------------------------------------------------------------
def cleanup(record: RestoreRecord, ctx: Context) -> None:
    """Delete every temporary resource (the copy, DMS, artifacts, what the
    executor left: Jobs and their connections Secret), in parallel; drop
    schemas on failure.

    A sweep (a record with no spec) deletes by tag whatever it finds."""
    spec = record.spec
    # Only a restore that failed *before* cleanup, or was cancelled before it
    # succeeded, drops its schemas: when a finished restore's cleanup is
    # retried, its schemas are the result.
    error = record.error or {}
    failed = bool(error) and (error.get("phase") not in CLEANUP_PHASES
                              or error.get("reason") == "Cancelled")
    problems: list[str] = []
    if failed and record.schemas_created and spec is not None and spec.on_failure != "keep":
        try:
            dropped = _step(ctx, record, requests.Drop(record.restore_id), source=False)
            # Merged and saved at once: a resumed cleanup's drop finds nothing left.
            so_far = record.result.setdefault("droppedSchemas", [])
            so_far += [name for name in dropped or [] if name not in so_far]
            ctx.save(record)
        except RestoreError as exc:
            problems.append(f"drop restored schemas: {exc.message}")
    if spec is not None:
        try:
            _revoke_memberships(record, ctx)
        except RestoreError as exc:
            problems.append(f"revoke granted memberships: {exc.message}")
    tasks: dict[str, Callable[[], Any]] = {"temporaryDatabase": lambda: ctx.temp_dbs.delete(record),
                                           "steps": ctx.executor.cleanup}
    if ctx.dms is not None and (spec is None or spec.data_copy == "dms"):
        tasks["dms"] = lambda: ctx.dms.delete(record)  # type: ignore[union-attr]
    if record.resources.get("artifacts"):
        tasks["artifacts"] = lambda: ctx.artifact_cleaner.delete(record.resources["artifacts"])
    with ThreadPoolExecutor(max_workers=len(tasks)) as pool:
        futures = {name: pool.submit(task) for name, task in tasks.items()}
    deleted: dict[str, Any] = {}
    for name, future in futures.items():
        try:
            deleted[name] = future.result()
        except Exception as exc:  # every task runs; report all failures together
            problems.append(f"{name}: {exc}")
    record.result["deleted"] = deleted
    if problems:
        raise CleanupFailed("; ".join(problems))


# -- 7 -----------------------------------------------------------------------
def record_result(record: RestoreRecord, ctx: Context) -> None:
    record.result.update({
        "targets": record.targets,
        "timings": record.timings,
        "rows": record.progress.get("rows"),
        "bytes": record.progress.get("bytes"),
        "error": record.error,
    })
    if ctx.audit is not None and record.spec is not None:   # a sweep was never audited
        ctx.audit.finished(record)


PHASE_FUNCTIONS: dict[str, Callable[[RestoreRecord, Context], None]] = {
    "Initialize": initialize,
    "TemporaryDatabase": temporary_database,
    "SchemaExtraction": schema_extraction,
    "DataCopy": data_copy,
    "PostData": post_data,
    "Cleanup": cleanup,
    "Record": record_result,
}
