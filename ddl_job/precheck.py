"""precheck: before anything is created, check production can take the restore.

The database exists and is reachable with the given credentials, and no
target schema name is taken (names ≤ 63 bytes are checked before connecting).
"""

from __future__ import annotations

from . import clients
from .catalog import existing_schemas
from .conn import Endpoint
from .errors import DataPlaneError
from .names import target_names
from .progress import NullReporter, Reporter


def precheck(target: Endpoint, schemas: list[str], suffix: str, *,
             reporter: Reporter | None = None) -> dict:
    reporter = reporter or NullReporter()
    mapping = target_names(schemas, suffix)
    try:
        conn = target.connect(application_name="pgsr-precheck")
    except DataPlaneError as exc:
        if "does not exist" in exc.message:
            raise DataPlaneError("DatabaseNotFound", exc.message) from None
        raise
    with conn:
        taken = sorted(existing_schemas(conn, list(mapping.values())))
    clients.require(target)   # post-data will need production's own pg_restore
    if taken:
        raise DataPlaneError("TargetExists",
                             f"schemas already exist in {target.describe()}: {taken}")
    reporter.emit("ok", targets=mapping)
    return {"targets": mapping}
