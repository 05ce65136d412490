"""Where a restore's DDL artifacts live: a local directory or an `s3://` prefix.

Steps run in different places (a Job, an ECS task, a local process), so the
extract step writes its artifacts here and later steps read them back.
Artifacts hold DDL only: never data, never credentials.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from .errors import DataPlaneError

# S3 settings travel from the operator's environment (the same variables its
# settings are read from): server-side encryption (AES256 by default, or
# aws:kms with an optional key id, for buckets whose policy demands KMS) and
# the account expected to own the bucket (S3 refuses the call otherwise).
SSE_ENV = "PGSR_ARTIFACTS_SSE"
KMS_KEY_ENV = "PGSR_ARTIFACTS_KMS_KEY_ID"
BUCKET_OWNER_ENV = "PGSR_ARTIFACTS_BUCKET_OWNER"
SSE_MODES = ("AES256", "aws:kms")


def s3_upload_args(env: dict[str, str] | None = None) -> dict[str, str]:
    """ExtraArgs of an artifact upload: encryption and the bucket's owner."""
    env = dict(os.environ if env is None else env)
    mode = env.get(SSE_ENV) or "AES256"
    if mode not in SSE_MODES:
        raise DataPlaneError("InvalidArtifacts",
                             f"{SSE_ENV} must be one of {SSE_MODES}, not {mode!r}")
    args = {"ServerSideEncryption": mode}
    if mode == "aws:kms" and env.get(KMS_KEY_ENV):
        args["SSEKMSKeyId"] = env[KMS_KEY_ENV]
    args.update(bucket_owner(env))
    return args


def bucket_owner(env: dict[str, str] | None = None) -> dict[str, str]:
    """{"ExpectedBucketOwner": account} when one is configured, else {}."""
    owner = dict(os.environ if env is None else env).get(BUCKET_OWNER_ENV, "")
    return {"ExpectedBucketOwner": owner} if owner else {}


class ArtifactStore(Protocol):
    location: str

    def put_file(self, name: str, path: Path) -> None: ...
    def fetch(self, name: str, dest_dir: Path) -> Path: ...
    def read_text(self, name: str) -> str: ...
    def names(self) -> list[str]: ...
    def delete_all(self) -> int: ...


class LocalStore:
    """A directory on disk."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.location = str(self.directory)

    def put_file(self, name: str, path: Path) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if Path(path).resolve() != (self.directory / name).resolve():
            shutil.copyfile(path, self.directory / name)

    def fetch(self, name: str, dest_dir: Path) -> Path:
        source = self.directory / name
        if not source.exists():
            raise DataPlaneError("ArtifactMissing", f"artifact {name} not found in {self.location}")
        return source

    def read_text(self, name: str) -> str:
        # Bytes, not text mode: universal newlines would turn a carriage return
        # inside a quoted name of the DDL into a line feed (another name).
        return self.fetch(name, self.directory).read_bytes().decode()

    def names(self) -> list[str]:
        if not self.directory.exists():
            return []
        return sorted(p.name for p in self.directory.iterdir() if p.is_file())

    def delete_all(self) -> int:
        count = len(self.names())
        shutil.rmtree(self.directory, ignore_errors=True)
        return count


class S3Store:
    """An `s3://bucket/prefix/` location (credentials from the default chain)."""

    def __init__(self, bucket: str, prefix: str, client=None) -> None:
        import boto3  # only needed for S3 locations

        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.location = f"s3://{bucket}/{self.prefix}"
        self._s3 = client or boto3.client("s3")

    def _key(self, name: str) -> str:
        return self.prefix + name

    def put_file(self, name: str, path: Path) -> None:
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._s3.upload_file(str(path), self.bucket, self._key(name),
                                 ExtraArgs=s3_upload_args())
        except (ClientError, S3UploadFailedError, BotoCoreError) as exc:
            raise DataPlaneError("ArtifactWriteFailed",
                                 f"artifact {name} not written to {self.location}: "
                                 f"{str(exc).splitlines()[0][:300]}") from None

    def fetch(self, name: str, dest_dir: Path) -> Path:
        from botocore.exceptions import ClientError

        dest = Path(dest_dir) / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._s3.download_file(self.bucket, self._key(name), str(dest),
                                   ExtraArgs=bucket_owner() or None)
        except ClientError as exc:
            raise DataPlaneError("ArtifactMissing",
                                 f"artifact {name} not readable in {self.location}: "
                                 f"{exc.response.get('Error', {}).get('Code')}") from None
        return dest

    def read_text(self, name: str) -> str:
        from botocore.exceptions import ClientError

        try:
            body = self._s3.get_object(Bucket=self.bucket, Key=self._key(name),
                                       **bucket_owner())["Body"]
        except ClientError as exc:
            raise DataPlaneError("ArtifactMissing",
                                 f"artifact {name} not readable in {self.location}: "
                                 f"{exc.response.get('Error', {}).get('Code')}") from None
        return body.read().decode()

    def names(self) -> list[str]:
        names: list[str] = []
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix,
                                       **bucket_owner()):
            names += [obj["Key"][len(self.prefix):] for obj in page.get("Contents", [])]
        return sorted(names)

    def delete_all(self) -> int:
        keys = [self._key(n) for n in self.names()]
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start:start + 1000]]
            self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True},
                                    **bucket_owner())
        return len(keys)


def open_store(location: str) -> ArtifactStore:
    """A store for a local path or an `s3://bucket/prefix` URI."""
    if location.startswith("s3://"):
        parsed = urlparse(location)
        if not parsed.netloc:
            raise DataPlaneError("InvalidArtifacts", f"no bucket in {location!r}")
        return S3Store(parsed.netloc, parsed.path)
    if "://" in location:
        raise DataPlaneError("InvalidArtifacts",
                             f"artifact location {location!r}: use a directory or s3://")
    return LocalStore(Path(location))
