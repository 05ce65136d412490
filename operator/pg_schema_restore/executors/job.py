"""Run data-plane steps as Kubernetes Jobs of the `ddl_job` image.

- One Job per step, named deterministically (`pgsr-<restore-id>-<step>`):
  after an operator restart the Job is found again, never created twice.
- Jobs and their connections Secret live in the operator's namespace, never
  the SchemaRestore's: a tenant who may read secrets or pod logs in its own
  namespace reads no production credential. The Pod reads the Secret
  through `secretKeyRef`; no DSN is in args, status or events.
- Owner references cannot cross namespaces: Jobs and the Secret carry the
  restore-id label (cleanup finds them by it) and name their SchemaRestore
  in an annotation (for people).
- The step's last JSON line comes back through the Pod's termination
  message; a failed Job ends the step with that message or the log tail
  (`FallbackToLogsOnError`). Progress lines are read from the pod's log
  while it runs (`pod_log.py`, `pods/log`); without that right the step
  still runs, with no live progress.
- Restricted security context, resource requests/limits, no retries
  (`backoffLimit: 0`: the engine decides what to re-run), a deadline.
- Stopping (`Stop`, polled while waiting): a cancelled restore's Job is
  deleted with foreground propagation (its Pod goes first, so its process
  is gone when the Job is) and the wait ends with `Cancelled`; an operator
  shutting down only stops waiting (`Interrupted`) and leaves the Job
  running.
- Adoption: before a (restarted) operator drives a restore, `settle` finds
  the restore's Jobs still running (label query) and waits for them. It
  adopts rather than deletes them: the step may have run for hours, its
  result is read back by name when its phase re-runs, and nothing else
  starts for the restore meanwhile, so no step ever runs twice at once.
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Any, Callable, Iterable

from kubernetes import client
from kubernetes.client.rest import ApiException

from ddl_job.conn import SOURCE_ENV, TARGET_ENV
from ddl_job.errors import Cancelled
from ddl_job.requests import StepRequest

from ..engine.ports import Secrets
from ..engine.stopping import NEVER, Interrupted, Stop
from .connections import dsn_from_secret
from .pod_log import PodLogFollower
from .result import parse_line, step_result

LABEL_RESTORE = "pgschemarestore.io/restore-id"
LABEL_STEP = "pgschemarestore.io/step"
OWNER_ANNOTATION = "pgschemarestore.io/schemarestore"   # namespace/name of the restore
MANAGED_BY = {"app.kubernetes.io/managed-by": "pg-schema-restore"}
TERMINATION_LOG = "/dev/termination-log"
log = logging.getLogger(__name__)


class JobExecutor:
    """Executor port over Kubernetes Jobs, for one SchemaRestore.

    `namespace` is where the Jobs run (the operator's); `owner` is the
    SchemaRestore's `namespace/name`, recorded as an annotation."""

    def __init__(self, *, namespace: str, owner: str, restore_id: str, image: str,
                 secrets: Secrets, resources: dict[str, Any], deadline_seconds: int,
                 service_account: str = "", poll_seconds: float = 1.0,
                 gone_seconds: float = 20.0, api_client: client.ApiClient | None = None) -> None:
        self.namespace = namespace
        self.owner = owner
        self.restore_id = restore_id
        self.image = image
        self.secrets = secrets
        self.resources = resources
        self.deadline_seconds = deadline_seconds
        self.service_account = service_account
        self.poll_seconds = poll_seconds
        self.gone_seconds = gone_seconds   # how long a cancellation waits for its Job to go
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)

    # -- names -------------------------------------------------------------
    def job_name(self, step: str) -> str:
        return f"pgsr-{self.restore_id}-{step}"[:63].rstrip("-")

    @property
    def secret_name(self) -> str:
        return f"pgsr-{self.restore_id}-connections"

    def _labels(self, step: str | None = None) -> dict[str, str]:
        labels = {**MANAGED_BY, LABEL_RESTORE: self.restore_id}
        if step:
            labels[LABEL_STEP] = step
        return labels

    def _metadata(self, name: str, step: str | None = None) -> dict[str, Any]:
        return {"name": name, "labels": self._labels(step),
                "annotations": {OWNER_ANNOTATION: self.owner}}

    # -- connections ---------------------------------------------------------
    def _store_connections(self, step: str, source_secret: str | None,
                           target_secret: str | None, database: str) -> dict[str, str]:
        """Put this step's DSNs in the restore's Secret; returns env var -> key."""
        data: dict[str, str] = {}
        keys: dict[str, str] = {}
        for env, secret_id, side in ((SOURCE_ENV, source_secret, "source"),
                                     (TARGET_ENV, target_secret, "target")):
            if secret_id:
                key = f"{step}-{side}"
                dsn = dsn_from_secret(self.secrets.read(secret_id), database)
                data[key] = base64.b64encode(dsn.encode()).decode()
                keys[env] = key
        body = {"metadata": self._metadata(self.secret_name), "type": "Opaque", "data": data}
        try:
            self.core.create_namespaced_secret(self.namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.core.patch_namespaced_secret(self.secret_name, self.namespace, {"data": data})
        return keys

    # -- the Job ---------------------------------------------------------------
    def job_manifest(self, step: str, args: list[str], env_keys: dict[str, str]
                     ) -> dict[str, Any]:
        env = [{"name": var, "valueFrom": {"secretKeyRef": {"name": self.secret_name,
                                                            "key": key}}}
               for var, key in env_keys.items()]
        env.append({"name": "PGSR_TERMINATION_LOG", "value": TERMINATION_LOG})
        pod_spec: dict[str, Any] = {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "ddl-job",
                "image": self.image,
                "command": ["python", "-m", "ddl_job", *args],
                "env": env,
                "resources": self.resources,
                "terminationMessagePath": TERMINATION_LOG,
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "securityContext": {"allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        }
        if self.service_account:
            pod_spec["serviceAccountName"] = self.service_account
            pod_spec["automountServiceAccountToken"] = True  # IRSA for S3 artifacts
        return {
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": self._metadata(self.job_name(step), step),
            "spec": {"backoffLimit": 0, "activeDeadlineSeconds": self.deadline_seconds,
                     "template": {"metadata": {"labels": self._labels(step)},
                                  "spec": pod_spec}},
        }

    def run(self, request: StepRequest, *, source_secret: str | None,
            target_secret: str | None, database: str,
            on_event: Callable[[dict[str, Any]], None], stop: Stop = NEVER) -> Any:
        step = request.step
        name = self.job_name(step)
        try:
            self.batch.read_namespaced_job(name, self.namespace)
            on_event({"event": "job_found", "step": step, "job": name})
        except ApiException as exc:
            if exc.status != 404:
                raise
            keys = self._store_connections(step, source_secret, target_secret, database)
            self.batch.create_namespaced_job(self.namespace,
                                             self.job_manifest(step, request.to_argv(), keys))
            on_event({"event": "job_created", "step": step, "job": name})
        return self._wait(step, name, stop, on_event)

    def _wait(self, step: str, name: str, stop: Stop,
              on_event: Callable[[dict[str, Any]], None] = lambda event: None) -> Any:
        # Progress lines come from the pod's log while it runs (pod_log.py).
        follower = PodLogFollower(self.core, self.namespace, name)

        def forward(events: Iterable[dict[str, Any]]) -> None:
            for event in events:
                on_event(event)
        try:
            succeeded = self._until_finished(name, stop, lambda: forward(follower.poll()))
            forward(follower.finish())
            return self._result(step, name, failed=not succeeded)
        finally:
            follower.close()

    def _until_finished(self, name: str, stop: Stop,
                        while_running: Callable[[], None] = lambda: None) -> bool:
        """Poll the Job until it ends, checking `stop` before each look; True
        when it succeeded. `while_running` runs after each look at a running Job."""
        while True:
            self._check(name, stop)
            status = self.batch.read_namespaced_job(name, self.namespace).status
            if status.succeeded or status.failed:
                return bool(status.succeeded)
            while_running()
            time.sleep(self.poll_seconds)

    def _check(self, name: str, stop: Stop) -> None:
        """Cancelled: delete the Job (foreground), wait a while for it to go,
        raise. Interrupted: raise, the Job keeps running for the next operator."""
        if stop.cancelled():
            self.delete_job(name, running=True)
            self._wait_gone(name)
            raise Cancelled()
        if stop.interrupted():
            raise Interrupted()

    def _wait_gone(self, name: str) -> None:
        deadline = time.monotonic() + self.gone_seconds
        while time.monotonic() < deadline:
            try:
                self.batch.read_namespaced_job(name, self.namespace)
            except ApiException as exc:
                if exc.status == 404:
                    return
                raise
            time.sleep(self.poll_seconds)

    def running_jobs(self) -> list[str]:
        """This restore's Jobs that have not finished (label query)."""
        jobs = self.batch.list_namespaced_job(
            self.namespace, label_selector=f"{LABEL_RESTORE}={self.restore_id}").items
        return sorted(job.metadata.name for job in jobs
                      if not (job.status.succeeded or job.status.failed)
                      and job.metadata.deletion_timestamp is None)

    def settle(self, stop: Stop = NEVER) -> list[str]:
        """Adopt the Jobs an earlier operator left running: wait for each to end
        (its result is read by name when its phase re-runs)."""
        running = self.running_jobs()
        for name in running:
            log.info("restore %s: adopting Job %s, left running by an earlier operator; "
                     "waiting for its result before anything else starts",
                     self.restore_id, name)
            self._until_finished(name, stop)
        return running

    def _result(self, step: str, name: str, *, failed: bool) -> Any:
        message = self._termination_message(name)
        tail = (message or "no termination message").strip()[-1500:]
        return step_result(parse_line(message) if message else None, ended_ok=not failed,
                           reason="JobFailed", failure=f"Job {name} ({step}) failed: {tail}")

    def _termination_message(self, name: str) -> str:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"job-name={name}")
        for pod in pods.items:
            for container in (pod.status.container_statuses or []):
                terminated = container.state and container.state.terminated
                if terminated and terminated.message:
                    return terminated.message
        return ""

    # -- cleanup ----------------------------------------------------------------
    def delete_job(self, name: str, *, running: bool = False) -> None:
        """A running Job is deleted in the foreground: it goes only once its
        Pod (the step's processes) is gone. A finished one goes at once."""
        try:
            self.batch.delete_namespaced_job(
                name, self.namespace,
                propagation_policy="Foreground" if running else "Background")
        except ApiException as exc:
            if exc.status != 404:
                raise

    def cleanup(self) -> list[str]:
        """Delete this restore's Jobs (found by the restore-id label: owner
        references cannot cross namespaces) and its connections Secret (by
        name: listing Secrets would read them all). NotFound is done."""
        namespace, batch, core = self.namespace, self.batch, self.core
        selector = f"{LABEL_RESTORE}={self.restore_id}"
        deleted: list[str] = []
        for job in batch.list_namespaced_job(namespace, label_selector=selector).items:
            self.delete_job(job.metadata.name,
                            running=not (job.status.succeeded or job.status.failed))
            deleted.append(f"job {job.metadata.name}")
        try:
            core.delete_namespaced_secret(self.secret_name, namespace)
            deleted.append(f"secret {self.secret_name}")
        except ApiException as exc:
            if exc.status != 404:
                raise
        return deleted
