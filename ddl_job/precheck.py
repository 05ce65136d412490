"""precheck: before anything is created, check production can take the restore.

The database exists and is reachable with the given credentials, no target
schema name is taken (names ≤ 63 bytes are checked before connecting), the
connecting role may create schemas, and it may give objects the owners the
schemas have in production today (`rights`: the copy's owners, checked again
before extraction, are usually these). It also says which requested schemas
production does not hold now (`notInProduction`): they are looked for in
the copy only.
"""

from __future__ import annotations

from . import clients, rights
from .catalog import existing_schemas
from .conn import Endpoint
from .errors import DataPlaneError
from .names import target_names
from .progress import NullReporter, Reporter


def precheck(target: Endpoint, schemas: list[str], suffix: str, *,
             grant_membership: bool = False, reporter: Reporter | None = None) -> dict:
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
        current = sorted(existing_schemas(conn, list(mapping)))
        shortfalls = rights.check_production(conn, rights.owners(conn, current),
                                             rights.lenders(conn, current))
        refused = rights.refusal(shortfalls, {rights.PRODUCTION: conn}, grant_membership)
    clients.require(target)   # post-data will need production's own pg_restore
    if taken:
        raise DataPlaneError("TargetExists",
                             f"schemas already exist in {target.describe()}: {taken}")
    if refused is not None:
        raise refused
    # Not a refusal (a schema dropped from production is the main reason to
    # restore one), but a typo shows here, before a copy is paid for.
    absent = [name for name in mapping if name not in current]
    reporter.emit("ok", targets=mapping, notInProduction=absent)
    return {"targets": mapping, "notInProduction": absent}
