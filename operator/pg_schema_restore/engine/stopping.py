"""Why a restore's work should stop, as the engine and its executors see it.

Two different requests reach a running step, and they must not be confused:

- `cancelled`: the restore itself is withdrawn (its SchemaRestore is being
  deleted). The running step is killed (a process group, a Job deleted with
  foreground propagation), the phase fails with `Cancelled`, and Cleanup
  drops what the restore created.
- `interrupted`: only this process is going away (the operator shuts
  down). Nothing is failed: the executor stops waiting and raises
  `Interrupted`, which the runner lets through, so the record stays as last
  saved and the next process resumes it (adopting a Job still running,
  re-running a local step that died with us).

Callers (the kopf daemon, the CLI) supply the two predicates; the engine
knows nothing of where they come from.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from ddl_job.errors import Cancelled


def never() -> bool:
    return False


class Interrupted(BaseException):
    """This process stops driving the restore; the restore itself goes on.

    A BaseException, like KeyboardInterrupt: the runner turns every
    Exception into a failed restore, and this is not one."""


@dataclass(frozen=True)
class Stop:
    """Polled by executors while a step runs, and by the runner between phases."""

    cancelled: Callable[[], bool] = never
    interrupted: Callable[[], bool] = never

    def requested(self) -> bool:
        return self.cancelled() or self.interrupted()

    def raise_if_requested(self) -> None:
        """Cancelled (a failure of the restore) first: it is the stronger request."""
        if self.cancelled():
            raise Cancelled()
        if self.interrupted():
            raise Interrupted()


NEVER = Stop()


def stoppable_sleep(stop: Stop, applies: Callable[[], bool],
                    tick: float = 0.5) -> Callable[[float], None]:
    """A `sleep` for adapters' long waits (an RDS restore, a DMS task): it
    raises the stop request within `tick` while `applies()` (the restore is
    not in its Cleanup, which is never cancelled)."""
    def sleep(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            if applies():
                stop.raise_if_requested()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, tick))
    return sleep
