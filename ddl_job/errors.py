"""The errors every layer raises, named for what they are.

This module sits at the bottom of the layering (the data plane, which
imports nothing of the engine), so the engine, the adapters, the wiring and
the entry points share it. Each error carries a `reason`, a CamelCase word
(Kubernetes condition reason rules) surfaced as-is in status, events and
exit messages, and a `message` for humans that never holds a credential.

- `RestoreError`: the base; whatever ends a restore with a reason.
- `InvalidRequest`: the input is refused before anything happens (a bad
  spec, schema name, suffix, restore id or command-line value).
  `InvalidSpec` is the one for SchemaRestore specs; `SourceNotAllowed`
  refuses a source the SchemaRestore's namespace may not restore.
- `DataPlaneError`: a data-plane step (precheck, extract, copy, …) refused
  or failed; nothing it was not asked to change was changed.
- `MissingRoleMembership` (a `DataPlaneError`): the connecting role may not
  read or own the schemas' objects (it is not a member of their owners);
  the message lists each role and the `GRANT` to run.
- `ProviderError`: the world outside PostgreSQL refused or failed: the
  source or temporary database (RDS, Aurora, local PITR), secrets,
  artifacts storage, DMS, the audit table.
- `AuditConflict`: the audit table already holds another restore's item
  under this id.
- `CleanupFailed`: Cleanup left something behind (retried until it does not).
- `Cancelled`: the restore was stopped (its SchemaRestore is being deleted).
"""

from __future__ import annotations


class RestoreError(Exception):
    """Ends a restore (or a step) with a reason and a human message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


class InvalidRequest(RestoreError):
    """Input refused before anything was read or created."""


class InvalidSpec(InvalidRequest):
    """A SchemaRestore spec that cannot be run as given."""

    def __init__(self, message: str) -> None:
        super().__init__("InvalidSpec", message)


class SourceNotAllowed(InvalidSpec):
    """The namespace may not restore this source (the administrator's list)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.reason = "SourceNotAllowed"


class DataPlaneError(RestoreError):
    """A data-plane step refused or failed."""


class MissingRoleMembership(DataPlaneError):
    """The connecting role lacks the owners' roles (RDS: the master user is
    no superuser); raised before anything is created."""

    def __init__(self, message: str) -> None:
        super().__init__("MissingRoleMembership", message)


class ProviderError(RestoreError):
    """AWS (or the local stand-in) refused or failed."""


class AuditConflict(RestoreError):
    """The audit id belongs to another restore."""

    def __init__(self, message: str) -> None:
        super().__init__("AuditConflict", message)


class CleanupFailed(RestoreError):
    """Cleanup could not delete everything; the rest is retried."""

    def __init__(self, message: str) -> None:
        super().__init__("CleanupFailed", message)


class Cancelled(RestoreError):
    """The restore was stopped before it finished."""

    def __init__(self, message: str = "the SchemaRestore is being deleted") -> None:
        super().__init__("Cancelled", message)
