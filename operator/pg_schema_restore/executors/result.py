"""Read a step's outcome from its last JSON line: one rule for every executor.

The data plane ends each step with one `result` or `error` line (stdout for
a process, the termination message for a Kubernetes Job). An `error` line
carries the step's own reason; a step that died without either line is
reported with what the executor saw (exit code, log tail).
"""

from __future__ import annotations

import json
from typing import Any

from ddl_job.errors import DataPlaneError


def parse_line(line: str) -> dict[str, Any] | None:
    """A JSON object line, or None for anything else (log noise, truncation)."""
    try:
        event = json.loads(line)
    except (json.JSONDecodeError, TypeError):
        return None
    return event if isinstance(event, dict) else None


def step_result(last: dict[str, Any] | None, *, ended_ok: bool, reason: str,
                failure: str) -> Any:
    """The step's result; DataPlaneError with the step's reason, or with `reason`
    and `failure` (what the executor saw) when the step could not say."""
    if last is not None and last.get("event") == "error":
        raise DataPlaneError(last.get("reason", "StepFailed"), last.get("message", ""))
    if not ended_ok or last is None or last.get("event") != "result":
        raise DataPlaneError(reason, failure)
    return last.get("result")
