"""The engine's ports: what it needs from the outside world, as Protocols.

The engine (phases, runner) only talks to these; adapters implement them:
RDS/Aurora or local PITR for the temporary database, Secrets Manager or a
local directory for secrets, a subprocess / Kubernetes Job / ECS task for
data-plane steps, DynamoDB for audit, DMS for the `dms` copy. Adapters are
independent of each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Protocol

from ddl_job.requests import StepRequest

from .record import RestoreRecord
from .spec import RestoreSpec
from .stopping import NEVER, Stop


@dataclass(frozen=True)
class SourceInfo:
    """What phase 1 learns about the source database."""

    kind: str                          # "instance", "cluster" or "local"
    engine_version: str
    earliest_restorable: datetime | None = None
    latest_restorable: datetime | None = None
    snapshot_time: datetime | None = None   # creation time of spec.snapshotId
    # How the copy will run: {name: {"value": ..., "from": spec | operator default | source}}
    settings: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()             # what `plan` must say (e.g. cost surprises)

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else
                    list(v) if isinstance(v, tuple) else v)
                for k, v in self.__dict__.items()}


class TemporaryDatabases(Protocol):
    """Creates, waits for, opens and deletes the temporary restored copy."""

    def describe_source(self, spec: RestoreSpec) -> SourceInfo:
        """Detect instance vs cluster; raise ProviderError for a bad restore
        point (outside the restorable window), an unknown snapshot, or a
        snapshot that does not belong to the source."""

    def production_secret(self, spec: RestoreSpec) -> str:
        """Secret id holding production's connection (host, port, username, password)."""

    def create(self, record: RestoreRecord, spec: RestoreSpec,
               checkpoint: Callable[[], None]) -> None:
        """Start the restore; record ids in record.resources and call
        checkpoint() BEFORE the create call; idempotent (re-run creates nothing)."""

    def wait_ready(self, record: RestoreRecord) -> list[str]:
        """Poll with backoff until available (creating what can only be made
        then: Aurora's writer); ProviderError on terminal states or after a
        bounded wait. Returns warnings (e.g. another minor engine version)."""

    def credentials(self, record: RestoreRecord, spec: RestoreSpec,
                    checkpoint: Callable[[], None]) -> str:
        """Make credentials for the copy; returns the temporary secret's id
        (also recorded in record.resources['temporarySecret'])."""

    def delete(self, record: RestoreRecord) -> list[str]:
        """Delete everything this restore created here, by recorded id AND by
        tag; NotFound counts as done; returns what was deleted."""


class Secrets(Protocol):
    def read(self, secret_id: str) -> dict[str, Any]:
        """{host, port, username, password[, dbname]} (never logged)."""


class Executor(Protocol):
    """Runs one data-plane step (`python -m ddl_job …`) somewhere."""

    def run(self, request: StepRequest, *, source_secret: str | None,
            target_secret: str | None, database: str,
            on_event: Callable[[dict[str, Any]], None], stop: Stop = NEVER) -> Any:
        """Run the step with connections resolved from secrets (never inline);
        return the step's result; raise DataPlaneError with the step's reason.

        Polls `stop` while the step runs: on `cancelled` the step is killed
        (Cancelled), on `interrupted` waiting stops (Interrupted)."""

    def settle(self, stop: Stop = NEVER) -> list[str]:
        """Before a process drives a restore: wait for steps an earlier
        process left running (their results stay readable), so nothing runs
        twice at once; returns what was waited for."""

    def cleanup(self) -> list[str]:
        """Delete what the steps left where they ran (a Job's connections
        Secret holds production's credentials); NotFound is done."""


class Audit(Protocol):
    def started(self, record: RestoreRecord) -> None: ...
    def finished(self, record: RestoreRecord) -> None: ...


class DataMigration(Protocol):
    """AWS DMS full-load (the `dms` data copy)."""

    def start_instance(self, record: RestoreRecord, spec: RestoreSpec,
                       checkpoint: Callable[[], None]) -> None: ...

    def run_full_load(self, record: RestoreRecord, spec: RestoreSpec, source_secret: str,
                      target_secret: str, checkpoint: Callable[[], None]) -> dict[str, Any]: ...

    def delete(self, record: RestoreRecord) -> list[str]: ...


class ArtifactCleaner(Protocol):
    def check(self, location: str) -> None: ...   # can take artifacts (before anything)
    def delete(self, location: str) -> int: ...
