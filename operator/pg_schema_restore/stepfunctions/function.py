"""The state machine's Lambda: the engine's own code, one action per call.

Each call gets the execution's whole state (`restoreId`, `spec`, `waits`,
and what earlier states added: `record`, `plan`, `failure`, …) and returns
it updated. The record is the engine's `RestoreRecord` in its JSON form, so
the execution carries the same record as a native restore and the operator
mirrors it as it is.

- `initialize`: `phases.initialize` itself (spec, source kind, restore window
  or snapshot ownership, target names free in production, artifacts
  usable, audit item), then the plan the state machine follows: resource
  ids, RDS parameters, each data-plane step's ECS command.
- `startDms`: the DMS adapter's `start_instance` (dataCopy dms), right after
  the restore call as in `phases.temporary_database`.
- `credentials`: the engine's `credentials` (reset the master password into
  the temporary secret, or the historical secret version).
- `borrow`: after the `rights` step (first on the copy): what it found
  missing, with grantMembership, becomes the grant steps' commands;
  production's roles are recorded before they are granted, as
  `phases._borrow_memberships` does, so the cleanup revokes them.
- `collect`: the record's error from `$.failure` (a step's own reason
  read from its result file), the steps' warnings, progress and verify
  result; whether failed-restore schemas must be dropped.
- `dropped`: the drop step's result.
- `revoked`: the revoke step's result (production's lent memberships).
- `delete`: one part of the engine's cleanup (temporary database and
  secret, DMS, artifacts), by recorded id and by tag.
- `finish`: the final audit item (`phases.record_result`), the final phase.

A refusal (`RestoreError`, an AWS error) is data, not an exception:
`$.failure` with the engine's reason, so the state machine's cleanup runs
with the same reasons as the native runner's.

Deployment settings come from the environment as the operator's do
(`OperatorConfig.from_env`: `PGSR_ARTIFACTS_ROOT`, `PGSR_AUDIT_TABLE`), plus
the ECS placement of data-plane steps (`PGSR_SFN_*`).
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any, Callable

from botocore.exceptions import ClientError

from ddl_job import requests
from ddl_job.errors import InvalidSpec, RestoreError

from .. import wiring
from ..aws.s3 import split_location
from ..aws.session import Poller
from ..config import OperatorConfig
from ..engine import phases
from ..engine.record import PHASES, RestoreRecord, now
from ..engine.runner import failure_reason
from ..engine.spec import RestoreSpec, rfc3339

log = logging.getLogger(__name__)

# Data-plane steps the state machine runs (definition.STEPS keys + drop, revoke).
STEP_KEYS = ("extract", "applyPre", "copy", "applyPost", "verify")
# The memberships grantMembership lends: step key per side (`borrow`).
GRANT_KEYS = {"copy": "grantCopy", "production": "grantProduction"}
ECS_STEP_MODULE = "pg_schema_restore.stepfunctions.ecs_step"
DEFAULT_WAITS = {"seconds": 30, "maxPolls": 720}       # 6 hours of 30-second polls


def settings() -> OperatorConfig:
    config = OperatorConfig.from_env()
    config.provider, config.executor = "aws", "subprocess"
    return config


def _ecs() -> dict[str, Any]:
    def listed(name: str) -> list[str]:
        return [item for item in os.environ.get(name, "").split(",") if item]

    return {"cluster": os.environ.get("PGSR_SFN_ECS_CLUSTER", ""),
            "taskDefinition": os.environ.get("PGSR_SFN_TASK_DEFINITION", ""),
            "subnets": listed("PGSR_SFN_SUBNETS"),
            "securityGroups": listed("PGSR_SFN_SECURITY_GROUPS")}


def _record(state: dict[str, Any]) -> RestoreRecord:
    if state.get("record"):
        return RestoreRecord.from_dict(state["record"])
    if state.get("sweep"):
        return RestoreRecord.sweep(state["restoreId"], str(state.get("region") or ""))
    return RestoreRecord(restore_id=state["restoreId"],
                         spec=RestoreSpec.from_dict(state["spec"]))


def _context(record: RestoreRecord, state: dict[str, Any]) -> phases.Context:
    seconds = float((state.get("waits") or {}).get("seconds", DEFAULT_WAITS["seconds"]))
    # Waits inside the Lambda (the password reset, deletions) follow the input's pace.
    poller = Poller(initial=max(seconds, 0.05), max_delay=max(seconds * 4, 0.2))
    return wiring.build_context(settings(), record, poller=poller)


def _refused(state: dict[str, Any], record: RestoreRecord | None, phase: str,
             exc: Exception) -> dict[str, Any]:
    reason, message = failure_reason(exc)
    log.info("restore %s: %s refused: %s", state.get("restoreId"), phase, reason)
    out = {**state, "failure": {"phase": phase, "reason": reason, "message": message}}
    if record is not None:
        out["record"] = record.to_dict()
    return out


def _step_command(record: RestoreRecord, key: str, request: requests.StepRequest, *,
                  source: bool, target: bool = True) -> list[str]:
    spec = record.requested
    command = ["python", "-m", ECS_STEP_MODULE, f"--artifacts={record.resources['artifacts']}",
               f"--key={key}", f"--database={spec.database}"]
    if target:
        command.append(f"--target-secret={spec.source.secret_arn}")
    if source:
        command.append(f"--source-secret={record.resource_name('secret')}")
    return command + ["--", *request.to_argv()]


def _plan(record: RestoreRecord, state: dict[str, Any]) -> dict[str, Any]:
    spec = record.requested
    location = record.resources["artifacts"]
    bucket, _ = split_location(location)
    suffix = record.resources["suffix"]
    temp = spec.temporary_database
    copy = (requests.Copy(location, jobs=spec.jobs, restart=True)
            if spec.data_copy == "copy" else requests.Copy(location, sequences_only=True))
    steps = {
        "rights": _step_command(record, "rights", requests.Rights(
            spec.schemas, suffix, grant_membership=spec.grant_membership), source=True),
        "extract": _step_command(record, "extract", requests.Extract(
            spec.schemas, suffix, location, record.restore_id, mode=spec.data_copy,
            disposable_source=True), source=True),
        "applyPre": _step_command(record, "applyPre", requests.ApplyPre(location), source=False),
        "copy": _step_command(record, "copy", copy, source=True),
        "applyPost": _step_command(record, "applyPost", phases.post_data_request(record),
                                   source=False),
        "verify": _step_command(record, "verify", requests.Verify(location), source=True),
        "drop": _step_command(record, "drop", requests.Drop(record.restore_id), source=False),
    }
    temporary = record.resources["temporaryDatabase"]
    return {
        "kind": record.source["kind"], "fromSnapshot": spec.snapshot_id is not None,
        "sourceId": spec.source.db_identifier, "snapshotId": spec.snapshot_id,
        "restoreTime": rfc3339(spec.restore_time) if spec.restore_time else None,
        "instanceId": temporary["instanceId"], "clusterId": temporary.get("clusterId"),
        "engine": "aurora-postgresql" if record.source["kind"] == "cluster" else "postgres",
        "engineVersion": record.source.get("engine_version"),
        "instanceClass": temp.instance_class, "subnetGroup": temp.subnet_group,
        "securityGroupIds": list(temp.security_group_ids),
        "wait": {**DEFAULT_WAITS, **(state.get("waits") or {})},
        "ecs": _ecs(), "steps": steps, "dataCopy": spec.data_copy,
        "artifacts": {"bucket": bucket, "location": location},
    }


def _dms_plan(record: RestoreRecord, ctx: phases.Context) -> dict[str, Any]:
    """What the state machine's DMS states send: the engine's own settings,
    table mappings and task settings (aws/dms.py)."""
    from ..aws.dms import DmsMigration, table_mappings, task_settings

    assert isinstance(ctx.dms, DmsMigration)
    settings = ctx.dms.settings
    spec = record.requested
    tasks = [{"schema": record.targets[name], "id": record.resource_name(f"dms-task-{number}"),
              "tableMappings": table_mappings(record.targets[name])}
             for number, name in enumerate(spec.schemas, start=1)]
    return {"instanceId": record.resource_name("dms"),
            "sourceEndpointId": record.resource_name("dms-source"),
            "targetEndpointId": record.resource_name("dms-target"),
            "sourceSecret": record.resource_name("secret"),
            "targetSecret": spec.source.secret_arn, "roleArn": settings.secrets_access_role_arn,
            "database": spec.database, "sslMode": settings.ssl_mode,
            "taskSettings": task_settings(settings), "tasks": tasks}


def initialize(state: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    record: RestoreRecord | None = None
    try:
        record = _record(state)
        spec = record.requested
        if not spec.temporary_database.subnet_group or \
                not spec.temporary_database.security_group_ids:
            raise InvalidSpec("engine stepfunctions needs temporaryDatabase.subnetGroup and "
                              "securityGroupIds (the copy's isolated network)")
        ctx = _context(record, state)
        phases.initialize(record, ctx)
        record.resources["artifacts"] = phases.artifacts_location(record, ctx)
        kind = record.source["kind"]
        temporary = {"kind": kind, "region": spec.source.region or None,
                     "instanceId": record.resource_name("db")}
        if kind == "cluster":
            temporary["clusterId"] = record.resource_name("cluster")
        record.resources["temporaryDatabase"] = temporary
        record.resources["temporarySecret"] = record.resource_name("secret")
        record.completed.append("Initialize")
        record.phase = "TemporaryDatabase"
        plan = _plan(record, state)
        if spec.data_copy == "dms":
            plan["dms"] = _dms_plan(record, ctx)
    except (RestoreError, ClientError) as exc:
        return _refused(state, record, "Initialize", exc)
    polled = {"status": "creating"}
    return {**state, "record": record.to_dict(), "plan": plan,
            "counts": {"cluster": {"n": 0}, "dmsInstance": {"n": 0}, "connections": {"n": 0}},
            "poll": {"count": 0, "instance": polled,
                     "cluster": polled if kind == "cluster" else {"status": "available"}}}


def start_dms(state: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """DMS's replication instance, started right after the restore call as the
    native engine does (phases.temporary_database): billed from here, not from
    Initialize. The record keeps its id, so the cleanup deletes it."""
    record = _record(state)
    try:
        ctx = _context(record, state)
        assert ctx.dms is not None
        ctx.dms.start_instance(record, record.requested, lambda: None)
    except (RestoreError, ClientError) as exc:
        return _refused(state, record, "TemporaryDatabase", exc)
    return {**state, "record": record.to_dict()}


def credentials(state: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    record = _record(state)
    try:
        record.completed.append("TemporaryDatabase")
        record.phase = "SchemaExtraction"
        _context(record, state).temp_dbs.credentials(record, record.requested, lambda: None)
    except (RestoreError, ClientError) as exc:
        return _refused(state, record, "SchemaExtraction", exc)
    return {**state, "record": record.to_dict()}


def borrow(state: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """The `rights` step passed; with grantMembership, what it found missing is
    granted by one step per side. Production's roles go to the record first."""
    record = _record(state)
    outcome = _step_outcome(record, "rights") or {}
    result = outcome.get("result") if outcome.get("event") == "result" else None
    missing = (result or {}).get("missing") or {}
    steps = dict(state["plan"]["steps"])
    lend = {}
    for side in requests.SIDES:
        roles = tuple(missing.get(side) or ())
        lend[side] = bool(roles)
        if not roles:
            continue
        if side == "production":
            record.resources["grantedMemberships"] = list(roles)
        steps[GRANT_KEYS[side]] = _step_command(
            record, GRANT_KEYS[side], requests.Membership(side, roles),
            source=side == "copy", target=side == "production")
    return {**state, "record": record.to_dict(), "plan": {**state["plan"], "steps": steps},
            "borrow": lend}


