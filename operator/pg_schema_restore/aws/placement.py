"""Where and how the temporary copy runs: each setting and where it came from.

A restore call without a subnet group lands in the default VPC, without a
parameter group on the engine's defaults, without the cluster's Serverless
v2 scaling a `db.serverless` writer cannot start (docs/facts.md, "The
temporary copy on AWS"). So every setting is read from the source unless
the spec names it, and `plan` shows each with its origin: `spec`,
`operator default` (the spec field's own default) or `source`.

Pure functions over describe results: rds.py describes, this module decides.
"""

from __future__ import annotations

from typing import Any

from ..engine.spec import RestoreSpec, TemporaryDatabase

SPEC, DEFAULT, SOURCE = "spec", "operator default", "source"
_DEFAULT_CLASS = TemporaryDatabase().instance_class


def _setting(value: Any, origin: str) -> dict[str, Any]:
    return {"value": value, "from": origin}


def _either(spec_value: Any, source_value: Any) -> dict[str, Any]:
    """The spec's value when it gives one, else the source's (None: RDS decides)."""
    if spec_value:
        return _setting(spec_value, SPEC)
    return _setting(source_value or None, SOURCE)


def _security_groups(described: dict[str, Any]) -> list[str]:
    return [g["VpcSecurityGroupId"] for g in described.get("VpcSecurityGroups") or []
            if g.get("VpcSecurityGroupId")]


def _parameter_group(instance: dict[str, Any] | None) -> str | None:
    groups = (instance or {}).get("DBParameterGroups") or []
    return groups[0].get("DBParameterGroupName") if groups else None


def _instance_class(spec: RestoreSpec) -> dict[str, Any]:
    chosen = spec.temporary_database.instance_class
    return _setting(chosen, DEFAULT if chosen == _DEFAULT_CLASS else SPEC)


def instance_settings(spec: RestoreSpec, instance: dict[str, Any]) -> dict[str, Any]:
    """An RDS instance source. Its KMS key cannot be changed by an instance
    restore: RDS keeps the source's (shown, never sent)."""
    temp = spec.temporary_database
    return {
        "instanceClass": _instance_class(spec),
        "subnetGroup": _either(temp.subnet_group,
                               (instance.get("DBSubnetGroup") or {}).get("DBSubnetGroupName")),
        "securityGroupIds": _either(list(temp.security_group_ids), _security_groups(instance)),
        "parameterGroup": _either(temp.parameter_group, _parameter_group(instance)),
        "storageType": _setting(instance.get("StorageType"), SOURCE),
        "iops": _setting(instance.get("Iops"), SOURCE),
        "storageThroughput": _setting(instance.get("StorageThroughput"), SOURCE),
        "kmsKeyId": _setting(instance.get("KmsKeyId"), SOURCE),
    }


def cluster_settings(spec: RestoreSpec, cluster: dict[str, Any],
                     writer: dict[str, Any] | None) -> dict[str, Any]:
    """An Aurora cluster source; the writer's parameter group is its writer's."""
    temp = spec.temporary_database
    return {
        "instanceClass": _instance_class(spec),
        "subnetGroup": _either(temp.subnet_group, cluster.get("DBSubnetGroup")),
        "securityGroupIds": _either(list(temp.security_group_ids), _security_groups(cluster)),
        "clusterParameterGroup": _either(temp.cluster_parameter_group,
                                         cluster.get("DBClusterParameterGroup")),
        "parameterGroup": _either(temp.parameter_group, _parameter_group(writer)),
        "serverlessV2Scaling": _setting(cluster.get("ServerlessV2ScalingConfiguration"),
                                        SOURCE),
        "storageType": _setting(cluster.get("StorageType"), SOURCE),
        "kmsKeyId": _setting(cluster.get("KmsKeyId"), SOURCE),
    }


def _value(settings: dict[str, Any], name: str) -> Any:
    return (settings.get(name) or {}).get("value")


def instance_restore_params(settings: dict[str, Any]) -> dict[str, Any]:
    """Parameters of RestoreDBInstanceToPointInTime / FromDBSnapshot."""
    params = _network(settings)
    _put(params, "DBParameterGroupName", _value(settings, "parameterGroup"))
    storage = _value(settings, "storageType")
    _put(params, "StorageType", storage)
    if storage in ("io1", "io2", "gp3"):   # these need their IOPS with them
        _put(params, "Iops", _value(settings, "iops"))
    if storage == "gp3":
        _put(params, "StorageThroughput", _value(settings, "storageThroughput"))
    return params


def cluster_restore_params(settings: dict[str, Any]) -> dict[str, Any]:
    """Parameters of RestoreDBClusterToPointInTime / FromSnapshot."""
    params = _network(settings)
    _put(params, "DBClusterParameterGroupName", _value(settings, "clusterParameterGroup"))
    _put(params, "ServerlessV2ScalingConfiguration", _value(settings, "serverlessV2Scaling"))
    _put(params, "StorageType", _value(settings, "storageType"))
    _put(params, "KmsKeyId", _value(settings, "kmsKeyId"))
    return params


def writer_params(settings: dict[str, Any]) -> dict[str, Any]:
    """CreateDBInstance of the writer: network comes from the cluster."""
    params: dict[str, Any] = {"DBInstanceClass": _value(settings, "instanceClass")}
    _put(params, "DBParameterGroupName", _value(settings, "parameterGroup"))
    return params


def _network(settings: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    _put(params, "DBSubnetGroupName", _value(settings, "subnetGroup"))
    _put(params, "VpcSecurityGroupIds", _value(settings, "securityGroupIds"))
    return params


def _put(params: dict[str, Any], key: str, value: Any) -> None:
    if value not in (None, "", []):
        params[key] = value
