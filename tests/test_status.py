"""SchemaRestore status derived from engine records (API conventions)."""

from __future__ import annotations

import re

from pg_schema_restore.engine.record import RestoreRecord
from pg_schema_restore.engine.spec import RestoreSpec
from pg_schema_restore.k8s.status import status_for

REASON = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
SPEC = RestoreSpec.from_dict({"database": "appdb", "schemas": ["a"],
                              "restoreTime": "2024-01-28T14:30:00Z"})


def _conditions(status):
    return {c["type"]: c for c in status["conditions"]}


def test_running_restore_is_unknown_with_phase_conditions():
    record = RestoreRecord(restore_id="r1", spec=SPEC, phase="DataCopy",
                           completed=["Initialize", "TemporaryDatabase", "SchemaExtraction"])
    status = status_for(record, 3)
    cond = _conditions(status)
    assert cond["Succeeded"]["status"] == "Unknown"
    assert cond["Succeeded"]["reason"] == "DataCopy"
    assert cond["TemporaryDatabaseReady"]["status"] == "True"
    assert cond["SchemaExtracted"]["status"] == "True"
    assert cond["PreDataApplied"]["status"] == "True"
    assert cond["DataCopied"]["status"] == "Unknown"
    assert cond["PostDataApplied"]["reason"] == "Pending"
    assert status["observedGeneration"] == 3
    assert all(c["observedGeneration"] == 3 for c in status["conditions"])
    assert all(REASON.match(c["reason"]) for c in status["conditions"])
    assert status["point"] == "2024-01-28T14:30:00Z"
    assert status["progress"]["summary"].startswith("4/7")


def test_failed_restore_names_phase_and_reason():
    record = RestoreRecord(restore_id="r1", spec=SPEC, phase="Failed",
                           completed=["Initialize", "Cleanup", "Record"],
                           error={"phase": "TemporaryDatabase",
                                  "reason": "TemporaryDatabaseFailed",
                                  "message": "status incompatible-restore"})
    cond = _conditions(status_for(record, 1))
    assert cond["Succeeded"]["status"] == "False"
    assert cond["Succeeded"]["reason"] == "TemporaryDatabaseFailed"
    assert "incompatible-restore" in cond["Succeeded"]["message"]
    assert cond["TemporaryDatabaseReady"]["status"] == "False"
    assert cond["DataCopied"]["reason"] == "Skipped"
    assert cond["CleanedUp"]["status"] == "True"


def test_transition_time_only_moves_on_change():
    record = RestoreRecord(restore_id="r1", spec=SPEC, phase="DataCopy")
    first = status_for(record, 1)
    before = {c["type"]: dict(c, lastTransitionTime="2000-01-01T00:00:00Z")
              for c in first["conditions"]}
    record.completed.append("DataCopy")
    record.phase = "PostData"
    second = _conditions(status_for(record, 1, list(before.values())))
    assert second["TemporaryDatabaseReady"]["lastTransitionTime"] == "2000-01-01T00:00:00Z"
    assert second["DataCopied"]["lastTransitionTime"] != "2000-01-01T00:00:00Z"


def test_queued_restore_explains_why():
    record = RestoreRecord(restore_id="r1", spec=SPEC)
    status = status_for(record, 1, waiting="waiting for a free slot (at most 4 at once)")
    cond = _conditions(status)
    assert cond["Succeeded"]["reason"] == "Queued"
    assert "free slot" in cond["Succeeded"]["message"]
    assert status["phase"] == "Queued"



def test_warnings_are_in_the_status():
    record = RestoreRecord(restore_id="r1", spec=SPEC, phase="Succeeded",
                           completed=["Initialize"], warnings=["UnloggedTables: empty: a.t"])
    assert status_for(record, 1)["warnings"] == ["UnloggedTables: empty: a.t"]
    assert status_for(RestoreRecord(restore_id="r2", spec=SPEC), 1)["warnings"] == []
