"""The manifest: what extract produced, read by every later step.

It travels with the artifacts, so apply/copy/verify need no other input
than the artifact location and the two connections.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .artifacts import ArtifactStore
from .errors import DataPlaneError

MANIFEST = "manifest.json"
ARCHIVE = "schema.dump"      # pg_dump custom format, pre-data + post-data
PRE_SQL = "pre-data.sql"     # applied in one transaction before the copy
PRE_SCHEMAS = "pre-data-schemas.sql"  # pre-data's first part: the schemas alone
POST_SQL = "post-data.sql"   # human-readable post-data
FULL_SQL = "full.sql"        # everything, for audit and troubleshooting
POST_LIST = "post-data.list"  # pg_restore TOC list applied after the copy
POST_DONE = "post-data.done"  # written once post-data succeeded (resumed runs skip it)
POST_RESULT = "post-data.json"  # what post-data reported (warnings, keys kept NOT VALID)
RELINKS = "relinks.json"      # inheritance children created in attnum order, then attached
CONSTRAINTS = "constraints.json"  # the copy's constraints: production's names follow them
PRIVILEGES = "privileges.json"  # the copy's owners and ACLs (privileges.py)
CASTS = "casts.json"          # casts involving the schemas: pg_dump -n leaves them out (casts.py)


@dataclass
class Manifest:
    restore_id: str
    mode: str                       # "copy" or "dms" (dms: PKs in pre-data)
    schemas: dict[str, str]         # requested name -> name in production
    source_database: str
    server_version: int
    rewritten_functions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)   # what the restore cannot bring back
    # foreign keys to tables outside the schemas (foreign_keys.OutsideKey, as dicts)
    outside_foreign_keys: list[dict[str, Any]] = field(default_factory=list)
    # pre-data in parts: PRE_SCHEMAS first (schema_grants.py), casts created
    # between the others (casts.py); [] = PRE_SQL whole (older artifacts)
    pre_parts: list[str] = field(default_factory=list)
    version: int = 1

    @property
    def targets(self) -> list[str]:
        return list(self.schemas.values())

    def save(self, store: ArtifactStore, workdir: Path) -> None:
        path = Path(workdir) / MANIFEST
        path.write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False))
        store.put_file(MANIFEST, path)

    @classmethod
    def load(cls, store: ArtifactStore) -> "Manifest":
        try:
            data = json.loads(store.read_text(MANIFEST))
        except json.JSONDecodeError as exc:
            raise DataPlaneError("InvalidArtifacts", f"manifest unreadable: {exc}") from None
        if data.get("version") != 1:
            raise DataPlaneError("InvalidArtifacts",
                                 f"unsupported manifest version {data.get('version')}")
        return cls(**data)
