"""The SchemaRestore status, derived from the engine record (no kopf here).

Conditions follow the Kubernetes API conventions: a bounded job's top-level
`Succeeded` (Unknown while running, True/False at the end), `Finished`
(False while queued or running, True at the end whatever the outcome: what
`kubectl wait` waits on), plus one per phase; each with a CamelCase reason,
a message of its own, lastTransitionTime and observedGeneration. Transition
times only move when the status changes. `record` holds only what the
operator needs to resume (`saved_record`), not a second copy of the status.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ..engine import progress
from ..engine.record import PHASES, RestoreRecord
from ..events import outcome
from .saved_record import compact

# The one map of condition type -> the phase whose completion makes it True.
PHASE_CONDITIONS: dict[str, str] = {
    "TemporaryDatabaseReady": "TemporaryDatabase",
    "SchemaExtracted": "SchemaExtraction",
    "PreDataApplied": "SchemaExtraction",
    "DataCopied": "DataCopy",
    "PostDataApplied": "PostData",
    "CleanedUp": "Cleanup",
}
# What each phase condition says once True: its own words, never another's.
DONE_MESSAGES: dict[str, str] = {
    "TemporaryDatabaseReady": "the temporary copy is up and reachable",
    "SchemaExtracted": "the schemas' DDL was extracted from the copy",
    "PreDataApplied": "the restored schemas and their empty tables exist in production",
    "DataCopied": "the rows were copied into production",
    "PostDataApplied": "indexes, constraints and the rest were applied and verified",
    "CleanedUp": "every temporary resource was deleted",
}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(type_: str, status: str, reason: str, message: str, generation: int,
              previous: dict[str, dict[str, Any]]) -> dict[str, Any]:
    old = previous.get(type_)
    changed = old is None or old.get("status") != status
    return {
        "type": type_, "status": status, "reason": reason, "message": message[:32000],
        "observedGeneration": generation,
        "lastTransitionTime": _now() if changed else old["lastTransitionTime"],
    }


def _phase_condition(type_: str, phase: str, record: RestoreRecord) -> tuple[str, str, str]:
    error = record.error or {}
    # SchemaExtraction holds two conditions: the extraction is over once
    # production may hold our schemas (pre-data is being applied).
    extracted = type_ == "SchemaExtracted" and record.schemas_created
    if phase in record.completed or extracted:
        return "True", "Done", DONE_MESSAGES[type_] + _done_detail(type_, record)
    if error.get("phase") == phase:
        return "False", error.get("reason", "Failed"), error.get("message", "")
    if record.done or (error and PHASES.index(phase) < PHASES.index("Cleanup")):
        return "False", "Skipped", f"not run: the restore ended before {phase}"
    if record.phase == phase:
        return "Unknown", "InProgress", f"{phase} in progress"
    return "Unknown", "Pending", f"waiting for {phase}"


def _done_detail(type_: str, record: RestoreRecord) -> str:
    """What a finished restore's record no longer keeps, said by its condition."""
    verify = record.result.get("verify")
    if type_ == "PostDataApplied" and isinstance(verify, dict) and "tables" in verify:
        return (f" ({verify['tables']} tables, {verify.get('rows')} rows, "
                f"{verify.get('sequences', 0)} sequences checked against the copy)")
    deleted = record.result.get("deleted")
    if type_ == "CleanedUp" and isinstance(deleted, dict):
        count = sum(len(v) if isinstance(v, list) else int(v or 0) for v in deleted.values())
        return f" ({count} items)" if count else " (there was nothing to delete)"
    return ""


def _finished(top: tuple[str, str, str], done: bool) -> tuple[str, str, str]:
    """`Finished`: True at the end (either outcome), False before; the
    Succeeded condition's reason says where the restore is or how it ended."""
    status, reason, message = top
    if done:
        verdict = "succeeded" if status == "True" else "failed"
        return "True", reason, f"the restore {verdict}: {message}"
    return "False", reason, message


