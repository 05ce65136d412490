"""kopf handlers: thin glue between SchemaRestore objects and the engine.

- a daemon per SchemaRestore drives the engine's phases, one at a time,
  writing the record into status after each save; after a restart the
  daemon resumes from status, and the idempotent phases create nothing twice;
- a process-wide slot limit caps concurrent restores (others are Queued);
- deletion: the delete handler says `Deleting` in status and an event at
  once; the daemon's running step is cancelled (`engine.stopping`: its
  process group killed, or its Job deleted in the foreground) and the
  daemon leaves, queued or running; then the handler runs Cleanup before
  the finalizer goes. The rule: what the restore created is dropped unless
  it already succeeded (a finished restore's deletion keeps its schemas);
- shutdown only interrupts the daemon (a Job keeps running); a restarted
  operator first waits for the restore's Jobs still running (`settle`:
  adopts them) before it starts anything;
- a spec is resolved against the administrator's declared sources first
  (`SourceNotAllowed`: nothing read, nothing created);
- Jobs and connection Secrets run in the operator's namespace (Cleanup
  deletes them, by label and name).
Run with: kopf run -m pg_schema_restore.k8s.handlers --all-namespaces (or
          --namespace NS, once per watched namespace)
          --liveness=http://0.0.0.0:8080/healthz --log-format=json
"""

from __future__ import annotations

import logging
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import kopf
from kubernetes import client, config as kube_config
from kubernetes.client.rest import ApiException

from ddl_job.errors import Cancelled, InvalidSpec

from .. import wiring
from ..config import OperatorConfig
from ..crd import GROUP, PLURAL, VERSION
from ..engine import runner
from ..engine.phases import Context
from ..engine.record import RestoreRecord, restore_id_for
from ..engine.spec import RestoreSpec
from ..engine.stopping import NEVER, Interrupted, Stop
from ..stepfunctions.execution import StepFunctionsExecution
from . import admission, metrics, saved_record, spec_change
from .reporting import StatusWriter

log = logging.getLogger("pg_schema_restore.operator")

CONFIG = OperatorConfig.from_env()
_slots = threading.BoundedSemaphore(max(1, CONFIG.max_concurrent))
_running: dict[str, threading.Event] = {}   # uid -> set once its daemon (queued or running) left
_running_lock = threading.Lock()
_announced: set[str] = set()                # uids whose deletion was announced
# Registered where they are defined: the admission webhook (when enabled) and
# the report of a spec changed anyway.
OTHER_HANDLERS = (admission.validate, spec_change.spec_changed)
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


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
    # Serve exactly the namespaces given (--namespace) or all (-A) and the
    # CRD present at start: no cluster-wide list/watch of namespaces and CRDs,
    # so in watchNamespaces mode the operator holds no cluster-wide right.
    settings.scanning.disabled = True
    admission.configure(settings)   # the validating webhook, when PGSR_WEBHOOK_PORT is set
    if CONFIG.executor == "job" and not CONFIG.job_namespace:
        CONFIG.job_namespace = _own_namespace()
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