def _revoke_plan(record: RestoreRecord, state: dict[str, Any]) -> dict[str, Any] | None:
    """The plan with the revoke step's command, when production's lent
    memberships are still to be revoked; else None."""
    roles = tuple(record.resources.get("grantedMemberships") or ())
    if not roles or record.result.get("revokedMemberships") or not state.get("plan"):
        return None
    command = _step_command(record, "revoke",
                            requests.Membership("production", roles, revoke=True), source=False)
    return {**state["plan"], "steps": {**state["plan"]["steps"], "revoke": command}}


def revoked(state: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """What the revoke step did: `revokedMemberships`, or a cleanup error."""
    record = _record(state)
    outcome = _step_outcome(record, "revoke") or {}
    if outcome.get("event") == "result":
        record.result["revokedMemberships"] = list(outcome.get("result") or [])
    else:
        failure = state.get("revokeFailure") or {}
        message = outcome.get("message") or f"{failure.get('error')}: {failure.get('cause')}"
        record.result.setdefault("cleanupErrors", []).append(
            f"revoke granted memberships: {message}")
    return {**state, "record": record.to_dict()}


def _step_outcome(record: RestoreRecord, key: str) -> dict[str, Any] | None:
    """A step's result file (`ecs_step` writes it), or None."""
    location = record.resources.get("artifacts")
    if not location:
        return None
    from ddl_job.artifacts import open_store

    try:
        return json.loads(open_store(location.rstrip("/") + "/results").read_text(f"{key}.json"))
    except (RestoreError, ValueError, OSError):
        return None


def _worded(cause: str) -> str:
    """`…: {task JSON}` (a DMS task judged by the state machine) in the words the
    native engine uses: status, stop reason, errored tables, DMS's own message."""
    head, brace, rest = cause.partition("{")
    try:
        task = json.loads(brace + rest)
    except ValueError:
        return cause
    if not isinstance(task, dict) or "Status" not in task:
        return cause
    parts = [f"status {task.get('Status')}" + (f", {task['StopReason']}"
                                               if task.get("StopReason") else "")]
    errored = (task.get("ReplicationTaskStats") or {}).get("TablesErrored")
    if errored:
        parts.append(f"{errored} table(s) errored")
    if task.get("LastFailureMessage"):
        parts.append(f"DMS says: {task['LastFailureMessage']}")
    return head.rstrip(": ") + ": " + "; ".join(parts)


def _error_from(record: RestoreRecord, failure: dict[str, Any]) -> dict[str, str]:
    phase = failure.get("phase", record.phase)
    if failure.get("reason"):
        return {"phase": phase, "reason": failure["reason"],
                "message": str(failure.get("message", ""))}
    error, cause = str(failure.get("error", "")), str(failure.get("cause", ""))
    step = failure.get("step")
    if step:
        outcome = _step_outcome(record, step) or {}
        if outcome.get("event") == "error":
            return {"phase": phase, "reason": outcome.get("reason", "StepFailed"),
                    "message": outcome.get("message", "")}
        return {"phase": phase, "reason": "StepFailed",
                "message": f"step {step}: {error}: {cause}"[:2000]}
    if re.fullmatch(r"[A-Z][A-Za-z0-9]*", error):   # our own reason (a DMS task's judgement)
        return {"phase": phase, "reason": error, "message": _worded(cause)[:2000]}
    return {"phase": phase, "reason": "AwsError", "message": f"{error}: {cause}"[:2000]}


def _absorb(record: RestoreRecord, ctx: phases.Context) -> None:
    """What each phase does with its step's result, for the steps that ran."""
    for key in STEP_KEYS:
        outcome = _step_outcome(record, key)
        if not outcome or outcome.get("event") != "result":
            continue
        result = outcome.get("result")
        if key in ("extract", "applyPost", "verify"):
            phases.add_warnings(record, ctx, result)
        if key == "copy" and isinstance(result, dict):
            record.progress.update({k: result[k] for k in ("tables", "rows", "bytes")
                                    if k in result})
        if key == "applyPost" and isinstance(result, dict):
            for name in ("notValidForeignKeys", "omittedForeignKeys"):
                if result.get(name):
                    record.result[name] = result[name]
        if key == "verify":
            record.result["verify"] = result
    for side, key in GRANT_KEYS.items():
        outcome = _step_outcome(record, key)
        if outcome and outcome.get("event") == "result":
            record.result.setdefault("grantedMemberships", {})[side] = list(
                outcome.get("result") or [])


def _record_or_bare(state: dict[str, Any]) -> RestoreRecord:
    """The record; for a spec refused before any record existed, one without spec
    (its cleanup deletes by tag, nothing was created)."""
    try:
        return _record(state)
    except RestoreError:
        return RestoreRecord(restore_id=state["restoreId"], spec=None)


def _dms_progress(record: RestoreRecord, results: list[dict[str, Any]]) -> None:
    """Rows and tables the full-load tasks report (the Map's results)."""
    tables = [t for item in results for t in item.get("tables") or []]
    record.progress.update({"tables": len(tables), "tablesDone": len(tables),
                            "rows": sum(int(t.get("FullLoadRows") or 0) for t in tables)})


def collect(state: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    record = _record_or_bare(state)
    failure = state.get("failure")
    if failure and record.error is None:
        record.error = _error_from(record, failure)
    if record.spec is not None:
        ctx = _context(record, state)
        _absorb(record, ctx)
        if state.get("dmsResults"):
            _dms_progress(record, state["dmsResults"])
        if not failure:
            record.completed = list(PHASES[:5])
        else:
            failed_at = PHASES.index(record.error["phase"]) if record.error else 0
            record.completed = list(PHASES[:failed_at])
    record.phase = "Cleanup"
    drop = bool(record.error and record.schemas_created and record.spec is not None
                and record.spec.on_failure != "keep")
    plan = _revoke_plan(record, state) if record.spec is not None else None
    out = {**state, "record": record.to_dict(), "cleanup": {"drop": drop,
                                                            "revoke": plan is not None}}
    if plan is not None:
        out["plan"] = plan
    return out


def dropped(state: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    record = _record(state)
    outcome = _step_outcome(record, "drop") or {}
    if outcome.get("event") == "result":
        so_far = record.result.setdefault("droppedSchemas", [])
        so_far += [name for name in outcome.get("result") or [] if name not in so_far]
    elif outcome.get("event") == "error":
        record.result.setdefault("cleanupErrors", []).append(
            f"drop restored schemas: {outcome.get('message', '')}")
    return {**state, "record": record.to_dict()}


def delete(state: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """One part of the cleanup; raises on failure (the state machine retries,
    then records the problem and goes on)."""
    record = _record_or_bare(state)
    ctx = _context(record, state)
    part = event["part"]
    deleted: Any = []
    if part == "temporaryDatabase":
        deleted = ctx.temp_dbs.delete(record)
    elif part == "dms" and ctx.dms is not None:
        deleted = ctx.dms.delete(record)
    elif part == "artifacts" and record.resources.get("artifacts"):
        deleted = ctx.artifact_cleaner.delete(record.resources["artifacts"])
    return {"deleted": deleted, "problem": None}


def _problem(text: str) -> str:
    """A Lambda failure's cause is JSON holding the message: keep the message."""
    try:
        cause = json.loads(text.split(": ", 1)[1])
        return f"{cause.get('errorType', '')}: {cause.get('errorMessage', '')}"
    except (IndexError, ValueError, AttributeError):
        return text


def finish(state: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    record = _record_or_bare(state)
    problems = list(record.result.get("cleanupErrors") or [])
    deleted: dict[str, Any] = {}
    for part in state.get("deleted") or []:
        deleted[part.get("part", "?")] = part.get("deleted")
        if part.get("problem"):
            problems.append(f"{part.get('part')}: {_problem(str(part['problem']))}")
    for key in ("dropFailure", "revokedFailure", "deleteFailure", "collectFailure"):
        if state.get(key):
            problems.append(f"{key}: {state[key].get('error')}: {state[key].get('cause')}")
    record.result["deleted"] = deleted
    record.completed.append("Cleanup")
    if problems:
        record.result["cleanupErrors"] = problems
        record.error = record.error or {"phase": "Cleanup", "reason": "CleanupFailed",
                                        "message": "; ".join(problems)}
    record.phase = "Record"
    phases.record_result(record, _context(record, state))
    record.completed.append("Record")
    record.phase = "Failed" if record.error else "Succeeded"
    record.finished_at = now()
    return {**state, "record": record.to_dict()}


ACTIONS: dict[str, Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]] = {
    "initialize": initialize, "startDms": start_dms, "credentials": credentials,
    "borrow": borrow, "collect": collect, "dropped": dropped, "revoked": revoked,
    "delete": delete, "finish": finish,
}


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry point (`pg_schema_restore.stepfunctions.function.handler`)."""
    return ACTIONS[event["action"]](event["state"], event)
