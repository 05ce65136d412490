"""from-copy: the whole data plane on an existing restored copy.

rights → extract → apply pre → copy → apply post → verify. Success only if
verify passes. Rights come first: a role that may not read or own the
objects is refused before the copy is touched; with `grant_membership` what
it lacks is granted and revoked again at the end, whatever happened. If anything fails after pre-data created schemas in production,
those schemas (and only those, proven by their marker) are dropped again,
unless the caller asked to keep them for inspection.
"""

from __future__ import annotations

import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Callable

from . import apply, copy, drop, extract, foreign_keys, rights_steps, verify
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
    # outside foreign keys production's rows no longer satisfy (apply-post's report)
    not_valid_foreign_keys: list[dict[str, Any]] = field(default_factory=list)
    omitted_foreign_keys: list[dict[str, Any]] = field(default_factory=list)
    # memberships granted for the run (grant_membership) and revoked after it
    granted_memberships: dict[str, list[str]] = field(default_factory=dict)


def from_copy(source: Endpoint, target: Endpoint, schemas: list[str], suffix: str, *,
              restore_id: str, disposable_source: bool, jobs: int = 2,
              artifacts: str | None = None, keep_on_failure: bool = False,
              grant_membership: bool = False,
              invalid_foreign_keys: str = foreign_keys.KEEP_NOT_VALID,
              reporter: Reporter | None = None) -> FromCopyResult:
    """Run every step; raise DataPlaneError (after cleanup) on the first failure."""
    reporter = reporter or NullReporter()
    foreign_keys.validate_policy(invalid_foreign_keys)
    extract.require_disposable(disposable_source)   # before any connection
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

        checked = step("rights", lambda r: rights_steps.check(
            source, target, schemas, suffix, grant_membership=grant_membership, reporter=r))
        stack.callback(_revoke, source, target, result, reporter)
        for side, endpoint in (("copy", source), ("production", target)):
            roles = checked["missing"][side]
            if roles:
                result.granted_memberships[side] = roles   # before: revoked whatever happens
                rights_steps.change(endpoint, roles, revoke=False, where=side,
                                    reporter=reporter.child("membership"))
        manifest = step("extract", lambda r: extract.extract(
            source, target, schemas, suffix, store, restore_id=restore_id,
            disposable_source=disposable_source, reporter=r))
        result.schemas = manifest.schemas
        result.rewritten_functions = manifest.rewritten_functions
        result.warnings = list(manifest.warnings)
        try:
            step("apply-pre", lambda r: apply.apply_pre(target, store, r))
            created = True
            result.copy = step("copy", lambda r: copy.copy_data(
                source, target, manifest.targets, jobs=jobs, reporter=r))
            post = step("apply-post", lambda r: apply.apply_post(
                target, store, jobs=jobs, reporter=r, invalid_foreign_keys=invalid_foreign_keys))
            result.warnings += post["warnings"]
            result.not_valid_foreign_keys = post["notValidForeignKeys"]
            result.omitted_foreign_keys = post["omittedForeignKeys"]
            result.verify = step("verify", lambda r: verify.verify(
                source, target, manifest.targets, reporter=r, post_data=post))
            result.warnings += [w["message"] for w in result.verify.get("warnings", [])]
        except BaseException as exc:
            if created and not keep_on_failure:
                _drop_after_failure(target, restore_id, reporter, exc)
            raise
    return result


def _revoke(source: Endpoint, target: Endpoint, result: FromCopyResult,
            reporter: Reporter) -> None:
    """Take back what grant_membership granted (production first: it stays)."""
    for side, endpoint in (("production", target), ("copy", source)):
        roles = result.granted_memberships.get(side)
        if roles:
            rights_steps.change(endpoint, roles, revoke=True, where=side,
                                reporter=reporter.child("membership"))


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
