"""`pg-schema-restore`: the command line.

- `from-copy`: bring schemas back from an existing restored copy (the data
  plane, end to end).
- `demo`: a real restore on local PostgreSQL: production cluster, damage,
  genuine point-in-time copy, schema brought back next to the damaged one.
- `run` / `plan` / `cleanup`: the whole restore on AWS (RDS or Aurora).
"""

from __future__ import annotations

import argparse
import json
import sys

from ddl_job import cli as ddl_cli
from ddl_job.errors import RestoreError
from ddl_job.progress import Reporter
from ddl_job.requests import ArgumentParser

from .commands import (add_account_args, add_spec_args, cleanup_command, plan_command,
                       run_command)
from .events import HumanReporter


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="pg-schema-restore", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser(
        "from-copy", help="restore schemas from an existing restored copy",
        description="Connections come from PGSR_SOURCE_DSN (the disposable restored copy) "
                    "and PGSR_TARGET_DSN (production); they are never printed.")
    ddl_cli.add_from_copy_args(p)
    p.add_argument("--json", action="store_true", help="JSON lines on stdout")

    p = commands.add_parser("run", help="restore schemas on AWS (all seven phases)")
    add_spec_args(p)
    p.add_argument("--restore-id", help="default: random")
    p.add_argument("--state-file", help="default: ./pgsr-<restore-id>.json")
    p.add_argument("--resume", metavar="STATE_FILE", help="continue an interrupted run")
    p.add_argument("--state-machine-arn", default="",
                   help="the deployed state machine (stepfunctions/template.yaml) for "
                        "--engine stepfunctions")
    p.add_argument("--json", action="store_true", help="print the final record as JSON")

    p = commands.add_parser("plan", help="validate against AWS; print what would be created")
    add_spec_args(p)
    p.add_argument("--restore-id")
    p.add_argument("--json", action="store_true")

    p = commands.add_parser(
        "cleanup", help="delete every temporary resource of a restore (the Cleanup phase)",
        description="With --state, the run's own record (a failed restore's schemas are "
                    "dropped too); with --restore-id, whatever carries the restore's tag.")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--state", metavar="STATE_FILE", help="the run's state file")
    which.add_argument("--restore-id")
    p.add_argument("--region", default="")
    p.add_argument("--artifacts", default="", help="artifacts root (s3://bucket/prefix)")
    add_account_args(p)

    p = commands.add_parser("demo", help="a real restore on local PostgreSQL")
    p.add_argument("--workdir", default=".pgsr-demo",
                   help="where the demo clusters live (default ./.pgsr-demo)")
    p.add_argument("--rows", type=int, default=200_000, help="orders per tenant")
    p.add_argument("--keep", action="store_true",
                   help="leave the production cluster running for inspection")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(args.workdir, rows=args.rows, keep=args.keep)
    if args.command in ("run", "plan", "cleanup"):
        handler = {"run": run_command, "plan": plan_command, "cleanup": cleanup_command}
        try:
            return handler[args.command](args)
        except RestoreError as exc:
            print(f"error: {exc.reason}: {exc.message}", file=sys.stderr)
            return 1
    reporter: Reporter = Reporter("from-copy") if args.json else HumanReporter("from-copy")
    try:
        result = ddl_cli.run_from_copy(args, reporter)
    except RestoreError as exc:
        reporter.emit("error", reason=exc.reason, message=exc.message)
        if not args.json:
            print(f"error: {exc.reason}: {exc.message}", file=sys.stderr)
        return 1
    payload = ddl_cli.to_jsonable(result)
    if args.json:
        reporter.emit("result", result=payload)
    else:
        print(json.dumps(payload, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
