"""Ending a process a test started (the operator) the way a pod would end."""

from __future__ import annotations

import signal
import subprocess


def stop_gracefully(proc: subprocess.Popen | None, timeout: float = 30) -> None:
    """SIGINT (kopf's clean shutdown), then SIGKILL if it has not ended
    within `timeout` seconds; a process already gone is left alone."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)
