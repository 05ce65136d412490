"""boto3 plumbing shared by the AWS adapters: sessions, clients with
botocore's retry modes, error codes, tags, and polling with backoff.

This module is infrastructure, not an adapter: the adapters (rds, secrets,
audit, s3, dms) may import it, never each other.

- Every client is made with `Config(retries={"mode": ..., "max_attempts": 10})`
  so throttling (`Throttling`, `ThrottlingException`, `RequestLimitExceeded`…)
  and transient errors are retried by botocore itself, with its own backoff.
- Clients are created lazily under a lock: a boto3 Session is not
  thread-safe, and cleanup runs adapters in parallel threads. Lazily also
  means that hooks a test registers on `session.events` before the first call
  reach the clients.
- Nothing here sleeps on its own: `Poller` waits through an injectable
  `sleep` and `clock`, so tests run at full speed and timeouts stay testable.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, TypeVar

import boto3
from botocore.config import Config

from ddl_job.errors import ProviderError

RESTORE_ID_TAG = "pg-schema-restore/restore-id"
RETRY_MODES = ("standard", "adaptive")
DEFAULT_RETRY_MODE = "standard"
MAX_ATTEMPTS = 10

T = TypeVar("T")
_CLIENT_LOCK = threading.Lock()


def retry_config(mode: str = DEFAULT_RETRY_MODE, max_attempts: int = MAX_ATTEMPTS) -> Config:
    """botocore Config with its standard (or adaptive) retry mode.

    `adaptive` adds a client-side rate limiter on top of `standard`; both
    retry throttling errors with exponential backoff and jitter.
    """
    if mode not in RETRY_MODES:
        raise ValueError(f"retry mode must be one of {RETRY_MODES}, not {mode!r}")
    return Config(retries={"mode": mode, "max_attempts": max_attempts})


def new_session(*, region: str | None = None, profile: str | None = None) -> boto3.Session:
    """A boto3 Session from the default credential chain (env, profile, IRSA…)."""
    return boto3.Session(region_name=region or None, profile_name=profile or None)


class Clients:
    """Lazily created, shared boto3 clients of one session, per (service, region)."""

    def __init__(self, session: boto3.Session, *, retry_mode: str = DEFAULT_RETRY_MODE,
                 max_attempts: int = MAX_ATTEMPTS) -> None:
        self.session = session
        self.config = retry_config(retry_mode, max_attempts)
        self._clients: dict[tuple[str, str], Any] = {}

    @property
    def region(self) -> str:
        return self.session.region_name or ""

    def get(self, service: str, region: str | None = None) -> Any:
        key = (service, region or self.region)
        client = self._clients.get(key)
        if client is None:
            with _CLIENT_LOCK:   # one lock for every Clients: they may share a session
                client = self._clients.get(key)
                if client is None:
                    client = self.session.client(service, region_name=key[1] or None,
                                                 config=self.config)
                    self._clients[key] = client
        return client


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError ('' for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def error_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Message", "")) or str(exc)
    return str(exc)


def region_of_arn(value: str) -> str | None:
    """`arn:aws:service:REGION:account:...` -> REGION (None for a plain name)."""
    parts = value.split(":")
    if len(parts) >= 6 and parts[0] == "arn" and parts[3]:
        return parts[3]
    return None


def secret_name(secret_id: str) -> str:
    """The name people know a secret by, from its ARN or its name.

    A Secrets Manager ARN ends `:secret:NAME-XXXXXX` (six random characters
    AWS appends); the record keeps ARNs (they carry the region), messages say
    names. A name is returned as it is."""
    if region_of_arn(secret_id) is None:
        return secret_id
    resource = secret_id.split(":", 6)[-1]
    name, dash, suffix = resource.rpartition("-")
    return name if dash and name and len(suffix) == 6 else resource


def restore_tags(restore_id: str) -> list[dict[str, str]]:
    """The tag every temporary resource of a restore carries."""
    return [{"Key": RESTORE_ID_TAG, "Value": restore_id}]


def has_restore_tag(tags: list[dict[str, Any]] | None, restore_id: str) -> bool:
    return any(t.get("Key") == RESTORE_ID_TAG and t.get("Value") == restore_id
               for t in tags or [])


def as_utc(value: datetime | str) -> datetime:
    """An aware UTC datetime from botocore's datetimes (tzlocal) or ISO text."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


@dataclass
class Poller:
    """Poll until done, with capped exponential backoff and jitter.

    `sleep` and `clock` are injectable (tests pass a fake clock whose sleep
    advances time instantly); nothing else in the AWS adapters waits.
    """

    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    initial: float = 5.0
    factor: float = 1.6
    max_delay: float = 60.0
    jitter: float = 0.1
    _random: random.Random = field(default_factory=random.Random, repr=False)

    def delays(self):
        delay = self.initial
        while True:
            spread = delay * self.jitter
            yield max(0.0, delay + self._random.uniform(-spread, spread))
            delay = min(delay * self.factor, self.max_delay)

    def wait(self, probe: Callable[[], T | None], *, timeout: float, what: str,
             reason: str = "Timeout") -> T:
        """Call `probe` until it returns something other than None.

        `probe` raises to stop early (e.g. ProviderError on a terminal
        state). After `timeout` seconds: ProviderError(reason).
        """
        deadline = self.clock() + timeout
        for delay in self.delays():
            result = probe()
            if result is not None:
                return result
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise ProviderError(reason, f"{what}: still not done after {timeout:.0f}s")
            self.sleep(min(delay, remaining))
        raise AssertionError("unreachable")  # pragma: no cover
