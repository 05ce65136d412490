"""Run a data-plane step as a local `python -m ddl_job` process.

Connections are resolved from secret ids at the last moment and handed to
the child through its environment only (never argv, never logged).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import deque
from typing import Any, Callable

from psycopg.conninfo import make_conninfo

from ddl_job.conn import SOURCE_ENV, TARGET_ENV
from ddl_job.errors import DataPlaneError

from ..engine.ports import Secrets


def dsn_from_secret(secret: dict[str, Any], database: str) -> str:
    """A libpq DSN from an RDS-style secret (host, port, username, password)."""
    try:
        return make_conninfo(host=secret["host"], port=str(secret.get("port", 5432)),
                             user=secret["username"], password=secret["password"],
                             dbname=database)
    except KeyError as exc:
        raise DataPlaneError("InvalidSecret", f"secret lacks the {exc.args[0]!r} field") from None


class SubprocessExecutor:
    """Executor that runs each step on this machine."""

    def __init__(self, secrets: Secrets, python: str = sys.executable) -> None:
        self.secrets = secrets
        self.python = python

    def run(self, step: str, args: list[str], *, source_secret: str | None,
            target_secret: str | None, database: str,
            on_event: Callable[[dict[str, Any]], None]) -> Any:
        env = dict(os.environ)
        env.pop(SOURCE_ENV, None)
        env.pop(TARGET_ENV, None)
        if source_secret:
            env[SOURCE_ENV] = dsn_from_secret(self.secrets.read(source_secret), database)
        if target_secret:
            env[TARGET_ENV] = dsn_from_secret(self.secrets.read(target_secret), database)
        proc = subprocess.Popen([self.python, "-m", "ddl_job", *args], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stderr_tail: deque[str] = deque(maxlen=20)
        last: dict[str, Any] | None = None
        assert proc.stdout is not None and proc.stderr is not None
        import threading

        drain = threading.Thread(target=lambda: stderr_tail.extend(proc.stderr), daemon=True)
        drain.start()
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                stderr_tail.append(line)
                continue
            last = event
            if event.get("event") not in ("result", "error"):
                on_event(event)
        code = proc.wait()
        drain.join(timeout=5)
        if last is not None and last.get("event") == "error":
            raise DataPlaneError(last.get("reason", "StepFailed"), last.get("message", ""))
        if code != 0 or last is None or last.get("event") != "result":
            tail = "".join(stderr_tail).strip()[-1500:]
            raise DataPlaneError("StepFailed", f"step {step} exited {code}: {tail}")
        return last.get("result")
