"""What a restore tells people: Events and the operator's log lines (issue 13)."""

from __future__ import annotations

import logging

import pytest

from pg_schema_restore import events
from pg_schema_restore.engine.record import RestoreRecord
from pg_schema_restore.engine.spec import RestoreSpec
from pg_schema_restore.k8s.reporting import StatusWriter

SPEC = RestoreSpec.from_dict({"database": "appdb", "schemas": ["a", "Mixed Case"],
                              "restoreTime": "2024-01-28T14:30:00Z"})
BODY = {"metadata": {"namespace": "team-a", "name": "restore-a", "uid": "u1", "generation": 1},
        "spec": {}}


class Collecting(StatusWriter):
    """The writer, with Events collected instead of posted and no status patch."""

    def __init__(self) -> None:
        super().__init__(BODY)
        self.posted: list[events.Notice] = []

    def tell(self, said: events.Notice) -> None:
        self.posted.append(said)

    def _patch(self, status) -> None:
        pass


def _drive(writer: Collecting, record: RestoreRecord, story: list[dict]) -> None:
    writer.write(record)
    for event in story:
        writer.event({**event, "restoreId": record.restore_id})


def _phases(*names: str, failed: tuple[str, str, str] | None = None) -> list[dict]:
    story = []
    for name in names:
        story.append({"event": "phase_started", "phase": name})
        story.append({"event": "phase_finished", "phase": name, "seconds": 1.0})
    if failed:
        phase, reason, message = failed
        story += [{"event": "phase_started", "phase": phase},
                  {"event": "phase_failed", "phase": phase, "reason": reason,
                   "message": message}]
    return story


def _failed_record(phase: str) -> RestoreRecord:
    return RestoreRecord(restore_id="r1", spec=SPEC, phase="Failed",
                         error={"phase": phase, "reason": "JobFailed", "message": "it broke"})


def test_a_failure_is_one_warning_and_one_line_at_warning_level(caplog):
    writer, record = Collecting(), _failed_record("DataCopy")
    caplog.set_level(logging.INFO, "pg_schema_restore.operator")
    _drive(writer, record, _phases("Initialize", "TemporaryDatabase", "SchemaExtraction",
                                   failed=("DataCopy", "JobFailed", "it broke"))
           + _phases("Cleanup", "Record"))
    writer.finish(record)
    warnings = [n for n in writer.posted if n.warning]
    assert [(n.reason, n.message) for n in warnings] == [
        ("DataCopyFailed", "phase 4/7 DataCopy failed (JobFailed): it broke")]
    assert [n.reason for n in writer.posted] == [
        "InitializeDone", "TemporaryDatabaseDone", "SchemaExtractionDone", "DataCopyFailed",
        "CleanupDone", "Failed"]
    assert writer.posted[-1].message == "restore failed in DataCopy (JobFailed)"
    # The log: every start, end and failure, each naming the object and the restore.
    lines = [r for r in caplog.records if r.name == "pg_schema_restore.operator"]
    assert len(lines) == 2 * 6 + 1
    assert all("team-a/restore-a" in r.getMessage() and "restore r1" in r.getMessage()
               for r in lines)
    failed = [r for r in lines if r.levelno == logging.WARNING]
    assert len(failed) == 2 and "it broke" in failed[-1].getMessage()


def test_no_event_for_work_not_done():
    """Refused in Initialize: nothing was created, so nothing was cleaned up."""
    writer, record = Collecting(), _failed_record("Initialize")
    _drive(writer, record, _phases(failed=("Initialize", "MissingSchema", "no such schema"))
           + _phases("Cleanup", "Record"))
    writer.finish(record)
    assert [n.reason for n in writer.posted] == ["InitializeFailed", "Failed"]


@pytest.mark.parametrize("rows", [2050, None])
def test_success_reads_as_a_sentence(rows):
    record = RestoreRecord(restore_id="r1", spec=SPEC, phase="Succeeded",
                           targets={"a": "a_x", "Mixed Case": "Mixed Case_x"},
                           progress={"rows": rows} if rows else {})
    said = events.final(record)
    assert said.reason == "Succeeded" and not said.warning
    assert said.message.startswith('restore succeeded: restored a as a_x, "Mixed Case" as '
                                   '"Mixed Case_x"')
    assert not any(c in said.message for c in "{}[]'")


def test_every_phase_message_says_where_it_sits():
    assert events.notice({"event": "phase_finished", "phase": "PostData",
                          "seconds": 2.5}).message == "phase 5/7 PostData finished in 2.5 s"
    assert events.line({"event": "phase_finished", "phase": "PostData",
                        "seconds": 2.5}) == "[PostData] finished in 2.5 s"
    assert events.line({"event": "phase_failed", "phase": "DataCopy", "reason": "JobFailed",
                        "message": "x"}) == "[DataCopy] failed (JobFailed): x"
