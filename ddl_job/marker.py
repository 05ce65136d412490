"""The ownership marker: a line in the schema's comment naming the restore.

`apply pre` writes it in the same transaction that creates the schema;
`drop` removes only schemas whose comment carries the marker of the given
restore id. The schema's original comment, if any, is kept above it.

The marker is always the comment's last line, and one line whatever the
source schema's name: a name holding a line break (or any character that
is not printable) is written escaped, as Python's repr, so it can never
push the marker off the last line nor forge another restore's marker there.
Printable names are written as they are, as before.
"""

from __future__ import annotations

import re
import secrets

from .errors import InvalidRequest

PREFIX = "pg-schema-restore: restored by restore-id="
# The one rule for a restore id, everywhere (CLI, operator, data plane): it
# names AWS resources (`pgsr-<id>-db`: RDS identifiers are lowercase letters,
# digits and single hyphens) and Kubernetes objects (`pgsr-<id>-apply-post`,
# at most 63 characters), and it is written in schema comments.
RESTORE_ID_MAX = 20
_RESTORE_ID = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


def new_restore_id() -> str:
    """A random id that passes `validate_restore_id` (10 hex digits)."""
    return secrets.token_hex(5)


def validate_restore_id(restore_id: str) -> str:
    if len(restore_id) > RESTORE_ID_MAX or not _RESTORE_ID.fullmatch(restore_id):
        raise InvalidRequest(
            "InvalidRestoreId",
            f"restore id {restore_id!r} must be 1-{RESTORE_ID_MAX} lowercase letters, digits "
            "and single inner hyphens")
    return restore_id


def marker_line(restore_id: str, source_schema: str) -> str:
    """One line naming the restore and the source schema."""
    name = source_schema if source_schema.isprintable() else repr(source_schema)
    return f"{PREFIX}{restore_id} from schema {name}"


def with_marker(comment: str | None, restore_id: str, source_schema: str) -> str:
    """The schema comment to store: original comment (if any), then the marker."""
    line = marker_line(restore_id, source_schema)
    return f"{comment}\n\n{line}" if comment else line


def carries_marker(comment: str | None, restore_id: str) -> bool:
    """True if the comment's last line is this restore's marker."""
    if not comment:
        return False
    last = comment.rstrip("\n").rsplit("\n", 1)[-1]
    return last.startswith(f"{PREFIX}{restore_id} from schema ")
