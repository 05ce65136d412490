"""What a user asks for: the SchemaRestore spec, parsed once where it enters.

`RestoreSpec.from_dict` is the only place a spec is read and validated
(the CLI builds the same dict from its flags; the operator passes the CR's
spec with its configured defaults filled in). What comes out is typed and
frozen: `schemas` a tuple of exact names, `restore_time` an aware UTC
datetime, so nothing downstream parses or re-checks a field.

Each field declares, next to it, its CRD name, description and OpenAPI
constraints (`api_field`). Python checks those same constraints, and the
CRD (`crds/`, and the Helm chart's copy) is generated from them
(`pg_schema_restore.crd`), so the API server and the operator apply one
rule per field. Rules a pattern cannot express (system schemas, the
63-byte limit of a name and of a suffixed name) come from the data plane's
own `ddl_job.names`, which the data plane applies to its argv too.
"""

from __future__ import annotations

import re
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from ddl_job.errors import InvalidRequest, InvalidSpec
from ddl_job.foreign_keys import KEEP_NOT_VALID
from ddl_job.foreign_keys import POLICIES as FOREIGN_KEYS
from ddl_job.names import (MAX_IDENTIFIER_BYTES, over_limit, shown, suffix_for, target_names,
                           validate_schema_list, validate_suffix)

DATA_COPY = ("copy", "dms")
CREDENTIALS = ("resetMasterPassword", "historicalSecret")
ON_FAILURE = ("dropRestoredSchemas", "keep")
ENGINES = ("native", "stepfunctions")
RFC3339 = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
           r"(Z|[+-][0-9]{2}:[0-9]{2})$")
# A derived suffix is always `_YYYYMMDDHHMMSS`: a snapshot's names are checked with one.
_DERIVED_SUFFIX_SHAPE = "_00000000000000"

Check = Callable[[Any], Any]


def api_field(json: str, description: str, schema: dict[str, Any], *,
              default: Any = MISSING, default_factory: Any = MISSING,
              parse: Check | None = None, check: Check | None = None,
              nested: type | None = None) -> Any:
    """A spec field with its API name, description and OpenAPI schema.

    `check` runs first, once the JSON type is right, and refuses what the
    schema cannot express (or says it better) with InvalidRequest; then the
    schema's own constraints; then `parse` turns the JSON value into the
    typed one. `nested` is the dataclass of an object field."""
    metadata = {"json": json, "description": description, "schema": schema,
                "parse": parse, "check": check, "nested": nested}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def _restore_time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)
    except ValueError:
        raise InvalidSpec(f"restoreTime {text!r} is not a valid time") from None


def _rfc3339_shape(text: str) -> None:
    if not re.search(RFC3339[:-1] + r"\Z", text):
        raise InvalidSpec(f"restoreTime {text!r} is not RFC 3339 (e.g. 2024-01-28T14:30:00Z)")


def _not_blank(value: str) -> None:
    if not value.strip():
        raise InvalidSpec("snapshotId is empty")


def rfc3339(point: datetime) -> str:
    """The API's form of an instant: UTC, `Z`, microseconds only when present."""
    text = point.astimezone(timezone.utc).isoformat()
    return text.replace("+00:00", "Z")


