"""DynamoDB audit record (optional; engine port `Audit`).

One item per restore, key `restoreId` (string), in a table the platform
team provides (`audit_table`). Writes are conditional, never blind:

- `started`: PutItem only if no item has this restoreId. If one exists, it
  is left as it is when it is this very restore being resumed (same spec
  hash, still Running -- a process that died before saving its record
  starts again with a new record, so the start time cannot identify it);
  anything else is somebody else's: AuditConflict.
- `finished`: UpdateItem only if the item is this restore (same spec hash);
  if the item was never written (a failure before `started`), it is created
  with a conditional put. Re-running `finished` rewrites the same values.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from ddl_job.errors import AuditConflict, ProviderError

from ..engine.record import RestoreRecord, now
from .session import Clients, error_code

KEY = "restoreId"
_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()


def _item_value(value: Any) -> dict[str, Any]:
    """DynamoDB attribute value from JSON-able data (floats become Decimal)."""
    plain = json.loads(json.dumps(value, default=str), parse_float=Decimal)
    return _SERIALIZER.serialize(plain)


def spec_hash(record: RestoreRecord) -> str:
    """Identifies a restore across restarts: same id and same spec."""
    canonical = json.dumps(record.requested.to_dict(), sort_keys=True, separators=(",", ":"),
                           default=str)
    return hashlib.sha256(f"{record.restore_id}\n{canonical}".encode()).hexdigest()


class DynamoAudit:
    """`Audit` on a DynamoDB table."""

    def __init__(self, session: boto3.Session, table: str, *, region: str | None = None,
                 clients: Clients | None = None) -> None:
        self.clients = clients or Clients(session)
        self.table = table
        self.region = region

    def _ddb(self) -> Any:
        return self.clients.get("dynamodb", self.region)

    def _explained(self, exc: ClientError) -> Exception:
        """A missing table is a configuration error: say which table."""
        if error_code(exc) == "ResourceNotFoundException":
            return ProviderError("AuditTableNotFound",
                                 f"DynamoDB audit table {self.table} not found"
                                 f"{' in ' + self.region if self.region else ''}; create it "
                                 "or unset auditTable")
        return exc

    def get(self, restore_id: str) -> dict[str, Any] | None:
        """The audit item as plain Python values (None if absent)."""
        item = self._ddb().get_item(TableName=self.table, Key={KEY: {"S": restore_id}},
                                    ConsistentRead=True).get("Item")
        if item is None:
            return None
        return {k: _DESERIALIZER.deserialize(v) for k, v in item.items()}

    def started(self, record: RestoreRecord) -> None:
        spec = record.requested.to_dict()
        item = {
            KEY: record.restore_id,
            "specHash": spec_hash(record),
            "status": "Running",
            "startedAt": record.started_at,
            "database": spec.get("database"),
            "schemas": list(spec.get("schemas") or []),
            "restoreTime": spec.get("restoreTime"),
            "snapshotId": spec.get("snapshotId"),
            "source": spec.get("source") or {},
            "dataCopy": spec.get("dataCopy"),
            "credentials": spec.get("credentials"),
            "targets": record.targets,
        }
        try:
            self._ddb().put_item(
                TableName=self.table,
                Item={k: _item_value(v) for k, v in item.items() if v is not None},
                ConditionExpression="attribute_not_exists(#key)",
                ExpressionAttributeNames={"#key": KEY})
            return
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise self._explained(exc) from None
        existing = self.get(record.restore_id) or {}
        if existing.get("specHash") == item["specHash"] and existing.get("status") == "Running":
            return    # this restore, resumed: its record stays as first written
        raise AuditConflict(
            f"audit table {self.table} already holds a different restore with id "
            f"{record.restore_id} (status {existing.get('status')}); not overwriting it")

    def finished(self, record: RestoreRecord) -> None:
        status = "Failed" if record.error else "Succeeded"
        values = {
            "status": status,
            "finishedAt": record.finished_at or now(),
            "timings": record.timings,
            "rows": record.progress.get("rows"),
            "bytes": record.progress.get("bytes"),
            "targets": record.targets,
            "error": record.error,
            "deleted": record.result.get("deleted"),
            # memberships grantMembership lent the connecting role, and their revocation
            "grantedMemberships": record.result.get("grantedMemberships"),
            "revokedMemberships": record.result.get("revokedMemberships"),
            # [] once a retried cleanup succeeds: the old errors must not linger
            "cleanupErrors": record.result.get("cleanupErrors") or [],
        }
        values = {k: v for k, v in values.items() if v is not None}
        names = {f"#a{i}": k for i, k in enumerate(values)}
        names.update({"#key": KEY, "#hash": "specHash"})
        expression = "SET " + ", ".join(f"#a{i} = :a{i}" for i in range(len(values)))
        attr_values = {f":a{i}": _item_value(v) for i, v in enumerate(values.values())}
        attr_values[":hash"] = {"S": spec_hash(record)}
        try:
            self._ddb().update_item(
                TableName=self.table, Key={KEY: {"S": record.restore_id}},
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(#key) AND #hash = :hash",
                ExpressionAttributeNames=names, ExpressionAttributeValues=attr_values)
            return
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise self._explained(exc) from None
        # No item of ours: either none at all (failed before `started`) or a stranger's.
        item = {KEY: record.restore_id, "specHash": spec_hash(record),
                "startedAt": record.started_at,
                "database": record.requested.database,
                "schemas": list(record.requested.schemas), **values}
        try:
            self._ddb().put_item(
                TableName=self.table,
                Item={k: _item_value(v) for k, v in item.items() if v is not None},
                ConditionExpression="attribute_not_exists(#key)",
                ExpressionAttributeNames={"#key": KEY})
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise self._explained(exc) from None
            raise AuditConflict(
                f"audit table {self.table} holds a different restore with id "
                f"{record.restore_id}; final status not written over it") from None

