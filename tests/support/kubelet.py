"""A test kubelet: plays the node for the operator's Job pods.

The real kube-controller-manager creates the Pods of each Job; with no
kubelet they stay Pending. This helper runs each Pod's container command as
a local process (env resolved from `value` and `secretKeyRef`, as a kubelet
would), captures the termination message file, and writes the Pod's status;
the real Job controller then completes or fails the Job. Like a kubelet, it
stops a running container whose Pod is deleted (SIGTERM to the process
group the container runs in, SIGKILL after a grace period).
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

MANAGED = "app.kubernetes.io/managed-by=pg-schema-restore"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class LocalKubelet:
    """Runs Pending pods of our Jobs locally, several at a time, until stopped."""

    def __init__(self, api: client.ApiClient, namespace: str, *,
                 extra_env: dict[str, str] | None = None) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.extra_env = extra_env or {}
        self._stop = threading.Event()
        self._seen: set[str] = set()
        self._threads: list[threading.Thread] = []
        self.started: list[str] = []          # pod names, in start order
        self.fail_steps: set[str] = set()     # make these steps exit 1 without running
        self.hold_steps: set[str] = set()     # keep these steps' pods waiting to start
        self.held: set[str] = set()           # steps that reached the hold
        self.secret_values: list[str] = []    # every secretKeyRef value a pod got (DSNs)
        self.killed: list[str] = []           # pods whose process was stopped on deletion
        self.pids: dict[str, int] = {}        # pod name -> its process (group) id
        self.grace_seconds = 5.0
        self._main = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> "LocalKubelet":
        self._main.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._main.join(timeout=10)
        for thread in self._threads:
            thread.join(timeout=60)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                pods = self.core.list_namespaced_pod(self.namespace, label_selector=MANAGED)
            except Exception:  # apiserver restarting: try again
                time.sleep(0.5)
                continue
            for pod in pods.items:
                uid = pod.metadata.uid
                if pod.status.phase == "Pending" and uid not in self._seen:
                    self._seen.add(uid)
                    thread = threading.Thread(target=self._run_pod, args=(pod,), daemon=True)
                    self._threads.append(thread)
                    thread.start()
            time.sleep(0.3)

    def _env(self, container: Any) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PGSR_")}
        env.update(self.extra_env)
        for item in container.env or []:
            if item.value is not None:
                env[item.name] = item.value
            elif item.value_from and item.value_from.secret_key_ref:
                ref = item.value_from.secret_key_ref
                secret = self.core.read_namespaced_secret(ref.name, self.namespace)
                env[item.name] = base64.b64decode(secret.data[ref.key]).decode()
                self.secret_values.append(env[item.name])
        return env

    def _run_pod(self, pod: Any) -> None:
        name = pod.metadata.name
        container = pod.spec.containers[0]
        self.started.append(name)
        step = (pod.metadata.labels or {}).get("pgschemarestore.io/step", "")
        while step in self.hold_steps and not self._stop.is_set():
            self.held.add(step)
            if not self._exists(name):
                return  # the Job was deleted while held
            time.sleep(0.3)
        with tempfile.TemporaryDirectory(prefix="kubelet-") as tmp:
            log = os.path.join(tmp, "termination-log")
            env = self._env(container)
            env["PGSR_TERMINATION_LOG"] = log
            command = list(container.command)
            if command and command[0] == "python":
                command[0] = sys.executable
            self._patch(name, {"phase": "Running", "startTime": _now(), "containerStatuses": [
                self._container_status(container, {"running": {"startedAt": _now()}})]})
            if step in self.fail_steps:
                code, output = 1, "injected failure of step " + step
            else:
                ran = self._run_container(name, command, env, tmp)
                if ran is None:
                    return   # the Pod was deleted: stopped, nothing to report
                code, output = ran
            message = open(log).read() if os.path.exists(log) else output[-4000:]
        state = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                "message": message, "startedAt": _now(), "finishedAt": _now()}}
        self._patch(name, {"phase": "Succeeded" if code == 0 else "Failed",
                           "containerStatuses": [self._container_status(container, state)]})

    def _run_container(self, name: str, command: list[str], env: dict[str, str],
                       tmp: str) -> tuple[int, str] | None:
        """Run the command in its own process group until it ends, or until
        its Pod goes away (then stop the group and return None)."""
        out_path = os.path.join(tmp, "output")
        with open(out_path, "w") as out:
            proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.pids[name] = proc.pid
        while True:
            try:
                code = proc.wait(timeout=0.3)
                break
            except subprocess.TimeoutExpired:
                pass
            if not self._running(name):
                self._stop_group(proc)
                self.killed.append(name)
                return None
        with open(out_path) as out:
            return code, out.read()

    def _stop_group(self, proc: subprocess.Popen) -> None:
        """SIGTERM the group, SIGKILL what is left after the grace period."""
        def kill(signum: int) -> None:
            try:
                os.killpg(proc.pid, signum)
            except ProcessLookupError:
                pass
        kill(signal.SIGTERM)
        try:
            proc.wait(timeout=self.grace_seconds)
        except subprocess.TimeoutExpired:
            pass
        kill(signal.SIGKILL)
        proc.wait()

    def _running(self, name: str) -> bool:
        """The Pod still exists and is not being deleted."""
        try:
            pod = self.core.read_namespaced_pod(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        except Exception:  # apiserver restarting: keep running
            return True
        return pod.metadata.deletion_timestamp is None

    def _exists(self, name: str) -> bool:
        try:
            self.core.read_namespaced_pod(name, self.namespace)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    @staticmethod
    def _container_status(container: Any, state: dict[str, Any]) -> dict[str, Any]:
        return {"name": container.name, "image": container.image, "imageID": "",
                "ready": False, "restartCount": 0, "state": state}

    def _patch(self, name: str, status: dict[str, Any]) -> None:
        try:
            self.core.patch_namespaced_pod_status(name, self.namespace, {"status": status})
        except ApiException as exc:
            if exc.status != 404:  # the Job was deleted meanwhile
                raise
