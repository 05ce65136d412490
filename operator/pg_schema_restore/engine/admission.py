"""What the admission webhook decides, as pure functions (no kopf here).

A SchemaRestore's spec is its request: the operator runs the spec it first
read, so a later change could only be ignored. The webhook makes the API
server say so at once, on every Kubernetes version (CEL rules in the CRD do
the same from 1.25 on, where they are enforced):

- CREATE: refused when `RestoreSpec.from_dict` refuses the spec with the
  operator's defaults filled in (exactly one of restoreTime and snapshotId,
  names, patterns), with the parser's own message;
- UPDATE: refused when `spec` differs; metadata (finalizers, labels,
  annotations) and status (a subresource the webhook is not called for) pass;
- DELETE: never refused (the webhook is not registered for it).
"""

from __future__ import annotations

from typing import Any

from ddl_job.errors import InvalidSpec

from .spec import RestoreSpec

IMMUTABLE = "spec is immutable; create a new SchemaRestore"


def refuse_create(effective_spec: dict[str, Any]) -> str | None:
    """Why a new SchemaRestore with this spec (defaults merged in) cannot run, or None."""
    try:
        RestoreSpec.from_dict(effective_spec)
    except InvalidSpec as refused:
        return f"{refused.reason}: {refused.message}"
    return None


def changed_fields(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The top-level spec fields whose values differ (added, removed or changed)."""
    return sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))


def refuse_update(old_spec: dict[str, Any] | None, new_spec: dict[str, Any] | None) -> str | None:
    """Why this update cannot be accepted (the spec changed), or None."""
    changed = changed_fields(dict(old_spec or {}), dict(new_spec or {}))
    if not changed:
        return None
    return f"{IMMUTABLE} (changed: {', '.join(changed)})"
