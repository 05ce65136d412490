"""What a user asks for: the SchemaRestore spec, validated the same way
everywhere (CLI, operator, Step Functions input).

The minimal spec is the seed's input: database, schemas, and exactly one of
restoreTime / snapshotId. Everything else has defaults (operator config).
Field names are the CRD's (camelCase) so one dict serves CLI, CR and record.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from ddl_job.errors import DataPlaneError
from ddl_job.names import suffix_for, target_names, validate_schema_list, validate_suffix

DATA_COPY = ("copy", "dms")
CREDENTIALS = ("resetMasterPassword", "historicalSecret")
ON_FAILURE = ("dropRestoredSchemas", "keep")
_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$-]{0,62}$")
_RDS_ID = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,62}$")


class InvalidSpec(DataPlaneError):
    def __init__(self, message: str) -> None:
        super().__init__("InvalidSpec", message)


@dataclass
class Source:
    dbIdentifier: str = ""         # RDS instance or Aurora cluster id ("" for local)
    secretArn: str = ""            # production credentials (host, port, username, password)
    region: str = ""


@dataclass
class TemporaryDatabase:
    instanceClass: str = "db.r6g.large"
    subnetGroup: str = ""
    securityGroupIds: list[str] = field(default_factory=list)


@dataclass
class RestoreSpec:
    database: str
    schemas: list[str]
    restoreTime: str | None = None
    snapshotId: str | None = None
    source: Source = field(default_factory=Source)
    engine: str = "native"
    dataCopy: str = "copy"
    targetSuffix: str | None = None
    credentials: str = "resetMasterPassword"
    temporaryDatabase: TemporaryDatabase = field(default_factory=TemporaryDatabase)
    onFailure: str = "dropRestoredSchemas"
    artifactsLocation: str = ""     # s3://bucket/prefix (AWS) or a directory (local)
    jobs: int = 2

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RestoreSpec":
        data = dict(data)
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise InvalidSpec(f"unknown fields: {sorted(unknown)}")
        try:
            data["source"] = Source(**(data.get("source") or {}))
            data["temporaryDatabase"] = TemporaryDatabase(**(data.get("temporaryDatabase") or {}))
            spec = cls(**data)
        except TypeError as exc:
            raise InvalidSpec(str(exc)) from None
        spec.validate()
        return spec

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    # -- validation ---------------------------------------------------------
    def validate(self) -> None:
        if not isinstance(self.database, str) or not _DB_NAME.match(self.database):
            raise InvalidSpec(f"database {self.database!r} is not a valid database name")
        if not isinstance(self.schemas, list) or not all(isinstance(s, str) for s in self.schemas):
            raise InvalidSpec("schemas must be a list of names")
        try:
            validate_schema_list(self.schemas)
        except DataPlaneError as exc:
            raise InvalidSpec(exc.message) from None
        if (self.restoreTime is None) == (self.snapshotId is None):
            raise InvalidSpec("exactly one of restoreTime and snapshotId is required")
        if self.restoreTime is not None:
            self.restore_point()  # parses or raises
        if self.snapshotId is not None and not self.snapshotId.strip():
            raise InvalidSpec("snapshotId is empty")
        for name, value, allowed in (("dataCopy", self.dataCopy, DATA_COPY),
                                     ("credentials", self.credentials, CREDENTIALS),
                                     ("onFailure", self.onFailure, ON_FAILURE),
                                     ("engine", self.engine, ("native", "stepfunctions"))):
            if value not in allowed:
                raise InvalidSpec(f"{name} must be one of {list(allowed)}, not {value!r}")
        if self.source.dbIdentifier and not _RDS_ID.match(self.source.dbIdentifier):
            raise InvalidSpec(f"source.dbIdentifier {self.source.dbIdentifier!r} is invalid")
        if not isinstance(self.jobs, int) or not 1 <= self.jobs <= 32:
            raise InvalidSpec("jobs must be between 1 and 32")
        if self.targetSuffix is not None:
            try:
                validate_suffix(self.targetSuffix)
            except DataPlaneError as exc:
                raise InvalidSpec(exc.message) from None
        try:
            # A derived suffix is always `_YYYYMMDDHHMMSS`: check lengths with one now.
            target_names(self.schemas, self.targetSuffix or "_00000000000000")
        except DataPlaneError as exc:
            raise InvalidSpec(exc.message) from None

    def restore_point(self) -> datetime | None:
        """restoreTime as an aware datetime (RFC 3339), or None for snapshots."""
        if self.restoreTime is None:
            return None
        text = self.restoreTime.strip()
        if not re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$", text):
            raise InvalidSpec(f"restoreTime {self.restoreTime!r} is not RFC 3339 "
                              "(e.g. 2024-01-28T14:30:00Z)")
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)
        except ValueError:
            raise InvalidSpec(f"restoreTime {self.restoreTime!r} is not a valid time") from None

    def suffix(self, snapshot_time: datetime | None = None) -> str:
        """targetSuffix, or `_YYYYMMDDHHMMSS` of the restore point / snapshot."""
        if self.targetSuffix:
            return self.targetSuffix
        point = self.restore_point() or snapshot_time
        if point is None:
            raise InvalidSpec("targetSuffix is required when the snapshot time is unknown")
        return suffix_for(point)

    def target_names(self, snapshot_time: datetime | None = None) -> dict[str, str]:
        return target_names(self.schemas, self.suffix(snapshot_time))
