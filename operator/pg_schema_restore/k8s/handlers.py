"""kopf handlers: thin glue between SchemaRestore objects and the engine.

- a daemon per SchemaRestore drives the engine's phases, one at a time,
  writing the record into status after each save; after a restart the
  daemon resumes from status, and the idempotent phases create nothing twice;
- a process-wide slot limit caps concurrent restores (others are Queued);
- the finalizer (kopf's, via the delete handler) stops the Jobs and runs
  Cleanup before the object goes; a finished restore's deletion leaves the
  restored schemas in place.
Run with: kopf run -m pg_schema_restore.k8s.handlers --all-namespaces
          --liveness=http://0.0.0.0:8080/healthz --log-format=json
"""

from __future__ import annotations

import logging
import os
import threading
from contextlib import contextmanager
from typing import Any, Iterator

import kopf
from kubernetes import client, config as kube_config
from kubernetes.client.rest import ApiException

from ..engine import runner
from ..engine.record import RestoreRecord, restore_id_for
from . import metrics
from .config import OperatorConfig
from .context import engine_context
from .status import status_for

GROUP, VERSION, PLURAL = "pgschemarestore.io", "v1alpha1", "schemarestores"
log = logging.getLogger("pg_schema_restore.operator")

CONFIG = OperatorConfig.from_env()
_slots = threading.BoundedSemaphore(max(1, CONFIG.max_concurrent))
_running: dict[str, threading.Event] = {}   # uid -> set while a daemon is driving it
_running_lock = threading.Lock()


@contextmanager
def _registered(uid: str) -> Iterator[None]:
    """While inside, the restore counts as running: a deletion waits for it."""
    done = threading.Event()
    with _running_lock:
        _running[uid] = done
    try:
        yield
    finally:
        with _running_lock:
            _running.pop(uid, None)
        done.set()


def configure(config: OperatorConfig) -> None:
    """Replace the configuration (tests, and the startup handler)."""
    global CONFIG, _slots
    CONFIG = config
    _slots = threading.BoundedSemaphore(max(1, config.max_concurrent))


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = f"{GROUP}/cleanup"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration")
    settings.posting.level = logging.INFO
    try:
        kube_config.load_incluster_config()
    except kube_config.ConfigException:
        # The client reads KUBECONFIG at import time; read it now.
        kube_config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    if CONFIG.metrics_port:
        try:
            metrics.serve(CONFIG.metrics_port)
        except OSError as exc:  # already serving (tests restart the operator in-process)
            log.info("metrics endpoint not started: %s", exc)


@kopf.on.probe(id="restores")
def probe(**_: Any) -> dict[str, int]:
    with _running_lock:
        return {"running": len(_running)}


def _api() -> client.CustomObjectsApi:
    return client.CustomObjectsApi()


def _load_record(body: kopf.Body) -> RestoreRecord:
    saved = (body.get("status") or {}).get("record")
    if saved:
        return RestoreRecord.from_dict(dict(saved))
    spec = CONFIG.effective_spec(dict(body["spec"]))
    return RestoreRecord(restore_id=restore_id_for(body["metadata"]["uid"]), spec=spec)


class _StatusWriter:
    """Writes status after every save and posts an Event per transition."""

    def __init__(self, body: kopf.Body) -> None:
        self.body = body
        self.meta = body["metadata"]
        self.generation = int(self.meta.get("generation") or 1)
        self.conditions: list[dict[str, Any]] = list(
            (body.get("status") or {}).get("conditions") or [])
        self.last_phase: str | None = None

    def write(self, record: RestoreRecord, waiting: str | None = None) -> None:
        status = status_for(record, self.generation, self.conditions, waiting)
        self.conditions = status["conditions"]
        try:
            _api().patch_namespaced_custom_object_status(
                GROUP, VERSION, self.meta["namespace"], PLURAL, self.meta["name"],
                {"status": status})
        except ApiException as exc:
            if exc.status != 404:  # object already gone
                raise

    def event(self, event: dict[str, Any]) -> None:
        metrics.observe_event(event)
        kind = event.get("event")
        if kind == "phase_finished":
            kopf.info(self.body, reason=f"{event['phase']}Done",
                      message=f"{event['phase']} finished in {event.get('seconds')} s")
        elif kind == "phase_failed":
            kopf.warn(self.body, reason=event.get("reason") or "Failed",
                      message=f"{event['phase']}: {event.get('message', '')}"[:1000])
        elif kind == "restore_warning":
            kopf.warn(self.body, reason="RestoreWarning", message=str(event["message"])[:1000])
        elif kind == "phase_started":
            log.info("restore %s: phase %s", event.get("restoreId"), event.get("phase"))


