"""The SchemaRestore status, derived from the engine record (no kopf here).

Conditions follow the Kubernetes API conventions: a bounded job's top-level
`Succeeded` (Unknown while running, True/False at the end), plus one per
phase; each with a CamelCase reason, a message, lastTransitionTime and
observedGeneration. Transition times only move when the status changes.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ..engine import progress
from ..engine.record import PHASES, RestoreRecord
from ..events import outcome

# The one map of condition type -> the phase whose completion makes it True.
PHASE_CONDITIONS: dict[str, str] = {
    "TemporaryDatabaseReady": "TemporaryDatabase",
    "SchemaExtracted": "SchemaExtraction",
    "PreDataApplied": "SchemaExtraction",
    "DataCopied": "DataCopy",
    "PostDataApplied": "PostData",
    "CleanedUp": "Cleanup",
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
    if phase in record.completed:
        return "True", "Done", f"{phase} completed"
    if error.get("phase") == phase:
        return "False", error.get("reason", "Failed"), error.get("message", "")
    if record.done or (error and PHASES.index(phase) < PHASES.index("Cleanup")):
        return "False", "Skipped", f"{phase} did not run"
    if record.phase == phase:
        return "Unknown", "InProgress", f"{phase} in progress"
    return "Unknown", "Pending", f"waiting for {phase}"


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
    for type_, phase in PHASE_CONDITIONS.items():
        conditions.append(condition(type_, *_phase_condition(type_, phase, record), generation,
                                    previous))
    return {
        "observedGeneration": generation,
        "phase": "Deleting" if deleting and not record.done else _derived_phase(record, waiting),
        "point": record.requested.point,
        "restoreId": record.restore_id,
        "targetSchemas": record.targets,
        "progress": {**record.progress, "summary": _summary(record)},
        "startTime": record.started_at,
        "completionTime": record.finished_at,
        "conditions": conditions,
        "warnings": record.warnings,
        "record": record.to_dict(),
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
    return {"observedGeneration": generation, "phase": "Failed",
            "conditions": [condition("Succeeded", "False", reason, message, generation,
                                     previous)]}


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
