"""moto's Step Functions interpreter (moto 5.2.5, pinned in pyproject.toml),
made to speak AWS's dialect and to run our Lambda and ECS tasks here.

moto executes ASL for real when its config says `execute_state_machine`
(docs/facts.md, "Step Functions on moto 5.2.5"), but unpatched it differs from
AWS where our definition depends on it:

- aws-sdk tasks: moto calls botocore with the definition's parameters as
  they are and returns botocore's names; AWS takes and returns SDK v2 names
  (`DbInstanceIdentifier`, `DbInstances[0].DbInstanceStatus`), knows
  `databasemigration`, and names errors `Rds.DbInstanceNotFoundException`.
  Translated both ways from botocore's models (support/sfn_names.py);
  datetimes become ISO text as in AWS's JSON (moto's would break
  DescribeExecution).
- `lambda:invoke`: moto without Docker only echoes; here the function's
  handler (our code, unmocked) runs in-process on the test's AWS session.
- `ecs:runTask.sync`: moto cannot run a container; here the task's command
  (our ECS entry point, which runs `python -m ddl_job` as a local process
  against real PostgreSQL) runs in-process, and a non-zero exit fails the
  state with `States.TaskFailed` as on AWS.

Every AWS call goes through the test's hooked session (support/aws.py), so
RDS restores become genuine local PITR copies.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable

import boto3
from botocore import xform_name
from botocore.exceptions import ClientError

from support import sfn_names

REGION = "eu-west-1"


class TaskExited(Exception):
    """An ECS task whose essential container exited non-zero."""


def install(monkeypatch, session_factory: Callable[[], boto3.Session],
            handler: Callable[[dict[str, Any], Any], Any],
            run_command: Callable[[list[str]], int]) -> list[dict[str, Any]]:
    """Patch moto's task services; returns the list of ECS runs (command, exit code)."""
    from moto.core.config import default_user_config
    from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import (
        CustomErrorName)
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent)
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
        StatesErrorName)
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType)
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_aws_sdk as aws_sdk, state_task_service_ecs as ecs,
        state_task_service_lambda as lam)
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    monkeypatch.setitem(default_user_config["stepfunctions"], "execute_state_machine", True)
    _definite_paths(monkeypatch)
    ecs_runs: list[dict[str, Any]] = []
    made: dict[tuple[str, str], Any] = {}
    lock = threading.Lock()

    def clients(service: str, region: str) -> Any:
        """One client per service on the test's session (Map items run in threads)."""
        with lock:
            if (service, region) not in made:
                made[(service, region)] = session_factory().client(service, region_name=region)
            return made[(service, region)]

    def failure(self, env, error: str, cause: str) -> FailureEvent:
        name = (StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed)
                if error == "States.TaskFailed" else CustomErrorName(error))
        return FailureEvent(env=env, error_name=name,
                            event_type=HistoryEventType.TaskFailed,
                            event_details=EventDetails(taskFailedEventDetails=TaskFailedEventDetails(
                                resource=self._get_sfn_resource(),
                                resourceType=self._get_sfn_resource_type(),
                                error=error, cause=cause)))

    # -- aws-sdk: SDK v2 names in and out, AWS's error names ---------------------
    def sdk_task(self, env, resource_runtime_part, normalised_parameters, state_credentials):
        service = sfn_names.boto_service(self.resource.api_name)
        operation = sfn_names.boto_operation(service, self.resource.api_action)
        shapes = sfn_names.model(service).operation_model(operation)
        client = clients(service, resource_runtime_part.region)
        method = getattr(client, xform_name(operation))
        response = method(**sfn_names.to_boto(normalised_parameters, shapes.input_shape))
        env.stack.append(sfn_names.from_boto(response, shapes.output_shape))

    def sdk_error(self, env, ex):
        if isinstance(ex, ClientError):
            service = sfn_names.boto_service(self.resource.api_name)
            code = ex.response.get("Error", {}).get("Code", "")
            error = sfn_names.sdk_error(service, code)
            return failure(self, env, error,
                           f"{ex.response.get('Error', {}).get('Message', '')} "
                           f"(Service: {sfn_names.error_prefix(service)}, Error Code: {code})")
        return original_sdk_error(self, env, ex)

    original_sdk_error = aws_sdk.StateTaskServiceAwsSdk._from_error
    monkeypatch.setattr(aws_sdk.StateTaskServiceAwsSdk, "_eval_service_task", sdk_task)
    monkeypatch.setattr(aws_sdk.StateTaskServiceAwsSdk, "_from_error", sdk_error)

    # -- lambda:invoke: our handler, in-process ----------------------------------
    def lambda_task(self, env, resource_runtime_part, normalised_parameters, state_credentials):
        payload = normalised_parameters.get("Payload") or b"{}"
        event = json.loads(payload if isinstance(payload, str) else payload.decode())
        try:
            result = handler(event, None)
        except Exception as exc:  # noqa: BLE001 - what Lambda reports as a function error
            raise lambda_eval_utils.LambdaFunctionErrorException(
                "Unhandled", json.dumps({"errorType": type(exc).__name__,
                                         "errorMessage": str(exc)}))
        env.stack.append({"ExecutedVersion": "$LATEST", "StatusCode": 200,
                          "Payload": json.loads(json.dumps(result, default=str))})

    monkeypatch.setattr(lam.StateTaskServiceLambda, "_eval_service_task", lambda_task)

    # -- ecs:runTask.sync: the container's command, here -------------------------
    def ecs_task(self, env, resource_runtime_part, normalised_parameters, state_credentials):
        overrides = normalised_parameters["Overrides"]["ContainerOverrides"][0]
        command = list(overrides["Command"])
        started = time.monotonic()
        code = run_command(command)
        ecs_runs.append({"command": command, "exitCode": code,
                         "seconds": round(time.monotonic() - started, 2)})
        task = {"LastStatus": "STOPPED", "StopCode": "EssentialContainerExited",
                "Containers": [{"Name": overrides["Name"], "ExitCode": code}],
                "Tags": normalised_parameters.get("Tags", [])}
        if code != 0:
            raise TaskExited(json.dumps(task))
        env.stack.append({"Tasks": [task]})

    def ecs_resolver(self, env, resource_runtime_part, normalised_parameters, state_credentials):
        submitted = env.stack.pop()
        return lambda: submitted["Tasks"][0]

    def ecs_error(self, env, ex):
        if isinstance(ex, TaskExited):
            return failure(self, env, "States.TaskFailed", str(ex))
        return original_ecs_error(self, env, ex)

    original_ecs_error = ecs.StateTaskServiceEcs._from_error
    monkeypatch.setattr(ecs.StateTaskServiceEcs, "_eval_service_task", ecs_task)
    monkeypatch.setattr(ecs.StateTaskServiceEcs, "_build_sync_resolver", ecs_resolver)
    monkeypatch.setattr(ecs.StateTaskServiceEcs, "_from_error", ecs_error)
    monkeypatch.setattr(ecs.StateTaskServiceEcs, "_before_eval_execution",
                        ecs.StateTaskServiceCallback._before_eval_execution)
    return ecs_runs