def _own_namespace() -> str:
    """The operator's namespace: Jobs and connection Secrets go there, never
    to a tenant's. Without one the operator refuses to start."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    except OSError:
        raise kopf.PermanentError("PGSR_JOB_NAMESPACE is not set and the operator does "
                                  "not run in a pod: where would its Jobs go?") from None


@kopf.on.probe(id="restores")
def probe(**_: Any) -> dict[str, int]:
    with _running_lock:
        return {"running": len(_running)}


def _refused_already(body: kopf.Body) -> bool:
    """Refused before a record existed (InvalidSpec, SourceNotAllowed): that is
    final. A restarted operator must not parse a since-edited spec, or a
    since-changed configuration, into a restore nobody saw accepted."""
    status = body.get("status") or {}
    return not status.get("record") and any(
        c.get("type") == "Succeeded" and c.get("status") == "False"
        for c in status.get("conditions") or [])


def _load_record(body: kopf.Body) -> RestoreRecord:
    """The saved record, or a new one for the spec (parsed here, once: InvalidSpec)."""
    status = dict(body.get("status") or {})
    if _refused_already(body):   # the daemon, the deletion and its notice alike
        raise InvalidSpec("refused before it started; the refusal in status stands")
    if saved_record.whole(status):   # written by an operator before the split
        return RestoreRecord.from_dict(dict(status["record"]))
    if saved_record.saved_spec(status) is not None:   # the spec it started with
        return saved_record.join(status)
    spec = RestoreSpec.from_dict(CONFIG.spec_for(body["metadata"]["namespace"],
                                                 dict(body["spec"])))
    if status.get("record"):
        return saved_record.join(status, spec)
    return RestoreRecord(restore_id=restore_id_for(body["metadata"]["uid"]), spec=spec)


def _context(body: dict[str, Any], record: RestoreRecord, writer: StatusWriter,
             stop: Stop = NEVER) -> Context:
    return wiring.build_context(CONFIG, record, save=writer.write, on_event=writer.event,
                                jobs=_placement(body), stop=stop)


def _placement(body: dict[str, Any]) -> wiring.JobPlacement:
    meta = body["metadata"]
    return wiring.JobPlacement(namespace=CONFIG.job_namespace,
                               owner=f"{meta['namespace']}/{meta['name']}")


def _stop(body: kopf.Body, stopped: kopf.DaemonStopped) -> Stop:
    """Deletion cancels the restore; any other stop (the operator exiting)
    only interrupts this daemon. kopf keeps a daemon's `body` fresh."""
    def cancelled() -> bool:
        return bool((body.get("metadata") or {}).get("deletionTimestamp"))
    return Stop(cancelled=cancelled, interrupted=lambda: bool(stopped))


def _wait_for_slot(body: kopf.Body, record: RestoreRecord, writer: StatusWriter,
                   stopped: kopf.DaemonStopped) -> bool:
    """Take a restore slot, Queued meanwhile; False when stopped while queued
    (a queued restore created nothing: its deletion has nothing to wait for)."""
    if _slots.acquire(blocking=False):
        return True
    metrics.QUEUED.inc()
    writer.write(record, waiting=f"waiting for a free slot "
                                 f"(at most {CONFIG.max_concurrent} restores at once)")
    kopf.info(body, reason="Queued", message="waiting for a free restore slot")
    try:
        while not _slots.acquire(timeout=0.2):
            if stopped:
                return False
        return True
    finally:
        metrics.QUEUED.dec()


