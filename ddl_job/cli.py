"""`python -m ddl_job STEP …`: one data-plane step per process, for executors.

Connections come from PGSR_SOURCE_DSN / PGSR_TARGET_DSN only. stdout carries
JSON lines (see progress.py); the last line is the result or the error.
Exit codes: 0 success, 1 the step failed or refused, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from dataclasses import asdict, is_dataclass
from typing import Any

from . import (
    apply,
    copy,
    drop,
    extract,
    foreign_keys,
    pipeline,
    precheck,
    requests,
    rights_steps,
    verify,
)
from .artifacts import open_store
from .conn import SOURCE_ENV, TARGET_ENV, Endpoint
from .errors import RestoreError
from .manifest import Manifest
from .marker import new_restore_id, validate_restore_id
from .progress import Reporter


def source() -> Endpoint:
    return Endpoint.from_env("source", SOURCE_ENV)


def target() -> Endpoint:
    return Endpoint.from_env("target", TARGET_ENV)


def build_parser() -> argparse.ArgumentParser:
    parser = requests.ArgumentParser(prog="python -m ddl_job", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = parser.add_subparsers(dest="step", required=True)
    requests.add_step_parsers(steps)
    p = steps.add_parser("from-copy", help="all steps on an existing restored copy")
    add_from_copy_args(p)
    return parser


def add_from_copy_args(p: argparse.ArgumentParser) -> None:
    requests.add_schema_args(p)
    p.add_argument("--suffix", help="default: _YYYYMMDDHHMMSS of now (UTC)")
    p.add_argument("--disposable-source", action="store_true",
                   help="acknowledge that the source copy is modified (schemas renamed)")
    p.add_argument("--restore-id", help="default: random")
    p.add_argument("--jobs", type=int, default=2, help="parallel connections (default 2)")
    p.add_argument("--artifacts", help="keep DDL artifacts here (directory or s3://)")
    p.add_argument("--grant-membership", action="store_true",
                   help="grant the connecting role the owners' roles it lacks (copy and "
                        "production) for the restore's duration, revoked afterwards")
    p.add_argument("--keep-on-failure", action="store_true",
                   help="do not drop the created schemas if a later step fails")
    p.add_argument("--invalid-foreign-keys", choices=foreign_keys.POLICIES,
                   default=foreign_keys.KEEP_NOT_VALID,
                   help="a foreign key to a table outside the restored schemas that "
                        "production's rows no longer satisfy: keep it NOT VALID with a "
                        "warning (default) or fail the restore")


def run_from_copy(args: argparse.Namespace, reporter: Reporter) -> pipeline.FromCopyResult:
    from datetime import datetime, timezone

    from .names import suffix_for

    restore_id = validate_restore_id(
        new_restore_id() if args.restore_id is None else args.restore_id)
    return pipeline.from_copy(
        source(), target(), requests.schemas_from(args), suffix_for(datetime.now(timezone.utc))
        if args.suffix is None else args.suffix, restore_id=restore_id,
        disposable_source=args.disposable_source, jobs=max(1, args.jobs),
        artifacts=args.artifacts, keep_on_failure=args.keep_on_failure,
        grant_membership=args.grant_membership, invalid_foreign_keys=args.invalid_foreign_keys, reporter=reporter)


def run(request: requests.StepRequest, reporter: Reporter) -> Any:
    """Do what the request asks, with the connections from the environment."""
    match request:
        case requests.Precheck():
            return precheck.precheck(target(), list(request.schemas), request.suffix,
                                     grant_membership=request.grant_membership,
                                     reporter=reporter)
        case requests.Rights():
            return rights_steps.check(source(), target(), list(request.schemas),
                                      request.suffix,
                                      grant_membership=request.grant_membership,
                                      reporter=reporter)
        case requests.Membership():
            endpoint = source() if request.side == "copy" else target()
            return rights_steps.change(endpoint, list(request.roles), revoke=request.revoke,
                                       where=request.side, reporter=reporter)
        case requests.Extract():
            return extract.extract(
                source(), target(), list(request.schemas), request.suffix,
                open_store(request.artifacts), restore_id=request.restore_id,
                mode=request.mode, disposable_source=request.disposable_source,
                reporter=reporter)
        case requests.ApplyPre():
            return apply.apply_pre(target(), open_store(request.artifacts), reporter)
        case requests.ApplyPost():
            return apply.apply_post(target(), open_store(request.artifacts), jobs=request.jobs,
                                    reporter=reporter,
                                    maintenance_work_mem=request.maintenance_work_mem,
                                    invalid_foreign_keys=request.invalid_foreign_keys)
        case requests.Copy():
            manifest = Manifest.load(open_store(request.artifacts))
            if request.sequences_only:
                return copy.sync_sequences(source(), target(), manifest.targets,
                                           reporter=reporter)
            return copy.copy_data(source(), target(), manifest.targets, jobs=request.jobs,
                                  reporter=reporter,
                                  restart_for=manifest.restore_id if request.restart else None)
        case requests.Verify():
            store = open_store(request.artifacts)
            manifest = Manifest.load(store)
            return verify.verify(source(), target(), manifest.targets, reporter=reporter,
                                 post_data=apply.post_result(store, manifest))
        case requests.Drop():
            return drop.drop_restored(target(), request.restore_id, reporter=reporter)
    raise TypeError(f"unknown request {request!r}")


def to_jsonable(value: Any) -> Any:
    return asdict(value) if is_dataclass(value) else value


TERMINATION_LOG_ENV = "PGSR_TERMINATION_LOG"
_TERMINATION_LIMIT = 4000  # Kubernetes keeps at most 4096 bytes of it


def write_termination_log(record: dict[str, Any]) -> None:
    """In a Kubernetes Job, the last line also goes to the termination message,
    which the operator reads back from the Pod's status (no log access needed)."""
    path = os.environ.get(TERMINATION_LOG_ENV)
    if not path:
        return
    text = json.dumps(record, default=str)
    if len(text.encode()) > _TERMINATION_LIMIT and isinstance(record.get("result"), dict):
        scalars = {k: v for k, v in record["result"].items()
                   if isinstance(v, (str, int, float, bool)) or v is None}
        # Warnings matter to the user: keep the first few, shortened.
        warnings = [str(w)[:300] for w in record["result"].get("warnings") or []][:5]
        text = json.dumps({**record, "result": {**scalars, "warnings": warnings,
                                                 "truncated": True}}, default=str)
    if len(text.encode()) > _TERMINATION_LIMIT:
        text = json.dumps({k: (str(v)[:3000] if k == "message" else v)
                           for k, v in record.items() if k != "result"}, default=str)
    with open(path, "w") as fh:
        fh.write(text)


def _fail(reporter: Reporter, step: str, reason: str, message: str) -> int:
    """The last line (and the termination message) says why, in one line."""
    reporter.emit("error", reason=reason, message=message)
    write_termination_log({"event": "error", "step": step, "reason": reason,
                           "message": message})
    return 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    step = args.step if args.step != "apply" else f"apply-{args.section}"
    reporter = Reporter(step)
    try:
        if args.step == "from-copy":
            result = run_from_copy(args, reporter)
        else:
            result = run(requests.request_from(args), reporter)
    except RestoreError as exc:
        return _fail(reporter, step, exc.reason, exc.message)
    except Exception as exc:  # noqa: BLE001 - a bug or an unforeseen failure: still one line
        traceback.print_exc(file=sys.stderr)   # for whoever reads the log
        first = str(exc).strip().splitlines()[0][:500] if str(exc).strip() else ""
        return _fail(reporter, step, "InternalError", f"{type(exc).__name__}: {first}")
    payload = to_jsonable(result)
    reporter.emit("result", result=payload)
    write_termination_log({"event": "result", "step": step, "result": payload})
    return 0


if __name__ == "__main__":
    sys.exit(main())
