"""The IAM proof: every AWS operation the product calls during the test run,
checked against the policies in docs/.

Recorded, not grepped: `BaseClient._make_api_call` (botocore's one door for
every API call) is wrapped for the whole run, and each call is attributed by
the first frame outside boto3/botocore/moto: `pg_schema_restore` (the
operator: docs/iam-policy.json) or `ddl_job` (the data plane's Job:
docs/iam-policy-job.json); calls made by test code itself (setting up moto)
are not the product's. The data plane running as a subprocess reaches S3
through the S3 bridge (support/aws.py), which reports each request here.

At the end of the run (the xdist controller, after every worker wrote its
calls) `pytest_sessionfinish` checks:
- every action called is allowed by an Allow statement's Action of that
  policy (wildcards as IAM reads them);
- when the whole suite ran (no -k, -m or paths), every allowed action was
  called at least once: a policy grants nothing the code does not use.
Resources and conditions are not evaluated here (docs/operations.md says
which conditions each statement carries and why). A violation fails the run
with the list of actions.
"""

from __future__ import annotations

import fnmatch
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import botocore.client
import pytest

REPO = Path(__file__).resolve().parent.parent.parent
POLICIES = {"operator": REPO / "docs/iam-policy.json",
            "data-plane": REPO / "docs/iam-policy-job.json"}
_ENV = "PGSR_IAM_CALLS_DIR"
_LIBRARIES = ("boto3", "botocore", "moto", "s3transfer")
# Actions AWS authorizes inside another call, never called themselves:
# tags given on a create call need the service's tagging action (RDS, Secrets
# Manager), and a DMS endpoint reading Secrets Manager passes its role.
IMPLIED = {"rds:AddTagsToResource": ("rds:Restore*", "rds:CreateDBInstance"),
           "secretsmanager:TagResource": ("secretsmanager:CreateSecret",),
           "dms:AddTagsToResource": ("dms:Create*",),
           "iam:PassRole": ("dms:CreateEndpoint",)}
# IAM's prefix where it differs from the service's signing name.
_PREFIX = {"tagging": "tag"}
# S3 operations that IAM authorizes under another action's name.
_S3_ACTION = {"HeadBucket": "ListBucket", "ListObjectsV2": "ListBucket",
              "ListObjects": "ListBucket", "HeadObject": "GetObject",
              "CreateMultipartUpload": "PutObject", "UploadPart": "PutObject",
              "CompleteMultipartUpload": "PutObject", "DeleteObjects": "DeleteObject"}


def iam_action(signing_name: str, operation: str) -> str:
    prefix = _PREFIX.get(signing_name, signing_name)
    if prefix == "s3":
        operation = _S3_ACTION.get(operation, operation)
    return f"{prefix}:{operation}"


def s3_operation(method: str, path: str, headers: dict[str, str]) -> str:
    """The S3 operation of a path-style request (the bridge's)."""
    parts = urlsplit(path)
    query = parse_qs(parts.query, keep_blank_values=True)
    has_key = "/" in parts.path.strip("/")
    if method == "HEAD":
        return "HeadObject" if has_key else "HeadBucket"
    if method == "GET":
        return "GetObject" if has_key else "ListObjectsV2"
    if method == "PUT":
        if "partNumber" in query:
            return "UploadPart"
        return "CopyObject" if "x-amz-copy-source" in {k.lower() for k in headers} \
            else "PutObject"
    if method == "POST":
        if "delete" in query:
            return "DeleteObjects"
        return "CompleteMultipartUpload" if "uploadId" in query else "CreateMultipartUpload"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    return method


def _caller() -> str | None:
    """Whose call this is: the first frame outside the AWS libraries decides.
    (A call s3transfer makes on its own threads has no such frame: uploads run
    in the data plane's subprocesses, which the S3 bridge reports.)"""
    frame = sys._getframe(2)
    while frame is not None:
        top = frame.f_globals.get("__name__", "").split(".")[0]
        if top not in _LIBRARIES:
            return {"pg_schema_restore": "operator", "ddl_job": "data-plane"}.get(top)
        frame = frame.f_back
    return None