# On deletion the daemon cancels its step and leaves within seconds: kopf's
# gentle stop (backoff) is enough, the forced one (timeout) never needed.
@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_backoff=5.0, cancellation_timeout=30.0)
def drive(body: kopf.Body, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """Run the restore to its end (or until the object is deleted)."""
    try:
        record = _load_record(body)
    except InvalidSpec as refused:
        if not (body.get("status") or {}).get("conditions"):
            StatusWriter(body).refuse(refused)
        return
    if record.done:
        if runner.cleanup_pending(record):
            _retry_cleanup_until_done(body, record, stopped)
        return
    uid = body["metadata"]["uid"]
    writer = StatusWriter(body)
    stop = _stop(body, stopped)
    with _registered(uid):   # queued or running, a deletion waits for this daemon to leave
        if not _wait_for_slot(body, record, writer, stopped):
            return
        writer.write(record)
        metrics.ACTIVE.inc()
        try:
            ctx = _context(dict(body), record, writer, stop)
            _drive(record, ctx, writer, stop, stopped)
        except Interrupted:
            log.info("restore %s: the operator is stopping; left as last saved",
                     record.restore_id)
            return
        finally:
            metrics.ACTIVE.dec()
            _slots.release()
    if runner.cleanup_pending(record):
        _retry_cleanup_until_done(body, record, stopped)


def _drive(record: RestoreRecord, ctx: Context, writer: StatusWriter, stop: Stop,
           stopped: kopf.DaemonStopped) -> None:
    if record.requested.engine == "stepfunctions":
        _execution().run(record, save=writer.write, on_event=writer.event,
                         should_stop=stop.requested)
    else:
        try:
            runner.settle(record, ctx)   # adopt Jobs an earlier operator left running
        except Cancelled:
            return                       # deleted meanwhile: the delete handler cleans up
    while not record.done and not stopped:   # native; or the cleanup of an
        runner.run_one(record, ctx)           # execution that ended abnormally
    if record.done:
        writer.finish(record)


def _execution() -> StepFunctionsExecution:
    return StepFunctionsExecution(wiring.SESSION_FACTORY(None), CONFIG.state_machine_arn,
                                  waits=CONFIG.sfn_waits, poll_seconds=CONFIG.sfn_poll_seconds)


def _retry_cleanup_until_done(body: kopf.Body, record: RestoreRecord,
                              stopped: kopf.DaemonStopped) -> None:
    """Never leave a paid resource behind: retry a failed cleanup with backoff.

    Registered as running, so a deletion waits for a retry in progress.
    """
    delay = float(CONFIG.cleanup_retry_seconds)
    writer = StatusWriter(body)
    uid = body["metadata"]["uid"]
    while runner.cleanup_pending(record):
        kopf.warn(body, reason="CleanupRetry",
                  message=f"cleanup left resources behind; retrying in {delay:.0f} s: "
                          f"{'; '.join(record.result.get('cleanupErrors') or [])}"[:1000])
        if stopped.wait(delay):
            return
        with _registered(uid):
            ctx = _context(dict(body), record, writer)
            runner.retry_cleanup(record, ctx)
            writer.finish(record)
        delay = min(delay * 2, 3600.0)


@kopf.on.delete(GROUP, VERSION, PLURAL)
def delete(body: kopf.Body, **_: Any) -> None:
    """Say `Deleting` at once, wait for the daemon to cancel its step and
    leave, then remove every temporary resource before the object goes."""
    _announce_deletion(body)
    uid = body["metadata"]["uid"]
    with _running_lock:
        running = _running.get(uid)
    if running is not None and not running.wait(timeout=25):
        raise kopf.TemporaryError("waiting for the running step to stop", delay=1)
    # Re-read: the daemon may have saved a newer record while stopping.
    meta = body["metadata"]
    try:
        fresh = client.CustomObjectsApi().get_namespaced_custom_object(
            GROUP, VERSION, meta["namespace"], PLURAL, meta["name"])
    except ApiException as exc:
        if exc.status == 404:
            return
        raise
    try:
        record = _load_record(kopf.Body(fresh))
    except InvalidSpec:
        return   # refused before anything was created
    writer = StatusWriter(kopf.Body(fresh))
    ctx = _context(fresh, record, writer)
    # A previous cleanup left something behind: try it again now.
    runner.retry_cleanup(record, ctx)
    if not record.done:
        if record.spec is not None and record.spec.engine == "stepfunctions":
            _execution().stop(record, "SchemaRestore deleted")   # then the engine's cleanup
        runner.request_cleanup(record)   # not yet Succeeded: cancelled, its schemas dropped
        runner.run(record, ctx)
    if runner.cleanup_pending(record):   # the finalizer stays until nothing is left
        raise kopf.TemporaryError(f"cleanup incomplete: {record.result['cleanupErrors']}",
                                  delay=30)


def _announce_deletion(body: kopf.Body) -> None:
    """`Deleting` in status and one event, before any waiting. kopf calls the
    delete handler again after a success while the daemon is still being
    stopped, hence the once-per-object guard."""
    uid = body["metadata"]["uid"]
    with _running_lock:
        if uid in _announced:
            return
        _announced.add(uid)
    try:
        record = _load_record(body)
    except InvalidSpec:
        return   # refused before anything was created: nothing to tell
    StatusWriter(body).deletion_started(record)
