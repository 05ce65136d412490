"""The state machine's definition, checked without running it: the file is
what `definition.build()` writes, every aws-sdk integration uses the names
the real service uses (derived from botocore's models by
support/sfn_names.py), every Task retries, every loop is bounded and sees
terminal states, every path ends in the cleanup."""

from __future__ import annotations

import json
import re
from typing import Any, Iterator

import pytest
from botocore.model import ListShape, StructureShape

from pg_schema_restore.aws.rds import TERMINAL_STATES
from pg_schema_restore.stepfunctions import definition
from support import sfn_names

DEFINITION = json.loads(definition.PATH.read_text())
# Errors Step Functions documents for its optimized integrations (not in botocore's models).
INTEGRATION_ERRORS = {
    "lambda": {"Lambda.ServiceException", "Lambda.AWSLambdaException",
               "Lambda.SdkClientException", "Lambda.TooManyRequestsException",
               "Lambda.Unknown"},
    "ecs": {"ECS.AmazonECSException", "ECS.SdkClientException"},
}


def states(machine: dict[str, Any] = DEFINITION) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in machine["States"].items():
        yield name, state
        for branch in state.get("Branches", []) + [state.get("ItemProcessor") or {}]:
            if branch:
                yield from states(branch)


def tasks() -> list[tuple[str, dict[str, Any]]]:
    return [(n, s) for n, s in states() if s["Type"] == "Task"]


def test_file_is_what_the_builder_writes():
    assert definition.PATH.read_text() == definition.render(), (
        "stale: run python -m pg_schema_restore.stepfunctions.definition --write")


def _static_keys(parameters: dict[str, Any]) -> dict[str, Any]:
    """Parameters with `.$` suffixes removed (the member names)."""
    out: dict[str, Any] = {}
    for key, value in parameters.items():
        name = key[:-2] if key.endswith(".$") else key
        if isinstance(value, dict) and not key.endswith(".$"):
            value = _static_keys(value)
        elif isinstance(value, list) and not key.endswith(".$"):
            value = [_static_keys(v) if isinstance(v, dict) else v for v in value]
        out[name] = value
    return out


def _check_members(value: Any, shape: Any, where: str) -> None:
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        for key, item in value.items():
            found = sfn_names.member_for(shape, key)
            assert found is not None, f"{where}: {shape.name} has no member {key!r}; SDK v2 " \
                f"names are {sorted(sfn_names.sdk_member(m) for m in shape.members)}"
            _check_members(item, found[1], f"{where}.{key}")
    elif isinstance(shape, ListShape) and isinstance(value, list):
        for item in value:
            _check_members(item, shape.member, where)


def _resolve_output(shape: Any, path: str, where: str) -> None:
    """`$.DbInstances[0].DbInstanceStatus` must exist in the output shape (SDK names)."""
    filters = re.findall(r"@\.([A-Za-z0-9]+)", path)        # [?(@.Member …)]
    path = re.sub(r"\[\?\(.*?\)\]|\[\*\]", "[0]", path)
    for part in re.findall(r"[A-Za-z0-9]+|\[\d+\]", path.removeprefix("$.")):
        if part.startswith("["):
            assert isinstance(shape, ListShape), f"{where}: {path}: not a list at {part}"
            shape = shape.member
            continue
        found = sfn_names.member_for(shape, part)
        assert found is not None, f"{where}: {path}: {shape.name} has no member {part!r}"
        shape = found[1]
    for member in filters:          # the filter's members, on the list's elements
        assert sfn_names.member_for(shape, member), f"{where}: {path}: no member {member}"


