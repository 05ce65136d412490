"""The deployed state machine on moto, for tests: the real definition, our
Lambda handler and ECS entry point (support/sfn_moto.py runs them here),
and helpers to start, follow and read executions."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from typing import Any

import boto3

from pg_schema_restore import wiring
from pg_schema_restore.aws.audit import DynamoAudit
from pg_schema_restore.engine.record import RestoreRecord, restore_id_for
from pg_schema_restore.stepfunctions import definition, ecs_step, function
from support import sfn_moto
from support.aws import AUDIT_TABLE, BUCKET, REGION


def iso(point: datetime) -> str:
    return point.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


FUNCTION_ARN = f"arn:aws:lambda:{REGION}:123456789012:function:pgsr-restore"
ROLE_ARN = "arn:aws:iam::123456789012:role/pgsr-state-machine"
DMS_ROLE_ARN = "arn:aws:iam::123456789012:role/pgsr-dms-secrets"


class Machine:
    """The deployed state machine and what its ECS tasks did."""

    def __init__(self, world, monkeypatch, fail_step: str | None = None,
                 session_factory: Any = None) -> None:
        self.world = world
        session_factory = session_factory or world.sim.session
        monkeypatch.setattr(wiring, "SESSION_FACTORY", lambda region: session_factory())
        for name, value in {"PGSR_ARTIFACTS_ROOT": f"s3://{BUCKET}/restores",
                            "PGSR_AUDIT_TABLE": AUDIT_TABLE,
                            "PGSR_SFN_ECS_CLUSTER": "pgsr", "PGSR_SFN_TASK_DEFINITION": "ddl-job",
                            "PGSR_SFN_SUBNETS": "subnet-1",
                            "PGSR_SFN_SECURITY_GROUPS": world.security_group,
                            "PGSR_DMS_SECRETS_ROLE_ARN": DMS_ROLE_ARN}.items():
            monkeypatch.setenv(name, value)
        self.fail_step = fail_step
        self.gates: dict[str, threading.Event] = {}   # step key -> released when set
        self.entered: list[str] = []
        self.runs = sfn_moto.install(monkeypatch, session_factory, function.handler,
                                     self._run_command)
        self.sfn = boto3.client("stepfunctions", region_name=REGION)
        text = definition.PATH.read_text().replace("${RestoreFunctionArn}", FUNCTION_ARN)
        self.arn = self.sfn.create_state_machine(name="pgsr-restore", definition=text,
                                                 roleArn=ROLE_ARN)["stateMachineArn"]

    def _run_command(self, command: list[str]) -> int:
        assert command[:3] == ["python", "-m", function.ECS_STEP_MODULE], command
        argv = command[3:]
        key = next(a for a in argv if a.startswith("--key=")).removeprefix("--key=")
        self.entered.append(key)
        gate = self.gates.get(key)
        if gate is not None:
            gate.wait(timeout=300)
        if self.stop_requested():   # AWS stops a .sync ECS task when its execution stops
            return 143
        if self.fail_step and f"--key={self.fail_step}" in argv:
            # The container dies before the step can say why (killed, out of memory).
            return 137
        return ecs_step.main(argv)

    def run(self, spec: dict[str, Any], restore_id: str | None = None) -> dict[str, Any]:
        restore_id = restore_id or restore_id_for(spec["database"] + iso(datetime.now()))
        execution = self.sfn.start_execution(
            stateMachineArn=self.arn, name=restore_id,
            input=json.dumps({"restoreId": restore_id, "spec": spec,
                              "waits": {"seconds": 0, "maxPolls": 40}}))
        described = sfn_moto.wait_for(self.sfn, execution["executionArn"])
        events = sfn_moto.history(self.sfn, execution["executionArn"])
        output = json.loads(described.get("output") or "null")
        record = None
        if output and output.get("record"):
            record = RestoreRecord.from_dict(output["record"])
        return {"restoreId": restore_id, "described": described, "events": events,
                "record": record, "output": output}

    def audit(self, restore_id: str) -> dict[str, Any]:
        item = DynamoAudit(self.world.sim.session(), AUDIT_TABLE).get(restore_id)
        assert item is not None, "no audit item"
        return item

    def failed_record(self, run: dict[str, Any]) -> RestoreRecord:
        """A failed execution's record: the Finish state's output (Fail has none)."""
        finished = [e for e in run["events"] if e["type"] == "TaskStateExited"
                    and e["stateExitedEventDetails"]["name"] == "Finish"]
        assert finished, [e["type"] for e in run["events"]][-10:]
        output = json.loads(finished[-1]["stateExitedEventDetails"]["output"])
        return RestoreRecord.from_dict(output["record"])


    def stop_requested(self) -> bool:
        """StopExecution was called (moto reports ABORTED only once the running
        state returns; AWS at once)."""
        return self.world.sim.calls.get("sfn.StopExecution", 0) > 0

    def aborted(self) -> bool:
        return any(e["status"] == "ABORTED" for e in
                   self.sfn.list_executions(stateMachineArn=self.arn)["executions"])

    def executions(self) -> list[dict[str, Any]]:
        return self.sfn.list_executions(stateMachineArn=self.arn)["executions"]


