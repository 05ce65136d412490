"""Stop a step's local process and everything it started, as one group.

The subprocess executor starts each step in a new session, so the step's
process leads a process group holding pg_dump, psql and pg_restore's
workers. Ending the group ends them all: SIGTERM first (the step passes it
on and exits, `ddl_job/lifeline.py`), SIGKILL for whatever is left after a
grace period.
"""

from __future__ import annotations

import os
import signal
import subprocess

GRACE_SECONDS = 5.0


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass   # every member is gone already


def end_group(proc: subprocess.Popen, grace: float = GRACE_SECONDS) -> None:
    """SIGTERM the group `proc` leads, wait up to `grace`, then SIGKILL it.

    The final SIGKILL is sent even when `proc` itself exited: a child that
    ignored SIGTERM may still be in the group."""
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()
