"""Schema names: what we accept, and what they become in production.

Any name PostgreSQL itself accepts works: mixed case, spaces (leading and
trailing ones too), non-ASCII, quotes, backslashes, semicolons, `--`, `/*`,
`$`, `*`, `?`, `.`, even line breaks. A name only ever reaches SQL as a
quoted identifier (`sql.Identifier`) or a parameter, reaches pg_dump as a
quoted pattern (`dump.schema_pattern`), and appears in messages through
`shown`, which escapes what could fake a line. What is refused is what
PostgreSQL refuses: the empty name, a NUL byte, text that is not UTF-8,
more than 63 bytes (PostgreSQL would silently truncate it, so the name
could never match), and the system schemas (`pg_` prefix, which PostgreSQL
reserves, and information_schema). A target name that would not fit in 63
bytes with its suffix is refused instead of colliding.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from .errors import InvalidRequest

MAX_IDENTIFIER_BYTES = 63
_SUFFIX = re.compile(r"^[A-Za-z0-9_]{1,40}$")
_PLAIN = re.compile(r"[a-z_][a-z0-9_$]*")


def shown(name: str) -> str:
    """A name as messages show it: bare when plain, else quoted as in SQL;
    repr-escaped when it holds a character a reader cannot see, so that a
    line break in a name can never forge a line of a log or a status."""
    if _PLAIN.fullmatch(name):
        return name
    if name.isprintable():
        return '"' + name.replace('"', '""') + '"'
    return repr(name)


def visible(text: str) -> str:
    """Text holding names (a signature, an object description), or its repr
    when it holds a line break or another character a reader cannot see."""
    return text if text.isprintable() else repr(text)


def validate_schema_name(name: str) -> None:
    """Raise InvalidRequest (reason InvalidSchemaName) for names PostgreSQL
    refuses, and for the system schemas."""
    if not name:
        raise InvalidRequest("InvalidSchemaName", "a schema name is empty")
    if "\x00" in name:
        raise InvalidRequest("InvalidSchemaName",
                             f"schema name {name!r} holds a NUL byte (PostgreSQL refuses it)")
    try:
        size = len(name.encode())
    except UnicodeEncodeError:
        raise InvalidRequest("InvalidSchemaName",
                             f"schema name {name!r} is not valid UTF-8") from None
    # PostgreSQL reserves `pg_` (lower case only: `PG_x` is an ordinary name).
    if name.startswith("pg_") or name == "information_schema":
        raise InvalidRequest("InvalidSchemaName", f"{name!r} is a system schema")
    if size > MAX_IDENTIFIER_BYTES:
        raise InvalidRequest("InvalidSchemaName",
                             f"schema name {name!r} is longer than 63 bytes")


def split_schema_list(text: str) -> list[str]:
    """`a,b,Mixed Case` from a command line, as names (validated by the caller:
    an empty item, as in `a,,b`, stays and is refused). Items are trimmed, as
    people type `a, b`: a name with a comma or with leading or trailing
    spaces is given exactly with a repeated `--schema NAME` instead."""
    return [part.strip() for part in text.split(",")]


def parse_schema_list(text: str) -> list[str]:
    """A comma-separated list from the command line; unique, validated."""
    return validate_schema_list(split_schema_list(text))


def validate_schema_list(names: list[str]) -> list[str]:
    """Unique, valid names (the list is returned as given)."""
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


def over_limit(name: str) -> str:
    """`64 bytes, 1 over`: how far a name is past PostgreSQL's limit."""
    size = len(name.encode())
    return f"{size} bytes, {size - MAX_IDENTIFIER_BYTES} over"


def target_names(schemas: list[str], suffix: str) -> dict[str, str]:
    """Map each schema to its suffixed name; refuse any name over 63 bytes."""
    validate_suffix(suffix)
    mapping = {name: name + suffix for name in validate_schema_list(schemas)}
    too_long = [f"{shown(new)} ({over_limit(new)})" for new in mapping.values()
                if len(new.encode()) > MAX_IDENTIFIER_BYTES]
    if too_long:
        raise InvalidRequest(
            "NameTooLong",
            f"with the suffix {suffix}, target schema names exceed PostgreSQL's 63-byte "
            f"limit and would be silently truncated: {', '.join(too_long)}; "
            "use a shorter suffix")
    clashes = sorted(set(mapping.values()) & set(mapping))
    if clashes:
        raise InvalidRequest("NameCollision",
                             f"target names equal requested schemas: {clashes}")
    return mapping
