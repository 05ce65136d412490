"""A step's processes die with whoever started them: no orphan writes to production.

A data-plane step (`python -m ddl_job …`) spawns pg_dump, pg_restore and
psql. If the operator that started the step is killed (SIGKILL: no chance to
clean up), those processes must not go on writing to production while a new
operator starts the same step again. Two links, both set here at start-up:

- parent death: when `PGSR_PARENT_PID` names the process that started us
  (the subprocess executor sets it), the kernel sends us SIGTERM when that
  parent dies (`prctl(PR_SET_PDEATHSIG)`, Linux; it fires when the parent
  *thread* that started us ends, and the executor waits for the step on
  that thread). If the parent is already gone, we stop at once.
- our children: when we lead our own process group (the executor starts us
  with a new session; a container's first process does too), SIGTERM or
  SIGHUP ends the whole group: pg_dump, psql and pg_restore's workers are in
  it. A process that does not lead its group (run from a shell) keeps
  Python's default handling, so a terminal's Ctrl-C and job control behave
  as usual and no unrelated process is signalled.

On the server a killed client's transaction rolls back; every step writes
inside transactions, or into schemas that Cleanup drops by marker.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from types import FrameType

PARENT_ENV = "PGSR_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def _end_group(signum: int, _frame: FrameType | None) -> None:
    """Take our children with us (we ignore the signal we pass on)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        os.killpg(os.getpgrp(), signal.SIGTERM)
    finally:
        os._exit(128 + signum)


def leads_group() -> bool:
    return os.getpgrp() == os.getpid()


def tie_to_parent() -> None:
    """Install both links (see the module's docstring); a no-op where they cannot apply."""
    if leads_group():
        signal.signal(signal.SIGTERM, _end_group)
        signal.signal(signal.SIGHUP, _end_group)
    expected = os.environ.get(PARENT_ENV, "")
    if not expected.isdigit() or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        return   # pragma: no cover - prctl cannot fail with these arguments
    if os.getppid() != int(expected):   # the parent died before prctl took hold
        os.kill(os.getpid(), signal.SIGTERM)
