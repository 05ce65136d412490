"""Run the real `python -m ddl_job` CLI in a subprocess and parse its JSON lines
(shared by the bad-input and rich-restore suites)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    events: list[dict]
    seconds: float

    @property
    def last(self) -> dict:
        return self.events[-1]

    def find(self, event: str) -> list[dict]:
        return [e for e in self.events if e.get("event") == event]

    def __str__(self) -> str:
        return (f"exit {self.returncode}\nstdout:\n{self.stdout[-4000:]}\n"
                f"stderr:\n{self.stderr[-3000:]}")


def run_ddl_job(args: list[str], *, source: str | None, target: str | None,
                timeout: float = 300, extra_env: dict[str, str] | None = None,
                command: list[str] | None = None) -> Run:
    """Connections only through PGSR_*_DSN; no PG* variable leaks in from outside
    (`extra_env`, e.g. a PATH, is added last). `command` runs the steps some
    other way (the built image) instead of this Python's `-m ddl_job`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(extra_env or {})
    if source is not None:
        env["PGSR_SOURCE_DSN"] = source
    if target is not None:
        env["PGSR_TARGET_DSN"] = target
    started = time.monotonic()
    proc = subprocess.run([*(command or [sys.executable, "-m", "ddl_job"]), *args],
                          cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    seconds = time.monotonic() - started
    events = []
    for line in proc.stdout.splitlines():
        if line.strip():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                pytest.fail(f"stdout line is not JSON: {line!r}\n{proc.stderr[-3000:]}")
    return Run(proc.returncode, proc.stdout, proc.stderr, events, seconds)
