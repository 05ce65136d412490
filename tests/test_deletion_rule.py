"""The one rule for deleting a restore: what it created is dropped unless it
already succeeded; and a deletion shows at once in status.

Pure decisions on records (no server): which state a deletion leaves the
record in, whether Cleanup then asks the data plane to drop the schemas
(the ports here are recording doubles of the outside world, not of the
engine), and what status says while the object is being deleted.
"""

from __future__ import annotations

from typing import Any

import pytest

from ddl_job.errors import Cancelled
from pg_schema_restore.engine import runner
from pg_schema_restore.engine.phases import Context
from pg_schema_restore.engine.record import RestoreRecord
from pg_schema_restore.engine.spec import RestoreSpec
from pg_schema_restore.engine.stopping import Interrupted, Stop, stoppable_sleep
from pg_schema_restore.k8s.status import status_for

SPEC = RestoreSpec.from_dict({"database": "appdb", "schemas": ["a"],
                              "restoreTime": "2024-01-28T14:30:00Z"})
BEFORE_SUCCESS = ["Initialize", "TemporaryDatabase", "SchemaExtraction", "DataCopy",
                  "PostData", "Cleanup", "Record"]


class Outside:
    """Every port the Cleanup phase touches; remembers the steps asked for."""

    def __init__(self) -> None:
        self.steps: list[str] = []

    def run(self, request: Any, **_: Any) -> Any:
        self.steps.append(request.step)
        return ["a_20240128"] if request.step == "drop" else {}

    def production_secret(self, spec: Any) -> str:
        return "production"

    def delete(self, *_: Any) -> list[str]:
        return []

    def cleanup(self) -> list[str]:
        return []

    def settle(self, stop: Stop) -> list[str]:
        return []


def _context(outside: Outside, stop: Stop = Stop()) -> Context:
    return Context(temp_dbs=outside, executor=outside, artifacts_root="/tmp/unused",  # type: ignore[arg-type]
                   artifact_cleaner=outside, stop=stop)  # type: ignore[arg-type]


@pytest.mark.parametrize("phase", BEFORE_SUCCESS)
def test_deletion_before_success_drops_what_the_restore_created(phase):
    completed = BEFORE_SUCCESS[:BEFORE_SUCCESS.index(phase)]
    record = RestoreRecord(restore_id="r1", spec=SPEC, phase=phase, completed=completed,
                           schemas_created="SchemaExtraction" in completed)
    runner.request_cleanup(record)
    assert record.phase == "Cleanup" and record.error["reason"] == "Cancelled"
    outside = Outside()
    runner.run(record, _context(outside))
    assert record.phase == "Failed" and record.error["reason"] == "Cancelled"
    assert outside.steps == (["drop"] if record.schemas_created else [])


def test_deletion_after_success_keeps_the_schemas():
    record = RestoreRecord(restore_id="r1", spec=SPEC, phase="Succeeded",
                           completed=list(BEFORE_SUCCESS), schemas_created=True)
    runner.request_cleanup(record)
    assert record.phase == "Succeeded" and record.error is None


def test_a_failure_being_cleaned_up_keeps_its_reason():
    record = RestoreRecord(restore_id="r1", spec=SPEC, phase="Cleanup",
                           error={"phase": "DataCopy", "reason": "CopyFailed", "message": "x"})
    runner.request_cleanup(record)
    assert record.error["reason"] == "CopyFailed" and record.phase == "Cleanup"


def test_a_cancelled_restore_whose_cleanup_is_retried_still_drops():
    record = RestoreRecord(restore_id="r1", spec=SPEC, phase="Failed", schemas_created=True,
                           error={"phase": "Cleanup", "reason": "Cancelled", "message": "x"},
                           result={"cleanupErrors": ["temporaryDatabase: busy"]})
    outside = Outside()
    runner.retry_cleanup(record, _context(outside))
    assert outside.steps == ["drop"]
    assert record.phase == "Failed" and record.error["reason"] == "Cancelled"


def test_cancellation_stops_before_the_next_phase_and_interruption_leaves_the_record():
    record = RestoreRecord(restore_id="r1", spec=SPEC, phase="DataCopy",
                           completed=BEFORE_SUCCESS[:3], schemas_created=True)
    with pytest.raises(Interrupted):
        runner.run_one(record, _context(Outside(), Stop(interrupted=lambda: True)))
    assert record.phase == "DataCopy" and record.error is None   # as last saved
    outside = Outside()
    runner.run(record, _context(outside, Stop(cancelled=lambda: True)))
    assert record.error["phase"] == "DataCopy" and record.error["reason"] == "Cancelled"
    assert record.error["message"] == Cancelled().message
    assert outside.steps == ["drop"]         # Cleanup's own step is never cancelled


def test_status_says_deleting_at_once():
    record = RestoreRecord(restore_id="r1", spec=SPEC, phase="DataCopy",
                           completed=BEFORE_SUCCESS[:3], schemas_created=True)
    status = status_for(record, 1, deleting=True)
    top = next(c for c in status["conditions"] if c["type"] == "Succeeded")
    assert status["phase"] == "Deleting"
    assert (top["status"], top["reason"]) == ("Unknown", "Deleting")
    assert "drops the schemas this restore created" in top["message"]
    done = RestoreRecord(restore_id="r1", spec=SPEC, phase="Succeeded",
                         completed=list(BEFORE_SUCCESS), schemas_created=True)
    assert status_for(done, 1, deleting=True)["phase"] == "Succeeded"   # the outcome stays


def test_adapters_long_waits_end_on_a_stop_but_not_in_cleanup():
    """RDS and DMS waits sleep through `stoppable_sleep` (wiring): a deletion
    ends them within a tick, except during Cleanup."""
    cancelled = Stop(cancelled=lambda: True)
    with pytest.raises(Cancelled):
        stoppable_sleep(cancelled, applies=lambda: True)(3600)
    with pytest.raises(Interrupted):
        stoppable_sleep(Stop(interrupted=lambda: True), applies=lambda: True)(3600)
    stoppable_sleep(cancelled, applies=lambda: False, tick=0.01)(0.02)   # Cleanup: sleeps on
