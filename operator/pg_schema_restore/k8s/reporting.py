"""What a SchemaRestore shows: its status after every save, an Event per
transition, the operator's log line per phase, and the restore metrics.

Every phase start, end and failure is one log line naming the object and
the restore id; a failed restore logs its reason at WARNING. Events are for
results: none for a phase start, one warning per failure, none for work
that was not done (Cleanup and Record after a restore that created
nothing), and the end of the restore is one Event (`Succeeded`/`Failed`)
in place of phase 7's `RecordDone`."""

from __future__ import annotations

import logging
from typing import Any

import kopf
from kubernetes import client
from kubernetes.client.rest import ApiException

from ddl_job.errors import InvalidSpec

from .. import events
from ..crd import GROUP, PLURAL, VERSION
from ..engine.record import RestoreRecord
from . import metrics
from .saved_record import merge_patch
from .spec_change import running_generation, with_spec_change
from .status import deleting_message, refused_status, status_for

log = logging.getLogger("pg_schema_restore.operator")
EVENT_MESSAGE_LIMIT = 1000   # Kubernetes cuts Event messages at 1 KiB


class StatusWriter:
    """Writes status after every save and posts an Event per transition."""

    def __init__(self, body: kopf.Body) -> None:
        self.body = body
        self.meta = body["metadata"]
        self.generation = running_generation(body)   # the spec this restore runs
        self.conditions: list[dict[str, Any]] = list(
            (body.get("status") or {}).get("conditions") or [])
        self.who = f"schemarestore {self.meta.get('namespace')}/{self.meta.get('name')}"
        self.record: RestoreRecord | None = None   # the live record, from the last save
        self.saved: Any = (body.get("status") or {}).get("record")   # as last written

    @property
    def deleting(self) -> bool:
        """The object has a deletionTimestamp (a daemon's body is kept fresh by kopf)."""
        return bool((self.body.get("metadata") or {}).get("deletionTimestamp"))

    def write(self, record: RestoreRecord, waiting: str | None = None) -> None:
        self.record = record
        status = status_for(record, self.generation, self.conditions, waiting,
                            deleting=self.deleting)
        saved = status["record"]
        self._patch({**status, "record": merge_patch(self.saved, saved)})
        self.saved = saved

    def deletion_started(self, record: RestoreRecord) -> None:
        """Say at once that the object is being deleted and what that does.

        Only `phase` and the conditions are patched: `record` may be older
        than the daemon's latest save, which must never be overwritten."""
        status = status_for(record, self.generation, self.conditions, deleting=True)
        self._patch({"phase": status["phase"], "conditions": status["conditions"]})
        self.tell(events.Notice("Deleting", deleting_message(record)))

    def refuse(self, error: InvalidSpec) -> None:
        """A spec the operator cannot run: say why; nothing was created."""
        log.warning("%s: refused (%s): %s", self.who, error.reason, error.message)
        self._patch(refused_status(error.reason, error.message, self.generation,
                                   self.conditions))
        self.tell(events.Notice(error.reason, error.message, warning=True))

    def _patch(self, status: dict[str, Any]) -> None:
        status["conditions"] = with_spec_change(status["conditions"], self.body, self.generation)
        self.conditions = status["conditions"]
        try:
            client.CustomObjectsApi().patch_namespaced_custom_object_status(
                GROUP, VERSION, self.meta["namespace"], PLURAL, self.meta["name"],
                {"status": status})
        except ApiException as exc:
            if exc.status != 404:  # object already gone
                raise

    def event(self, event: dict[str, Any]) -> None:
        metrics.observe_event(event)
        said = events.notice(event)
        if said is None:
            return
        kind, phase = event.get("event"), event.get("phase")
        level = logging.WARNING if said.warning else logging.INFO
        log.log(level, "%s (restore %s): %s", self.who, event.get("restoreId"), said.message)
        if kind == "phase_started":   # the log says it; Events say results
            return
        if kind == "phase_finished" and (phase == "Record" or (
                phase == "Cleanup" and self.record is not None
                and created_nothing(self.record))):
            return
        self.tell(said)

    def tell(self, said: events.Notice) -> None:
        post = kopf.warn if said.warning else kopf.info
        post(self.body, reason=said.reason, message=said.message[:EVENT_MESSAGE_LIMIT])

    def finish(self, record: RestoreRecord) -> None:
        """Count the outcome, log it and post it (one Event for the end)."""
        error = record.error or {}
        metrics.RESTORES.labels("succeeded" if record.succeeded else "failed",
                                "" if record.succeeded else error.get("reason", "")).inc()
        said = events.final(record)
        if record.succeeded:
            log.info("%s (restore %s): %s", self.who, record.restore_id, said.message)
        else:
            log.warning("%s (restore %s): %s: %s", self.who, record.restore_id, said.message,
                        error.get("message", ""))
        self.tell(said)


def created_nothing(record: RestoreRecord) -> bool:
    """A restore that ended in Initialize: phase 1 creates nothing, so its
    Cleanup deleted nothing and earns no Event."""
    return (record.error or {}).get("phase") == "Initialize"
