"""Live progress, pure parts: the save throttle (a fake clock, no sleeps), the
fold of the copy's reports, percent, ETA, and the PROGRESS column's text."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pg_schema_restore.engine import progress
from pg_schema_restore.engine.record import RestoreRecord
from pg_schema_restore.engine.spec import RestoreSpec
from pg_schema_restore.events import line
from pg_schema_restore.k8s.status import status_for

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
SPEC = RestoreSpec.from_dict({"database": "appdb", "schemas": ["a"],
                              "restoreTime": "2024-01-28T14:30:00Z"})


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_throttle_lets_one_through_per_interval():
    clock = FakeClock()
    throttle = progress.Throttle(5.0, clock)
    assert throttle.ready()                 # the first report is saved at once
    assert not throttle.ready()
    clock.now += 4.9
    assert not throttle.ready()
    clock.now += 0.1
    assert throttle.ready()                 # 5 s after the last save
    clock.now += 3
    assert not throttle.ready()
    clock.now += 7
    assert throttle.ready()
    assert not throttle.ready()


def test_throttle_of_zero_passes_everything():
    clock = FakeClock()
    throttle = progress.Throttle(0, clock)
    assert all(throttle.ready() for _ in range(5))


def _copied(seconds: float, **counters) -> dict:
    state: dict = {}
    progress.start(state, T0)
    progress.fold(state, {"event": "copy_plan", "tables": 40, "rows_total": 1000,
                          "bytes": 4000}, T0)
    progress.fold(state, {"event": "copy_progress", "tables": 40, "rows_total": 1000,
                          "bytes_total": 4000, **counters}, T0 + timedelta(seconds=seconds))
    return state


def test_fold_sets_totals_then_absolute_counters():
    state = _copied(30, tables_done=12, rows=300, bytes=1480)
    assert state["tablesDone"] == 12 and state["tablesTotal"] == 40
    assert state["rows"] == 300 and state["rowsTotal"] == 1000
    assert state["bytes"] == 1480 and state["bytesTotal"] == 4000
    assert state["startedAt"] == "2026-01-01T12:00:00+00:00"
    assert state["updatedAt"] == "2026-01-01T12:00:30+00:00"
    assert state["bytesPerSecond"] == 49
    # The same report again (a log re-read) changes nothing.
    before = dict(state)
    progress.fold(state, {"event": "copy_progress", "tables_done": 12, "rows": 300,
                          "bytes": 1480}, T0 + timedelta(seconds=30))
    assert state == before
    assert not progress.fold(state, {"event": "table_done", "rows": 5}, T0)


def test_percent_by_bytes_then_rows_then_tables():
    assert progress.fraction({"bytes": 1, "bytesTotal": 4, "rows": 9, "rowsTotal": 10}) == 0.25
    assert progress.fraction({"rows": 3, "rowsTotal": 4, "tablesDone": 1,
                              "tablesTotal": 10}) == 0.75
    assert progress.fraction({"tablesDone": 1, "tablesTotal": 10}) == 0.1
    assert progress.fraction({"tablesDone": 3}) is None
    assert progress.fraction({"bytes": 9, "bytesTotal": 4}) == 1.0


@pytest.mark.parametrize("seconds, done, expected", [
    (5, 2000, None),        # too early: 5 s
    (60, 40, None),         # too little: 1 %
    (60, 1000, 180.0),      # a quarter in a minute: three more
    (30, 2000, 30.0),
    (60, 4000, None),       # done: nothing left to estimate
])
def test_eta_only_once_meaningful(seconds, done, expected):
    state = _copied(seconds, tables_done=1, rows=1, bytes=done)
    assert progress.eta_seconds(state) == expected


@pytest.mark.parametrize("seconds, text", [
    (0, "0s"), (44.6, "45s"), (89, "89s"), (90, "2m"), (180, "3m"), (5369, "89m"),
    (5400, "1h30m"), (7500, "2h05m")])
def test_duration_is_short(seconds, text):
    assert progress.duration(seconds) == text


def test_summary_grows_as_it_is_known():
    assert progress.summary({}) == ""
    assert progress.summary({"tablesDone": 3}) == "3 tables"
    assert progress.summary({"tablesDone": 12, "tablesTotal": 40}) == "12/40 tables 30%"
    assert progress.summary(_copied(60, tables_done=12, rows=300, bytes=1480)
                            ) == "12/40 tables 37% ETA 2m"


def _record(**state) -> RestoreRecord:
    return RestoreRecord(restore_id="r1", spec=SPEC, phase="DataCopy",
                         completed=["Initialize", "TemporaryDatabase", "SchemaExtraction"],
                         progress=state)


def test_progress_column_shows_tables_percent_and_eta():
    assert status_for(_record(), 1)["progress"]["summary"] == "4/7 copy"
    status = status_for(_record(**_copied(60, tables_done=12, rows=300, bytes=1480)), 1)
    assert status["progress"]["summary"] == "4/7 copy 12/40 tables 37% ETA 2m"
    assert status["progress"]["tablesDone"] == 12 and status["progress"]["bytesTotal"] == 4000
    early = status_for(_record(**_copied(3, tables_done=1, rows=10, bytes=100)), 1)
    assert early["progress"]["summary"] == "4/7 copy 1/40 tables 2%"
    other = RestoreRecord(restore_id="r1", spec=SPEC, phase="PostData")
    assert status_for(other, 1)["progress"]["summary"] == "5/7"


def test_cli_prints_the_progress_line():
    assert line({"event": "progress", "phase": "DataCopy",
                 "summary": "12/40 tables 37% ETA 2m"}) == "[DataCopy] 12/40 tables 37% ETA 2m"
