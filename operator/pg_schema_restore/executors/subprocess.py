"""Run a data-plane step as a local `python -m ddl_job` process.

Connections are resolved from secret ids at the last moment and handed to
the child through its environment only (never argv, never logged).

The step runs in its own session (a process group with pg_dump and psql)
and is told our pid (`PGSR_PARENT_PID`), so it dies when we die, even by
SIGKILL (`ddl_job/lifeline.py`). A stop request (`Stop`, polled while the
step runs) ends the whole group: deletion raises `Cancelled`, shutdown
`Interrupted`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import deque
from typing import Any, Callable

from ddl_job.conn import SOURCE_ENV, TARGET_ENV
from ddl_job.lifeline import PARENT_ENV
from ddl_job.requests import StepRequest

from ..engine.ports import Secrets
from ..engine.stopping import NEVER, Stop
from .connections import dsn_from_secret
from .process_group import GRACE_SECONDS, end_group
from .result import parse_line, step_result


class SubprocessExecutor:
    """Executor that runs each step on this machine."""

    def __init__(self, secrets: Secrets, python: str = sys.executable, *,
                 poll_seconds: float = 0.2, grace_seconds: float = GRACE_SECONDS) -> None:
        self.secrets = secrets
        self.python = python
        self.poll_seconds = poll_seconds
        self.grace_seconds = grace_seconds

    def cleanup(self) -> list[str]:
        """A local process leaves nothing behind (its env died with it)."""
        return []

    def settle(self, stop: Stop = NEVER) -> list[str]:
        """Nothing to wait for: an earlier process's steps died with it."""
        return []

    def run(self, request: StepRequest, *, source_secret: str | None,
            target_secret: str | None, database: str,
            on_event: Callable[[dict[str, Any]], None], stop: Stop = NEVER) -> Any:
        env = dict(os.environ)
        env.pop(SOURCE_ENV, None)
        env.pop(TARGET_ENV, None)
        if source_secret:
            env[SOURCE_ENV] = dsn_from_secret(self.secrets.read(source_secret), database)
        if target_secret:
            env[TARGET_ENV] = dsn_from_secret(self.secrets.read(target_secret), database)
        env[PARENT_ENV] = str(os.getpid())
        proc = subprocess.Popen([self.python, "-m", "ddl_job", *request.to_argv()], env=env,
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        ended_by: list[BaseException] = []
        watch = threading.Thread(target=self._watch, args=(proc, stop, ended_by), daemon=True)
        watch.start()
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
        watch.join()
        drain.join(timeout=5)
        if ended_by:
            raise ended_by[0]
        tail = "".join(stderr_tail).strip()[-1500:]
        return step_result(last, ended_ok=code == 0, reason="StepFailed",
                           failure=f"step {request.step} exited {code}: {tail}")

    def _watch(self, proc: subprocess.Popen, stop: Stop, ended_by: list[BaseException]
               ) -> None:
        """Until the step ends: on a stop request, end its process group and
        leave the reason in `ended_by` for `run` to raise."""
        while True:
            try:
                proc.wait(timeout=self.poll_seconds)
                return
            except subprocess.TimeoutExpired:
                pass
            try:
                stop.raise_if_requested()
            except BaseException as reason:  # Cancelled or Interrupted, raised by run
                ended_by.append(reason)
                end_group(proc, self.grace_seconds)
                return
