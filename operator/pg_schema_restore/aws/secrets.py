"""Secrets Manager: the engine's `Secrets` port, the temporary secret's
lifecycle, and the historical version lookup (`credentials: historicalSecret`).

Secret values are RDS-style JSON: {host, port, username, password[, dbname,
engine]}. Values are never logged and never part of an error message.

Historical lookup (the seed's way of getting credentials for a restored
copy: the copy keeps the password that was valid at the restore point):
- every version, deprecated ones included, is listed (ListSecretVersionIds
  has no boto3 paginator: NextToken is followed by hand);
- each version's creation time is read with GetSecretValue(VersionId):
  moto 5.2.5 reports the list call's own time as every version's
  CreatedDate in the list (docs/facts.md, "AWS behaviour"), and the value is needed anyway;
- staging labels order what creation times cannot: a version that only
  carries AWSPENDING never became current and is skipped; AWSCURRENT is the
  newest active version and AWSPREVIOUS the one before it, whatever their
  creation times say (a rollback moves AWSCURRENT back to an older
  version: then the instant it happened is unknown and a restore point
  after the older version's creation is ambiguous -> a clear error);
- the active version at the point is the newest remaining one created at or
  before it. If none is (Secrets Manager prunes the oldest deprecated
  versions beyond ~100), the version that was active then is gone:
  ProviderError("SecretVersionPruned").
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3
from botocore.exceptions import ClientError

from ddl_job.errors import ProviderError

from .session import Clients, as_utc, error_code, region_of_arn

log = logging.getLogger(__name__)
_NOT_FOUND = {"ResourceNotFoundException"}
CURRENT, PREVIOUS, PENDING = "AWSCURRENT", "AWSPREVIOUS", "AWSPENDING"


@dataclass(frozen=True)
class SecretVersion:
    version_id: str
    stages: tuple[str, ...]
    created: datetime


def version_active_at(versions: list[SecretVersion], point: datetime,
                      secret_id: str = "secret") -> SecretVersion:
    """The version that was AWSCURRENT at `point` (see the module docstring)."""
    point = as_utc(point)
    active = [v for v in versions if not (PENDING in v.stages and CURRENT not in v.stages)]
    if not active:
        raise ProviderError("SecretVersionPruned",
                            f"secret {secret_id} has no version that was ever current")

    def rank(v: SecretVersion) -> tuple[int, datetime]:
        # Labels first: AWSCURRENT is the newest active version, AWSPREVIOUS the
        # one before; unlabelled (deprecated) versions are older, by creation time.
        label = 2 if CURRENT in v.stages else 1 if PREVIOUS in v.stages else 0
        return (label, v.created)

    ordered = sorted(active, key=rank)
    current = next((v for v in ordered if CURRENT in v.stages), None)
    newer = [v.created for v in active if current is not None and v.created > current.created]
    if current is not None and newer and point >= min(newer):
        # AWSCURRENT was moved back to an older version at an unknown instant.
        raise ProviderError(
            "SecretHistoryAmbiguous",
            f"secret {secret_id}: AWSCURRENT was moved back to version {current.version_id} "
            f"(created {current.created.isoformat()}) after newer versions existed; the "
            f"version active at {point.isoformat()} cannot be known -- use "
            "credentials: resetMasterPassword")
    # Walk from the newest: the first one created at or before the point.
    for version in reversed(ordered):
        if version.created <= point:
            return version
    oldest = min(v.created for v in active)
    raise ProviderError(
        "SecretVersionPruned",
        f"secret {secret_id}: the version active at {point.isoformat()} no longer exists "
        f"(the oldest remaining version was created {oldest.isoformat()}; Secrets Manager "
        "prunes old deprecated versions) -- use credentials: resetMasterPassword")


class AwsSecrets:
    """Secrets Manager adapter (implements the engine's `Secrets` port)."""

    def __init__(self, session: boto3.Session, *, clients: Clients | None = None) -> None:
        self.clients = clients or Clients(session)

    def _sm(self, secret_id: str = "", region: str | None = None) -> Any:
        """The client of the secret's region: its ARN's, else `region`, else the session's."""
        return self.clients.get("secretsmanager", region_of_arn(secret_id) or region)

    # -- the Secrets port ----------------------------------------------------
    def read(self, secret_id: str) -> dict[str, Any]:
        try:
            response = self._sm(secret_id).get_secret_value(SecretId=secret_id)
        except ClientError as exc:
            if error_code(exc) in _NOT_FOUND:
                raise ProviderError("SecretNotFound", f"secret {secret_id} not found") from None
            raise
        return _parse(secret_id, response)

    # -- lifecycle of temporary secrets ---------------------------------------
    def _describe(self, secret_id: str, region: str | None = None) -> dict[str, Any] | None:
        try:
            return self._sm(secret_id, region).describe_secret(SecretId=secret_id)
        except ClientError as exc:
            if error_code(exc) in _NOT_FOUND:
                return None
            raise

    def exists(self, secret_id: str) -> bool:
        described = self._describe(secret_id)
        return described is not None and not described.get("DeletedDate")

    @staticmethod
    def _carries(described: dict[str, Any], tags: list[dict[str, str]]) -> bool:
        """Whether a described secret carries every one of `tags`."""
        present = {(t.get("Key"), t.get("Value")) for t in described.get("Tags") or []}
        return all((t["Key"], t["Value"]) in present for t in tags)

    def create_or_update(self, name: str, value: dict[str, Any], *,
                         tags: list[dict[str, str]], description: str = "",
                         region: str | None = None) -> str:
        """Create the secret (tagged) in `region` (default: the session's), or
        put a new current value if it is ours; returns its ARN, which names
        the region for every later call.

        A secret of that name without our tags belongs to someone else: it is
        neither overwritten nor, later, deleted.
        """
        sm = self._sm(name, region)
        text = json.dumps(value)
        described = self._describe(name, region)
        if described is not None and not described.get("DeletedDate"):
            self._refuse_foreign(name, described, tags)
            return str(sm.put_secret_value(SecretId=name, SecretString=text)["ARN"])
        try:
            return str(sm.create_secret(
                Name=name, SecretString=text, Tags=tags,
                Description=description or "pg-schema-restore temporary secret")["ARN"])
        except ClientError as exc:
            if error_code(exc) != "ResourceExistsException":
                raise
            self._refuse_foreign(name, self._describe(name, region), tags)
            return str(sm.put_secret_value(SecretId=name, SecretString=text)["ARN"])

    def _refuse_foreign(self, name: str, described: dict[str, Any] | None,
                        tags: list[dict[str, str]]) -> None:
        if described is not None and not self._carries(described, tags):
            raise ProviderError(
                "ResourceConflict",
                f"secret {name} exists and is not tagged "
                f"{', '.join(t['Key'] + '=' + t['Value'] for t in tags)}; not using it")

    def force_delete(self, secret_id: str, *, only_if_tagged: list[dict[str, str]] | None = None
                     ) -> bool:
        """Delete without recovery window; False if it did not exist (or is not ours)."""
        if only_if_tagged is not None:
            described = self._describe(secret_id)
            if described is None:
                return False
            if not self._carries(described, only_if_tagged):
                log.warning("secret %s is not tagged as ours: not deleting it", secret_id)
                return False
        try:
            self._sm(secret_id).delete_secret(SecretId=secret_id,
                                              ForceDeleteWithoutRecovery=True)
        except ClientError as exc:
            if error_code(exc) in _NOT_FOUND:
                return False
            if error_code(exc) == "InvalidRequestException" and not self.exists(secret_id):
                return False   # already scheduled for deletion by someone else
            raise
        return True

    def find_tagged(self, key: str, value: str, region: str | None = None) -> list[str]:
        """ARNs of the secrets carrying tag key=value in `region` (paginated)."""
        sm = self.clients.get("secretsmanager", region)
        names: list[str] = []
        paginator = sm.get_paginator("list_secrets")
        filters = [{"Key": "tag-key", "Values": [key]}, {"Key": "tag-value", "Values": [value]}]
        for page in paginator.paginate(Filters=filters, IncludePlannedDeletion=True):
            for entry in page.get("SecretList", []):
                # Both filters match independently: check the pair itself.
                if any(t.get("Key") == key and t.get("Value") == value
                       for t in entry.get("Tags", [])):
                    names.append(entry["ARN"])
        return names

    # -- historical versions -------------------------------------------------
    def versions(self, secret_id: str) -> tuple[list[SecretVersion], dict[str, dict[str, Any]]]:
        """All versions (deprecated included) with their true creation times,
        and their values by version id (kept in memory only)."""
        sm = self._sm(secret_id)
        listed: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"SecretId": secret_id, "IncludeDeprecated": True,
                                  "MaxResults": 100}
        try:
            while True:
                page = sm.list_secret_version_ids(**kwargs)
                listed += page.get("Versions", [])
                token = page.get("NextToken")
                if not token:
                    break
                kwargs["NextToken"] = token
        except ClientError as exc:
            if error_code(exc) in _NOT_FOUND:
                raise ProviderError("SecretNotFound", f"secret {secret_id} not found") from None
            raise
        versions: list[SecretVersion] = []
        values: dict[str, dict[str, Any]] = {}
        for entry in listed:
            version_id = entry["VersionId"]
            try:
                got = sm.get_secret_value(SecretId=secret_id, VersionId=version_id)
            except ClientError as exc:
                if error_code(exc) in _NOT_FOUND:
                    continue   # pruned between the list and the read
                raise
            versions.append(SecretVersion(version_id, tuple(entry.get("VersionStages") or ()),
                                          as_utc(got["CreatedDate"])))
            values[version_id] = _parse(secret_id, got)
        return versions, values

    def value_at(self, secret_id: str, point: datetime) -> dict[str, Any]:
        """The secret's value as it was current at `point`."""
        versions, values = self.versions(secret_id)
        chosen = version_active_at(versions, point, secret_id)
        return values[chosen.version_id]


def _parse(secret_id: str, response: dict[str, Any]) -> dict[str, Any]:
    text = response.get("SecretString")
    if text is None:
        raise ProviderError("InvalidSecret", f"secret {secret_id} holds no SecretString")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise ProviderError("InvalidSecret", f"secret {secret_id} is not JSON") from None
    if not isinstance(value, dict):
        raise ProviderError("InvalidSecret", f"secret {secret_id} is not a JSON object")
    return value
