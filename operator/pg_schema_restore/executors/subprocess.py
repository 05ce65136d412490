"""Run a data-plane step as a local `python -m ddl_job` process.

Connections are resolved from secret ids at the last moment and handed to
the child through its environment only (never argv, never logged).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import deque
from typing import Any, Callable

from ddl_job.conn import SOURCE_ENV, TARGET_ENV
from ddl_job.requests import StepRequest

from ..engine.ports import Secrets
from .connections import dsn_from_secret
from .result import parse_line, step_result


class SubprocessExecutor:
    """Executor that runs each step on this machine."""

    def __init__(self, secrets: Secrets, python: str = sys.executable) -> None:
        self.secrets = secrets
        self.python = python

    def cleanup(self) -> list[str]:
        """A local process leaves nothing behind (its env died with it)."""
        return []

    def run(self, request: StepRequest, *, source_secret: str | None,
            target_secret: str | None, database: str,
            on_event: Callable[[dict[str, Any]], None]) -> Any:
        env = dict(os.environ)
        env.pop(SOURCE_ENV, None)
        env.pop(TARGET_ENV, None)
        if source_secret:
            env[SOURCE_ENV] = dsn_from_secret(self.secrets.read(source_secret), database)
        if target_secret:
            env[TARGET_ENV] = dsn_from_secret(self.secrets.read(target_secret), database)
        proc = subprocess.Popen([self.python, "-m", "ddl_job", *request.to_argv()], env=env,
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stderr_tail: deque[str] = deque(maxlen=20)
        last: dict[str, Any] | None = None
        assert proc.stdout is not None and proc.stderr is not None
        drain = threading.Thread(target=lambda: stderr_tail.extend(proc.stderr), daemon=True)
        drain.start()
        for line in proc.stdout:
            event = parse_line(line)
            if event is None:
                stderr_tail.append(line)
                continue
            last = event
            if event.get("event") not in ("result", "error"):
                on_event(event)
        code = proc.wait()
        drain.join(timeout=5)
        tail = "".join(stderr_tail).strip()[-1500:]
        return step_result(last, ended_ok=code == 0, reason="StepFailed",
                           failure=f"step {request.step} exited {code}: {tail}")
