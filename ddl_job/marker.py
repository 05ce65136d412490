"""The ownership marker: a line in the schema's comment naming the restore.

`apply pre` writes it in the same transaction that creates the schema;
`drop` removes only schemas whose comment carries the marker of the given
restore id. The schema's original comment, if any, is kept above it.
"""

from __future__ import annotations

import re

PREFIX = "pg-schema-restore: restored by restore-id="
_RESTORE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def validate_restore_id(restore_id: str) -> str:
    from .errors import DataPlaneError

    if not _RESTORE_ID.match(restore_id):
        raise DataPlaneError("InvalidRestoreId",
                             f"restore id {restore_id!r} must be 1-63 of [A-Za-z0-9_.-]")
    return restore_id


def marker_line(restore_id: str, source_schema: str) -> str:
    return f"{PREFIX}{restore_id} from schema {source_schema}"


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
