"""The ECS entry point of a data-plane step run by the state machine.

`python -m pg_schema_restore.stepfunctions.ecs_step --artifacts=LOC --key=KEY
--database=DB --target-secret=ID [--source-secret=ID] -- <ddl_job argv>`

The connections come from Secrets Manager by reference and reach the step
exactly as with the native engine (the same executor: `python -m ddl_job`
with libpq environment variables). ECS gives Step Functions an exit code
only, so the step's outcome (result with warnings, counts, verify result;
or the step's own reason and message) is written to
`LOC/results/KEY.json`, where the state machine's Lambda reads it; the exit
code is 0 or 1 so that a failed step fails its `runTask.sync` state.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from ddl_job import requests
from ddl_job.artifacts import open_store
from ddl_job.errors import RestoreError

from .. import wiring


def _write(artifacts: str, key: str, outcome: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{key}.json"
        path.write_text(json.dumps(outcome, default=str))
        open_store(artifacts.rstrip("/") + "/results").put_file(f"{key}.json", path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ecs_step", description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--target-secret")
    parser.add_argument("--source-secret")
    parser.add_argument("step", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    step_argv = args.step[1:] if args.step[:1] == ["--"] else args.step
    try:
        request = requests.from_argv(step_argv)
        result = wiring.step_executor().run(
            request, source_secret=args.source_secret, target_secret=args.target_secret,
            database=args.database, on_event=lambda event: print(json.dumps(event), flush=True))
        outcome: dict[str, Any] = {"event": "result", "step": args.key, "result": result}
    except RestoreError as exc:
        outcome = {"event": "error", "step": args.key, "reason": exc.reason,
                   "message": exc.message}
    _write(args.artifacts, args.key, outcome)
    print(json.dumps({k: v for k, v in outcome.items() if k != "result"}), flush=True)
    return 0 if outcome["event"] == "result" else 1


if __name__ == "__main__":
    sys.exit(main())
