"""The engine record in a SchemaRestore's status, split and joined again.

The status already shows the targets, the progress, the warnings and the
start and completion times at its top level. `status.record` keeps only
the rest, what the operator needs to resume (the spec it runs, ids of
temporary resources, phase, completed phases, timings, error, …), so
`kubectl describe` shows no second copy of the status. The spec is kept
as the restore first resolved it (the operator's defaults and the source
applied): a spec edited later (no webhook, SpecChangeIgnored) or a changed
operator configuration never changes a restore under way, even across a
restart. `join` puts the
record back together from both halves; it also reads the status an older
operator wrote (a whole `RestoreRecord.to_dict()` in `status.record`), so an
upgrade in the middle of a restore resumes it; `merge_patch` makes the next
save remove what the compact form has not.
"""

from __future__ import annotations

import json
from typing import Any

from ..engine.record import RestoreRecord
from ..engine.spec import RestoreSpec

# Record field -> status key, for the fields kept in `status.record`.
KEPT: dict[str, str] = {
    "restore_id": "restoreId",
    "phase": "phase",
    "completed": "completed",
    "source": "source",
    "resources": "resources",
    "timings": "timings",
    "schemas_created": "schemasCreated",
    "cleanup_requested": "cleanupRequested",
    "error": "error",
    "result": "result",
}
# What phase 7 copies into `result` from fields the status shows already.
_RESULT_COPIES = ("targets", "timings", "rows", "bytes", "error")
# The source fields the phases read again (the restorable window and the
# notes are phase 1's and `plan`'s alone).
_SOURCE_KEPT = ("kind", "engine_version", "snapshot_time", "settings")


# What a finished restore no longer needs: the conditions say it
# (PostDataApplied the verification, CleanedUp what was deleted).
_RESULT_WHILE_RUNNING = ("verify", "deleted")


def compact(record: RestoreRecord) -> dict[str, Any]:
    """What `status.record` holds: the record minus what the status shows."""
    data = {key: getattr(record, name) for name, key in KEPT.items()}
    data["spec"] = record.spec.to_dict(defaults=False) if record.spec is not None else None
    data["source"] = {k: v for k, v in record.source.items() if k in _SOURCE_KEPT}
    dropped = _RESULT_COPIES + (_RESULT_WHILE_RUNNING if record.done else ())
    data["result"] = {k: v for k, v in record.result.items() if k not in dropped}
    return json.loads(json.dumps(data, default=str))


def merge_patch(old: Any, new: Any) -> Any:
    """The JSON merge patch (RFC 7386) turning `old` into `new`: `new` with a
    null for every key `old` has and `new` has not. A status patch merges
    objects, so without the nulls a key once written (an older operator's
    whole record, a cleanup error since resolved) would stay for ever."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        patch[key] = merge_patch(old.get(key), value)
    return patch


def whole(status: dict[str, Any]) -> bool:
    """Does `status.record` hold a whole record (an operator before the split)?"""
    return "restore_id" in (status.get("record") or {})


def saved_spec(status: dict[str, Any]) -> RestoreSpec | None:
    """The spec the restore runs, as it was saved (None: not saved yet)."""
    data = (status.get("record") or {}).get("spec")
    return RestoreSpec.from_dict(dict(data)) if data else None


def join(status: dict[str, Any], spec: RestoreSpec | None = None) -> RestoreRecord:
    """The record again, from the status; `spec` (the object's, parsed) only
    for a record saved without one."""
    saved = dict(status.get("record") or {})
    if whole(status):
        return RestoreRecord.from_dict(saved)
    spec = saved_spec(status) or spec
    record = RestoreRecord(restore_id=saved["restoreId"], spec=spec,
                           **{name: saved[key] for name, key in KEPT.items()
                              if key in saved and name != "restore_id"})
    record.targets = dict(status.get("targetSchemas") or {})
    record.progress = {k: v for k, v in (status.get("progress") or {}).items()
                       if k != "summary"}
    record.warnings = list(status.get("warnings") or [])
    record.started_at = status.get("startTime") or record.started_at
    record.finished_at = status.get("completionTime")
    if "Record" in record.completed:   # phase 7 copied these into the result
        record.result.update({"targets": record.targets, "timings": record.timings,
                              "rows": record.progress.get("rows"),
                              "bytes": record.progress.get("bytes"), "error": record.error})
    return record