def _definite_paths(monkeypatch) -> None:
    """AWS: a definite path (no wildcard, slice, filter or descent) selects one
    value; moto returns `$.DbInstances[0].DbInstanceStatus` as a one-element list.
    A filter that matches nothing selects [] on AWS; moto raises."""
    import sys

    from moto.stepfunctions.parser.asl.utils import json_path

    original = json_path.extract_json

    def extract_json(path: str, data: Any) -> Any:
        try:
            value = original(path, data)
        except json_path.NoSuchJsonPathError:
            if "?(" in path:
                return []
            raise
        definite = not any(token in path for token in ("*", ":", "?(", ".."))
        if definite and "[" in path and isinstance(value, list) and len(value) == 1:
            matches = json_path.parse(path).find(data)
            if len(matches) == 1:
                return matches[0].value
        return value

    for name, module in list(sys.modules.items()):
        if name.startswith("moto.stepfunctions.parser") and \
                getattr(module, "extract_json", None) is original:
            monkeypatch.setattr(module, "extract_json", extract_json)


def wait_for(sfn: Any, execution_arn: str, timeout: float = 300) -> dict[str, Any]:
    """DescribeExecution until the execution is no longer RUNNING."""
    deadline = time.monotonic() + timeout
    while True:
        described = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING":
            return described
        if time.monotonic() > deadline:
            raise AssertionError(f"execution still RUNNING after {timeout}s")
        time.sleep(0.2)


def history(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for page in sfn.get_paginator("get_execution_history").paginate(
            executionArn=execution_arn):
        events += page["events"]
    return events
