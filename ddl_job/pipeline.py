"""from-copy: the whole data plane on an existing restored copy.

extract → apply pre → copy → apply post → verify. Success only if verify
passes. If anything fails after pre-data created schemas in production,
those schemas (and only those, proven by their marker) are dropped again,
unless the caller asked to keep them for inspection.
"""

from __future__ import annotations

import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Callable

from . import apply, copy, drop, extract, verify
from .artifacts import open_store
from .conn import Endpoint
from .errors import RestoreError
from .progress import NullReporter, Reporter


@dataclass
class FromCopyResult:
    restore_id: str
    schemas: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    copy: dict[str, Any] = field(default_factory=dict)
    verify: dict[str, Any] = field(default_factory=dict)
    artifacts: str | None = None
    rewritten_functions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def from_copy(source: Endpoint, target: Endpoint, schemas: list[str], suffix: str, *,
              restore_id: str, disposable_source: bool, jobs: int = 2,
              artifacts: str | None = None, keep_on_failure: bool = False,
              reporter: Reporter | None = None) -> FromCopyResult:
    """Run every step; raise DataPlaneError (after cleanup) on the first failure."""
    reporter = reporter or NullReporter()
    result = FromCopyResult(restore_id=restore_id)
    created = False
    with ExitStack() as stack:
        location = artifacts or stack.enter_context(
            tempfile.TemporaryDirectory(prefix=f"pgsr-{restore_id}-"))
        store = open_store(location)
        result.artifacts = location if artifacts else None

        def step(name: str, action: Callable[[Reporter], Any]) -> Any:
            child = reporter.child(name)
            child.emit("started")
            started = time.monotonic()
            value = action(child)
            result.timings[name] = round(time.monotonic() - started, 3)
            child.emit("finished", seconds=result.timings[name])
            return value

        manifest = step("extract", lambda r: extract.extract(
            source, target, schemas, suffix, store, restore_id=restore_id,
            disposable_source=disposable_source, reporter=r))
        result.schemas = manifest.schemas
        result.rewritten_functions = manifest.rewritten_functions
        result.warnings = manifest.warnings
        try:
            step("apply-pre", lambda r: apply.apply_pre(target, store, r))
            created = True
            result.copy = step("copy", lambda r: copy.copy_data(
                source, target, manifest.targets, jobs=jobs, reporter=r))
            step("apply-post", lambda r: apply.apply_post(target, store, jobs=jobs, reporter=r))
            result.verify = step("verify", lambda r: verify.verify(
                source, target, manifest.targets, reporter=r))
            result.warnings += result.verify.get("warnings") or []
        except BaseException as exc:
            if created and not keep_on_failure:
                _drop_after_failure(target, restore_id, reporter, exc)
            raise
    return result


def _drop_after_failure(target: Endpoint, restore_id: str, reporter: Reporter,
                        cause: BaseException) -> None:
    child = reporter.child("drop")
    try:
        dropped = drop.drop_restored(target, restore_id, reporter=child)
        child.emit("dropped_after_failure", schemas=dropped)
    except RestoreError as drop_error:
        child.emit("error", reason=drop_error.reason, message=drop_error.message)
        if isinstance(cause, RestoreError):
            cause.message += f" (and cleanup failed: {drop_error.message})"
