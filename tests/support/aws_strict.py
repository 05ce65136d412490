"""AWS's stricter behaviour where moto 5.2.5 is lenient (test code).

botocore event hooks on the test Sessions (`AwsSimulator.attach` registers
them), each documented AWS behaviour (docs/facts.md, "The temporary copy on
AWS") that moto does not enforce:

- `CreateDBInstance` into a cluster that is not `available` is refused
  (InvalidDBClusterStateFault): the RDS API reference says instances can be
  created in a restored cluster only once it is available. moto makes
  clusters available at once; the RDS double (tests/support/aws.py) keeps a
  restored cluster `creating` for `creating_describes` describes, and this
  hook tracks the state RDS last reported (`clusters`).
- `DeleteDBCluster` of a cluster still `creating` is refused the same way
  (unverified on AWS: the code must cope either way).
- `DescribeDBSnapshots` / `DescribeDBClusterSnapshots` of an automated id
  (`rds:…`) without SnapshotType="automated" find nothing; an ARN of another
  account (a shared snapshot) is found only with IncludeShared=True. moto
  finds neither by ARN: an ARN is rewritten to the snapshot's name before
  moto sees it, restore calls included.
- an S3 call whose ExpectedBucketOwner is not the bucket's account is
  refused (AccessDenied; moto ignores the parameter).
- `DescribeDBMajorEngineVersions` (not in moto) is answered from
  `standard_support_end` (major -> date; default: far in the future).
- Every copy's network and parameter groups, as the create call asked for
  them, are recorded in `created`; `differences(copy, source)` compares them
  with the source's in moto.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from botocore.awsrequest import AWSResponse

ACCOUNT = "123456789012"          # moto's default account
_SNAPSHOT_NOT_FOUND = {"rds.DescribeDBSnapshots": "DBSnapshotNotFound",
                       "rds.DescribeDBClusterSnapshots": "DBClusterSnapshotNotFoundFault"}
_SNAPSHOT_PARAMS = {"rds.DescribeDBSnapshots": "DBSnapshotIdentifier",
                    "rds.DescribeDBClusterSnapshots": "DBClusterSnapshotIdentifier",
                    "rds.RestoreDBInstanceFromDBSnapshot": "DBSnapshotIdentifier",
                    "rds.RestoreDBClusterFromSnapshot": "SnapshotIdentifier"}
_RECORDED = {"DBSubnetGroupName": "subnetGroup", "VpcSecurityGroupIds": "securityGroupIds",
             "DBParameterGroupName": "parameterGroup",
             "DBClusterParameterGroupName": "clusterParameterGroup",
             "ServerlessV2ScalingConfiguration": "serverlessV2Scaling"}
_COPY_ID = ("TargetDBInstanceIdentifier", "DBInstanceIdentifier", "DBClusterIdentifier")


def _rds_backend() -> Any:
    from moto.rds.models import rds_backends
    return rds_backends[ACCOUNT]["eu-west-1"]


def _op(event_name: str) -> str:
    parts = event_name.split(".")
    return f"{parts[1]}.{parts[2]}" if len(parts) >= 3 else event_name


def _refusal(code: str, message: str) -> tuple[AWSResponse, dict[str, Any]]:
    error = {"Error": {"Code": code, "Message": message},
             "ResponseMetadata": {"HTTPStatusCode": 400}}
    return AWSResponse("https://strict", 400, {}, None), error   # type: ignore[arg-type]


def _account(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 and parts[0] == "arn" else None


def _groups(described: dict[str, Any]) -> list[str]:
    return [g["VpcSecurityGroupId"] for g in described.get("VpcSecurityGroups") or []]


def _name(arn: str) -> str:
    return arn.split(":snapshot:", 1)[-1].split(":cluster-snapshot:", 1)[-1]


class StrictAws:
    """The hooks; `refused` lists what they refused (operation: error code)."""

    def __init__(self) -> None:
        self.refused: list[str] = []
        self.created: dict[str, dict[str, Any]] = {}
        # Each cluster's state as RDS last reported it (restore response, then
        # describes): moto's own flips `creating` to `available` when read.
        self.clusters: dict[str, str] = {}
        self.standard_support_end: dict[str, datetime] = {}

    def attach(self, events: Any) -> None:
        # First, so the double's parameter stash sees the rewritten names; the
        # rest after the double's own hooks (its call counters and faults first).
        events.register_first("before-parameter-build", self._arn_to_name)
        events.register("before-call", self._before_call)
        events.register("after-call", self._after_call)

    # -- hooks ----------------------------------------------------------------
    def _arn_to_name(self, event_name: str, params: dict[str, Any], context: dict[str, Any],
                     **kwargs: Any) -> None:
        context["strict_asked"] = dict(params)
        key = _SNAPSHOT_PARAMS.get(_op(event_name))
        if key and str(params.get(key, "")).startswith("arn:"):
            params[key] = _name(params[key])

    def _before_call(self, event_name: str, context: dict[str, Any], **kwargs: Any):
        op = _op(event_name)
        asked = context.get("strict_asked", {})
        refusal = self._refusal(op, asked)
        if refusal is None:
            if op == "rds.DescribeDBMajorEngineVersions":
                return self._major_versions(asked)
            return None
        self.refused.append(f"{op}: {refusal[0]}")
        return _refusal(*refusal)

    def _refusal(self, op: str, asked: dict[str, Any]) -> tuple[str, str] | None:
        owner = asked.get("ExpectedBucketOwner")
        if op.startswith("s3.") and owner not in (None, ACCOUNT):
            return "AccessDenied", f"bucket {asked.get('Bucket')} is not owned by {owner}"
        if not op.startswith("rds."):
            return None
        if op == "rds.CreateDBInstance" and asked.get("DBClusterIdentifier"):
            state = self.clusters.get(asked["DBClusterIdentifier"])
            if state not in (None, "available"):
                return ("InvalidDBClusterStateFault",
                        f"DB cluster {asked['DBClusterIdentifier']} is {state}: "
                        "instances can be created only in an available cluster")
        if op == "rds.DeleteDBCluster":
            if self.clusters.get(asked.get("DBClusterIdentifier", "")) == "creating":
                return ("InvalidDBClusterStateFault",
                        f"DB cluster {asked['DBClusterIdentifier']} is creating")
        if op in _SNAPSHOT_NOT_FOUND:
            wanted = str(asked.get(_SNAPSHOT_PARAMS[op], ""))
            automated = _name(wanted).startswith("rds:")
            foreign = _account(wanted) not in (None, ACCOUNT)
            if (automated and asked.get("SnapshotType") != "automated") or (
                    foreign and asked.get("IncludeShared") is not True):
                return _SNAPSHOT_NOT_FOUND[op], f"snapshot {wanted} not found"
        return None

    def _major_versions(self, asked: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]]:
        engine, major = asked.get("Engine", "postgres"), asked.get("MajorEngineVersion", "15")
        end = self.standard_support_end.get(major,
                                            datetime.now(timezone.utc) + timedelta(days=900))
        start = datetime(2020, 1, 1, tzinfo=timezone.utc)
        parsed = {"DBMajorEngineVersions": [{
            "Engine": engine, "MajorEngineVersion": major,
            "SupportedEngineLifecycles": [
                {"LifecycleSupportName": "open-source-rds-standard-support",
                 "LifecycleSupportStartDate": start, "LifecycleSupportEndDate": end},
                {"LifecycleSupportName": "open-source-rds-extended-support",
                 "LifecycleSupportStartDate": end,
                 "LifecycleSupportEndDate": end + timedelta(days=3 * 365)}]}],
            "ResponseMetadata": {"HTTPStatusCode": 200}}
        return AWSResponse("https://strict", 200, {}, None), parsed   # type: ignore[arg-type]

    def _after_call(self, event_name: str, http_response: Any, context: dict[str, Any],
                    **kwargs: Any) -> None:
        op = _op(event_name)
        if http_response is None or http_response.status_code >= 300:
            return
        parsed = kwargs.get("parsed") or {}
        for cluster in parsed.get("DBClusters", []) + [parsed.get("DBCluster") or {}]:
            if cluster.get("DBClusterIdentifier"):
                self.clusters[cluster["DBClusterIdentifier"]] = cluster.get("Status", "")
        if not (op.startswith("rds.Restore") or op == "rds.CreateDBInstance"):
            return
        asked = context.get("strict_asked", {})
        copy_id = next(asked[k] for k in _COPY_ID if asked.get(k))
        if op == "rds.CreateDBInstance":
            copy_id = asked["DBInstanceIdentifier"]
        self.created[copy_id] = {name: asked.get(key) for key, name in _RECORDED.items()}

    # -- checks ---------------------------------------------------------------
    @staticmethod
    def settings_of(identifier: str) -> dict[str, Any]:
        """What RDS (moto) reports for an instance or cluster, in `created`'s terms."""
        import boto3

        rds = boto3.client("rds", region_name="eu-west-1")   # not hooked: moto as is
        if identifier in _rds_backend().clusters:
            cluster = rds.describe_db_clusters(DBClusterIdentifier=identifier)["DBClusters"][0]
            return {"subnetGroup": cluster.get("DBSubnetGroup"),
                    "securityGroupIds": _groups(cluster),
                    "clusterParameterGroup": cluster.get("DBClusterParameterGroup"),
                    "serverlessV2Scaling": cluster.get("ServerlessV2ScalingConfiguration")}
        instance = rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]
        groups = instance.get("DBParameterGroups") or [{}]
        return {"subnetGroup": (instance.get("DBSubnetGroup") or {}).get("DBSubnetGroupName"),
                "securityGroupIds": _groups(instance),
                "parameterGroup": groups[0].get("DBParameterGroupName")}

    def differences(self, copy_id: str, source_id: str) -> list[str]:
        """Each recorded setting of the copy that is not the source's."""
        created = self.created.get(copy_id)
        if created is None:
            return [f"{copy_id} was never created"]
        source = self.settings_of(source_id)
        return [f"{copy_id} {name}: {created.get(name)!r}, source {value!r}"
                for name, value in source.items() if created.get(name) != value]
