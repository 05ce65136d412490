"""How restore events read to people: one renderer for every place they show.

The engine and the data plane report dicts (`{"event": "phase_finished",
"phase": …}`, `{"event": "table_done", …}`). `notice` turns the ones a user
must see into a reason and a message (Kubernetes Events, the operator's log,
the CLI); `line` renders any event as one line of the command line's output;
`HumanReporter` prints the data plane's own reports (`from-copy`, the demo)
in that same form. Messages never hold a credential: events never carry one.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import IO, Any

from ddl_job.names import shown, visible
from ddl_job.progress import Reporter

from .engine.record import RestoreRecord

# Detail events worth a line on a terminal (the rest is for --json).
_DETAILS = {"table_done", "renamed", "rewritten", "created", "warning",
            "dropped_after_failure", "post_data_applied"}
_QUIET = {"started", "copy_progress"}   # per chunk: the engine shows it at its pace


@dataclass(frozen=True)
class Notice:
    """What a user is told: a CamelCase reason, a message, and whether it warns."""

    reason: str
    message: str
    warning: bool = False


def notice(event: dict[str, Any]) -> Notice | None:
    """The notice for a phase-level event, or None for details."""
    kind, phase = event.get("event"), event.get("phase")
    if kind == "phase_started":
        return Notice(f"{phase}Started", f"{phase} started")
    if kind == "phase_finished":
        return Notice(f"{phase}Done", f"{phase} finished in {event.get('seconds')} s")
    if kind == "phase_failed":
        return Notice(event.get("reason") or "Failed", f"{phase}: {event.get('message', '')}",
                      warning=True)
    if kind == "restore_warning":
        return Notice("RestoreWarning", str(event.get("message")), warning=True)
    return None


def outcome(record: RestoreRecord) -> Notice:
    """The notice for a finished restore."""
    if record.succeeded:
        mapping = ", ".join(f"{shown(old)} -> {shown(new)}"
                            for old, new in record.targets.items())
        return Notice("Succeeded", f"restored {mapping}")
    error = record.error or {}
    return Notice(error.get("reason", "Failed"),
                  f"failed in {error.get('phase')}: {error.get('message', '')}", warning=True)


def fields_text(fields: dict[str, Any]) -> str:
    return " ".join(f"{key}={_short(value)}" for key, value in fields.items())


def line(event: dict[str, Any]) -> str | None:
    """One terminal line for an engine event, or None for what stays quiet."""
    said = notice(event)
    if said is not None:
        phase = str(event.get("phase") or said.reason)
        if event.get("event") == "phase_failed":
            return f"[{phase}] failed ({said.reason}): {event.get('message', '')}"
        return f"[{phase}] {said.message.removeprefix(phase + ' ')}"   # "[DataCopy] finished in 3.0 s"
    if event.get("event") == "progress":   # live progress, at the save throttle's pace
        return f"[{event.get('phase')}] {event.get('summary', '')}".rstrip()
    if event.get("event") in _DETAILS:
        details = {k: v for k, v in event.items() if k not in ("event", "elapsed", "restoreId")}
        return f"  {event['event']} {fields_text(details)}".rstrip()
    return None


def printer(stream: IO[str] | None = None):
    """An on_event callback printing `line(event)` to stderr."""
    def show(event: dict[str, Any]) -> None:
        text = line(event)
        if text is not None:
            print(text, file=stream or sys.stderr, flush=True)
    return show


class HumanReporter(Reporter):
    """The data plane's reports as `[step] event key=value …` lines on stderr."""

    def __init__(self, step: str, stream: IO[str] | None = None) -> None:
        super().__init__(step, stream if stream is not None else sys.stderr)

    def emit(self, event: str, **fields: Any) -> None:
        if event in _QUIET:
            return
        with self._lock:
            self._stream.write(f"[{self.step}] {event} {fields_text(fields)}".rstrip() + "\n")
            self._stream.flush()

    def child(self, step: str) -> "Reporter":
        return HumanReporter(step, self._stream)


def _short(value: Any) -> str:
    """One field on one line: a name with a line break must not forge a line."""
    text = visible(str(value))
    return text if len(text) <= 160 else text[:157] + "..."
