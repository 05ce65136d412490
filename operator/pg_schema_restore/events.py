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

from .engine.record import PHASES, RestoreRecord

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


def step(phase: Any) -> str:
    """`phase 4/7 DataCopy`: where a phase sits, so lines read in order."""
    if phase in PHASES:
        return f"phase {PHASES.index(phase) + 1}/{len(PHASES)} {phase}"
    return f"phase {phase}"


def notice(event: dict[str, Any]) -> Notice | None:
    """The notice for a phase-level event, or None for details.

    The reason starts with the phase (`DataCopyDone`, `DataCopyFailed`) and
    the message with its place among the seven: Events posted in the same
    second, which `kubectl describe` may list in any order, still read in
    order. A failure is one warning, with the error's reason in the message."""
    kind, phase = event.get("event"), event.get("phase")
    if kind == "phase_started":
        return Notice(f"{phase}Started", f"{step(phase)} started")
    if kind == "phase_finished":
        return Notice(f"{phase}Done", f"{step(phase)} finished in {event.get('seconds')} s")
    if kind == "phase_failed":
        return Notice(f"{phase}Failed", f"{step(phase)} failed ({event.get('reason') or 'Failed'}"
                                         f"): {event.get('message', '')}", warning=True)
    if kind == "restore_warning":
        return Notice("RestoreWarning", str(event.get("message")), warning=True)
    return None


def outcome(record: RestoreRecord) -> Notice:
    """How a finished restore ended: the Succeeded condition's reason and message."""
    if record.succeeded:
        return Notice("Succeeded", f"restored {_mapping(record, ' -> ')}")
    error = record.error or {}
    return Notice(error.get("reason", "Failed"),
                  f"failed in {error.get('phase')}: {error.get('message', '')}", warning=True)


def final(record: RestoreRecord) -> Notice:
    """The Event of a finished restore: a sentence on the result. A failure's
    warning was the phase's own (`<Phase>Failed`); this one is Normal."""
    if record.succeeded:
        rows = record.progress.get("rows")
        counted = f" ({rows} rows)" if rows is not None else ""
        return Notice("Succeeded", f"restore succeeded: restored {_mapping(record)}{counted}")
    error = record.error or {}
    dropped = record.result.get("droppedSchemas")
    after = (f"; dropped the schemas it had created: {', '.join(map(shown, dropped))}"
             if dropped else "")
    return Notice("Failed", f"restore failed in {error.get('phase')} "
                            f"({error.get('reason', 'Failed')}){after}")


def _mapping(record: RestoreRecord, between: str = " as ") -> str:
    return ", ".join(f"{shown(old)}{between}{shown(new)}"
                     for old, new in record.targets.items())


def fields_text(fields: dict[str, Any]) -> str:
    return " ".join(f"{key}={_short(value)}" for key, value in fields.items())


def line(event: dict[str, Any]) -> str | None:
    """One terminal line for an engine event, or None for what stays quiet."""
    said = notice(event)
    if said is not None:
        phase = str(event.get("phase") or said.reason)
        if event.get("event") == "phase_failed":
            return f"[{phase}] failed ({event.get('reason') or 'Failed'}): " \
                   f"{event.get('message', '')}"
        # "[DataCopy] finished in 3.0 s"
        return f"[{phase}] {said.message.removeprefix(step(phase) + ' ')}"
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
