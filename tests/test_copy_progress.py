"""The copy reports live progress: totals up front, then absolute counters after
every chunk, so a large table moves the counters long before it is done."""

from __future__ import annotations

import io
import json

from ddl_job.conn import Endpoint
from ddl_job.copy import CHUNK_PAGES_ENV, copy_data
from ddl_job.progress import Reporter

DDL = """
CREATE SCHEMA prog;
CREATE TABLE prog.large (id bigint, payload text);
CREATE TABLE prog.small (id int);
CREATE TABLE prog.unanalyzed (id int);
"""
FILL = """
INSERT INTO prog.large SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 30000) g;
INSERT INTO prog.small SELECT g FROM generate_series(1, 10) g;
ANALYZE prog.large;
INSERT INTO prog.unanalyzed SELECT g FROM generate_series(1, 5) g;
"""


def test_copy_emits_increasing_progress_during_a_large_table(copyhost, new_db, monkeypatch):
    src, tgt = new_db(copyhost, "src"), new_db(copyhost, "tgt")
    copyhost.execute(DDL + FILL, src)
    copyhost.execute(DDL, tgt)
    # The range size as the operator's Job gets it (tests shrink it; the default
    # would not split a table of a few MB).
    monkeypatch.setenv(CHUNK_PAGES_ENV, "40")
    stream = io.StringIO()
    summary = copy_data(Endpoint.from_dsn("source", copyhost.dsn(src)),
                        Endpoint.from_dsn("target", copyhost.dsn(tgt)), ["prog"],
                        jobs=2, reporter=Reporter("copy", stream))

    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    plan = next(e for e in events if e["event"] == "copy_plan")
    assert plan["tables"] == 3
    assert plan["bytes"] == summary["bytes"] > 0
    # Totals known before any row moved: the large table by its planner estimate
    # (ANALYZE ran), the small ones counted exactly.
    assert 29000 <= plan["rows_total"] <= 31000 + 15

    kinds = [e["event"] for e in events]
    large_done = next(i for i, e in enumerate(events)
                      if e["event"] == "table_done" and e["table"] == "prog.large")
    assert events[large_done]["chunks"] >= 4
    progress = [e for e in events if e["event"] == "copy_progress"]
    assert kinds.index("copy_plan") < kinds.index("copy_progress")
    # One report per unit: every chunk of the large table, and each small table.
    assert len(progress) == events[large_done]["chunks"] + 2
    before_large_done = [e for e in events[:large_done] if e["event"] == "copy_progress"]
    assert len(before_large_done) >= 3
    for earlier, later in zip(progress, progress[1:]):
        for key in ("rows", "bytes", "tables_done"):
            assert later[key] >= earlier[key]
    middle = [e for e in before_large_done if 0 < e["bytes"] < plan["bytes"]]
    assert len({e["bytes"] for e in middle}) >= 2       # it moved more than once mid-table
    assert all(e["tables"] == 3 and e["bytes_total"] == plan["bytes"] for e in progress)
    last = progress[-1]
    assert last["tables_done"] == 3 and last["bytes"] == plan["bytes"]
    assert last["rows"] == summary["rows"] == 30015
    assert last["rows_total"] >= last["rows"]
