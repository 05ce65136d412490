"""A test kubelet: plays the node for the operator's Job pods.

The real kube-controller-manager creates the Pods of each Job; with no
kubelet they stay Pending. This helper runs each Pod's container command as
a local process (env resolved from `value` and `secretKeyRef`, as a kubelet
would), captures the termination message file, and writes the Pod's status;
the real Job controller then completes or fails the Job.

Like a kubelet it also serves the containers' logs: it registers a Node
(address 127.0.0.1, its HTTPS port as the kubelet endpoint, a heartbeat),
binds each pod it runs to it, and answers the API server's
`/containerLogs/<ns>/<pod>/<container>?follow=true` from the process's
output file, so `kubectl logs -f` and the operator's `pods/log` stream work.
The API server has no kubelet CA configured, so it accepts this server's
self-signed certificate.

Like a kubelet, it stops a running container whose Pod is deleted (SIGTERM
to the process group the container runs in, SIGKILL after a grace period),
then confirms the deletion.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

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
        self.node = f"kubelet-{namespace}"[:63]
        self._dir = tempfile.mkdtemp(prefix="kubelet-logs-")
        self._logs: dict[str, str] = {}        # pod name -> its output file
        self._running: set[str] = set()         # pods whose process has not ended
        self._procs: dict[str, subprocess.Popen] = {}
        self.killed: list[str] = []           # pods whose process was stopped on deletion
        self.grace_seconds = 5.0
        self._server = _log_server(self, self._dir)
        self._main = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> "LocalKubelet":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self._register_node()
        self._main.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._main.join(timeout=10)
        for thread in self._threads:
            thread.join(timeout=60)
        self._server.shutdown()
        self._server.server_close()
        try:
            self.core.delete_node(self.node)
        except Exception:  # apiserver gone, or the node already deleted
            pass
        shutil.rmtree(self._dir, ignore_errors=True)

    # -- the node ------------------------------------------------------------------
    def _register_node(self) -> None:
        try:
            self.core.create_node({"metadata": {"name": self.node}})
        except ApiException as exc:
            if exc.status != 409:
                raise
        self._heartbeat()

    def _heartbeat(self) -> None:
        port = self._server.server_address[1]
        self.core.patch_node_status(self.node, {"status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "test kubelet", "lastHeartbeatTime": _now(),
                            "lastTransitionTime": _now()}]}})

    def _bind(self, name: str) -> None:
        """Schedule the pod on this node (its logs are then asked of us)."""
        body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                "target": {"apiVersion": "v1", "kind": "Node", "name": self.node}}
        try:  # the client cannot read a Binding back: take the raw response
            self.core.create_namespaced_pod_binding(name, self.namespace, body,
                                                    _preload_content=False)
        except ApiException as exc:
            if exc.status not in (404, 409):  # gone, or bound already
                raise

    def log_of(self, pod: str) -> tuple[str | None, bool]:
        """(output file, still running) of a pod this kubelet ran."""
        return self._logs.get(pod), pod in self._running

    def _loop(self) -> None:
        beat = time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() - beat > 10:
                beat = time.monotonic()
                try:
                    self._heartbeat()
                except Exception:  # apiserver restarting: next time
                    pass
            try:
                pods = self.core.list_namespaced_pod(self.namespace, label_selector=MANAGED)
            except Exception:  # apiserver restarting: try again
                time.sleep(0.5)
                continue
            for pod in pods.items:
                proc = self._procs.get(pod.metadata.name)
                if (pod.metadata.deletion_timestamp and proc and proc.poll() is None
                        and pod.metadata.name not in self.killed):
                    # Graceful deletion of a bound pod: stop its process group.
                    self.killed.append(pod.metadata.name)
                    threading.Thread(target=self._stop_group, args=(proc,), daemon=True).start()
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
            self._bind(name)
            output_file = os.path.join(self._dir, f"{name}.log")
            self._logs[name] = output_file
            self._running.add(name)
            self._patch(name, {"phase": "Running", "startTime": _now(), "containerStatuses": [
                self._container_status(container, {"running": {"startedAt": _now()}})]})
            try:
                with open(output_file, "wb") as out:
                    if step in self.fail_steps:
                        out.write(f"injected failure of step {step}\n".encode())
                        code = 1
                    else:   # stdout and stderr in one file, as a container's log
                        proc = subprocess.Popen(command, env=env, stdout=out,
                                                stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL,
                                                start_new_session=True)
                        self._procs[name] = proc
                        code = proc.wait()
            finally:
                self._running.discard(name)
                self._procs.pop(name, None)
            with open(output_file, encoding="utf-8", errors="replace") as out:
                output = out.read()
            message = open(log).read() if os.path.exists(log) else output[-4000:]
        state = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                "message": message, "startedAt": _now(), "finishedAt": _now()}}
        self._patch(name, {"phase": "Succeeded" if code == 0 else "Failed",
                           "containerStatuses": [self._container_status(container, state)]})
        self._finish_deletion(name)

    def _stop_group(self, proc: subprocess.Popen) -> None:
        """SIGTERM the container's process group, SIGKILL what is left after the grace."""
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

    def _finish_deletion(self, name: str) -> None:
        """A bound pod deleted while it ran waits for its kubelet: confirm it."""
        try:
            pod = self.core.read_namespaced_pod(name, self.namespace)
            if pod.metadata.deletion_timestamp:
                self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                raise

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


def _log_server(kubelet: LocalKubelet, workdir: str) -> ThreadingHTTPServer:
    """HTTPS on a free loopback port with a throw-away self-signed certificate."""
    cert, key = os.path.join(workdir, "tls.crt"), os.path.join(workdir, "tls.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=test-kubelet", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(kubelet))
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return server


def _handler(kubelet: LocalKubelet) -> type[BaseHTTPRequestHandler]:
    class ContainerLogs(BaseHTTPRequestHandler):
        """`GET /containerLogs/<ns>/<pod>/<container>[?follow=true]`, as a kubelet."""

        protocol_version = "HTTP/1.0"     # the body ends when the connection closes

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            url = urlparse(self.path)
            parts = url.path.strip("/").split("/")
            if len(parts) != 4 or parts[0] != "containerLogs" or parts[1] != kubelet.namespace:
                self.send_error(404)
                return
            path, _ = kubelet.log_of(parts[2])
            if path is None:
                self.send_error(404, "no such pod on this kubelet")
                return
            follow = parse_qs(url.query).get("follow", ["false"])[0] == "true"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            try:
                with open(path, "rb") as log:
                    while True:
                        chunk = log.read(65536)
                        if chunk:
                            self.wfile.write(chunk)
                            self.wfile.flush()
                            continue
                        if not follow or not kubelet.log_of(parts[2])[1]:
                            rest = log.read()       # written between the read and the check
                            if rest:
                                self.wfile.write(rest)
                            return
                        time.sleep(0.05)
            except (BrokenPipeError, ConnectionResetError):
                return

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            return

    return ContainerLogs
