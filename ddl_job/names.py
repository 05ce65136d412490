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

from .errors import InvalidRequest

MAX_IDENTIFIER_BYTES = 63
_FORBIDDEN = re.compile(r"""["';\\]|--|/\*|\*/|[\x00-\x1f\x7f]""")
_SUFFIX = re.compile(r"^[A-Za-z0-9_]{1,40}$")


def validate_schema_name(name: str) -> None:
    """Raise InvalidRequest (reason InvalidSchemaName) for names we refuse."""
    if not name or not name.strip():
        raise InvalidRequest("InvalidSchemaName", "a schema name is empty")
    if name != name.strip():
        raise InvalidRequest("InvalidSchemaName",
                             f"schema name {name!r} has leading or trailing spaces")
    if _FORBIDDEN.search(name):
        raise InvalidRequest(
            "InvalidSchemaName",
            f"schema name {name!r} contains a quote, backslash, semicolon, comment "
            "marker or control character; such names are refused")
    if name.lower().startswith("pg_") or name == "information_schema":
        raise InvalidRequest("InvalidSchemaName", f"{name!r} is a system schema")
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise InvalidRequest("InvalidSchemaName",
                             f"schema name {name!r} is longer than 63 bytes")


def split_schema_list(text: str) -> list[str]:
    """`a,b,Mixed Case` from a command line, as names (validated by the caller:
    an empty item, as in `a,,b`, stays and is refused)."""
    return [part.strip() for part in text.split(",")]


def parse_schema_list(text: str) -> list[str]:
    """A comma-separated list from the command line; unique, validated."""
    return validate_schema_list(split_schema_list(text))


def validate_schema_list(names: list[str]) -> list[str]:
    if not names or names == [""]:
        raise InvalidRequest("InvalidSchemaName", "no schema given")
    for name in names:
        validate_schema_name(name)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidRequest("InvalidSchemaName", f"schemas listed twice: {duplicates}")
    return names


def validate_suffix(suffix: str) -> str:
    if not _SUFFIX.match(suffix):
        raise InvalidRequest(
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
        raise InvalidRequest(
            "NameTooLong",
            "target schema names exceed PostgreSQL's 63-byte limit and would be "
            f"silently truncated: {', '.join(too_long)}; use a shorter suffix")
    clashes = sorted(set(mapping.values()) & set(mapping))
    if clashes:
        raise InvalidRequest("NameCollision",
                             f"target names equal requested schemas: {clashes}")
    return mapping
