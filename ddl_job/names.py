"""Schema names: what we accept, and what they become in production.

Any real PostgreSQL schema name works (mixed case, spaces, non-ASCII): it is
always passed as a quoted identifier. Names holding quotes, backslashes,
semicolons, comment openers or control characters are refused outright:
no legitimate tenant schema looks like that, and they are the shape of an
injection attempt. PostgreSQL silently truncates identifiers longer than 63
bytes, so a target name that would not fit is refused instead of colliding.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from .errors import DataPlaneError

MAX_IDENTIFIER_BYTES = 63
_FORBIDDEN = re.compile(r"""["';\\]|--|/\*|\*/|[\x00-\x1f\x7f]""")
_SUFFIX = re.compile(r"^[A-Za-z0-9_]{1,40}$")


def validate_schema_name(name: str) -> None:
    """Raise InvalidSchemaName for names we refuse to handle."""
    if not name or not name.strip():
        raise DataPlaneError("InvalidSchemaName", "a schema name is empty")
    if name != name.strip():
        raise DataPlaneError("InvalidSchemaName",
                             f"schema name {name!r} has leading or trailing spaces")
    if _FORBIDDEN.search(name):
        raise DataPlaneError(
            "InvalidSchemaName",
            f"schema name {name!r} contains a quote, backslash, semicolon, comment "
            "marker or control character; such names are refused")
    if name.lower().startswith("pg_") or name == "information_schema":
        raise DataPlaneError("InvalidSchemaName", f"{name!r} is a system schema")
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise DataPlaneError("InvalidSchemaName",
                             f"schema name {name!r} is longer than 63 bytes")


def parse_schema_list(text: str) -> list[str]:
    """`a,b,"Mixed Case"` style lists from the command line; unique, validated."""
    names = [part.strip() for part in text.split(",")]
    return validate_schema_list(names)


def validate_schema_list(names: list[str]) -> list[str]:
    if not names or names == [""]:
        raise DataPlaneError("InvalidSchemaName", "no schema given")
    for name in names:
        validate_schema_name(name)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataPlaneError("InvalidSchemaName", f"schemas listed twice: {duplicates}")
    return names


def validate_suffix(suffix: str) -> str:
    if not _SUFFIX.match(suffix):
        raise DataPlaneError(
            "InvalidSuffix",
            f"suffix {suffix!r} must be 1-40 characters of letters, digits and underscores")
    return suffix


def suffix_for(point: datetime) -> str:
    """`_YYYYMMDDHHMMSS` in UTC: the default suffix for a restore point."""
    if point.tzinfo is not None:
        point = point.astimezone(timezone.utc)
    return point.strftime("_%Y%m%d%H%M%S")


def target_names(schemas: list[str], suffix: str) -> dict[str, str]:
    """Map each schema to its suffixed name; refuse any name over 63 bytes."""
    validate_suffix(suffix)
    mapping = {name: name + suffix for name in validate_schema_list(schemas)}
    too_long = [f"{new!r} ({len(new.encode())} bytes)" for new in mapping.values()
                if len(new.encode()) > MAX_IDENTIFIER_BYTES]
    if too_long:
        raise DataPlaneError(
            "NameTooLong",
            "target schema names exceed PostgreSQL's 63-byte limit and would be "
            f"silently truncated: {', '.join(too_long)}; use a shorter suffix")
    clashes = sorted(set(mapping.values()) & set(mapping))
    if clashes:
        raise DataPlaneError("NameCollision",
                             f"target names equal requested schemas: {clashes}")
    return mapping
