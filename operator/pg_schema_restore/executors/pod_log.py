"""Follow a Job pod's log for the step's progress lines while it runs.

Why: a pod's termination message arrives only when it ends, and a step (a
copy of hours) reports its progress as JSON lines on stdout, which is the
container's log. The log is streamed through the API server (`pods/log`,
`follow`), read on a thread, and handed to the executor's polling thread as
parsed events, so the engine sees them on the thread that owns the record.

The copy's progress lines carry absolute counters: a stream that breaks
and is opened again re-reads the log from its start, and the lines already
delivered are skipped by count. A log that cannot be read (no `pods/log`
right, no node serving it) only costs the live progress, never the step.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from .result import parse_line

log = logging.getLogger(__name__)
CONTAINER = "ddl-job"


class PodLogFollower:
    """Events of one Job's pod, from its log; `poll` from the executor's loop."""

    def __init__(self, core: client.CoreV1Api, namespace: str, job_name: str) -> None:
        self.core = core
        self.namespace = namespace
        self.job_name = job_name
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._response: Any = None
        self._delivered = 0          # lines read so far (skipped when the stream re-opens)
        self._closed = threading.Event()
        self._refused = False        # no right to read logs: stop trying

    def poll(self) -> list[dict[str, Any]]:
        """The events read since the last call; (re)opens the stream when it can."""
        if not self._refused and not self._closed.is_set() and (
                self._thread is None or not self._thread.is_alive()):
            pod = self._running_pod()
            if pod:
                self._thread = threading.Thread(target=self._follow, args=(pod,), daemon=True,
                                                name=f"log-{self.job_name}")
                self._thread.start()
        return self._drain()

    def finish(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The pod ended: let the stream reach its end, then the last events."""
        if self._thread is None and not self._refused:
            pod = self._running_pod(ended_too=True)
            if pod:     # the step was shorter than a poll: read its log once
                self._follow(pod)
        if self._thread is not None:
            self._thread.join(timeout)
        self.close()
        return self._drain()

    def close(self) -> None:
        self._closed.set()
        response = self._response
        if response is not None:
            try:
                response.close()
            except Exception:  # noqa: BLE001 - closing a stream that already broke
                pass

    def _drain(self) -> list[dict[str, Any]]:
        out = []
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                return out

    def _running_pod(self, ended_too: bool = False) -> str | None:
        try:
            pods = self.core.list_namespaced_pod(self.namespace,
                                                 label_selector=f"job-name={self.job_name}")
        except ApiException:
            return None
        wanted = ("Running", "Succeeded", "Failed") if ended_too else ("Running",)
        for pod in pods.items:
            if pod.status.phase in wanted and pod.spec.node_name:
                return pod.metadata.name
        return None

    def _follow(self, pod: str) -> None:
        seen = 0
        try:
            self._response = self.core.read_namespaced_pod_log(
                pod, self.namespace, container=CONTAINER, follow=True,
                _preload_content=False)
            for raw in self._response:
                seen += 1
                if seen <= self._delivered:
                    continue
                self._delivered = seen
                event = parse_line(raw.decode("utf-8", "replace"))
                if event is not None and event.get("event") not in ("result", "error"):
                    self._events.put(event)
        except ApiException as exc:
            if exc.status in (401, 403):
                self._refused = True
                log.warning("cannot read the log of pod %s (%s): no live progress",
                            pod, exc.reason)
            else:
                log.debug("log of pod %s: %s", pod, exc.reason)
        except Exception as exc:  # noqa: BLE001 - a broken stream is re-opened by poll()
            if not self._closed.is_set():
                log.debug("log of pod %s broke: %s", pod, exc)
        finally:
            self._response = None
