"""Drive a record through the phases until it succeeds or fails.

A failing phase (RestoreError, botocore's ClientError, any Exception) sends the record
to Cleanup and then Record, ending Failed with the failing phase and reason.
A crash (the process dies: BaseException such as KeyboardInterrupt or the
engine's `Interrupted`, or a kill) leaves the record as last saved; calling
`run` again resumes from the phase it was in, and the idempotent phases
create no duplicates. A cancellation (`ctx.stop.cancelled`, the resource is
deleted) fails the running phase with `Cancelled`, so Cleanup drops what the
restore created.
"""

from __future__ import annotations

import logging
import time

from ddl_job.errors import RestoreError

from .phases import CLEANUP_PHASES, PHASE_FUNCTIONS, Context
from .record import PHASES, RestoreRecord, now

log = logging.getLogger(__name__)


def failure_reason(exc: Exception) -> tuple[str, str]:
    if isinstance(exc, RestoreError):
        return exc.reason, exc.message
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:   # botocore ClientError
        code = str(response["Error"].get("Code", "AwsError"))
        operation = getattr(exc, "operation_name", None)
        call = f"{operation}: " if operation else ""
        return "AwsError", f"{call}{code}: {response['Error'].get('Message', '')}".strip()
    return "InternalError", f"{type(exc).__name__}: {exc}"


def next_phase(record: RestoreRecord) -> str:
    index = PHASES.index(record.phase)
    if index + 1 < len(PHASES):
        return PHASES[index + 1]
    return "Failed" if record.error else "Succeeded"


def run_one(record: RestoreRecord, ctx: Context) -> RestoreRecord:
    """Run the current phase once and save; returns the record."""
    phase = record.phase
    ctx.on_event({"event": "phase_started", "phase": phase, "restoreId": record.restore_id})
    started = time.monotonic()
    try:
        if phase not in CLEANUP_PHASES:
            ctx.stop.raise_if_requested()   # nothing new starts once a stop is asked
        PHASE_FUNCTIONS[phase](record, ctx)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a record state
        reason, message = failure_reason(exc)
        record.timings[phase] = round(record.timings.get(phase, 0)
                                      + time.monotonic() - started, 3)
        if phase in CLEANUP_PHASES:
            # Cleanup problems are reported but never loop: go on to Record.
            record.result.setdefault("cleanupErrors", []).append(message)
            record.error = record.error or {"phase": phase, "reason": reason,
                                            "message": message}
            record.phase = "Record" if phase == "Cleanup" else "Failed"
        else:
            record.error = {"phase": phase, "reason": reason, "message": message}
            record.phase = "Cleanup"
        ctx.on_event({"event": "phase_failed", "phase": phase, "reason": reason,
                      "message": message, "restoreId": record.restore_id})
        _finish_if_done(record)
        ctx.save(record)
        return record
    record.timings[phase] = round(record.timings.get(phase, 0)
                                  + time.monotonic() - started, 3)
    record.completed.append(phase)
    record.phase = next_phase(record)
    ctx.on_event({"event": "phase_finished", "phase": phase, "seconds": record.timings[phase],
                  "restoreId": record.restore_id})
    _finish_if_done(record)
    ctx.save(record)
    return record


def _finish_if_done(record: RestoreRecord) -> None:
    if record.done and record.finished_at is None:
        record.finished_at = now()


def run(record: RestoreRecord, ctx: Context) -> RestoreRecord:
    """Run phases until the record is Succeeded or Failed."""
    while not record.done:
        run_one(record, ctx)
    return record


def request_cleanup(record: RestoreRecord) -> RestoreRecord:
    """Cancel an unfinished restore: jump to Cleanup (deletion of the
    resource, or `cleanup` from the CLI).

    The one rule: what this restore created is dropped unless it already
    succeeded. A restore not yet `Succeeded` — even one whose PostData is
    done and whose Cleanup or Record is under way — is cancelled, and
    Cleanup drops the schemas carrying its marker (`onFailure: keep` keeps
    them). A failure already being cleaned up keeps its own reason."""
    if record.done:
        return record
    record.cleanup_requested = True
    if record.error is None:
        record.error = {"phase": record.phase, "reason": "Cancelled",
                        "message": "cleanup requested before completion"}
        record.phase = "Cleanup"
    elif record.phase not in CLEANUP_PHASES:
        record.phase = "Cleanup"
    return record


def settle(record: RestoreRecord, ctx: Context) -> list[str]:
    """Before driving a record in this process: wait for the steps an
    earlier process left running (a Job of this restore), so no step runs
    twice at once; their results are read when their phase re-runs."""
    waited = ctx.executor.settle(ctx.stop)
    for name in waited:
        log.info("restore %s: waited for %s, left running by an earlier operator",
                 record.restore_id, name)
    return waited


def cleanup_pending(record: RestoreRecord) -> bool:
    """A finished restore whose cleanup left something behind (a paid resource, maybe)."""
    return record.done and bool(record.result.get("cleanupErrors"))


def retry_cleanup(record: RestoreRecord, ctx: Context) -> RestoreRecord:
    """Run Cleanup and Record again for a finished restore whose cleanup failed.

    A restore that had succeeded up to its cleanup ends Succeeded once its
    resources are gone; its schemas are never dropped by a retry.
    """
    if not cleanup_pending(record):
        return record
    record.result["cleanupRetries"] = int(record.result.get("cleanupRetries", 0)) + 1
    record.result.setdefault("previousCleanupErrors", []).extend(
        record.result.pop("cleanupErrors"))
    if (record.error and record.error.get("phase") in CLEANUP_PHASES
            and record.error.get("reason") != "Cancelled"):
        record.error = None
    record.phase, record.finished_at = "Cleanup", None
    return run(record, ctx)