def test_aws_sdk_integrations_use_the_services_own_names():
    seen = set()
    for name, state in tasks():
        resource = state["Resource"]
        if not resource.startswith("arn:aws:states:::aws-sdk:"):
            continue
        sdk_id, action = resource.split(":")[-2:]
        service = sfn_names.boto_service(sdk_id)
        assert sfn_names.sdk_service_id(service) == sdk_id
        operation = sfn_names.boto_operation(service, action)
        op = sfn_names.model(service).operation_model(operation)
        _check_members(_static_keys(state.get("Parameters", {})), op.input_shape, name)
        for path in (state.get("ResultSelector") or {}).values():
            _resolve_output(op.output_shape, path, name)
        known = set(sfn_names.sdk_errors(service).values()) | sfn_names.base_errors(service)
        for rule in state.get("Retry", []) + state.get("Catch", []):
            for error in rule["ErrorEquals"]:
                if not error.startswith("States."):
                    assert error in known, f"{name}: {error} is not an error {sdk_id} raises"
        seen.add(f"{sdk_id}:{action}")
    assert {"databasemigration:createEndpoint", "databasemigration:testConnection",
            "databasemigration:describeConnections", "databasemigration:createReplicationTask",
            "databasemigration:startReplicationTask", "databasemigration:describeReplicationTasks",
            "databasemigration:describeTableStatistics",
            "rds:restoreDBInstanceToPointInTime", "rds:restoreDBInstanceFromDBSnapshot",
            "rds:restoreDBClusterToPointInTime", "rds:restoreDBClusterFromSnapshot",
            "rds:createDBInstance", "rds:describeDBInstances", "rds:describeDBClusters",
            "s3:headBucket"} <= seen


def test_optimized_integrations_name_real_members():
    for name, state in tasks():
        resource = state["Resource"]
        if resource.startswith("arn:aws:states:::ecs:runTask"):
            op = sfn_names.model("ecs").operation_model("RunTask")
            members = {m.lower(): m for m in op.input_shape.members}
            for key in _static_keys(state["Parameters"]):
                assert key.lower() in members, f"{name}: RunTask has no {key}"
            kind = "ecs"
        elif resource == "arn:aws:states:::lambda:invoke":
            op = sfn_names.model("lambda").operation_model("Invoke")
            assert set(_static_keys(state["Parameters"])) <= set(op.input_shape.members)
            kind = "lambda"
        else:
            continue
        for rule in state.get("Retry", []):
            for error in rule["ErrorEquals"]:
                assert error.startswith("States.") or error in INTEGRATION_ERRORS[kind], \
                    f"{name}: {error}"


def test_every_task_retries_with_backoff_and_every_failure_is_caught():
    for name, state in tasks():
        assert state.get("Retry"), f"{name} has no Retry"
        assert all(rule.get("BackoffRate", 1) > 1 for rule in state["Retry"]), name
        if name not in ("Finish",):     # the audit item: its failure fails the execution
            assert state.get("Catch"), f"{name} has no Catch"