def status_for(record: RestoreRecord, generation: int,
               previous_conditions: list[dict[str, Any]] | None = None,
               waiting: str | None = None, deleting: bool = False) -> dict[str, Any]:
    """The whole status for a record; `waiting` explains a queued restore;
    `deleting` says the SchemaRestore is being deleted (until it is done)."""
    previous = {c["type"]: c for c in previous_conditions or []}
    conditions = []
    error = record.error or {}
    if record.done:
        said = outcome(record)
        top = ("True" if record.succeeded else "False", said.reason, said.message)
    elif deleting:
        top = ("Unknown", "Deleting", deleting_message(record))
    elif waiting:
        top = ("Unknown", "Queued", waiting)
    elif error:
        top = ("Unknown", "CleaningUp",
               f"{error.get('phase')} failed ({error.get('reason')}); cleaning up")
    else:
        top = ("Unknown", record.phase, f"phase {record.phase} "
               f"({PHASES.index(record.phase) + 1}/{len(PHASES)})")
    conditions.append(condition("Succeeded", *top, generation, previous))
    conditions.append(condition("Finished", *_finished(top, record.done), generation, previous))
    for type_, phase in PHASE_CONDITIONS.items():
        conditions.append(condition(type_, *_phase_condition(type_, phase, record), generation,
                                    previous))
    return {
        "observedGeneration": generation,
        "phase": "Deleting" if deleting and not record.done else _derived_phase(record, waiting),
        "point": point_text(record),
        "restoreId": record.restore_id,
        "targetSchemas": record.targets,
        "progress": {**record.progress,
                     "summary": "Queued" if waiting and not record.done else _summary(record)},
        "startTime": record.started_at,
        "completionTime": record.finished_at,
        "conditions": conditions,
        "warnings": record.warnings,
        "record": compact(record),
    }


def deleting_message(record: RestoreRecord) -> str:
    """What a deletion does to this restore (the rule: drop unless it succeeded)."""
    if record.done:
        kept = "kept" if record.succeeded else "not kept"
        return f"the SchemaRestore is being deleted; the restored schemas are {kept}"
    if record.schemas_created:
        return ("the SchemaRestore is being deleted before it succeeded: the running step is "
                "stopped, then cleanup deletes the temporary resources and drops the "
                "schemas this restore created")
    return ("the SchemaRestore is being deleted before it succeeded: the running step is "
            "stopped, then cleanup deletes the temporary resources")


def refused_status(reason: str, message: str, generation: int,
                   previous_conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The status of a spec refused before any phase ran: nothing was created."""
    previous = {c["type"]: c for c in previous_conditions or []}
    top = ("False", reason, message)
    return {"observedGeneration": generation, "phase": "Failed",
            "conditions": [condition("Succeeded", *top, generation, previous),
                           condition("Finished", *_finished(top, True), generation, previous)]}


def point_text(record: RestoreRecord) -> str:
    """The POINT column: the instant restored to, or the snapshot's name and,
    once phase 1 read it, the time it was taken."""
    spec = record.requested
    if spec.restore_time is not None:
        return spec.point
    name = str(spec.snapshot_id).rsplit(":snapshot:", 1)[-1].rsplit(":cluster-snapshot:", 1)[-1]
    taken = record.source.get("snapshot_time")
    return f"{name} ({str(taken).replace('+00:00', 'Z')})" if taken else name


def _derived_phase(record: RestoreRecord, waiting: str | None) -> str:
    if record.done:
        return record.phase
    if waiting:
        return "Queued"
    return "CleaningUp" if record.error else record.phase


def _summary(record: RestoreRecord) -> str:
    if record.done:
        rows = record.progress.get("rows")
        return f"{rows} rows" if rows is not None else record.phase
    step = f"{PHASES.index(record.phase) + 1}/{len(PHASES)}"
    if record.phase == "DataCopy" and not record.error:
        # `4/7 copy 12/40 tables 37% ETA 3m`: the copy's own counters (engine/progress.py).
        return f"{step} copy {progress.summary(record.progress)}".rstrip()
    return step
