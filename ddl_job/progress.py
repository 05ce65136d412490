"""JSON-lines progress on stdout: the contract between a step and its executor.

Every line is one JSON object with at least `event` and `step`. The last
line of a step is `{"event": "result", ...}` on success or
`{"event": "error", "reason": ..., "message": ...}` on failure. Executors
(a local subprocess, a Kubernetes Job, an ECS task) read these lines back.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import IO, Any


class Reporter:
    """Writes progress events; thread-safe because copy workers report too."""

    def __init__(self, step: str, stream: IO[str] | None = None) -> None:
        self.step = step
        self._stream = stream if stream is not None else sys.stdout
        self._lock = threading.Lock()
        self._started = time.monotonic()

    def emit(self, event: str, **fields: Any) -> None:
        record = {"event": event, "step": self.step,
                  "elapsed": round(time.monotonic() - self._started, 3), **fields}
        line = json.dumps(record, default=str, sort_keys=False)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

    def child(self, step: str) -> "Reporter":
        """A reporter for a sub-step writing to the same stream."""
        return Reporter(step, self._stream)


class NullReporter(Reporter):
    """Discards events (library use without an executor)."""

    def __init__(self, step: str = "") -> None:
        super().__init__(step)

    def emit(self, event: str, **fields: Any) -> None:  # noqa: D102
        return None

    def child(self, step: str) -> "Reporter":  # noqa: D102
        return self
