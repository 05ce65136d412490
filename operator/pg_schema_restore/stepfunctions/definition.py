"""The state machine's definition, built in Python and written to
`stepfunctions/restore.asl.json` (`python -m pg_schema_restore.stepfunctions.definition
--write`; tests/test_sfn_definition.py fails when the file is stale).

Built rather than hand-written because its patterns repeat: every data-plane
step is the same ECS task with its own argv and its own failure state, every
failure path is the same reshaping into `$.failure`. The shape:

Initialize (Lambda: the engine's `phases.initialize`: spec, source kind,
restore window or snapshot ownership, target names free, artifacts usable,
audit item) -> restore the copy (aws-sdk RDS, four paths) -> start DMS's
instance (Lambda: the DMS adapter's `start_instance`, dataCopy dms only) ->
a cluster polled to `available` before its writer is created -> bounded poll
loop that fails on terminal states -> Credentials (Lambda: the engine's
`credentials`) -> rights (ECS: may the connecting roles read and own every
object, in the copy and production; `MissingRoleMembership` otherwise) ->
Borrow (Lambda: with grantMembership, production's roles recorded before
they are granted) -> grant in the copy, in production (ECS, only what is
missing) -> extract, apply pre-data, copy, apply post-data, verify
(ECS `runTask.sync`, the `ddl_job` image) -> Collect (Lambda: the record's
error, warnings, progress, verify result) -> drop on failure (ECS) ->
revoke production's lent memberships (ECS, whatever the outcome) ->
delete in parallel (Lambda: the engine's adapters, by id and by tag) ->
Finish (Lambda: the final audit item) -> Succeed or Fail.

AWS names (service ids, SDK v2 member names, error names) are the real
service's; tests derive them from botocore's models.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..aws.dms import _INSTANCE_TERMINAL as DMS_INSTANCE_TERMINAL
from ..aws.dms import FULL_LOAD_FINISHED, TABLE_COMPLETED
from ..aws.rds import TERMINAL_STATES

PATH = Path(__file__).resolve().parents[3] / "stepfunctions" / "restore.asl.json"
FUNCTION = "${RestoreFunctionArn}"      # DefinitionSubstitutions (template.yaml)
RESTORE_TAG = "pg-schema-restore/restore-id"
# The ECS container every data-plane step runs in (template.yaml's task definition).
CONTAINER = "ddl-job"
# Data-plane steps, in order: (state, phase, plan key).
STEPS = (("Extract", "SchemaExtraction", "extract"),
         ("ApplyPreData", "SchemaExtraction", "applyPre"),
         ("CopyData", "DataCopy", "copy"),
         ("ApplyPostData", "PostData", "applyPost"),
         ("Verify", "PostData", "verify"))

# Errors the RDS model does not name (throttling, 5xx) surface as the SDK's
# base classes; modeled ones (not found, already exists) are caught by name.
AWS_RETRY = [{"ErrorEquals": ["Rds.RdsException", "Rds.SdkClientException", "States.Timeout"],
              "IntervalSeconds": 2, "BackoffRate": 2.0, "MaxAttempts": 6,
              "JitterStrategy": "FULL"}]
LAMBDA_RETRY = [{"ErrorEquals": ["Lambda.ServiceException", "Lambda.AWSLambdaException",
                                 "Lambda.SdkClientException", "Lambda.TooManyRequestsException",
                                 "Lambda.Unknown", "States.Timeout"],
                 "IntervalSeconds": 2, "BackoffRate": 2.0, "MaxAttempts": 6,
                 "JitterStrategy": "FULL"}]
ECS_RETRY = [{"ErrorEquals": ["ECS.AmazonECSException", "ECS.SdkClientException"],
              "IntervalSeconds": 5, "BackoffRate": 2.0, "MaxAttempts": 5,
              "JitterStrategy": "FULL"}]
RDS_TASK_RETRY = AWS_RETRY
DMS_RETRY = [{"ErrorEquals": ["DatabaseMigration.DatabaseMigrationException",
                              "DatabaseMigration.SdkClientException", "States.Timeout"],
              "IntervalSeconds": 2, "BackoffRate": 2.0, "MaxAttempts": 6,
              "JitterStrategy": "FULL"}]
# Full-load tasks at once (DmsSettings.max_concurrent_tasks' default): each
# loads up to MaxFullLoadSubTasks tables in parallel on the one instance.
DMS_MAX_CONCURRENCY = 2


def _catch(to: str) -> list[dict[str, Any]]:
    return [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.caught", "Next": to}]


def _lambda(action: str, next_state: str | None, *, catch: str | None,
            extra: dict[str, Any] | None = None, output_whole: bool = True) -> dict[str, Any]:
    """The Lambda takes the whole state and returns it updated."""
    state: dict[str, Any] = {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": FUNCTION,
                       "Payload": {"action": action, "state.$": "$", **(extra or {})}},
        "Retry": LAMBDA_RETRY,
    }
    if output_whole:
        state["OutputPath"] = "$.Payload"
    if catch:
        state["Catch"] = _catch(catch)
    if next_state:
        state["Next"] = next_state
    else:
        state["End"] = True
    return state


def _failed(phase: str, next_state: str = "Collect", step: str | None = None) -> dict[str, Any]:
    """What a Catch caught, as `$.failure` (Collect turns it into the record's error)."""
    params: dict[str, Any] = {"phase": phase, "error.$": "$.caught.Error",
                              "cause.$": "$.caught.Cause"}
    if step:
        params["step"] = step
    return {"Type": "Pass", "Parameters": params, "ResultPath": "$.failure", "Next": next_state}


def _failure(phase: str, reason: str, message: dict[str, str] | str) -> dict[str, Any]:
    """A failure the state machine itself decides (terminal state, bound reached)."""
    params: dict[str, Any] = {"phase": phase, "reason": reason}
    if isinstance(message, dict):
        params.update(message)
    else:
        params["message"] = message
    return {"Type": "Pass", "Parameters": params, "ResultPath": "$.failure", "Next": "Collect"}


def _ecs_step(key: str, next_state: str, fail_state: str) -> dict[str, Any]:
    """A data-plane step as an ECS task; its result goes to the artifacts prefix
    (`ecs_step`), a non-zero exit fails the task (and the step's own reason
    is read back by Collect)."""
    return {
        "Type": "Task", "Resource": "arn:aws:states:::ecs:runTask.sync",
        "Parameters": {
            "Cluster.$": "$.plan.ecs.cluster",
            "TaskDefinition.$": "$.plan.ecs.taskDefinition",
            "LaunchType": "FARGATE",
            "NetworkConfiguration": {"AwsvpcConfiguration": {
                "Subnets.$": "$.plan.ecs.subnets",
                "SecurityGroups.$": "$.plan.ecs.securityGroups",
                "AssignPublicIp": "DISABLED"}},
            "Overrides": {"ContainerOverrides": [
                {"Name": CONTAINER, "Command.$": f"$.plan.steps.{key}"}]},
            "Tags": [{"Key": RESTORE_TAG, "Value.$": "$.restoreId"}],
        },
        "ResultPath": None,
        "Retry": ECS_RETRY,
        "Catch": _catch(fail_state),
        "Next": next_state,
    }


def _rds(action: str, parameters: dict[str, Any], next_state: str, fail_state: str, *,
         result_selector: dict[str, str] | None = None, result_path: str | None = None,
         already_exists: str | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {"Type": "Task", "Resource": f"arn:aws:states:::aws-sdk:rds:{action}",
                             "Parameters": parameters, "ResultPath": result_path,
                             "Retry": RDS_TASK_RETRY, "Next": next_state}
    if result_selector:
        state["ResultSelector"] = result_selector
    catches = []
    if already_exists:     # a retried create whose first attempt went through
        catches.append({"ErrorEquals": [already_exists], "ResultPath": None,
                        "Next": next_state})
    state["Catch"] = catches + _catch(fail_state)
    return state


def _restore_states() -> dict[str, Any]:
    tags = {"Tags": [{"Key": RESTORE_TAG, "Value.$": "$.restoreId"}]}
    network = {"DbSubnetGroupName.$": "$.plan.subnetGroup",
               "VpcSecurityGroupIds.$": "$.plan.securityGroupIds",
               "DeletionProtection": False, **tags}
    instance = {"DbInstanceClass.$": "$.plan.instanceClass", "PubliclyAccessible": False,
                "MultiAz": False, "AutoMinorVersionUpgrade": False,
                "BackupRetentionPeriod": 0, **network}
    fail = "TemporaryDatabaseCallFailed"
    return {
        "RestoreKind": {"Type": "Choice", "Choices": [
            {"And": [{"Variable": "$.plan.kind", "StringEquals": "instance"},
                     {"Variable": "$.plan.fromSnapshot", "BooleanEquals": True}],
             "Next": "RestoreInstanceFromSnapshot"},
            {"Variable": "$.plan.kind", "StringEquals": "instance",
             "Next": "RestoreInstanceToPointInTime"},
            {"Variable": "$.plan.fromSnapshot", "BooleanEquals": True,
             "Next": "RestoreClusterFromSnapshot"}],
            "Default": "RestoreClusterToPointInTime"},
        "RestoreInstanceToPointInTime": _rds("restoreDBInstanceToPointInTime", {
            "SourceDbInstanceIdentifier.$": "$.plan.sourceId",
            "TargetDbInstanceIdentifier.$": "$.plan.instanceId",
            "RestoreTime.$": "$.plan.restoreTime", **instance},
            "DmsInstanceKind", fail,
            already_exists="Rds.DbInstanceAlreadyExistsException"),
        "RestoreInstanceFromSnapshot": _rds("restoreDBInstanceFromDBSnapshot", {
            "DbInstanceIdentifier.$": "$.plan.instanceId",
            "DbSnapshotIdentifier.$": "$.plan.snapshotId", **instance},
            "DmsInstanceKind", fail,
            already_exists="Rds.DbInstanceAlreadyExistsException"),
        "RestoreClusterToPointInTime": _rds("restoreDBClusterToPointInTime", {
            "DbClusterIdentifier.$": "$.plan.clusterId",
            "SourceDbClusterIdentifier.$": "$.plan.sourceId",
            "RestoreToTime.$": "$.plan.restoreTime", "RestoreType": "full-copy", **network},
            "DmsInstanceKind", fail, already_exists="Rds.DbClusterAlreadyExistsException"),
        "RestoreClusterFromSnapshot": _rds("restoreDBClusterFromSnapshot", {
            "DbClusterIdentifier.$": "$.plan.clusterId",
            "SnapshotIdentifier.$": "$.plan.snapshotId",
            "Engine.$": "$.plan.engine", "EngineVersion.$": "$.plan.engineVersion", **network},
            "DmsInstanceKind", fail, already_exists="Rds.DbClusterAlreadyExistsException"),
        # As the native engine (phases.temporary_database): DMS's instance is
        # started right after the restore call, while RDS restores.
        "DmsInstanceKind": {"Type": "Choice", "Choices": [
            {"Variable": "$.plan.dataCopy", "StringEquals": "dms",
             "Next": "StartReplicationInstance"}], "Default": "RestoredKind"},
        "StartReplicationInstance": _lambda("startDms", "ReplicationInstanceStarted",
                                            catch=fail),
        "ReplicationInstanceStarted": {"Type": "Choice", "Choices": [
            {"Variable": "$.failure", "IsPresent": True, "Next": "Collect"}],
            "Default": "RestoredKind"},
        "RestoredKind": {"Type": "Choice", "Choices": [
            {"Variable": "$.plan.kind", "StringEquals": "cluster",
             "Next": "WaitRestoredCluster"}], "Default": "WaitTemporaryDatabase"},
        # AWS creates instances only in an `available` cluster (aws/rds.py _wait_cluster).
        "WaitRestoredCluster": {"Type": "Wait", "SecondsPath": "$.plan.wait.seconds",
                                "Next": "CountClusterPoll"},
        "CountClusterPoll": _count("$.counts.cluster", "DescribeRestoredCluster"),
        "DescribeRestoredCluster": _rds(
            "describeDBClusters", {"DbClusterIdentifier.$": "$.plan.clusterId"},
            "RestoredClusterState", fail,
            result_selector={"status.$": "$.DbClusters[0].Status"},
            result_path="$.poll.cluster"),
        "RestoredClusterState": {"Type": "Choice", "Choices": [
            {"Or": [{"Variable": "$.poll.cluster.status", "StringEquals": s}
                    for s in sorted(TERMINAL_STATES)], "Next": "TemporaryDatabaseFailed"},
            {"Variable": "$.poll.cluster.status", "StringEquals": "available",
             "Next": "CreateWriter"},
            {"Variable": "$.counts.cluster.n",
             "NumericGreaterThanEqualsPath": "$.plan.wait.maxPolls",
             "Next": "RestoredClusterTimedOut"}],
            "Default": "WaitRestoredCluster"},
        "RestoredClusterTimedOut": _failure("TemporaryDatabase", "TemporaryDatabaseTimeout", {
            "message.$": "States.Format('DB cluster {} still {} after {} polls (its writer '"
                         "'can be created only once it is available)', $.plan.clusterId, "
                         "$.poll.cluster.status, $.counts.cluster.n)"}),
        "CreateWriter": _rds("createDBInstance", {
            "DbInstanceIdentifier.$": "$.plan.instanceId",
            "DbClusterIdentifier.$": "$.plan.clusterId",
            "Engine.$": "$.plan.engine", "DbInstanceClass.$": "$.plan.instanceClass",
            "PubliclyAccessible": False, "AutoMinorVersionUpgrade": False, **tags},
            "WaitTemporaryDatabase", fail,
            already_exists="Rds.DbInstanceAlreadyExistsException"),
        fail: _failed("TemporaryDatabase"),
    }


def _poll_states() -> dict[str, Any]:
    """A bounded loop: count, describe, decide (ready, terminal, bound, again)."""
    fail = "TemporaryDatabaseCallFailed"
    terminal = sorted(TERMINAL_STATES)

    def any_terminal(variable: str) -> list[dict[str, Any]]:
        return [{"Variable": variable, "StringEquals": s} for s in terminal]

    return {
        "WaitTemporaryDatabase": {"Type": "Wait", "SecondsPath": "$.plan.wait.seconds",
                                  "Next": "CountPoll"},
        "CountPoll": {"Type": "Pass", "Parameters": {
            "count.$": "States.MathAdd($.poll.count, 1)",
            "instance.$": "$.poll.instance", "cluster.$": "$.poll.cluster"},
            "ResultPath": "$.poll", "Next": "PollKind"},
        "PollKind": {"Type": "Choice", "Choices": [
            {"Variable": "$.plan.kind", "StringEquals": "cluster",
             "Next": "DescribeTemporaryCluster"}], "Default": "DescribeTemporaryInstance"},
        "DescribeTemporaryCluster": _rds(
            "describeDBClusters", {"DbClusterIdentifier.$": "$.plan.clusterId"},
            "DescribeTemporaryInstance", fail,
            result_selector={"status.$": "$.DbClusters[0].Status"},
            result_path="$.poll.cluster"),
        "DescribeTemporaryInstance": _rds(
            "describeDBInstances", {"DbInstanceIdentifier.$": "$.plan.instanceId"},
            "TemporaryDatabaseState", fail,
            result_selector={"status.$": "$.DbInstances[0].DbInstanceStatus"},
            result_path="$.poll.instance"),
        "TemporaryDatabaseState": {"Type": "Choice", "Choices": [
            {"Or": any_terminal("$.poll.instance.status") + any_terminal("$.poll.cluster.status"),
             "Next": "TemporaryDatabaseFailed"},
            {"And": [{"Variable": "$.poll.instance.status", "StringEquals": "available"},
                     {"Variable": "$.poll.cluster.status", "StringEquals": "available"}],
             "Next": "Credentials"},
            {"Variable": "$.poll.count", "NumericGreaterThanEqualsPath": "$.plan.wait.maxPolls",
             "Next": "TemporaryDatabaseTimedOut"}],
            "Default": "WaitTemporaryDatabase"},
        "TemporaryDatabaseFailed": _failure("TemporaryDatabase", "TemporaryDatabaseFailed", {
            "message.$": "States.Format('temporary database {} is {} (cluster: {}): the "
                         "restore cannot complete', $.plan.instanceId, "
                         "$.poll.instance.status, $.poll.cluster.status)"}),
        "TemporaryDatabaseTimedOut": _failure("TemporaryDatabase", "TemporaryDatabaseTimeout", {
            "message.$": "States.Format('temporary database {} still {} after {} polls', "
                         "$.plan.instanceId, $.poll.instance.status, $.poll.count)"}),
    }


def _step_states() -> dict[str, Any]:
    states: dict[str, Any] = {}
    names = [name for name, _, _ in STEPS]
    for index, (name, phase, key) in enumerate(STEPS):
        after = names[index + 1] if index + 1 < len(names) else "Collect"
        if name == "Extract":       # from here production may hold our schemas
            after = "SchemasCreated"
        if name == "ApplyPreData":  # rows by COPY (the step) or by DMS (then sequences)
            after = "DataCopyKind"
        states[name] = _ecs_step(key, after, f"{name}Failed")
        states[f"{name}Failed"] = _failed(phase, step=key)
    states["SchemasCreated"] = {"Type": "Pass", "Result": True,
                                "ResultPath": "$.record.schemas_created",
                                "Next": "ApplyPreData"}
    states["DataCopyKind"] = {"Type": "Choice", "Choices": [
        {"Variable": "$.plan.dataCopy", "StringEquals": "dms",
         "Next": "WaitReplicationInstance"}], "Default": "CopyData"}
    return states


def _rights_states() -> dict[str, Any]:
    """As `phases._borrow_memberships`: check first on the copy, then lend what
    is missing (grantMembership) one side at a time, production's recorded
    by Borrow before its grant runs."""
    return {
        "Rights": _ecs_step("rights", "Borrow", "RightsFailed"),
        "RightsFailed": _failed("SchemaExtraction", step="rights"),
        "Borrow": _lambda("borrow", "LendInCopy", catch="BorrowFailed"),
        "BorrowFailed": _failed("SchemaExtraction"),
        "LendInCopy": {"Type": "Choice", "Choices": [
            {"Variable": "$.borrow.copy", "BooleanEquals": True, "Next": "GrantCopy"}],
            "Default": "LendInProduction"},
        "GrantCopy": _ecs_step("grantCopy", "LendInProduction", "GrantCopyFailed"),
        "GrantCopyFailed": _failed("SchemaExtraction", step="grantCopy"),
        "LendInProduction": {"Type": "Choice", "Choices": [
            {"Variable": "$.borrow.production", "BooleanEquals": True,
             "Next": "GrantProduction"}], "Default": "Extract"},
        "GrantProduction": _ecs_step("grantProduction", "Extract", "GrantProductionFailed"),
        "GrantProductionFailed": _failed("SchemaExtraction", step="grantProduction"),
    }


def _dms(action: str, parameters: dict[str, Any], next_state: str, fail_state: str, *,
         result_selector: dict[str, str] | None = None, result_path: str | None = None,
         tolerate: str | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {
        "Type": "Task", "Resource": f"arn:aws:states:::aws-sdk:databasemigration:{action}",
        "Parameters": parameters, "ResultPath": result_path, "Retry": DMS_RETRY,
        "Next": next_state}
    if result_selector:
        state["ResultSelector"] = result_selector
    catches = []
    if tolerate:
        catches.append({"ErrorEquals": [tolerate], "ResultPath": None, "Next": next_state})
    state["Catch"] = catches + _catch(fail_state)
    return state


def _count(path: str, next_state: str) -> dict[str, Any]:
    """One more iteration of a poll loop (`path.n`), compared with the bound."""
    return {"Type": "Pass", "Parameters": {"n.$": f"States.MathAdd({path}.n, 1)"},
            "ResultPath": path, "Next": next_state}


def _dms_states() -> dict[str, Any]:
    """DataCopy with DMS: the instance (started after the restore call) ready, two endpoints
    whose connection tests are polled to an outcome, one full-load task per schema
    (Map, bounded concurrency), each judged by status, stop reason and table
    statistics; then the sequences step."""
    fail = "DmsCallFailed"
    instance_terminal = [{"Variable": "$.dmsPoll.instance.ReplicationInstanceStatus",
                          "StringEquals": s} for s in DMS_INSTANCE_TERMINAL]

    def endpoint(role: str, next_state: str) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "SecretsManagerSecretId.$": f"$.plan.dms.{role}Secret",
            "SecretsManagerAccessRoleArn.$": "$.plan.dms.roleArn",
            "DatabaseName.$": "$.plan.dms.database", "MapBooleanAsBoolean": True}
        if role == "source":
            settings.update({"CaptureDdls": False, "FailTasksOnLobTruncation": True})
        else:
            settings["ExecuteTimeout"] = 3600
        return _dms("createEndpoint", {
            "EndpointIdentifier.$": f"$.plan.dms.{role}EndpointId", "EndpointType": role,
            "EngineName.$": "$.plan.engine", "SslMode.$": "$.plan.dms.sslMode",
            "PostgreSqlSettings": settings,
            "Tags": [{"Key": RESTORE_TAG, "Value.$": "$.restoreId"}]},
            next_state, fail, result_selector={"arn.$": "$.Endpoint.EndpointArn"},
            result_path=f"$.dmsEndpoints.{role}")

    def test(role: str, next_state: str) -> dict[str, Any]:
        return _dms("testConnection", {
            "ReplicationInstanceArn.$": "$.dmsPoll.instance.ReplicationInstanceArn",
            "EndpointArn.$": f"$.dmsEndpoints.{role}.arn"}, next_state, fail,
            tolerate="DatabaseMigration.InvalidResourceStateException")  # a test running

    def connection(role: str, next_state: str) -> dict[str, Any]:
        return _dms("describeConnections", {"Filters": [
            {"Name": "endpoint-arn", "Values.$": f"States.Array($.dmsEndpoints.{role}.arn)"}]},
            next_state, fail, result_selector={"connection.$": "$.Connections[0]"},
            result_path=f"$.dmsPoll.{role}")

    def connection_failed(role: str) -> dict[str, Any]:
        return _failure("DataCopy", "DmsConnectionFailed", {
            "message.$": f"States.Format('DMS cannot connect to the {role} database "
                         f"(endpoint {{}}): {{}}', $.plan.dms.{role}EndpointId, "
                         f"$.dmsPoll.{role}.connection.LastFailureMessage)"})

    states: dict[str, Any] = {
        "WaitReplicationInstance": {"Type": "Wait", "SecondsPath": "$.plan.wait.seconds",
                                    "Next": "CountInstancePoll"},
        "CountInstancePoll": _count("$.counts.dmsInstance", "DescribeReplicationInstance"),
        "DescribeReplicationInstance": _dms("describeReplicationInstances", {"Filters": [
            {"Name": "replication-instance-id",
             "Values.$": "States.Array($.plan.dms.instanceId)"}]},
            "ReplicationInstanceState", fail,
            result_selector={"ReplicationInstanceStatus.$":
                             "$.ReplicationInstances[0].ReplicationInstanceStatus",
                             "ReplicationInstanceArn.$":
                             "$.ReplicationInstances[0].ReplicationInstanceArn"},
            result_path="$.dmsPoll.instance"),
        "ReplicationInstanceState": {"Type": "Choice", "Choices": [
            {"Or": instance_terminal, "Next": "ReplicationInstanceFailed"},
            {"Variable": "$.dmsPoll.instance.ReplicationInstanceStatus",
             "StringEquals": "available", "Next": "CreateSourceEndpoint"},
            {"Variable": "$.counts.dmsInstance.n",
             "NumericGreaterThanEqualsPath": "$.plan.wait.maxPolls",
             "Next": "ReplicationInstanceTimedOut"}],
            "Default": "WaitReplicationInstance"},
        "ReplicationInstanceFailed": _failure("DataCopy", "DmsInstanceFailed", {
            "message.$": "States.Format('DMS replication instance {} is {}', "
                         "$.plan.dms.instanceId, $.dmsPoll.instance.ReplicationInstanceStatus)"}),
        "ReplicationInstanceTimedOut": _failure("DataCopy", "DmsTimeout", {
            "message.$": "States.Format('DMS replication instance {} still {} after {} polls',"
                         " $.plan.dms.instanceId, "
                         "$.dmsPoll.instance.ReplicationInstanceStatus, $.counts.dmsInstance.n)"}),
        "CreateSourceEndpoint": endpoint("source", "CreateTargetEndpoint"),
        "CreateTargetEndpoint": endpoint("target", "TestSourceConnection"),
        "TestSourceConnection": test("source", "TestTargetConnection"),
        "TestTargetConnection": test("target", "WaitConnections"),
        "WaitConnections": {"Type": "Wait", "SecondsPath": "$.plan.wait.seconds",
                            "Next": "CountConnectionPoll"},
        "CountConnectionPoll": _count("$.counts.connections", "DescribeSourceConnection"),
        "DescribeSourceConnection": connection("source", "DescribeTargetConnection"),
        "DescribeTargetConnection": connection("target", "ConnectionState"),
        "ConnectionState": {"Type": "Choice", "Choices": [
            {"Variable": "$.dmsPoll.source.connection.Status", "StringEquals": "failed",
             "Next": "SourceConnectionFailed"},
            {"Variable": "$.dmsPoll.target.connection.Status", "StringEquals": "failed",
             "Next": "TargetConnectionFailed"},
            {"And": [{"Variable": "$.dmsPoll.source.connection.Status",
                      "StringEquals": "successful"},
                     {"Variable": "$.dmsPoll.target.connection.Status",
                      "StringEquals": "successful"}], "Next": "FullLoad"},
            {"Variable": "$.counts.connections.n",
             "NumericGreaterThanEqualsPath": "$.plan.wait.maxPolls",
             "Next": "ConnectionsTimedOut"}],
            "Default": "WaitConnections"},
        "SourceConnectionFailed": connection_failed("source"),
        "TargetConnectionFailed": connection_failed("target"),
        "ConnectionsTimedOut": _failure("DataCopy", "DmsTimeout",
                                        "DMS endpoint connection tests did not finish"),
        "FullLoad": {
            "Type": "Map", "ItemsPath": "$.plan.dms.tasks",
            "MaxConcurrency": DMS_MAX_CONCURRENCY,
            "ItemSelector": {
                "task.$": "$$.Map.Item.Value", "restoreId.$": "$.restoreId",
                "instanceArn.$": "$.dmsPoll.instance.ReplicationInstanceArn",
                "sourceArn.$": "$.dmsEndpoints.source.arn",
                "targetArn.$": "$.dmsEndpoints.target.arn",
                "settings.$": "$.plan.dms.taskSettings", "wait.$": "$.plan.wait",
                "counts": {"ready": {"n": 0}, "load": {"n": 0}}},
            "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"},
                              "StartAt": "CreateTask", "States": _task_states()},
            "ResultPath": "$.dmsResults", "Next": "CopySequences",
            "Catch": _catch("FullLoadFailed")},
        "FullLoadFailed": _failed("DataCopy"),
        fail: _failed("DataCopy"),
        "CopySequences": _ecs_step("copy", "ApplyPostData", "CopySequencesFailed"),
        "CopySequencesFailed": _failed("DataCopy", step="copy"),
    }
    return states