def record(who: str, action: str) -> None:
    directory = os.environ.get(_ENV)
    if not directory:
        return
    with open(Path(directory) / f"{os.getpid()}.jsonl", "a") as out:
        out.write(json.dumps({"who": who, "action": action}) + "\n")


def record_s3_request(method: str, path: str, headers: dict[str, str]) -> None:
    """A request through the S3 bridge: only the data plane's subprocesses use it."""
    record("data-plane", iam_action("s3", s3_operation(method, path, headers)))


_original = botocore.client.BaseClient._make_api_call


def _recording(self: Any, operation_name: str, api_params: Any) -> Any:
    who = _caller()
    if who is not None:
        record(who, iam_action(self.meta.service_model.signing_name, operation_name))
    return _original(self, operation_name, api_params)


def allowed_actions(policy: dict[str, Any]) -> list[str]:
    actions: list[str] = []
    for statement in policy["Statement"]:
        if statement.get("Effect") == "Allow":
            listed = statement.get("Action", [])
            actions += [listed] if isinstance(listed, str) else listed
    return actions


def is_allowed(action: str, allowed: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(action.lower(), pattern.lower()) for pattern in allowed)


def with_implied(used: set[str]) -> set[str]:
    """The actions called, and those AWS authorizes inside them (IMPLIED)."""
    return used | {action for action, by in IMPLIED.items()
                   if any(fnmatch.fnmatchcase(u, pattern) for u in used for pattern in by)}


def findings(calls: dict[str, set[str]], whole_suite: bool) -> list[str]:
    """What the policies get wrong, one line each (empty: proven)."""
    problems = []
    for who, path in POLICIES.items():
        allowed = allowed_actions(json.loads(path.read_text()))
        used = with_implied(calls.get(who, set()))
        problems += [f"{path.name}: {who} calls {action}, which no statement allows"
                     for action in sorted(used) if not is_allowed(action, allowed)]
        if whole_suite:
            problems += [f"{path.name}: allows {pattern}, which nothing called"
                         for pattern in allowed
                         if not any(fnmatch.fnmatchcase(a.lower(), pattern.lower())
                                    for a in used)]
    return problems


# -- pytest hooks -------------------------------------------------------------
def pytest_configure(config: pytest.Config) -> None:
    if not os.environ.get(_ENV):   # the controller (or a run without xdist)
        os.environ[_ENV] = tempfile.mkdtemp(prefix="pgsr-iam-calls-")
    botocore.client.BaseClient._make_api_call = _recording


def _whole_suite(config: pytest.Config) -> bool:
    option = config.option
    return not option.keyword and not option.markexpr and not config.args[1:] and \
        all(Path(a).resolve() == REPO / "tests" for a in config.args)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput"):
        return   # a worker: the controller checks once all have written
    calls: dict[str, set[str]] = {}
    for path in Path(os.environ[_ENV]).glob("*.jsonl"):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            calls.setdefault(entry["who"], set()).add(entry["action"])
    if not calls:
        return   # no AWS test ran (the fast tier)
    problems = findings(calls, _whole_suite(session.config))
    session.config.stash[_FINDINGS] = problems
    if problems and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_FINDINGS = pytest.StashKey[list[str]]()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    problems = config.stash.get(_FINDINGS, None)
    if problems is None:
        return
    terminalreporter.section("IAM proof (tests/support/iam_proof.py)")
    if problems:
        for line in problems:
            terminalreporter.write_line(f"FAILED {line}")
    else:
        terminalreporter.write_line("every AWS call the product made is allowed by docs/"
                                    "iam-policy*.json" + (" and every allowed action was "
                                                          "called" if _whole_suite(config)
                                                          else ""))
