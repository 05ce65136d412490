"""S3: delete a restore's DDL artifacts (engine port `ArtifactCleaner`).

Artifacts live under `s3://bucket/<root prefix>/<restoreId>/` (DDL only: no
data, no credentials). Every object under that prefix is deleted, listed
page by page and removed 1000 keys per DeleteObjects call; a missing prefix
deletes nothing and succeeds. The prefix always ends with `/`, so
`…/abc` never touches `…/abcd/`; an empty prefix (a whole bucket) is refused.
Local directories are delegated to the data plane's local store, so a
context can keep artifacts on disk too.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.exceptions import ClientError

from ddl_job.artifacts import open_store
from ddl_job.errors import CleanupFailed, ProviderError

from .session import Clients, error_code


def split_location(location: str) -> tuple[str, str]:
    """`s3://bucket/a/b` -> ("bucket", "a/b/")."""
    parsed = urlparse(location)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ProviderError("InvalidArtifacts", f"not an s3://bucket/prefix location: "
                                                 f"{location!r}")
    prefix = parsed.path.strip("/")
    if not prefix:
        raise ProviderError("InvalidArtifacts",
                            f"refusing to delete a whole bucket ({location!r} has no prefix)")
    return parsed.netloc, prefix + "/"


class S3ArtifactCleaner:
    """`ArtifactCleaner` for s3:// locations (and local directories)."""

    def __init__(self, session: boto3.Session, *, clients: Clients | None = None,
                 region: str | None = None, expected_owner: str = "") -> None:
        self.clients = clients or Clients(session)
        self.region = region
        # S3 refuses a call on a bucket another account owns (a bucket name
        # taken over after ours was deleted): ExpectedBucketOwner on every call.
        self.owner: dict[str, str] = {"ExpectedBucketOwner": expected_owner} \
            if expected_owner else {}

    def _s3(self) -> Any:
        return self.clients.get("s3", self.region)

    def check(self, location: str) -> None:
        """The bucket exists and we may use it: checked before anything is created."""
        if not location.startswith("s3://"):
            open_store(location)
            return
        bucket, _ = split_location(location)
        try:
            self._s3().head_bucket(Bucket=bucket, **self.owner)
        except ClientError as exc:
            raise ProviderError(
                "ArtifactsUnavailable",
                f"artifacts bucket {bucket} is not usable ({error_code(exc)}); "
                "set artifactsLocation to a bucket the operator can write") from None

    def delete(self, location: str) -> int:
        if not location.startswith("s3://"):
            return open_store(location).delete_all()
        bucket, prefix = split_location(location)
        s3 = self._s3()
        deleted = 0
        errors: list[str] = []
        paginator = s3.get_paginator("list_objects_v2")
        # Collect first, then delete: deleting while paginating can skip keys.
        try:
            keys = [obj["Key"] for page in paginator.paginate(Bucket=bucket, Prefix=prefix,
                                                               **self.owner)
                    for obj in page.get("Contents", [])]
        except ClientError as exc:
            if error_code(exc) == "NoSuchBucket":
                return 0          # no bucket, no artifacts
            raise
        for start in range(0, len(keys), 1000):
            batch = keys[start:start + 1000]
            response = s3.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                **self.owner)
            failed = response.get("Errors", [])
            errors += [f"{e.get('Key')}: {e.get('Code')}" for e in failed]
            deleted += len(batch) - len(failed)
        if errors:
            raise CleanupFailed(f"{len(errors)} artifact(s) not deleted from {location}: "
                                + ", ".join(errors[:10]))
        return deleted
