"""SchemaRestore status derived from engine records (API conventions)."""

from __future__ import annotations

import re

from pg_schema_restore.engine.record import RestoreRecord
from pg_schema_restore.engine.spec import RestoreSpec
from pg_schema_restore.k8s.status import refused_status, status_for

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


# -- Finished, messages, POINT, PROGRESS (issue 13) ---------------------------
def test_finished_is_true_at_either_end_and_false_before():
    running = RestoreRecord(restore_id="r1", spec=SPEC, phase="DataCopy")
    assert _conditions(status_for(running, 1))["Finished"]["status"] == "False"
    queued = status_for(RestoreRecord(restore_id="r1", spec=SPEC), 1, waiting="no slot")
    assert _conditions(queued)["Finished"]["status"] == "False"
    for phase, error in (("Succeeded", None),
                         ("Failed", {"phase": "DataCopy", "reason": "JobFailed",
                                     "message": "boom"})):
        done = RestoreRecord(restore_id="r1", spec=SPEC, phase=phase, error=error,
                             completed=["Initialize", "Cleanup", "Record"])
        finished = _conditions(status_for(done, 1))["Finished"]
        assert finished["status"] == "True", finished
        assert REASON.match(finished["reason"])
    refused = {c["type"]: c for c in refused_status("InvalidSpec", "bad", 1)["conditions"]}
    assert refused["Finished"]["status"] == "True"
    assert refused["Succeeded"]["status"] == "False"


def test_each_condition_has_its_own_message():
    done = RestoreRecord(restore_id="r1", spec=SPEC, phase="Succeeded", schemas_created=True,
                         completed=["Initialize", "TemporaryDatabase", "SchemaExtraction",
                                    "DataCopy", "PostData", "Cleanup", "Record"])
    messages = [c["message"] for c in status_for(done, 1)["conditions"]]
    assert len(set(messages)) == len(messages), messages


def test_pre_data_failure_leaves_extraction_done():
    record = RestoreRecord(restore_id="r1", spec=SPEC, phase="Cleanup", schemas_created=True,
                           completed=["Initialize", "TemporaryDatabase"],
                           error={"phase": "SchemaExtraction", "reason": "ApplyFailed",
                                  "message": "pre-data failed"})
    cond = _conditions(status_for(record, 1))
    assert cond["SchemaExtracted"]["status"] == "True"
    assert cond["PreDataApplied"]["status"] == "False"
    assert cond["PreDataApplied"]["reason"] == "ApplyFailed"


def test_point_column_for_each_kind_of_point():
    timed = RestoreRecord(restore_id="r1", spec=SPEC)
    assert status_for(timed, 1)["point"] == "2024-01-28T14:30:00Z"
    snap = RestoreSpec.from_dict({"database": "appdb", "schemas": ["a"],
                                  "snapshotId": "rds:prod-2024-01-28-03-00"})
    record = RestoreRecord(restore_id="r1", spec=snap)
    assert status_for(record, 1)["point"] == "rds:prod-2024-01-28-03-00"   # not read yet
    record.source = {"kind": "instance", "snapshot_time": "2024-01-28T03:00:12+00:00"}
    assert status_for(record, 1)["point"] == "rds:prod-2024-01-28-03-00 (2024-01-28T03:00:12Z)"
    arn = RestoreSpec.from_dict({"database": "appdb", "schemas": ["a"], "snapshotId":
                                 "arn:aws:rds:eu-west-1:123456789012:cluster-snapshot:manual-1"})
    assert status_for(RestoreRecord(restore_id="r1", spec=arn), 1)["point"] == "manual-1"
    assert all("None" not in status_for(RestoreRecord(restore_id="r", spec=s), 1)["point"]
               for s in (SPEC, snap, arn))


def test_progress_says_queued_while_queued():
    queued = status_for(RestoreRecord(restore_id="r1", spec=SPEC), 1, waiting="no slot")
    assert queued["progress"]["summary"] == "Queued"
    assert status_for(RestoreRecord(restore_id="r1", spec=SPEC), 1)["progress"][
        "summary"].startswith("1/7")