@dataclass(frozen=True)
class Source:
    name: str = api_field(
        "name", "a source the administrator declared (the operator's `sources`): it sets "
        "dbIdentifier, secretArn and region, and says which namespaces may restore it",
        {"type": "string", "pattern": r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"}, default="")
    db_identifier: str = api_field(
        "dbIdentifier", "RDS DB instance or Aurora DB cluster to restore from (AWS); the "
        "operator detects which", {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9-]{0,62}$"},
        default="")
    secret_arn: str = api_field(
        "secretArn", "Secrets Manager secret holding production's connection (host, port, "
        "username, password)", {"type": "string", "maxLength": 2048}, default="")
    region: str = api_field(
        "region", "AWS region of the source (default: the operator's)",
        {"type": "string", "pattern": r"^[a-z]{2}(-[a-z]+)+-[0-9]$"}, default="")


@dataclass(frozen=True)
class TemporaryDatabase:
    instance_class: str = api_field(
        "instanceClass", "instance class of the temporary copy (Aurora: of its writer; "
        "db.serverless for Aurora Serverless v2)",
        {"type": "string", "pattern": r"^db\.([a-z0-9]+\.[a-z0-9]+|serverless)$"},
        default="db.r6g.large")
    subnet_group: str = api_field(
        "subnetGroup", "DB subnet group the temporary copy is placed in (default: the "
        "source's)", {"type": "string", "maxLength": 255}, default="")
    parameter_group: str = api_field(
        "parameterGroup", "DB parameter group of the temporary copy (Aurora: of its writer; "
        "default: the source's)", {"type": "string", "maxLength": 255}, default="")
    cluster_parameter_group: str = api_field(
        "clusterParameterGroup", "DB cluster parameter group of an Aurora copy (default: "
        "the source cluster's)", {"type": "string", "maxLength": 255}, default="")
    security_group_ids: tuple[str, ...] = api_field(
        "securityGroupIds", "VPC security groups of the temporary copy (default: the "
        "source's)",
        {"type": "array", "maxItems": 5, "items": {"type": "string", "pattern": r"^sg-[0-9a-f]+$"}},
        default=(), parse=tuple)


@dataclass(frozen=True)
class RestoreSpec:
    database: str = api_field(
        "database", "database holding the schemas (in the source and in production)",
        {"type": "string", "minLength": 1, "maxLength": 63,
         "pattern": r"^[A-Za-z_][A-Za-z0-9_$-]*$"})
    schemas: tuple[str, ...] = api_field(
        "schemas", "schemas to restore, exact names (case-sensitive, any name PostgreSQL "
        "accepts); each comes back as <name><suffix>",
        {"type": "array", "minItems": 1, "maxItems": 100, "x-kubernetes-list-type": "set",
         # Any name PostgreSQL accepts; it refuses only a NUL byte. The operator
         # also refuses system schemas and names over 63 bytes (ddl_job.names).
         "items": {"type": "string", "minLength": 1, "maxLength": 63,
                   "pattern": "^[^\\x00]+$"}},
        check=validate_schema_list, parse=tuple)
    restore_time: datetime | None = api_field(
        "restoreTime", "RFC 3339 instant to restore to, e.g. 2024-01-28T14:30:00Z (exactly "
        "one of restoreTime and snapshotId)",
        {"type": "string", "format": "date-time", "pattern": RFC3339},
        default=None, check=_rfc3339_shape, parse=_restore_time)
    snapshot_id: str | None = api_field(
        "snapshotId", "DB snapshot or DB cluster snapshot id (or ARN) to restore from "
        "(exactly one of restoreTime and snapshotId)",
        {"type": "string", "minLength": 1, "maxLength": 255}, default=None, check=_not_blank)
    source: Source = api_field(
        "source", "the production database (defaults come from the operator's configuration)",
        {"type": "object"}, default_factory=Source, nested=Source)
    engine: str = api_field(
        "engine", "who drives the phases: the operator itself (native) or an AWS Step "
        "Functions state machine", {"type": "string", "enum": list(ENGINES)}, default="native")
    data_copy: str = api_field(
        "dataCopy", "how rows are copied: parallel COPY streams (copy) or AWS DMS full-load "
        "tasks (dms)", {"type": "string", "enum": list(DATA_COPY)}, default="copy")
    target_suffix: str | None = api_field(
        "targetSuffix", "suffix of the restored schemas' names (default: _YYYYMMDDHHMMSS of "
        "the restore point or snapshot, UTC)",
        {"type": "string", "pattern": r"^[A-Za-z0-9_]{1,40}$"}, default=None,
        check=validate_suffix)
    credentials: str = api_field(
        "credentials", "how the operator logs in to the copy: reset its master password "
        "(resetMasterPassword) or use the secret's version of the restore point "
        "(historicalSecret)", {"type": "string", "enum": list(CREDENTIALS)},
        default="resetMasterPassword")
    temporary_database: TemporaryDatabase = api_field(
        "temporaryDatabase", "where and how the temporary copy runs", {"type": "object"},
        default_factory=TemporaryDatabase, nested=TemporaryDatabase)
    on_failure: str = api_field(
        "onFailure", "what a failed restore does with the schemas it created: drop them "
        "(dropRestoredSchemas) or keep them for inspection (keep)",
        {"type": "string", "enum": list(ON_FAILURE)}, default="dropRestoredSchemas")
    foreign_keys: str = api_field(
        "foreignKeys", "what a foreign key from a restored table to a table outside the "
        "restored schemas does when production no longer has rows it references: stay NOT "
        "VALID (it still checks new rows) with a warning naming it and its orphan rows "
        "(keepNotValid), or fail the restore (fail)",
        {"type": "string", "enum": list(FOREIGN_KEYS)}, default=KEEP_NOT_VALID)
    grant_membership: bool = api_field(
        "grantMembership", "when the connecting role is not a member of a role owning the "
        "schemas' objects (RDS: the master user is no superuser), grant it that membership "
        "for the restore's duration and revoke it afterwards, recorded in status and audit; "
        "otherwise the restore stops early with MissingRoleMembership and the GRANTs to run",
        {"type": "boolean"}, default=False)
    artifacts_location: str = api_field(
        "artifactsLocation", "s3://bucket/prefix for the DDL artifacts (default: the "
        "operator's)", {"type": "string", "pattern": r"^s3://[a-z0-9.-]{3,63}(/.*)?$"},
        default="")
    jobs: int = api_field(
        "jobs", "parallel connections for the copy and the index builds",
        {"type": "integer", "minimum": 1, "maximum": 32}, default=2)

    # -- parsing -------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RestoreSpec":
        """Parse and validate a spec in API form (camelCase); InvalidSpec says why."""
        try:
            spec = _parse_object(cls, data, "")
            spec._check_together()
        except InvalidSpec:
            raise
        except InvalidRequest as exc:
            refused = InvalidSpec(exc.message)
            if exc.reason == "NameTooLong":   # the reason the data plane gives it too
                refused.reason = exc.reason
            raise refused from None
        return spec

    def _check_together(self) -> None:
        """Rules that involve more than one field."""
        if (self.restore_time is None) == (self.snapshot_id is None):
            raise InvalidSpec("exactly one of restoreTime and snapshotId is required")
        if self.target_suffix or self.restore_time is not None:
            target_names(list(self.schemas), self.suffix())   # the suffix it will use
            return
        # A snapshot's suffix comes from its creation time, read in phase 1;
        # its length is known now (clashes are checked once it is known).
        too_long = [name for name in self.schemas
                    if len((name + _DERIVED_SUFFIX_SHAPE).encode()) > MAX_IDENTIFIER_BYTES]
        if too_long:
            raise InvalidRequest(
                "NameTooLong",
                f"with the {len(_DERIVED_SUFFIX_SHAPE)}-byte suffix _YYYYMMDDHHMMSS of the "
                "snapshot's creation time, target schema names would exceed PostgreSQL's "
                "63-byte limit and be silently truncated: "
                + ", ".join(f"{shown(name)} + suffix "
                            f"({over_limit(name + _DERIVED_SUFFIX_SHAPE)})" for name in too_long)
                + "; set a shorter targetSuffix")

    def to_dict(self, defaults: bool = True) -> dict[str, Any]:
        """The API form (camelCase, JSON values): what the record and the audit keep.
        `defaults=False` leaves out fields at their default (`from_dict` puts them
        back): the short form the status keeps."""
        return _to_api(self, defaults)

    # -- derived values ----------------------------------------------------------
    def suffix(self, snapshot_time: datetime | None = None) -> str:
        """targetSuffix, or `_YYYYMMDDHHMMSS` of the restore point / snapshot."""
        if self.target_suffix:
            return self.target_suffix
        point = self.restore_time or snapshot_time
        if point is None:
            raise InvalidSpec("targetSuffix is required when the snapshot time is unknown")
        return suffix_for(point)

    def target_names(self, snapshot_time: datetime | None = None) -> dict[str, str]:
        return target_names(list(self.schemas), self.suffix(snapshot_time))

    @property
    def point(self) -> str:
        """The restore point as users write it: the instant, or `snapshot:<id>`."""
        if self.restore_time is not None:
            return rfc3339(self.restore_time)
        return f"snapshot:{self.snapshot_id}"


# -- one walk over the field declarations, for parsing and printing -------------
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "array": (list, tuple), "object": (dict,),
    "boolean": (bool,)}


def _parse_object(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise InvalidSpec(f"{prefix.rstrip('.') or 'spec'} must be an object, not "
                          f"{type(data).__name__}")
    declared = {f.metadata["json"]: f for f in fields(cls)}
    unknown = sorted(set(data) - set(declared))
    if unknown:
        raise InvalidSpec(f"unknown fields: {[prefix + name for name in unknown]}")
    values: dict[str, Any] = {}
    for json_name, spec_field in declared.items():
        value = data.get(json_name)
        required = spec_field.default is MISSING and spec_field.default_factory is MISSING
        # Absent, null, or the default's own value ("" for optional strings): not given.
        if value is None or (not required and value == spec_field.default):
            if required:
                raise InvalidSpec(f"{prefix}{json_name} is required")
            continue
        values[spec_field.name] = _parse_value(spec_field, data[json_name], prefix + json_name)
    return cls(**values)


def _parse_value(spec_field: Any, value: Any, path: str) -> Any:
    meta = spec_field.metadata
    schema = meta["schema"]
    if meta["nested"] is not None:
        return _parse_object(meta["nested"], value, path + ".")
    _check_type(schema, value, path)
    if meta["check"] is not None:
        meta["check"](list(value) if isinstance(value, list) else value)
    _check_schema(schema, value, path)
    return meta["parse"](value) if meta["parse"] else value


def _check_type(schema: dict[str, Any], value: Any, path: str) -> None:
    kind = schema["type"]
    wrong = not isinstance(value, _JSON_TYPES[kind]) or (kind == "integer"
                                                         and isinstance(value, bool))
    if not wrong and kind == "array":
        wrong = not all(isinstance(item, str) for item in value)
    if wrong:
        shape = "a list of strings" if kind == "array" else f"a {kind}"
        raise InvalidSpec(f"{path} must be {shape}, not {value!r}")


def _check_schema(schema: dict[str, Any], value: Any, path: str) -> None:
    """The OpenAPI constraints the CRD declares, with a message that names the value."""
    if "enum" in schema and value not in schema["enum"]:
        raise InvalidSpec(f"{path} must be one of {schema['enum']}, not {value!r}")
    # RE2's `$` (the API server's) ends the text; Python's also matches before a "\n".
    if "pattern" in schema and not re.search(schema["pattern"].removesuffix("$") + r"\Z",
                                             value):
        raise InvalidSpec(f"{path} {value!r} is invalid (must match {schema['pattern']})")
    if isinstance(value, str) and not schema.get("minLength", 0) <= len(value) <= schema.get(
            "maxLength", len(value)):
        raise InvalidSpec(f"{path} must be {schema.get('minLength', 0)}-"
                          f"{schema['maxLength']} characters")
    kind = schema["type"]
    if kind == "integer" and not schema.get("minimum", value) <= value <= schema.get(
            "maximum", value):
        raise InvalidSpec(f"{path} must be between {schema['minimum']} and "
                          f"{schema['maximum']}, not {value}")
    if kind == "array":
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)):
            raise InvalidSpec(f"{path} must hold {schema.get('minItems', 0)} to "
                              f"{schema['maxItems']} items")
        for index, item in enumerate(value):
            _check_schema(schema["items"], item, f"{path}[{index}]")


def _to_api(obj: Any, defaults: bool = True) -> dict[str, Any]:
    """Every field but the unset optional ones (None), as the API would hold it;
    without `defaults`, also without the fields that hold their default."""
    out: dict[str, Any] = {}
    for spec_field in fields(obj):
        value = getattr(obj, spec_field.name)
        if value is None or (not defaults and _is_default(spec_field, value)):
            continue
        if is_dataclass(value):
            value = _to_api(value, defaults)
            if not value and not defaults:
                continue
        elif isinstance(value, datetime):
            value = rfc3339(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[spec_field.metadata["json"]] = value
    return out


def _is_default(spec_field: Any, value: Any) -> bool:
    if spec_field.default is not MISSING:
        return value == spec_field.default
    if spec_field.default_factory is not MISSING:
        return value == spec_field.default_factory()
    return False
