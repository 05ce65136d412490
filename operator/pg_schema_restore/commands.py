"""`run`, `plan` and `cleanup` on AWS: the engine from the command line.

The record is saved to a state file after every phase (and before every
create call), so `run --resume STATE` continues a run that was interrupted,
creating nothing twice.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import sys
from pathlib import Path
from typing import Any, Callable

from ddl_job.errors import DataPlaneError

from .engine import runner
from .engine.phases import Context
from .engine.record import RestoreRecord
from .engine.spec import RestoreSpec


def add_spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database", required=True)
    p.add_argument("--schemas", help="comma-separated schema names (exact)")
    p.add_argument("--schema", action="append", help="one schema name; repeatable")
    point = p.add_mutually_exclusive_group(required=True)
    point.add_argument("--restore-time", help="RFC 3339, e.g. 2024-01-28T14:30:00Z")
    point.add_argument("--snapshot-id")
    p.add_argument("--source-id", default="", help="RDS instance or Aurora cluster id")
    p.add_argument("--secret-arn", default="", help="production credentials secret")
    p.add_argument("--region", default="")
    p.add_argument("--data-copy", choices=["copy", "dms"], default="copy")
    p.add_argument("--credentials", choices=["resetMasterPassword", "historicalSecret"],
                   default="resetMasterPassword")
    p.add_argument("--suffix", help="default: _YYYYMMDDHHMMSS of the restore point")
    p.add_argument("--instance-class", default="db.r6g.large")
    p.add_argument("--subnet-group", default="")
    p.add_argument("--security-group-id", action="append", default=[])
    p.add_argument("--artifacts", default="", help="s3://bucket/prefix for DDL artifacts")
    p.add_argument("--on-failure", choices=["dropRestoredSchemas", "keep"],
                   default="dropRestoredSchemas")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--audit-table", default="", help="DynamoDB table for audit records")
    p.add_argument("--dms-secrets-role-arn", default="",
                   help="IAM role DMS assumes to read the database secrets (dataCopy dms)")


def spec_from_args(args: argparse.Namespace) -> RestoreSpec:
    schemas = [s.strip() for s in (args.schemas or "").split(",") if s.strip()]
    schemas += args.schema or []
    return RestoreSpec.from_dict({
        "database": args.database, "schemas": schemas,
        "restoreTime": args.restore_time, "snapshotId": args.snapshot_id,
        "source": {"dbIdentifier": args.source_id, "secretArn": args.secret_arn,
                   "region": args.region},
        "dataCopy": args.data_copy, "credentials": args.credentials,
        "targetSuffix": args.suffix,
        "temporaryDatabase": {"instanceClass": args.instance_class,
                              "subnetGroup": args.subnet_group,
                              "securityGroupIds": args.security_group_id},
        "onFailure": args.on_failure, "artifactsLocation": args.artifacts, "jobs": args.jobs,
    })


def state_saver(path: Path) -> Callable[[RestoreRecord], None]:
    """Atomically write the record (no secret is ever in it)."""
    def save(record: RestoreRecord) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(record.to_json())
        os.replace(tmp, path)
    return save


def event_printer(as_json: bool) -> Callable[[dict[str, Any]], None]:
    def show(event: dict[str, Any]) -> None:
        if as_json:
            print(json.dumps(event, default=str), file=sys.stderr, flush=True)
            return
        kind = event.get("event")
        if kind in ("phase_started", "phase_finished", "phase_failed"):
            extra = event.get("seconds") or event.get("message") or ""
            print(f"[{event.get('phase')}] {kind.removeprefix('phase_')} {extra}".rstrip(),
                  file=sys.stderr, flush=True)
        elif kind in ("table_done", "renamed", "rewritten", "created", "warning",
                      "dropped_after_failure", "post_data_applied"):
            fields = {k: v for k, v in event.items() if k not in ("event", "elapsed",
                                                                   "restoreId")}
            print(f"  {kind} {fields}", file=sys.stderr, flush=True)
    return show


def aws_context_for(spec: RestoreSpec, args: argparse.Namespace,
                    save: Callable[[RestoreRecord], None]) -> Context:
    from .aws.context import aws_context
    from .aws.dms import DmsMigration, DmsSettings
    from .aws.session import new_session

    session = new_session(region=spec.source.region or None)
    dms = None
    if spec.dataCopy == "dms":
        dms = DmsMigration(session, DmsSettings(
            secrets_access_role_arn=getattr(args, "dms_secrets_role_arn", "")))
    return aws_context(session, artifacts_root=spec.artifactsLocation,
                       audit_table=getattr(args, "audit_table", "") or None, save=save,
                       on_event=event_printer(getattr(args, "json", False)), dms=dms)


def run_command(args: argparse.Namespace) -> int:
    if args.resume:
        state = Path(args.resume)
        record = RestoreRecord.from_dict(json.loads(state.read_text()))
    else:
        spec = spec_from_args(args)
        restore_id = args.restore_id or secrets.token_hex(5)
        if not re.fullmatch(r"[a-z0-9]{1,20}", restore_id):
            # It names RDS/DMS resources (pgsr-<id>-db): lowercase letters and digits.
            raise DataPlaneError("InvalidSpec",
                                 "--restore-id must be 1-20 lowercase letters or digits")
        record = RestoreRecord(restore_id=restore_id, spec=spec.to_dict())
        state = Path(args.state_file or f"pgsr-{restore_id}.json")
    spec = RestoreSpec.from_dict(record.spec)
    save = state_saver(state)
    save(record)
    print(f"restore {record.restore_id}: state in {state}", file=sys.stderr)
    ctx = aws_context_for(spec, args, save)
    runner.run(record, ctx)
    if args.json:
        print(record.to_json())
    else:
        print(json.dumps(record.result, indent=2, default=str))
    return 0 if record.succeeded else 1


def plan_command(args: argparse.Namespace) -> int:
    """Validate against AWS and production; print what would be created.

    Runs only describe calls and the production precheck: creates nothing."""
    spec = spec_from_args(args)
    record = RestoreRecord(restore_id=args.restore_id or secrets.token_hex(5),
                           spec=spec.to_dict())
    ctx = aws_context_for(spec, args, lambda r: None)
    info = ctx.temp_dbs.describe_source(spec)
    targets = spec.target_names(info.snapshot_time)
    schema_args = [a for name in spec.schemas for a in ("--schema", name)]
    ctx.executor.run("precheck", ["precheck", *schema_args, "--suffix",
                                  spec.suffix(info.snapshot_time)],
                     source_secret=None, target_secret=ctx.temp_dbs.production_secret(spec),
                     database=spec.database, on_event=lambda event: None)
    would_create: dict[str, Any] = {
        "temporaryDatabase": ({"cluster": record.resource_name("cluster"),
                               "writerInstance": record.resource_name("db")}
                              if info.kind == "cluster" else
                              {"instance": record.resource_name("db")}),
        "temporarySecret": record.resource_name("secret"),
        "artifacts": (spec.artifactsLocation.rstrip("/") + f"/{record.restore_id}"
                      if spec.artifactsLocation else None),
        "tags": {"pg-schema-restore/restore-id": record.restore_id},
    }
    if spec.dataCopy == "dms":
        would_create["dms"] = {"replicationInstance": record.resource_name("dms"),
                               "endpoints": [record.resource_name("dms-source"),
                                             record.resource_name("dms-target")],
                               "tasks": len(spec.schemas)}
    print(json.dumps({"restoreId": record.restore_id, "source": info.to_dict(),
                      "targets": targets, "wouldCreate": would_create}, indent=2, default=str))
    return 0


def cleanup_command(args: argparse.Namespace) -> int:
    """Delete every temporary resource tagged with the restore id (idempotent)."""
    from .aws.dms import DmsMigration
    from .aws.rds import RdsTemporaryDatabases
    from .aws.s3 import S3ArtifactCleaner
    from .aws.secrets import AwsSecrets
    from .aws.session import new_session

    session = new_session(region=args.region or None)
    record = RestoreRecord(restore_id=args.restore_id,
                           spec={"source": {"region": args.region}})
    deleted: dict[str, Any] = {
        "temporaryDatabase": RdsTemporaryDatabases(session, AwsSecrets(session)).delete(record),
        "dms": DmsMigration(session).delete(record),
    }
    if args.artifacts:
        deleted["artifacts"] = S3ArtifactCleaner(session).delete(
            args.artifacts.rstrip("/") + f"/{args.restore_id}")
    print(json.dumps(deleted, indent=2, default=str))
    return 0
