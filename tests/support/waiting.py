"""Waiting on something a test cannot be told about: poll until it holds."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, what: str,
               log: Callable[[], str] = lambda: "", interval: float = 0.3) -> T:
    """The predicate's first truthy value; AssertionError naming `what` (and
    the log's tail) once `timeout` seconds pass without one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}\n{log()}")
