"""The Argo CD health check, run as Argo CD runs it: Lua 5.1 (lupa's), `obj`
global, the returned table's status and message.

Two sources of objects: the samples in Argo CD's own layout (health_test.yaml
and testdata/, what an upstream contribution needs), and statuses made now by
the operator's own `status_for`/`refused_status`, so a change to the status
that the Lua no longer reads fails here rather than in a user's Argo CD.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

from pg_schema_restore.engine.record import PHASES, RestoreRecord
from pg_schema_restore.engine.spec import RestoreSpec
from pg_schema_restore.k8s.status import refused_status, status_for

ROOT = Path(__file__).resolve().parent.parent
CHECK = ROOT / "argocd/resource_customizations/pgschemarestore.io/SchemaRestore"
SAMPLES = yaml.safe_load((CHECK / "health_test.yaml").read_text())["tests"]


def health(obj: dict[str, Any]) -> dict[str, str]:
    """Argo CD's call: the script with `obj` set, its returned table read back."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute((CHECK / "health.lua").read_text())
    return {"status": result["status"], "message": result["message"]}


@pytest.mark.parametrize("sample", SAMPLES, ids=[s["inputPath"] for s in SAMPLES])
def test_argo_cd_sample(sample: dict[str, Any]) -> None:
    obj = yaml.safe_load((CHECK / sample["inputPath"]).read_text())
    assert health(obj) == sample["healthStatus"]


def test_every_sample_file_is_listed() -> None:
    listed = {s["inputPath"] for s in SAMPLES}
    on_disk = {f"testdata/{p.name}" for p in (CHECK / "testdata").glob("*.yaml")}
    assert on_disk == listed


SPEC = RestoreSpec.from_dict({"database": "app", "schemas": ["a"],
                              "restoreTime": "2024-01-28T14:30:00Z"})


def _object(status: dict[str, Any], generation: int = 1) -> dict[str, Any]:
    return {"metadata": {"name": "r", "generation": generation}, "status": status}


@pytest.mark.parametrize("phase", PHASES)
def test_a_running_restore_is_progressing_in_every_phase(phase: str) -> None:
    record = RestoreRecord("r1", SPEC, phase=phase, completed=list(PHASES[:PHASES.index(phase)]))
    said = health(_object(status_for(record, 1)))
    assert said["status"] == "Progressing"
    assert phase in said["message"]


def test_queued_and_cleaning_up_are_progressing_with_the_reason_why() -> None:
    queued = health(_object(status_for(RestoreRecord("r1", SPEC), 1, waiting="no free slot")))
    assert queued == {"status": "Progressing", "message": "no free slot"}
    failing = RestoreRecord("r1", SPEC, phase="Cleanup",
                            error={"phase": "DataCopy", "reason": "CopyFailed", "message": "x"})
    said = health(_object(status_for(failing, 1)))
    assert said["status"] == "Progressing" and "CopyFailed" in said["message"]


def test_verdicts_from_the_operators_own_status() -> None:
    done = RestoreRecord("r1", SPEC, phase="Succeeded", completed=list(PHASES),
                         targets={"a": "a_1"})
    assert health(_object(status_for(done, 1))) == {
        "status": "Healthy", "message": "Succeeded: restored a -> a_1"}
    failed = RestoreRecord("r1", SPEC, phase="Failed",
                           error={"phase": "PostData", "reason": "VerifyFailed", "message": "d"})
    assert health(_object(status_for(failed, 1))) == {
        "status": "Degraded", "message": "VerifyFailed: failed in PostData: d"}
    assert health(_object(refused_status("InvalidSpec", "bad", 1))) == {
        "status": "Degraded", "message": "InvalidSpec: bad"}


def test_a_finished_restore_keeps_its_verdict_when_its_generation_moves() -> None:
    done = RestoreRecord("r1", SPEC, phase="Succeeded", completed=list(PHASES))
    said = health(_object(status_for(done, 1), generation=2))
    assert said["status"] == "Healthy"
    assert "edits are not applied" in said["message"]


def test_the_docs_show_this_very_script() -> None:
    check = subprocess.run([sys.executable, str(ROOT / "scripts/docs.py"), "--check"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