def _finish(record: RestoreRecord, writer: _StatusWriter, body: kopf.Body) -> None:
    error = record.error or {}
    metrics.RESTORES.labels("succeeded" if record.succeeded else "failed",
                            "" if record.succeeded else error.get("reason", "")).inc()
    if record.succeeded:
        kopf.info(body, reason="Succeeded", message=f"restored into {record.targets}")
    else:
        kopf.warn(body, reason=error.get("reason", "Failed"),
                  message=f"failed in {error.get('phase')}: {error.get('message', '')}"[:1000])


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=30.0)
def drive(body: kopf.Body, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """Run the restore to its end (or until the object is deleted)."""
    record = _load_record(body)
    if record.done:
        if runner.cleanup_pending(record):
            _retry_cleanup_until_done(body, record, stopped)
        return
    uid = body["metadata"]["uid"]
    writer = _StatusWriter(body)
    if not _slots.acquire(blocking=False):
        metrics.QUEUED.inc()
        writer.write(record, waiting=f"waiting for a free slot "
                                     f"(at most {CONFIG.max_concurrent} restores at once)")
        kopf.info(body, reason="Queued", message="waiting for a free restore slot")
        try:
            while not _slots.acquire(timeout=1.0):
                if stopped:
                    return
        finally:
            metrics.QUEUED.dec()
    writer.write(record)
    metrics.ACTIVE.inc()
    try:
        with _registered(uid):
            ctx = engine_context(CONFIG, dict(body), record, save=writer.write,
                                 on_event=writer.event, should_stop=lambda: bool(stopped))
            while not record.done and not stopped:
                runner.run_one(record, ctx)
            if record.done:
                _finish(record, writer, body)
    finally:
        metrics.ACTIVE.dec()
        _slots.release()
    if runner.cleanup_pending(record):
        _retry_cleanup_until_done(body, record, stopped)


def _retry_cleanup_until_done(body: kopf.Body, record: RestoreRecord,
                              stopped: kopf.DaemonStopped) -> None:
    """Never leave a paid resource behind: retry a failed cleanup with backoff.

    Registered as running, so a deletion waits for a retry in progress.
    """
    delay = float(CONFIG.cleanup_retry_seconds)
    writer = _StatusWriter(body)
    uid = body["metadata"]["uid"]
    while runner.cleanup_pending(record):
        kopf.warn(body, reason="CleanupRetry",
                  message=f"cleanup left resources behind; retrying in {delay:.0f} s: "
                          f"{record.result.get('cleanupErrors')}"[:1000])
        if stopped.wait(delay):
            return
        with _registered(uid):
            ctx = engine_context(CONFIG, dict(body), record, save=writer.write,
                                 on_event=writer.event, should_stop=lambda: bool(stopped))
            runner.retry_cleanup(record, ctx)
            _finish(record, writer, body)
        delay = min(delay * 2, 3600.0)


@kopf.on.delete(GROUP, VERSION, PLURAL)
def delete(body: kopf.Body, **_: Any) -> None:
    """Stop the Jobs and remove every temporary resource before the object goes."""
    uid = body["metadata"]["uid"]
    with _running_lock:
        running = _running.get(uid)
    if running is not None and not running.wait(timeout=25):
        raise kopf.TemporaryError("waiting for the running phase to stop", delay=5)
    # Re-read: the daemon may have saved a newer record while stopping.
    meta = body["metadata"]
    try:
        fresh = _api().get_namespaced_custom_object(GROUP, VERSION, meta["namespace"], PLURAL,
                                                    meta["name"])
    except ApiException as exc:
        if exc.status == 404:
            return
        raise
    record = _load_record(kopf.Body(fresh))
    writer = _StatusWriter(kopf.Body(fresh))
    ctx = engine_context(CONFIG, fresh, record, save=writer.write, on_event=writer.event,
                         should_stop=lambda: False)
    # A previous cleanup left something behind: try it again now.
    runner.retry_cleanup(record, ctx)
    if not record.done:
        runner.request_cleanup(record)
        runner.run(record, ctx)
    if runner.cleanup_pending(record):   # the finalizer stays until nothing is left
        raise kopf.TemporaryError(f"cleanup incomplete: {record.result['cleanupErrors']}",
                                  delay=30)
    if CONFIG.executor == "job":
        from .context import job_executor

        job_executor(CONFIG, fresh, record, ctx.secrets, lambda: False).delete_all()  # type: ignore[arg-type]