def _graph(machine: dict[str, Any]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for name, state in machine["States"].items():
        nexts = {state["Next"]} if "Next" in state else set()
        nexts |= {c["Next"] for c in state.get("Choices", [])}
        nexts |= {c["Next"] for c in state.get("Catch", [])}
        if "Default" in state:
            nexts.add(state["Default"])
        edges[name] = nexts
    return edges


def test_every_state_is_reachable_and_every_path_goes_through_cleanup():
    edges = _graph(DEFINITION)
    assert all(n in edges for targets in edges.values() for n in targets)
    reached, todo = set(), [DEFINITION["StartAt"]]
    while todo:
        state = todo.pop()
        if state not in reached:
            reached.add(state)
            todo += edges[state]
    assert reached == set(edges), f"unreachable: {set(edges) - reached}"
    # Without passing through Collect -> ... -> Finish, no path ends.
    ends = {n for n, s in DEFINITION["States"].items() if s["Type"] in ("Succeed", "Fail")}
    for start in set(edges) - {"Collect", "CollectFailed", "DropChoice", "DropRestored",
                               "Dropped", "DropFailed", "RevokeChoice", "RevokeMemberships",
                               "RevokeFailed", "Revoked", "DeleteTemporaryResources",
                               "Finish", "Outcome"} - ends:
        seen, todo = set(), [start]
        while todo:
            state = todo.pop()
            if state in seen or state == "Collect":
                continue
            seen.add(state)
            assert state not in ends, f"{start} can end without cleanup"
            todo += edges[state]


def _paths_avoid(start: str, goal: str, through: str) -> bool:
    """Some path from `start` reaches `goal` without passing `through`."""
    edges = _graph(DEFINITION)
    seen, todo = set(), [start]
    while todo:
        state = todo.pop()
        if state in seen or state == through:
            continue
        if state == goal:
            return True
        seen.add(state)
        todo += edges[state]
    return False


def test_rights_come_before_extraction_and_the_revoke_before_the_end():
    """As the native engine: the `rights` step (then the grants grantMembership
    asks for) before anything reads the copy, and production's lent
    memberships revoked by the cleanup whatever the outcome."""
    assert not _paths_avoid("Credentials", "Extract", through="Rights")
    assert not _paths_avoid("Rights", "Extract", through="Borrow")
    assert not _paths_avoid("Collect", "Finish", through="RevokeChoice")
    assert _paths_avoid("Borrow", "Extract", through="GrantProduction")   # only when lent
    states = DEFINITION["States"]
    assert states["RevokeChoice"]["Choices"] == [
        {"Variable": "$.cleanup.revoke", "BooleanEquals": True, "Next": "RevokeMemberships"}]
    # a failed grant or check ends like every failed step: its own reason, cleanup
    for name in ("Rights", "GrantCopy", "GrantProduction"):
        failed = states[states[name]["Catch"][-1]["Next"]]
        assert failed["Parameters"]["phase"] == "SchemaExtraction" and failed["Next"] == "Collect"


def test_the_poll_loop_is_bounded_and_sees_every_terminal_state():
    machine = DEFINITION["States"]
    decide = machine["TemporaryDatabaseState"]
    terminal = {c["StringEquals"] for rule in decide["Choices"] if "Or" in rule
                for c in rule["Or"]}
    assert {"failed", "incompatible-restore", "incompatible-parameters",
            "incompatible-network", "storage-full"} <= terminal == set(TERMINAL_STATES)
    assert any(c.get("NumericGreaterThanEqualsPath") == "$.plan.wait.maxPolls"
               for c in decide["Choices"])
    assert "States.MathAdd($.poll.count, 1)" in json.dumps(machine["CountPoll"])
    # The wait comes from the input, so tests poll fast and production slowly.
    assert machine["WaitTemporaryDatabase"]["SecondsPath"] == "$.plan.wait.seconds"


def test_data_plane_steps_run_as_ecs_tasks_tagged_with_the_restore():
    ecs = [(n, s) for n, s in tasks() if s["Resource"] == "arn:aws:states:::ecs:runTask.sync"]
    commands = {s["Parameters"]["Overrides"]["ContainerOverrides"][0]["Command.$"]
                for _, s in ecs}
    assert commands == {f"$.plan.steps.{k}" for k in
                        ("rights", "grantCopy", "grantProduction", "extract", "applyPre",
                         "copy", "applyPost", "verify", "drop", "revoke")}
    for name, state in ecs:
        assert state["Parameters"]["Tags"] == [
            {"Key": "pg-schema-restore/restore-id", "Value.$": "$.restoreId"}], name
        assert state["Parameters"]["NetworkConfiguration"]["AwsvpcConfiguration"][
            "AssignPublicIp"] == "DISABLED"


@pytest.mark.parametrize("state", ["RestoreInstanceToPointInTime", "RestoreInstanceFromSnapshot",
                                   "CreateWriter"])
def test_the_copy_is_private_and_tagged(state):
    params = DEFINITION["States"][state]["Parameters"]
    assert params["PubliclyAccessible"] is False
    assert params["Tags"] == [{"Key": "pg-schema-restore/restore-id", "Value.$": "$.restoreId"}]


def test_the_per_schema_map_is_bounded_and_judges_each_task():
    full_load = DEFINITION["States"]["FullLoad"]
    assert full_load["Type"] == "Map" and full_load["MaxConcurrency"] >= 1
    inner = full_load["ItemProcessor"]["States"]
    judged = json.dumps(inner["TaskState"])
    # stopped + the full-load stop reason + no errored table, else a failure
    assert "Stop Reason FULL_LOAD_ONLY_FINISHED" in judged and "TablesErrored" in judged
    assert "Table completed" in json.dumps(inner["TableStatistics"])
    assert any(c.get("NumericGreaterThanEqualsPath") == "$.wait.maxPolls"
               for c in inner["TaskState"]["Choices"])
    # the connection tests are polled to an outcome, failed ones reported
    connection = json.dumps(DEFINITION["States"]["ConnectionState"])
    assert '"failed"' in connection and "maxPolls" in connection


def test_inner_graphs_are_complete():
    for name, state in states():
        if state["Type"] == "Map":
            edges = _graph(state["ItemProcessor"])
            assert all(n in edges for targets in edges.values() for n in targets), name
