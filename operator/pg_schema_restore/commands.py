"""`run`, `plan` and `cleanup` on AWS: the engine from the command line.

The record is saved to a state file after every phase (and before every
create call), so `run --resume STATE` continues a run that was interrupted,
creating nothing twice.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from ddl_job.errors import InvalidRequest
from ddl_job.marker import new_restore_id, validate_restore_id
from ddl_job.names import split_schema_list

from . import events, wiring
from .config import OperatorConfig
from .engine import phases, runner
from .engine.record import RestoreRecord
from .engine.spec import FOREIGN_KEYS, RestoreSpec
from .stepfunctions.execution import StepFunctionsExecution


def add_spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spec", metavar="FILE",
                   help="a SchemaRestore manifest (or its spec), YAML or JSON: the same "
                        "file kubectl would apply; the flags below are then ignored")
    p.add_argument("--database")
    p.add_argument("--schemas", help="comma-separated schema names (exact)")
    p.add_argument("--schema", action="append",
                   help="one schema name, exactly (commas, spaces included); repeatable; "
                        "--schema=NAME for a name that starts with '-'")
    point = p.add_mutually_exclusive_group()
    point.add_argument("--restore-time", help="RFC 3339, e.g. 2024-01-28T14:30:00Z")
    point.add_argument("--snapshot-id")
    p.add_argument("--source-id", default="", help="RDS instance or Aurora cluster id")
    p.add_argument("--secret-arn", default="", help="production credentials secret")
    p.add_argument("--region", default="")
    p.add_argument("--data-copy", choices=["copy", "dms"], default="copy")
    p.add_argument("--engine", choices=["native", "stepfunctions"], default="native",
                   help="who drives the phases: this process, or the deployed Step "
                        "Functions state machine (--state-machine-arn)")
    p.add_argument("--credentials", choices=["resetMasterPassword", "historicalSecret"],
                   default="resetMasterPassword")
    p.add_argument("--suffix", help="default: _YYYYMMDDHHMMSS of the restore point")
    p.add_argument("--instance-class", default="db.r6g.large")
    p.add_argument("--subnet-group", default="", help="default: the source's")
    p.add_argument("--security-group-id", action="append", default=[],
                   help="repeatable; default: the source's")
    p.add_argument("--parameter-group", default="", help="default: the source's")
    p.add_argument("--cluster-parameter-group", default="",
                   help="Aurora; default: the source cluster's")
    p.add_argument("--artifacts", default="", help="s3://bucket/prefix for DDL artifacts")
    p.add_argument("--on-failure", choices=["dropRestoredSchemas", "keep"],
                   default="dropRestoredSchemas")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--invalid-foreign-keys", choices=FOREIGN_KEYS, default="keepNotValid",
                   help="a foreign key to a table outside the restored schemas whose "
                        "referenced rows production no longer has: keep it NOT VALID with "
                        "a warning, or fail the restore (spec.foreignKeys)")
    p.add_argument("--grant-membership", action="store_true",
                   help="grant the connecting role the owners' roles it lacks for the "
                        "restore's duration, revoked afterwards (spec.grantMembership)")
    add_account_args(p)


def add_account_args(p: argparse.ArgumentParser) -> None:
    """Settings of the AWS account rather than of one restore."""
    p.add_argument("--audit-table", default="", help="DynamoDB table for audit records")
    p.add_argument("--dms-secrets-role-arn", default="",
                   help="IAM role DMS assumes to read the database secrets (dataCopy dms)")


def spec_from_args(args: argparse.Namespace) -> RestoreSpec:
    """The file or the flags, in the spec's API form, parsed by the one parser."""
    if args.spec:
        return RestoreSpec.from_dict(spec_from_file(Path(args.spec)))
    schemas = split_schema_list(args.schemas) if args.schemas else []
    schemas += args.schema or []
    return RestoreSpec.from_dict({
        "database": args.database, "schemas": schemas,
        "restoreTime": args.restore_time, "snapshotId": args.snapshot_id,
        "source": {"dbIdentifier": args.source_id, "secretArn": args.secret_arn,
                   "region": args.region},
        "dataCopy": args.data_copy, "credentials": args.credentials, "engine": args.engine,
        "targetSuffix": args.suffix,
        "temporaryDatabase": {"instanceClass": args.instance_class,
                              "subnetGroup": args.subnet_group,
                              "securityGroupIds": args.security_group_id,
                              "parameterGroup": args.parameter_group,
                              "clusterParameterGroup": args.cluster_parameter_group},
        "onFailure": args.on_failure, "artifactsLocation": args.artifacts, "jobs": args.jobs,
        "foreignKeys": args.invalid_foreign_keys, "grantMembership": args.grant_membership,
    })


