"""A spec changed after the restore started: say that it is not honoured.

The operator runs the spec it first read (kept in `status.record`); the
admission webhook and, from Kubernetes 1.25, the CRD's CEL rule refuse any
later change. Where neither is in force (the webhook not installed, or down
with `failurePolicy: Ignore`), a change is accepted: `metadata.generation`
moves past `status.observedGeneration`, which stays the generation whose
spec the restore runs. This module says so: a `SpecChangeIgnored`
condition (reason `SpecImmutable`) on every status write, and one Warning
event per accepted change.
"""

from __future__ import annotations

from typing import Any

import kopf

from ..crd import GROUP, PLURAL, VERSION
from .status import condition

CONDITION = "SpecChangeIgnored"
REASON = "SpecImmutable"


def running_generation(body: dict[str, Any]) -> int:
    """The generation whose spec this restore runs: the one status reports
    once the operator wrote a status, else the object's own."""
    observed = (body.get("status") or {}).get("observedGeneration")
    if observed:
        return int(observed)
    return int(body["metadata"].get("generation") or 1)


def ignored_message(current: int, running: int) -> str:
    """What the condition and the event say: only the new spec is visible, so
    the change itself cannot be named."""
    return (f"the spec was changed (generation {current}) after this restore started; it "
            f"keeps running the spec of generation {running} (status.record.spec): a spec "
            f"is immutable, create a new SchemaRestore for another restore")


def spec_change_condition(current: int, running: int,
                          previous: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The SpecChangeIgnored condition, or None while the spec is the one run."""
    if current <= running:
        return None
    return condition(CONDITION, "True", REASON, ignored_message(current, running), current,
                     {c["type"]: c for c in previous})


def with_spec_change(conditions: list[dict[str, Any]], body: dict[str, Any],
                     running: int) -> list[dict[str, Any]]:
    """`conditions` (as the status writer built them) plus SpecChangeIgnored
    when the object's generation moved past the one run. `body` is kopf's
    live view, so a change made while a phase runs shows on the next write."""
    current = int(body["metadata"].get("generation") or 1)
    previous = list((body.get("status") or {}).get("conditions") or [])
    extra = spec_change_condition(current, running, previous)
    kept = [c for c in conditions if c["type"] != CONDITION]
    return kept + [extra] if extra else kept


@kopf.on.update(GROUP, VERSION, PLURAL, id="spec-changed", field="spec")
def spec_changed(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """The spec changed anyway (no webhook): a condition now and one Warning event."""
    running = running_generation(body)
    current = int(body["metadata"].get("generation") or 1)
    conditions = list((body.get("status") or {}).get("conditions") or [])
    said = spec_change_condition(current, running, conditions)
    if said is None:
        return
    patch.status["conditions"] = with_spec_change(conditions, body, running)
    if not (body.get("status") or {}).get("observedGeneration"):
        patch.status["observedGeneration"] = running
    kopf.warn(body, reason=REASON, message=said["message"])
