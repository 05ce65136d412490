"""The restore record: everything about one restore, JSON-serialisable.

It is the single source of truth that makes phases resumable: the operator
keeps it in the SchemaRestore's status, the CLI in a state file. Every
temporary resource's id is written here *before* the call that creates it,
so a crash at any point leaves a record that finds the resource again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

PHASES = (
    "Initialize",            # 1 validate, detect source, audit, DMS instance early
    "TemporaryDatabase",     # 2 restore the copy and wait for it
    "SchemaExtraction",      # 3 credentials, extract DDL, apply pre-data
    "DataCopy",              # 4 copy or DMS, then sequences
    "PostData",              # 5 post-data, then verify
    "Cleanup",               # 6 delete every temporary resource
    "Record",                # 7 final audit record and result
)
# Kubernetes condition per phase (docs/design.md), set True when the phase completes.
PHASE_CONDITIONS = {
    "TemporaryDatabase": "TemporaryDatabaseReady",
    "SchemaExtraction": "SchemaExtracted",
    "DataCopy": "DataCopied",
    "PostData": "PostDataApplied",
    "Cleanup": "CleanedUp",
}
TERMINAL = ("Succeeded", "Failed")


def restore_id_for(seed: str) -> str:
    """Short, stable id from a seed (a CR's metadata.uid, or a random token)."""
    return hashlib.sha256(seed.encode()).hexdigest()[:10]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class RestoreRecord:
    restore_id: str
    spec: dict[str, Any]
    phase: str = PHASES[0]                 # the phase to run next (or a TERMINAL state)
    completed: list[str] = field(default_factory=list)
    targets: dict[str, str] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)     # kind, engine version, …
    resources: dict[str, Any] = field(default_factory=dict)  # every temp id/ARN
    progress: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    started_at: str = field(default_factory=now)
    finished_at: str | None = None
    schemas_created: bool = False          # pre-data committed in production
    cleanup_requested: bool = False
    error: dict[str, str] | None = None    # {phase, reason, message}
    warnings: list[str] = field(default_factory=list)  # what the restore cannot bring back
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.phase in TERMINAL

    @property
    def succeeded(self) -> bool:
        return self.phase == "Succeeded"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RestoreRecord":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def resource_name(self, kind: str) -> str:
        """Deterministic name of a temporary resource of this restore."""
        return f"pgsr-{self.restore_id}-{kind}"
