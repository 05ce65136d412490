"""status.record keeps only what resuming needs; join puts the record back (issue 13)."""

from __future__ import annotations

import json

from pg_schema_restore.engine.record import RestoreRecord
from pg_schema_restore.engine.spec import RestoreSpec
from pg_schema_restore.k8s.saved_record import compact, join, merge_patch, whole
from pg_schema_restore.k8s.status import status_for

SPEC = RestoreSpec.from_dict({"database": "appdb", "schemas": ["a", "Mixed Case"],
                              "restoreTime": "2024-01-28T14:30:00Z"})


def _finished() -> RestoreRecord:
    record = RestoreRecord(
        restore_id="r1", spec=SPEC, phase="Succeeded",
        completed=["Initialize", "TemporaryDatabase", "SchemaExtraction", "DataCopy",
                   "PostData", "Cleanup", "Record"],
        targets={"a": "a_20240128143000", "Mixed Case": "Mixed Case_20240128143000"},
        source={"kind": "instance", "engine_version": "15.4", "settings": {
            "instanceClass": {"value": "db.r6g.large", "from": "operator default"}},
            "earliest_restorable": "2024-01-20T00:00:00+00:00", "notes": ["n"]},
        resources={"suffix": "_20240128143000", "temporarySecret": "pgsr-r1-secret"},
        progress={"tablesDone": 2, "rows": 2050, "bytes": 155648},
        timings={"Initialize": 1.5, "Record": 0.0}, started_at="2024-01-28T15:00:00+00:00",
        finished_at="2024-01-28T15:10:00+00:00", schemas_created=True,
        warnings=["UnloggedTables: empty: a.t"],
        result={"verify": {"ok": True, "tables": 2, "rows": 2050}})
    record.result.update({"targets": record.targets, "timings": record.timings, "rows": 2050,
                          "bytes": 155648, "error": None})
    return record


def _through_the_api(status: dict) -> dict:
    return json.loads(json.dumps(status))


def test_round_trip_through_the_status():
    for record in (_finished(), RestoreRecord(restore_id="r2", spec=SPEC, phase="DataCopy",
                                              progress={"tablesDone": 1}),
                   RestoreRecord(restore_id="r3", spec=SPEC, phase="Cleanup",
                                 error={"phase": "DataCopy", "reason": "JobFailed",
                                        "message": "x"}, cleanup_requested=True)):
        status = _through_the_api(status_for(record, 1))
        back = join(status, SPEC)
        expected = record.to_dict()
        expected["source"] = {k: v for k, v in expected["source"].items()
                              if k in ("kind", "engine_version", "snapshot_time", "settings")}
        if record.done:   # the conditions say these now
            expected["result"] = {k: v for k, v in expected["result"].items()
                                  if k not in ("verify", "deleted")}
        assert back.to_dict() == expected


def test_the_record_holds_nothing_the_status_shows():
    status = _through_the_api(status_for(_finished(), 1))
    saved = status["record"]
    assert set(saved) <= {"restoreId", "spec", "phase", "completed", "source", "resources",
                          "timings", "schemasCreated", "cleanupRequested", "error", "result"}
    assert "targets" not in saved and "warnings" not in saved
    assert saved["result"] == {}
    conditions = {c["type"]: c["message"] for c in status["conditions"]}
    assert "2 tables, 2050 rows" in conditions["PostDataApplied"]
    assert "notes" not in saved["source"]
    assert len(json.dumps(saved)) < len(json.dumps(_finished().to_dict())) / 2


def test_the_spec_it_started_with_survives_an_edit_and_a_restart():
    """The record keeps the spec as first resolved: a spec edited while the
    webhook was absent (SpecChangeIgnored) does not change the restore, even
    when the operator restarts and resumes from the status."""
    running = RestoreRecord(restore_id="r2", spec=SPEC, phase="DataCopy",
                            completed=["Initialize", "TemporaryDatabase", "SchemaExtraction"])
    status = _through_the_api(status_for(running, 1))
    edited = RestoreSpec.from_dict({"database": "otherdb", "schemas": ["b"],
                                    "snapshotId": "snap-1", "targetSuffix": "_x"})
    back = join(status, edited)
    assert back.spec == SPEC
    assert back.to_dict() == running.to_dict() | {"started_at": back.started_at}


def test_a_status_written_by_the_previous_operator_resumes():
    """Before the split, status.record was the whole record in snake_case."""
    old = RestoreRecord(restore_id="r1", spec=SPEC, phase="DataCopy",
                        completed=["Initialize", "TemporaryDatabase", "SchemaExtraction"],
                        resources={"suffix": "_x", "temporarySecret": "pgsr-r1-secret"},
                        schemas_created=True, targets={"a": "a_x", "Mixed Case": "Mixed Case_x"})
    status = {"phase": "DataCopy", "record": old.to_dict()}
    assert whole(status)
    back = join(status, SPEC)
    assert back.to_dict() == old.to_dict()
    # The next save's merge patch removes the old keys the new form has not.
    stored = _apply(old.to_dict(), merge_patch(old.to_dict(), compact(back)))
    assert stored == {k: v for k, v in compact(back).items() if v is not None}   # null: absent
    assert not whole({"record": stored})
    assert join({"record": stored, "targetSchemas": old.targets}, SPEC).to_dict() == \
        {**old.to_dict(), "started_at": back.started_at}


def test_a_key_gone_from_the_record_goes_from_the_status():
    """A cleanup error retried away must not stay in the status (merge patch)."""
    before = {"phase": "Failed", "result": {"cleanupErrors": ["x"], "droppedSchemas": ["a"]}}
    after = {"phase": "Succeeded", "result": {"droppedSchemas": ["a"]}}
    assert merge_patch(before, after) == {"phase": "Succeeded", "result": {
        "cleanupErrors": None, "droppedSchemas": ["a"]}}
    assert _apply(before, merge_patch(before, after)) == after
    assert merge_patch(None, after) == after


def _apply(target, patch):
    """RFC 7386, as the API server applies a status merge patch."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _apply(out.get(key), value)
    return out
