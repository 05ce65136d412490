"""Artifacts in a local directory (demo, tests, the `local` provider)."""

from __future__ import annotations

from ddl_job.artifacts import open_store


class LocalArtifactCleaner:
    """ArtifactCleaner for a directory: created if missing, emptied at cleanup."""

    def check(self, location: str) -> None:
        open_store(location)

    def delete(self, location: str) -> int:
        return open_store(location).delete_all()
