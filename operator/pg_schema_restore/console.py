"""Human-readable progress for the command line (the JSON lines stay available
with --json)."""

from __future__ import annotations

import sys
from typing import IO, Any

from ddl_job.progress import Reporter

_QUIET = {"started"}


class HumanReporter(Reporter):
    """Prints `[step] event key=value …` lines to stderr."""

    def __init__(self, step: str, stream: IO[str] | None = None) -> None:
        super().__init__(step, stream if stream is not None else sys.stderr)

    def emit(self, event: str, **fields: Any) -> None:
        if event in _QUIET:
            return
        details = " ".join(f"{k}={_short(v)}" for k, v in fields.items())
        with self._lock:
            self._stream.write(f"[{self.step}] {event} {details}".rstrip() + "\n")
            self._stream.flush()

    def child(self, step: str) -> "Reporter":
        return HumanReporter(step, self._stream)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 160 else text[:157] + "..."
