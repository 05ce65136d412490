"""The `stepfunctions` engine seen from the operator and the CLI: one
execution per restore, followed until it ends, stopped on cancellation.

The execution's name is the restore id, so starting again (a restarted
operator, a re-run) finds the one that exists instead of making a second.
Following reads the execution's history and mirrors it into the engine's
own `RestoreRecord` and events, the same ones the native runner produces:
state transitions become `phase_started` / `phase_finished` /
`phase_failed`, and the record the Lambda carries in the execution's state
(error, targets, warnings, progress, verify result, deleted resources)
replaces the mirror's at every Lambda step, so status, conditions, Events
and `status.record` read the same as with `engine: native`.

No kopf here: the operator's handler and the CLI give `save`, `on_event`
and `should_stop`.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable

from botocore.exceptions import ClientError

from ddl_job.errors import ProviderError

from ..engine.record import PHASES, RestoreRecord, now
from .definition import phase_of_state

log = logging.getLogger(__name__)
PHASE_OF_STATE = phase_of_state()
# States whose output carries the execution's record: the Lambda's steps, and
# the point from which production may hold this restore's schemas (a
# cancellation's cleanup must then drop them).
RECORD_STATES = ("Initialize", "Credentials", "SchemasCreated", "Collect", "Dropped", "Finish")


def execution_arn(state_machine_arn: str, restore_id: str) -> str:
    """arn:…:stateMachine:NAME -> arn:…:execution:NAME:RESTORE_ID"""
    return state_machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{restore_id}"


class HistoryMirror:
    """Turns history events into the record and events of the native engine."""

    def __init__(self, record: RestoreRecord, on_event: Callable[[dict[str, Any]], None]):
        self.record = record
        self.on_event = on_event
        self.seen = 0
        self.failure_told = False
        self.warnings_told: set[str] = set(record.warnings)

    def _tell(self, event: str, **fields: Any) -> None:
        self.on_event({"event": event, "restoreId": self.record.restore_id, **fields})

    def _enter(self, phase: str) -> None:
        record = self.record
        if record.done or phase == record.phase or \
                PHASES.index(phase) < PHASES.index(record.phase):
            return
        # Entering Cleanup may mean a failure: Collect's record says which
        # phases completed; before that, reaching a phase completes the last.
        if phase != "Cleanup" and record.error is None:
            self._complete([record.phase])
        record.phase = phase
        self._tell("phase_started", phase=phase)

    def _complete(self, phases: list[str]) -> None:
        for phase in phases:
            if phase not in self.record.completed:
                self.record.completed.append(phase)
                self._tell("phase_finished", phase=phase)
        self.record.completed.sort(key=PHASES.index)

    def _adopt(self, saved: dict[str, Any]) -> None:
        """The execution's record: keep it, but the mirror's position in the phases."""
        record = self.record
        theirs = RestoreRecord.from_dict(saved)
        phase = record.phase
        for name in ("targets", "source", "progress", "schemas_created",
                     "error", "warnings", "result", "finished_at"):
            setattr(record, name, getattr(theirs, name))
        # Theirs, and ours the execution never saw (stepFunctionsExecution).
        record.resources = {**record.resources, **theirs.resources}
        if theirs.phase in ("Cleanup", "Record") or theirs.done:
            # Collect and Finish know exactly what completed.
            record.completed = [p for p in record.completed if p in theirs.completed]
        self._complete([p for p in PHASES if p in theirs.completed])
        record.phase = theirs.phase if theirs.done else phase
        for warning in theirs.warnings:
            if warning not in self.warnings_told:
                self.warnings_told.add(warning)
                self._tell("restore_warning", message=warning)
        if record.error and not self.failure_told:
            self.failure_told = True
            self._tell("phase_failed", **{k: record.error.get(k) for k in
                                          ("phase", "reason", "message")})

    def feed(self, events: list[dict[str, Any]]) -> None:
        for event in events[self.seen:]:
            kind = event["type"]
            if kind.endswith("StateEntered"):
                name = event["stateEnteredEventDetails"]["name"]
                if name in PHASE_OF_STATE:
                    self._enter(PHASE_OF_STATE[name])
            elif kind.endswith("StateExited"):
                details = event["stateExitedEventDetails"]
                if details["name"] in RECORD_STATES:
                    output = json.loads(details.get("output") or "{}")
                    if isinstance(output, dict) and output.get("record"):
                        self._adopt(output["record"])
        self.seen = len(events)


class StepFunctionsExecution:
    """One restore as an execution of the deployed state machine."""

    def __init__(self, session: Any, state_machine_arn: str, *,
                 waits: dict[str, Any] | None = None, poll_seconds: float = 5.0) -> None:
        if not state_machine_arn.startswith("arn:"):
            raise ProviderError("StateMachineNotConfigured",
                                "engine stepfunctions needs the state machine's ARN "
                                "(operator setting stateMachineArn, CLI --state-machine-arn)")
        self.sfn = session.client("stepfunctions")
        self.state_machine_arn = state_machine_arn
        self.waits = waits or {}
        self.poll_seconds = poll_seconds

    def arn(self, record: RestoreRecord) -> str:
        return execution_arn(self.state_machine_arn, record.restore_id)

    def start(self, record: RestoreRecord) -> str:
        """Start the execution named after the restore, unless it exists."""
        arn = self.arn(record)
        payload = {"restoreId": record.restore_id, "spec": record.requested.to_dict()}
        if self.waits:
            payload["waits"] = self.waits
        try:
            arn = self.sfn.start_execution(stateMachineArn=self.state_machine_arn,
                                           name=record.restore_id,
                                           input=json.dumps(payload))["executionArn"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
                raise
            log.info("restore %s: execution exists, following it", record.restore_id)
        record.resources["stepFunctionsExecution"] = arn
        return arn

    def history(self, arn: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for page in self.sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
            events += page["events"]
        return events

    def follow(self, record: RestoreRecord, *, save: Callable[[RestoreRecord], None],
               on_event: Callable[[dict[str, Any]], None],
               should_stop: Callable[[], bool] = lambda: False) -> RestoreRecord:
        """Mirror the execution until it ends (or `should_stop`); returns the record."""
        arn = record.resources.get("stepFunctionsExecution") or self.arn(record)
        mirror = HistoryMirror(record, on_event)
        while True:
            described = self.sfn.describe_execution(executionArn=arn)
            before = (record.phase, len(record.completed), record.error, record.result)
            mirror.feed(self.history(arn))
            if (record.phase, len(record.completed), record.error, record.result) != before:
                save(record)
            if described["status"] != "RUNNING":
                return self._ended(record, described, save)
            if should_stop():
                return record
            time.sleep(self.poll_seconds)

    def _ended(self, record: RestoreRecord, described: dict[str, Any],
               save: Callable[[RestoreRecord], None]) -> RestoreRecord:
        if not record.done:    # stopped, timed out, or failed outside the Finish state
            record.error = record.error or {
                "phase": record.phase, "reason": "ExecutionEnded",
                "message": f"execution {described['status']}: "
                           f"{described.get('error', '')} {described.get('cause', '')}".strip()}
            record.phase = "Cleanup"     # the caller runs the engine's cleanup
            record.finished_at = None
        elif record.finished_at is None:
            record.finished_at = now()
        save(record)
        return record

    def run(self, record: RestoreRecord, *, save: Callable[[RestoreRecord], None],
            on_event: Callable[[dict[str, Any]], None],
            should_stop: Callable[[], bool] = lambda: False) -> RestoreRecord:
        """Start (or find) the execution and follow it. A record left in Cleanup
        (the execution ended without its own cleanup) is for the caller's
        engine cleanup (`runner.run`), which deletes by the restore's tag too."""
        self.start(record)
        save(record)
        return self.follow(record, save=save, on_event=on_event, should_stop=should_stop)

    def stop(self, record: RestoreRecord, cause: str) -> None:
        """Stop the execution (deletion of the SchemaRestore); gone is done."""
        arn = record.resources.get("stepFunctionsExecution") or self.arn(record)
        try:
            self.sfn.stop_execution(executionArn=arn, error="Cancelled", cause=cause[:200])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("ExecutionDoesNotExist",):
                raise