def _task_states() -> dict[str, Any]:
    """One schema's full-load task, inside the Map: create, ready, start, stopped,
    judged. A failure ends the item with `DmsTaskFailed` and the task's own words."""
    fail = "TaskCallFailed"

    def describe(next_state: str) -> dict[str, Any]:
        return _dms("describeReplicationTasks", {
            "Filters": [{"Name": "replication-task-arn",
                         "Values.$": "States.Array($.created.arn)"}],
            "WithoutSettings": True}, next_state, fail,
            result_selector={"task.$": "$.ReplicationTasks[0]"}, result_path="$.poll")

    def task_failed(detail: str) -> dict[str, Any]:
        return {"Type": "Pass", "Parameters": {
            "error": "DmsTaskFailed",
            "cause.$": f"States.Format('DMS task {{}} (schema {{}}): {detail}', "
                       "$.task.id, $.task.schema, States.JsonToString($.poll.task))"},
            "Next": "TaskFailed"}

    return {
        "CreateTask": _dms("createReplicationTask", {
            "ReplicationTaskIdentifier.$": "$.task.id",
            "SourceEndpointArn.$": "$.sourceArn", "TargetEndpointArn.$": "$.targetArn",
            "ReplicationInstanceArn.$": "$.instanceArn", "MigrationType": "full-load",
            "TableMappings.$": "$.task.tableMappings",
            "ReplicationTaskSettings.$": "$.settings",
            "Tags": [{"Key": RESTORE_TAG, "Value.$": "$.restoreId"}]},
            "WaitTaskReady", fail,
            result_selector={"arn.$": "$.ReplicationTask.ReplicationTaskArn"},
            result_path="$.created"),
        "WaitTaskReady": {"Type": "Wait", "SecondsPath": "$.wait.seconds",
                          "Next": "CountReadyPoll"},
        "CountReadyPoll": _count("$.counts.ready", "DescribeNewTask"),
        "DescribeNewTask": describe("TaskReady"),
        "TaskReady": {"Type": "Choice", "Choices": [
            {"Variable": "$.poll.task.Status", "StringEquals": "ready", "Next": "StartTask"},
            {"Variable": "$.poll.task.Status", "StringEquals": "failed",
             "Next": "TaskNeverReady"},
            {"Variable": "$.counts.ready.n", "NumericGreaterThanEqualsPath": "$.wait.maxPolls",
             "Next": "TaskNeverReady"}],
            "Default": "WaitTaskReady"},
        "TaskNeverReady": task_failed("never became ready: {}"),
        "StartTask": _dms("startReplicationTask", {
            "ReplicationTaskArn.$": "$.created.arn",
            "StartReplicationTaskType": "start-replication"}, "WaitTaskDone", fail),
        "WaitTaskDone": {"Type": "Wait", "SecondsPath": "$.wait.seconds",
                         "Next": "CountLoadPoll"},
        "CountLoadPoll": _count("$.counts.load", "DescribeRunningTask"),
        "DescribeRunningTask": describe("TaskState"),
        "TaskState": {"Type": "Choice", "Choices": [
            {"And": [{"Variable": "$.poll.task.Status", "StringEquals": "stopped"},
                     {"Variable": "$.poll.task.StopReason", "StringEquals": FULL_LOAD_FINISHED},
                     {"Or": [{"Variable": "$.poll.task.ReplicationTaskStats.TablesErrored",
                              "IsPresent": False},
                             {"Variable": "$.poll.task.ReplicationTaskStats.TablesErrored",
                              "NumericEquals": 0}]}],
             "Next": "TableStatistics"},
            {"Or": [{"Variable": "$.poll.task.Status", "StringEquals": "stopped"},
                    {"Variable": "$.poll.task.Status", "StringEquals": "failed"}],
             "Next": "TaskStoppedBadly"},
            {"Variable": "$.counts.load.n", "NumericGreaterThanEqualsPath": "$.wait.maxPolls",
             "Next": "TaskTimedOut"}],
            "Default": "WaitTaskDone"},
        "TaskStoppedBadly": task_failed("did not finish its full load: {}"),
        "TaskTimedOut": task_failed("still running after the last poll: {}"),
        "TableStatistics": _dms("describeTableStatistics", {
            "ReplicationTaskArn.$": "$.created.arn", "MaxRecords": 500}, "TablesLoaded", fail,
            result_selector={
                "tables.$": "$.TableStatistics",
                "incomplete.$": f"$.TableStatistics[?(@.TableState != '{TABLE_COMPLETED}')]",
                "errorRows.$": "$.TableStatistics[?(@.FullLoadErrorRows > 0)]"},
            result_path="$.stats"),
        "TablesLoaded": {"Type": "Choice", "Choices": [
            {"Or": [{"Variable": "$.stats.incomplete[0]", "IsPresent": True},
                    {"Variable": "$.stats.errorRows[0]", "IsPresent": True}],
             "Next": "TablesNotLoaded"}],
            "Default": "TaskDone"},
        "TablesNotLoaded": {"Type": "Pass", "Parameters": {
            "error": "DmsTaskFailed",
            "cause.$": "States.Format('DMS task {} (schema {}): tables not completed: {}', "
                       "$.task.id, $.task.schema, States.JsonToString($.stats.incomplete))"},
            "Next": "TaskFailed"},
        "TaskDone": {"Type": "Pass", "Parameters": {
            "schema.$": "$.task.schema", "tables.$": "$.stats.tables"}, "End": True},
        fail: {"Type": "Pass", "Parameters": {
            "error": "DmsTaskFailed",
            "cause.$": "States.Format('DMS task {}: {}: {}', $.task.id, $.caught.Error, "
                       "$.caught.Cause)"}, "Next": "TaskFailed"},
        "TaskFailed": {"Type": "Fail", "ErrorPath": "$.error", "CausePath": "$.cause"},
    }


