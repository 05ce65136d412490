"""Live progress of the DataCopy phase: folding reports, throttling saves, and
the one-line summary (percent, ETA) the PROGRESS column shows.

Why here and pure: the copy (the data plane's `copy_plan` / `copy_progress`
events) and DMS (its table statistics) report the same fields into
`record.progress`; saving the record writes the SchemaRestore's status, so
saves are throttled (`Throttle`) to at most one every few seconds. The
summary is a function of the record alone, so it is unit-tested with no
clock and every writer of the status shows the same text.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Callable

# Fields the data plane reports (snake_case) -> record.progress (camelCase).
_PLAN = {"tables": "tablesTotal", "rows_total": "rowsTotal", "bytes": "bytesTotal"}
_DONE = {"tables_done": "tablesDone", "rows": "rows", "bytes": "bytes",
         "tables": "tablesTotal", "rows_total": "rowsTotal", "bytes_total": "bytesTotal"}
# An ETA says something only after this much time and this share of the work.
ETA_MIN_SECONDS = 10.0
ETA_MIN_FRACTION = 0.02


class Throttle:
    """True at most once per `interval` seconds (the first call is always True).

    `clock` is injectable so tests drive it without sleeping."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = max(0.0, float(interval))
        self._clock = clock
        self._last: float | None = None

    def ready(self) -> bool:
        now = self._clock()
        if self._last is not None and now - self._last < self.interval:
            return False
        self._last = now
        return True


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def _parse(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def start(progress: dict[str, Any], now: datetime) -> None:
    """Reset the counters for a (re-)started copy."""
    progress.clear()
    progress.update({"tablesDone": 0, "rows": 0, "bytes": 0, "startedAt": _iso(now)})


def update(progress: dict[str, Any], values: dict[str, int], now: datetime) -> None:
    """Set absolute counters (camelCase keys), then the time and the rate."""
    progress.update({k: int(v) for k, v in values.items() if v is not None})
    progress.setdefault("startedAt", _iso(now))
    progress["updatedAt"] = _iso(now)
    started = _parse(progress["startedAt"])
    seconds = (now - started).total_seconds() if started else 0.0
    if seconds > 0 and progress.get("bytes"):
        progress["bytesPerSecond"] = int(progress["bytes"] / seconds)


def fold(progress: dict[str, Any], event: dict[str, Any], now: datetime) -> bool:
    """Fold one data-plane event into `progress`; True if it changed the counters.

    The copy reports absolute counters, so a repeated event (a log re-read
    after a reconnect, a resumed step) changes nothing."""
    kind = event.get("event")
    if kind == "copy_plan":
        mapping = _PLAN
    elif kind == "copy_progress":
        mapping = _DONE
    else:
        return False
    values = {target: event[source] for source, target in mapping.items()
              if isinstance(event.get(source), (int, float))}
    if not values:
        return False
    update(progress, values, now)
    return True


def fraction(progress: dict[str, Any]) -> float | None:
    """Share of the work done, by bytes, else rows, else tables; None if unknown."""
    for done, total in (("bytes", "bytesTotal"), ("rows", "rowsTotal"),
                        ("tablesDone", "tablesTotal")):
        whole = progress.get(total) or 0
        if whole > 0:
            return max(0.0, min(1.0, (progress.get(done) or 0) / whole))
    return None


def eta_seconds(progress: dict[str, Any]) -> float | None:
    """Seconds left at the rate so far, once that rate means something."""
    share = fraction(progress)
    started, updated = _parse(progress.get("startedAt")), _parse(progress.get("updatedAt"))
    if share is None or started is None or updated is None or share >= 1.0:
        return None
    elapsed = (updated - started).total_seconds()
    if elapsed < ETA_MIN_SECONDS or share < ETA_MIN_FRACTION:
        return None
    return elapsed * (1.0 - share) / share


def duration(seconds: float) -> str:
    """45s, 3m, 2h05m: short enough for a printer column."""
    seconds = max(0, int(round(seconds)))
    if seconds < 90:
        return f"{seconds}s"
    minutes = (seconds + 30) // 60
    if minutes < 90:
        return f"{minutes}m"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def summary(progress: dict[str, Any]) -> str:
    """`12/40 tables 37% ETA 3m` (parts appear once they are known)."""
    parts = []
    if progress.get("tablesTotal"):
        parts.append(f"{progress.get('tablesDone') or 0}/{progress['tablesTotal']} tables")
    elif progress.get("tablesDone"):
        parts.append(f"{progress['tablesDone']} tables")
    share = fraction(progress)
    if share is not None:
        parts.append(f"{int(share * 100)}%")
    eta = eta_seconds(progress)
    if eta is not None:
        parts.append(f"ETA {duration(eta)}")
    return " ".join(parts)
