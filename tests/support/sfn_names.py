"""The names AWS Step Functions uses for aws-sdk integrations, derived from
botocore's service models (never written by hand).

Step Functions' `arn:aws:states:::aws-sdk:SERVICE:action` speaks the AWS SDK
for Java v2: service ids without spaces or "Service" (`databasemigration`),
actions in lower camel case (`describeDBInstances`), members with acronyms
as words (`DbInstanceIdentifier`, `MultiAz`), errors as
`Prefix.ExceptionName` with a `Fault` suffix turned into `Exception`
(`Rds.DbInstanceNotFoundException`); errors the model does not name surface
as the SDK's base classes (`Rds.RdsException`, `Rds.SdkClientException`).
botocore speaks the API's own names. Both the definition's unit test and
the moto adapter (tests/support/sfn_moto.py) use these functions.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime
from typing import Any

import botocore.session
from botocore.model import ListShape, MapShape, ServiceModel, Shape, StructureShape

# botocore services an aws-sdk integration of ours may name (the inverse map
# is built from these models' serviceId).
CANDIDATES = ("rds", "dms", "s3", "secretsmanager", "dynamodb", "ecs", "lambda", "sts")
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


@functools.lru_cache(maxsize=None)
def model(service: str) -> ServiceModel:
    return botocore.session.get_session().get_service_model(service)


def sdk_member(name: str) -> str:
    """`DBInstanceIdentifier` -> `DbInstanceIdentifier`, `MultiAZ` -> `MultiAz`."""
    return "".join(word[:1].upper() + word[1:].lower() for word in _WORD.findall(name))


def sdk_service_id(service: str) -> str:
    """botocore `dms` -> `databasemigration` (the SDK v2 client's id)."""
    words = model(service).metadata["serviceId"].split()
    if len(words) > 1 and words[-1] == "Service":
        words = words[:-1]
    return "".join(words).lower()


def error_prefix(service: str) -> str:
    words = model(service).metadata["serviceId"].split()
    if len(words) > 1 and words[-1] == "Service":
        words = words[:-1]
    return sdk_member("".join(w[:1].upper() + w[1:] for w in words)) if len(words) > 1 \
        else sdk_member(words[0])


@functools.lru_cache(maxsize=None)
def boto_service(sdk_id: str) -> str:
    for service in CANDIDATES:
        if sdk_service_id(service) == sdk_id:
            return service
    raise KeyError(f"no botocore service for aws-sdk service {sdk_id!r}")


def sdk_action(operation: str) -> str:
    return operation[:1].lower() + operation[1:]


def boto_operation(service: str, action: str) -> str:
    for name in model(service).operation_names:
        if sdk_action(name) == action:
            return name
    raise KeyError(f"{service} has no operation for action {action!r}")


def _exception_name(shape_name: str) -> str:
    base = re.sub(r"(Fault|Exception)$", "", shape_name)
    return sdk_member(base) + "Exception"


@functools.lru_cache(maxsize=None)
def sdk_errors(service: str) -> dict[str, str]:
    """botocore error code -> Step Functions error name, for every modeled error."""
    prefix = error_prefix(service)
    out: dict[str, str] = {}
    for shape in model(service).error_shapes:
        shape_name = shape.name
        code = (shape.metadata.get("error") or {}).get("code") or shape_name
        out[code] = out[shape_name] = f"{prefix}.{_exception_name(shape_name)}"
    return out


def base_errors(service: str) -> set[str]:
    """Errors the SDK raises for what the model does not name."""
    prefix = error_prefix(service)
    return {f"{prefix}.{prefix}Exception", f"{prefix}.SdkClientException"}


def sdk_error(service: str, code: str) -> str:
    return sdk_errors(service).get(code) or f"{error_prefix(service)}.{error_prefix(service)}Exception"


# -- values --------------------------------------------------------------------
def member_for(shape: StructureShape, sdk_name: str) -> tuple[str, Shape] | None:
    for name, member in shape.members.items():
        if sdk_member(name) == sdk_name:
            return name, member
    return None


def to_boto(value: Any, shape: Shape) -> Any:
    """A request in SDK v2 names -> botocore's; KeyError names an unknown member."""
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        out = {}
        for key, item in value.items():
            found = member_for(shape, key)
            if found is None:
                raise KeyError(f"{shape.name} has no member {key!r} (SDK v2 names)")
            out[found[0]] = to_boto(item, found[1])
        return out
    if isinstance(shape, ListShape) and isinstance(value, list):
        return [to_boto(item, shape.member) for item in value]
    if shape.type_name == "timestamp" and isinstance(value, str):   # the SDK's Instant
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


def from_boto(value: Any, shape: Shape | None) -> Any:
    """A response in botocore names -> SDK v2's; datetimes as ISO 8601 text."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        return {sdk_member(k): from_boto(v, shape.members.get(k)) for k, v in value.items()
                if k != "ResponseMetadata"}
    if isinstance(shape, ListShape) and isinstance(value, list):
        return [from_boto(item, shape.member) for item in value]
    if isinstance(shape, MapShape) and isinstance(value, dict):
        return {k: from_boto(v, shape.value) for k, v in value.items()}
    if isinstance(value, (bytes, bytearray)):
        return value.decode()
    if hasattr(value, "read"):        # a StreamingBody (S3 GetObject)
        return value.read().decode()
    return value