def spec_from_file(path: Path) -> dict[str, Any]:
    import yaml

    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidRequest("InvalidArgument", f"cannot read {path}: {exc}") from None
    if isinstance(document, dict) and document.get("kind") == "SchemaRestore":
        document = document.get("spec")
    if not isinstance(document, dict):
        raise InvalidRequest("InvalidArgument", f"{path} holds no SchemaRestore spec")
    return document


def settings_from_args(args: argparse.Namespace, artifacts_root: str) -> OperatorConfig:
    """The command line runs on AWS with local processes as executors."""
    return OperatorConfig(provider="aws", executor="subprocess", artifacts_root=artifacts_root,
                          audit_table=args.audit_table,
                          dms_secrets_role_arn=args.dms_secrets_role_arn)


def new_record(args: argparse.Namespace, spec: RestoreSpec | None) -> RestoreRecord:
    restore_id = validate_restore_id(args.restore_id or new_restore_id())
    return RestoreRecord(restore_id=restore_id, spec=spec)


def state_saver(path: Path) -> Callable[[RestoreRecord], None]:
    """Atomically write the record (no secret is ever in it)."""
    def save(record: RestoreRecord) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(record.to_json())
        os.replace(tmp, path)
    return save


def event_output(as_json: bool) -> Callable[[dict[str, Any]], None]:
    if as_json:
        return lambda event: print(json.dumps(event, default=str), file=sys.stderr, flush=True)
    return events.printer()


def run_command(args: argparse.Namespace) -> int:
    if args.resume:
        state = Path(args.resume)
        record = RestoreRecord.from_dict(json.loads(state.read_text()))
    else:
        record = new_record(args, spec_from_args(args))
        state = Path(args.state_file or f"pgsr-{record.restore_id}.json")
    spec = record.requested
    save = state_saver(state)
    save(record)
    print(f"restore {record.restore_id}: state in {state}", file=sys.stderr)
    ctx = wiring.build_context(settings_from_args(args, spec.artifacts_location), record,
                               save=save, on_event=event_output(args.json))
    if spec.engine == "stepfunctions" and not record.done:
        StepFunctionsExecution(wiring.SESSION_FACTORY(spec.source.region or None),
                               args.state_machine_arn or "").run(
            record, save=save, on_event=event_output(args.json))
    runner.run(record, ctx)     # native; or the cleanup of an execution that ended abnormally
    if args.json:
        print(record.to_json())
    else:
        print(json.dumps(record.result, indent=2, default=str))
    return 0 if record.succeeded else 1


def plan_command(args: argparse.Namespace) -> int:
    """Initialize in a dry run: describe calls and the production precheck only."""
    record = new_record(args, spec_from_args(args))
    ctx = wiring.build_context(settings_from_args(args, record.requested.artifacts_location),
                               record, on_event=event_output(args.json))
    print(json.dumps(phases.plan(record, ctx), indent=2, default=str))
    return 0


def cleanup_command(args: argparse.Namespace) -> int:
    """Run the Cleanup phase: for a run's state file, or by the restore id's tag."""
    if args.state:
        record = RestoreRecord.from_dict(json.loads(Path(args.state).read_text()))
        save = state_saver(Path(args.state))
    elif args.restore_id:
        record = RestoreRecord.sweep(validate_restore_id(args.restore_id), args.region)
        if args.artifacts:
            record.resources["artifacts"] = args.artifacts.rstrip("/") + f"/{args.restore_id}"
        save = lambda record: None  # noqa: E731 - nothing to keep for a sweep
    else:
        raise InvalidRequest("InvalidArgument", "give --state STATE_FILE or --restore-id")
    ctx = wiring.build_context(settings_from_args(args, args.artifacts), record, save=save,
                               on_event=event_output(False))
    if runner.cleanup_pending(record):
        runner.retry_cleanup(record, ctx)
    elif not record.done:
        runner.request_cleanup(record)
        runner.run(record, ctx)
    print(json.dumps(record.result.get("deleted", {}), indent=2, default=str))
    errors = record.result.get("cleanupErrors")
    if errors:
        print(f"error: CleanupFailed: {'; '.join(errors)}", file=sys.stderr)
    return 1 if errors else 0
