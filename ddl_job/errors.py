"""One exception type for every refusal and failure of the data plane.

`reason` is a CamelCase word (Kubernetes condition reason rules) that the
engine and the operator surface as-is; `message` is for humans and never
holds a credential.
"""

from __future__ import annotations


class DataPlaneError(Exception):
    """A step refused or failed; nothing it was not asked to change was changed."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"
