"""The operator's mirror of an execution's history: the native engine's record
and events from state transitions and the records the Lambda steps return."""

from __future__ import annotations

import json

from pg_schema_restore.engine.record import RestoreRecord
from pg_schema_restore.engine.spec import RestoreSpec
from pg_schema_restore.stepfunctions.execution import HistoryMirror, execution_arn

SPEC = {"database": "appdb", "schemas": ["customer_a1"], "restoreTime": "2024-01-28T14:30:00Z",
        "source": {"dbIdentifier": "prod-db", "secretArn": "arn:aws:secretsmanager:x"}}


def entered(name: str) -> dict:
    return {"type": "TaskStateEntered", "stateEnteredEventDetails": {"name": name}}


def exited(name: str, record: RestoreRecord) -> dict:
    return {"type": "TaskStateExited", "stateExitedEventDetails": {
        "name": name, "output": json.dumps({"record": record.to_dict()})}}


def test_phases_errors_and_the_final_record_follow_the_history():
    record = RestoreRecord("abc", RestoreSpec.from_dict(SPEC))
    told: list[dict] = []
    mirror = HistoryMirror(record, told.append)
    theirs = RestoreRecord.from_dict(record.to_dict())
    theirs.completed, theirs.targets = ["Initialize"], {"customer_a1": "customer_a1_x"}
    mirror.feed([entered("Start"), entered("Initialize"), exited("Initialize", theirs),
                 entered("RestoreKind"), entered("WaitTemporaryDatabase")])
    assert record.phase == "TemporaryDatabase" and record.targets == theirs.targets
    assert record.completed == ["Initialize"]
    # a failing step: Collect's record carries the error (told once), cleanup follows
    theirs.error = {"phase": "SchemaExtraction", "reason": "TargetExists", "message": "taken"}
    theirs.warnings = ["w1"]
    events = mirror.seen_events = [entered("Start"), entered("Initialize"),
                                   exited("Initialize", theirs), entered("RestoreKind"),
                                   entered("WaitTemporaryDatabase"), entered("Credentials"),
                                   entered("Extract"), entered("Collect"),
                                   exited("Collect", theirs), exited("Collect", theirs)]
    mirror.feed(events)
    assert record.phase == "Cleanup" and record.error["reason"] == "TargetExists"
    assert [e["event"] for e in told].count("phase_failed") == 1
    assert [e["message"] for e in told if e["event"] == "restore_warning"] == ["w1"]
    theirs.phase = "Failed"
    theirs.completed = ["Initialize", "TemporaryDatabase", "Cleanup", "Record"]
    mirror.feed(events + [entered("Finish"), exited("Finish", theirs), entered("Outcome"),
                          entered("RestoreFailed")])
    assert record.done and record.phase == "Failed"
    assert record.completed == ["Initialize", "TemporaryDatabase", "Cleanup", "Record"]


def test_execution_arn_is_named_after_the_restore():
    assert execution_arn("arn:aws:states:eu-west-1:1:stateMachine:pgsr", "abc") == \
        "arn:aws:states:eu-west-1:1:execution:pgsr:abc"


def test_the_execution_s_record_keeps_the_operator_s_own_resources():
    """The execution never saw stepFunctionsExecution: adopting its record keeps
    it (a status merge patch used to hide that it was dropped)."""
    arn = execution_arn("arn:aws:states:eu-west-1:1:stateMachine:pgsr", "abc")
    record = RestoreRecord("abc", RestoreSpec.from_dict(SPEC),
                           resources={"stepFunctionsExecution": arn})
    mirror = HistoryMirror(record, lambda event: None)
    theirs = RestoreRecord.from_dict({**record.to_dict(), "resources": {"suffix": "_x"}})
    theirs.completed = ["Initialize"]
    mirror.feed([entered("Initialize"), exited("Initialize", theirs)])
    assert record.resources == {"stepFunctionsExecution": arn, "suffix": "_x"}