def _cleanup_states() -> dict[str, Any]:
    def deleter(part: str) -> dict[str, Any]:
        start = f"Delete{part[0].upper()}{part[1:]}"
        task = _lambda("delete", None, catch=f"{start}Failed", extra={"part": part},
                       output_whole=False)
        task["ResultSelector"] = {"part": part, "deleted.$": "$.Payload.deleted",
                                  "problem.$": "$.Payload.problem"}
        task["Retry"] = LAMBDA_RETRY + [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 10,
                                         "BackoffRate": 2.0, "MaxAttempts": 4}]
        return {"StartAt": start, "States": {
            start: task,
            f"{start}Failed": {"Type": "Pass", "Parameters": {
                "part": part, "deleted": [],
                "problem.$": "States.Format('{}: {}', $.caught.Error, $.caught.Cause)"},
                "End": True}}}

    return {
        "Collect": _lambda("collect", "DropChoice", catch="CollectFailed"),
        # Collect cannot stop the cleanup: without it the record keeps what it has.
        "CollectFailed": {"Type": "Pass", "Parameters": {
            "phase": "Cleanup", "error.$": "$.caught.Error", "cause.$": "$.caught.Cause"},
            "ResultPath": "$.collectFailure", "Next": "DropChoice"},
        "DropChoice": {"Type": "Choice", "Choices": [
            {"Variable": "$.cleanup.drop", "BooleanEquals": True, "Next": "DropRestored"}],
            "Default": "RevokeChoice"},
        "DropRestored": _ecs_step("drop", "Dropped", "DropFailed"),
        "Dropped": _lambda("dropped", "RevokeChoice", catch="DropFailed"),
        "DropFailed": {"Type": "Pass", "Parameters": {
            "error.$": "$.caught.Error", "cause.$": "$.caught.Cause"},
            "ResultPath": "$.dropFailure", "Next": "RevokeChoice"},
        # production's memberships lent by grantMembership, whatever the outcome
        "RevokeChoice": {"Type": "Choice", "Choices": [
            {"Variable": "$.cleanup.revoke", "BooleanEquals": True,
             "Next": "RevokeMemberships"}], "Default": "DeleteTemporaryResources"},
        "RevokeMemberships": _ecs_step("revoke", "Revoked", "RevokeFailed"),
        "RevokeFailed": {"Type": "Pass", "Parameters": {
            "error.$": "$.caught.Error", "cause.$": "$.caught.Cause"},
            "ResultPath": "$.revokeFailure", "Next": "Revoked"},
        "Revoked": {**_lambda("revoked", "DeleteTemporaryResources", catch=None),
                    "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.revokedFailure",
                               "Next": "DeleteTemporaryResources"}]},
        "DeleteTemporaryResources": {
            "Type": "Parallel", "ResultPath": "$.deleted",
            "Branches": [deleter("temporaryDatabase"), deleter("dms"), deleter("artifacts")],
            "Next": "Finish",
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.deleteFailure",
                       "Next": "Finish"}]},
        "Finish": _lambda("finish", "Outcome", catch=None),
        "Outcome": {"Type": "Choice", "Choices": [
            {"Variable": "$.record.phase", "StringEquals": "Succeeded", "Next": "Succeeded"}],
            "Default": "RestoreFailed"},
        "Succeeded": {"Type": "Succeed"},
        "RestoreFailed": {"Type": "Fail", "ErrorPath": "$.record.error.reason",
                          "CausePath": "$.record.error.message"},
    }


