"""The restore record: everything about one restore, JSON-serialisable.

It is the single source of truth that makes phases resumable: the operator
keeps it in the SchemaRestore's status, the CLI in a state file. Every
temporary resource's id is written here *before* the call that creates it,
so a crash at any point leaves a record that finds the resource again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from .spec import RestoreSpec

PHASES = (
    "Initialize",            # 1 validate, detect source and the copy's settings, audit
    "TemporaryDatabase",     # 2 restore the copy, start DMS's instance, wait for both
    "SchemaExtraction",      # 3 credentials, extract DDL, apply pre-data
    "DataCopy",              # 4 copy or DMS, then sequences
    "PostData",              # 5 post-data, then verify
    "Cleanup",               # 6 delete every temporary resource
    "Record",                # 7 final audit record and result
)
TERMINAL = ("Succeeded", "Failed")


def restore_id_for(seed: str) -> str:
    """Short, stable id from a seed (a CR's metadata.uid, or a random token)."""
    return hashlib.sha256(seed.encode()).hexdigest()[:10]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class RestoreRecord:
    """`spec` is the parsed request; it is None only for a sweep (a restore
    known by its id alone, whose temporary resources are deleted by tag)."""

    restore_id: str
    spec: RestoreSpec | None
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

    @property
    def requested(self) -> RestoreSpec:
        """The spec of a restore that runs (every phase but a sweep's Cleanup)."""
        if self.spec is None:
            raise RuntimeError(f"restore {self.restore_id} has no spec: only Cleanup can run")
        return self.spec

    @property
    def region(self) -> str:
        """The source's region ("" for the session's own)."""
        if self.spec is not None:
            return self.spec.source.region
        return str(self.resources.get("region") or "")

    @classmethod
    def sweep(cls, restore_id: str, region: str = "") -> "RestoreRecord":
        """A record for deleting a restore's leftovers by tag, its own record being lost."""
        return cls(restore_id=restore_id, spec=None, phase="Cleanup",
                   resources={"region": region} if region else {},
                   error={"phase": "Cleanup", "reason": "Sweep",
                          "message": "cleanup of a restore known by its id"})

    def to_dict(self) -> dict[str, Any]:
        """JSON values only; the spec in its API form."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["spec"] = self.spec.to_dict() if self.spec is not None else None
        return json.loads(json.dumps(data, default=str))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RestoreRecord":
        """A saved record (state file, status) back; its spec parsed like any input."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if known.get("spec") is not None:
            known["spec"] = RestoreSpec.from_dict(known["spec"])
        return cls(**known)

    def copy_setting(self, name: str) -> Any:
        """A setting of the temporary copy as phase 1 resolved it (None: unset)."""
        return ((self.source.get("settings") or {}).get(name) or {}).get("value")

    def resource_name(self, kind: str) -> str:
        """Deterministic name of a temporary resource of this restore."""
        return f"pgsr-{self.restore_id}-{kind}"