def build() -> dict[str, Any]:
    """The whole definition (JSONPath query language)."""
    states: dict[str, Any] = {
        "Start": {"Type": "Choice", "Choices": [
            {"Variable": "$.sweep", "IsPresent": True, "Next": "Collect"}],
            "Default": "Initialize"},
        "Initialize": _lambda("initialize", "Initialized", catch="InitializeFailed"),
        "InitializeFailed": _failed("Initialize"),
        "Initialized": {"Type": "Choice", "Choices": [
            {"Variable": "$.failure", "IsPresent": True, "Next": "Collect"}],
            "Default": "CheckArtifactsBucket"},
        # The Lambda checked the bucket as the engine does; this proves the
        # state machine's own role can reach it before anything is created.
        "CheckArtifactsBucket": {
            "Type": "Task", "Resource": "arn:aws:states:::aws-sdk:s3:headBucket",
            "Parameters": {"Bucket.$": "$.plan.artifacts.bucket"}, "ResultPath": None,
            "Retry": [{"ErrorEquals": ["S3.S3Exception", "S3.SdkClientException",
                                       "States.Timeout"],
                       "IntervalSeconds": 2, "BackoffRate": 2.0, "MaxAttempts": 4}],
            "Catch": _catch("InitializeFailed"), "Next": "RestoreKind"},
        **_restore_states(),
        **_poll_states(),
        "Credentials": _lambda("credentials", "CredentialsMade", catch="CredentialsFailed"),
        "CredentialsFailed": _failed("SchemaExtraction"),
        "CredentialsMade": {"Type": "Choice", "Choices": [
            {"Variable": "$.failure", "IsPresent": True, "Next": "Collect"}],
            "Default": "Rights"},
        **_rights_states(),
        **_step_states(),
        **_dms_states(),
        **_cleanup_states(),
    }
    return {
        "Comment": "pg-schema-restore: restore PostgreSQL schemas from a temporary RDS/Aurora "
                   "copy into production under suffixed names (docs/stepfunctions.md)",
        "QueryLanguage": "JSONPath",
        "StartAt": "Start",
        "States": states,
    }


def phase_of_state() -> dict[str, str]:
    """Top-level state -> the engine's phase it belongs to (the operator mirrors
    an execution's history into the same phases as a native restore)."""
    groups = {
        "Initialize": ["Start", "Initialize", "InitializeFailed", "Initialized",
                       "CheckArtifactsBucket"],
        "TemporaryDatabase": [*_restore_states(), *_poll_states()],
        "SchemaExtraction": ["Credentials", "CredentialsFailed", "CredentialsMade",
                             *_rights_states(), "Extract",
                             "ExtractFailed", "SchemasCreated", "ApplyPreData",
                             "ApplyPreDataFailed"],
        "DataCopy": ["DataCopyKind", "CopyData", "CopyDataFailed", *_dms_states()],
        "PostData": ["ApplyPostData", "ApplyPostDataFailed", "Verify", "VerifyFailed"],
        "Cleanup": ["Collect", "CollectFailed", "DropChoice", "DropRestored", "Dropped",
                    "DropFailed", "RevokeChoice", "RevokeMemberships", "RevokeFailed",
                    "Revoked", "DeleteTemporaryResources"],
        "Record": ["Finish", "Outcome", "Succeeded", "RestoreFailed"],
    }
    return {state: phase for phase, states in groups.items() for state in states}


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {PATH.name}")
    args = parser.parse_args(argv)
    if args.write:
        PATH.write_text(render())
        print(f"wrote {PATH}")
    else:
        sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
