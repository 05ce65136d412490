"""An AWS world for tests: moto 5.2.5 in-process + real local PostgreSQL.

Test code, not product code. The engine under test talks to "AWS" through an
ordinary boto3 Session; this module makes that Session's AWS behave enough
like the real one for the whole pipeline to run on real data.

Fixtures (all function-scoped unless noted; registered for every test by
tests/conftest.py):

- `s3_bridge` (session): a loopback HTTP endpoint forwarding S3 requests into
  the in-process moto. The data-plane steps run as `python -m ddl_job`
  subprocesses that write DDL artifacts to S3; they reach moto through
  `AWS_ENDPOINT_URL_S3` (moto[server] needs flask, which is not installed).
- `aws_env`: fake credentials, region eu-west-1, no real AWS config, and the
  S3 endpoint for subprocesses (in-process S3 clients use it too: same moto).
- `mocked_aws`: `moto.mock_aws()` active for the test.
- `aws_sim` -> `AwsSimulator`: hooks for boto3 Sessions (`aws_sim.attach(s)`,
  `aws_sim.session()`), API call counters, fault injection (`Crash`,
  throttling), and the RDS double described below.
- `aws_world` -> `AwsWorld`: a "production" in moto and in PostgreSQL:
  VPC + isolated DB subnet group + security groups (production's, and one for
  temporary databases) + parameter groups; RDS instance `prod-db` (postgres),
  Aurora Serverless v2 cluster `prod-aurora` (+ `db.serverless` writer),
  instance `other-db` (a foreign source); a production database (`new_db(prod)`) owned by its
  own master user (`role`: LOGIN, CREATEDB, CREATEROLE, in `rds_superuser`,
  no superuser: RDS's shape), with tenant schemas `customer_a1`,
  `customer_b2` owned by an application role (`owner`, which `role` created
  and is a member of) and a `shared` schema of `role`'s; the production secret (Secrets Manager) holding the REAL
  connection to it; S3 bucket `pgsr-artifacts`; DynamoDB table `pgsr-audit`.
  Helpers: `spec()`, `context()`, `run()`, `snapshot()`, `damage()`,
  `fingerprint()`, `leftovers()`, `rotate_password()`.

The RDS double (`AwsSimulator`), through botocore events on the Session:
- `after-call` of RestoreDBInstanceToPointInTime / RestoreDBClusterToPointInTime
  makes a genuine local PITR copy of the production cluster at the requested
  instant (snapshot restores: at the snapshot's instant) and points moto's
  record of the new instance / cluster (Endpoint address and port) at it;
  the new resource then reports `creating` for `creating_describes`
  describes and ends `available` (or `restore_outcome`, e.g.
  `incompatible-restore`).
- `after-call` of ModifyDBInstance / ModifyDBCluster with MasterUserPassword
  really runs ALTER ROLE on the copy (status `resetting-master-credentials`
  for a describe); DeleteDBInstance / DeleteDBCluster destroy the copy.
- `after-call` of DescribeDBInstanceAutomatedBackups adds the RestoreWindow
  moto lacks ([production base backup, now]).
- `before-call` short-circuits are available to serve what moto lacks
  (`aws_sim.serve(op, fn)`).
- AWS's stricter RDS rules (`aws_sim.strict`, tests/support/aws_strict.py):
  no writer before its cluster is available, automated and shared snapshot
  lookups, and a record of each copy's network and parameter groups.

Faults: `aws_sim.crash_before(op)`, `crash_after(op)` raise `Crash` (a
BaseException: the runner does not catch it, like a killed process);
`throttle(op, times)` answers ThrottlingException at the HTTP layer
(`before-send`), so botocore's retry mode really retries (its sleeps are
recorded, not slept). Engine phases: `SavedRecord(crash_after=[phases])` as
the context's `save`.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import re
import secrets
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import boto3
import botocore.endpoint
import botocore.loaders
import botocore.session
import psycopg
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.compat import HTTPHeaders
from psycopg import sql

from ddl_job.requests import StepRequest
from pg_schema_restore.engine import runner
from pg_schema_restore.engine.record import RestoreRecord, restore_id_for
from pg_schema_restore.engine.spec import RestoreSpec
from pg_schema_restore.local.cluster import RDS_SUPERUSER, SUPERUSER, LocalCluster, pitr_copy
from support import iam_proof
from support.aws_strict import StrictAws
from support.pg import as_superuser, restore_point

REGION = "eu-west-1"
ACCOUNT = "123456789012"          # moto's default account
BUCKET = "pgsr-artifacts"
AUDIT_TABLE = "pgsr-audit"
TAG = "pg-schema-restore/restore-id"
TENANTS = ("customer_a1", "customer_b2")
ENGINE_VERSION = "15.18"
_counter = itertools.count()


class Crash(BaseException):
    """A simulated process death: not an Exception, so nothing catches it."""


# -- S3 bridge (session) ------------------------------------------------------
class _BridgeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:   # quiet
        pass

    def _forward(self) -> None:
        from moto.core.models import botocore_stubber

        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = HTTPHeaders()
        for key, value in self.headers.items():
            if key.lower() != "host":
                headers[key] = value
        host = f"s3.{REGION}.amazonaws.com"    # path-style request, as AWS would see it
        headers["Host"] = host
        self.server.requests.append(f"{self.command} {self.path}")  # type: ignore[attr-defined]
        iam_proof.record_s3_request(self.command, self.path, dict(self.headers.items()))
        request = AWSPreparedRequest(method=self.command, url=f"https://{host}{self.path}",
                                     headers=headers, body=body, stream_output=False)
        result = botocore_stubber.process_request(request)
        status, out_headers, out_body = result if result else (404, {}, b"not mocked")
        if isinstance(out_body, str):
            out_body = out_body.encode()
        out_body = out_body or b""
        self.send_response(status)
        for key, value in (out_headers or {}).items():
            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(key, str(value))
        self.send_header("Content-Length", str(len(out_body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out_body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward


@pytest.fixture(scope="session")
def s3_bridge():
    """`http://127.0.0.1:PORT`: S3 requests from any process into in-process moto."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BridgeHandler)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield server
    server.shutdown()


@pytest.fixture
def aws_env(monkeypatch, s3_bridge, tmp_path):
    monkeypatch.setattr(botocore.session, "create_loader", _shared_loader)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL",
                 "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # moto builds EC2's default AMIs for every mock_aws() (about 1 s each
    # time, twice per test: at the first EC2 call and at reset); no test uses them.
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_bridge.url)


@pytest.fixture
def mocked_aws(aws_env):
    from moto import mock_aws

    with mock_aws():
        yield


# -- the simulator ------------------------------------------------------------
def rds_backend():
    from moto.rds.models import rds_backends
    return rds_backends[ACCOUNT][REGION]


def secrets_backend():
    from moto.secretsmanager.models import secretsmanager_backends
    return secretsmanager_backends[ACCOUNT][REGION]


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **kwargs: Any):
        yield self.data


def _throttle_response(service: str, url: str) -> AWSResponse:
    if service in ("rds", "s3", "ec2"):
        body = (b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
                b"<Message>Rate exceeded</Message></Error><RequestId>sim</RequestId>"
                b"</ErrorResponse>")
        return AWSResponse(url, 400, {}, _Body(body))
    body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
    return AWSResponse(url, 400, {"x-amzn-ErrorType": "ThrottlingException"}, _Body(body))


@dataclass
class Fault:
    when: str                 # "before" | "after" | "throttle" | "error"
    op: str                   # "rds.RestoreDBInstanceToPointInTime" (service id . operation)
    times: int = 1
    skip: int = 0             # let this many matching calls pass first
    seen: int = 0
    fired: int = 0
    match: Callable[[dict[str, Any]], bool] | None = None   # on the call's parameters
    code: str = "AccessDeniedException"

    def hit(self, params: dict[str, Any] | None = None) -> bool:
        if self.match is not None and not self.match(params or {}):
            return False
        self.seen += 1
        if self.seen > self.skip and self.fired < self.times:
            self.fired += 1
            return True
        return False


_TEMPORARY_SECRET = re.compile(r"(^|:secret:)pgsr-[0-9a-z]+-secret(-[0-9A-Za-z]{6})?$")


def _current_step() -> str | None:
    """The data-plane step this thread is resolving connections for: the
    `request` of the executor's `run` frame up the stack (None outside one)."""
    frame = sys._getframe(1)
    while frame is not None:
        request = frame.f_locals.get("request")
        if isinstance(request, StepRequest):
            return request.step
        frame = frame.f_back
    return None


def temporary_secret_read(step: str) -> Callable[[dict[str, Any]], bool]:
    """A `match` for GetSecretValue: a read of a restore's temporary secret (by
    name or by ARN, as the record keeps it) made for data-plane step `step`.

    Faults aimed at "the copy step's read" say so, instead of counting the
    reads of the steps before it (rights, membership, extract, ... change)."""
    def match(params: dict[str, Any]) -> bool:
        return (bool(_TEMPORARY_SECRET.search(str(params.get("SecretId", ""))))
                and _current_step() == step)
    return match


@functools.lru_cache(maxsize=None)
def _shared_loader(search_path_string: str | None = None) -> botocore.loaders.Loader:
    """One botocore JSON loader per process, whatever Session asks.

    A loader caches the service models it parsed, but every new Session
    makes its own, and moto resets boto3's default Session at each
    mock_aws(): parsing the models again cost ~0.17 s of CPU per client,
    about 2 s per AWS test. The models are read-only, so sharing is safe.
    """
    return botocore.loaders.create_loader(search_path_string)


def _op(event_name: str) -> str:
    parts = event_name.split(".")
    return f"{parts[1]}.{parts[2]}" if len(parts) >= 3 else event_name


class AwsSimulator:
    """See the module docstring. Counters key operations as `service.Operation`
    with botocore's service ids (`rds`, `secrets-manager`, `s3`, `dynamodb`)."""

    def __init__(self, prod: LocalCluster, base_backup: Path, wal_dir: Path,
                 workdir: Path) -> None:
        self.prod = prod
        self.base_backup = base_backup
        self.wal_dir = wal_dir
        self.workdir = workdir
        self.copies: dict[str, LocalCluster] = {}    # "instance:id" / "cluster:id" -> copy
        self.destroyed: list[str] = []
        self.calls: Counter[str] = Counter()        # API calls made (before-call)
        self.attempts: Counter[str] = Counter()     # HTTP attempts (retries included)
        self.succeeded: Counter[str] = Counter()    # calls answered 2xx
        self.log: list[str] = []
        self.params: dict[str, list[dict[str, Any]]] = {}   # parameters of 2xx calls
        self.faults: list[Fault] = []
        self.retry_sleeps: list[float] = []
        self.restore_outcome = "available"
        self.creating_describes = 2
        self.resetting_describes = 1
        self.windows: dict[str, datetime] = {}      # instance id -> EarliestTime
        self.snapshot_points: dict[str, datetime] = {}
        self._lifecycle: dict[str, list[str]] = {}  # "instance:id" -> statuses to serve
        self._served: dict[str, Callable[..., Any]] = {}
        self._lock = threading.RLock()
        self.strict = StrictAws()   # AWS's refusals that moto lacks (support/aws_strict.py)

    # -- sessions ---------------------------------------------------------
    def attach(self, session: boto3.Session) -> boto3.Session:
        """Register the hooks on a Session (before any client is made)."""
        events = session.events
        events.register("before-parameter-build", self._stash)
        events.register("before-call", self._before_call)
        events.register_first("before-send", self._before_send)
        events.register("after-call", self._after_call)
        self.strict.attach(events)
        return session

    def session(self) -> boto3.Session:
        """A new hooked Session, as the engine makes one per context."""
        return self.attach(boto3.Session(region_name=REGION))

    # -- faults -----------------------------------------------------------
    def crash_before(self, op: str, *, skip: int = 0) -> Fault:
        fault = Fault("before", op, skip=skip)
        self.faults.append(fault)
        return fault

    def crash_after(self, op: str, *, skip: int = 0) -> Fault:
        fault = Fault("after", op, skip=skip)
        self.faults.append(fault)
        return fault

    def throttle(self, op: str, *, times: int = 3, skip: int = 0) -> Fault:
        fault = Fault("throttle", op, times=times, skip=skip)
        self.faults.append(fault)
        return fault

    def fail(self, op: str, *, code: str = "AccessDeniedException", times: int = 1,
             skip: int = 0, match: Callable[[dict[str, Any]], bool] | None = None) -> Fault:
        """Answer `op` with a non-retryable error (an ordinary failure, not a crash)."""
        fault = Fault("error", op, times=times, skip=skip, match=match, code=code)
        self.faults.append(fault)
        return fault

    def serve(self, op: str, handler: Callable[..., dict[str, Any]]) -> None:
        """Answer `op` in-process with handler(params) -> parsed response."""
        self._served[op] = handler

    def _fire(self, when: str, op: str) -> bool:
        for fault in self.faults:
            if fault.when == when and fault.op == op and fault.hit():
                return True
        return False

    # -- handlers ---------------------------------------------------------
    def _stash(self, params: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        context["sim_params"] = dict(params)

    def _before_call(self, event_name: str, context: dict[str, Any], **kwargs: Any):
        op = _op(event_name)
        with self._lock:
            self.calls[op] += 1
            self.log.append(op)
            if op in ("rds.DescribeDBInstances", "rds.DescribeDBClusters"):
                self._tick()
        if self._fire("before", op):
            raise Crash(f"crash before {op}")
        params = context.get("sim_params", {})
        for fault in self.faults:
            if fault.when == "error" and fault.op == op and fault.hit(params):
                error = {"Error": {"Code": fault.code, "Message": f"simulated {fault.code}"},
                         "ResponseMetadata": {"HTTPStatusCode": 400}}
                return AWSResponse("https://sim", 400, {}, _Body(b"")), error
        if op in self._served:
            parsed = self._served[op](context.get("sim_params", {}))
            parsed.setdefault("ResponseMetadata", {"HTTPStatusCode": 200})
            return AWSResponse("https://sim", 200, {}, _Body(b"")), parsed
        return None

    def _before_send(self, event_name: str, request: Any, **kwargs: Any):
        # botocore runs EVERY before-send handler and keeps the first response,
        # so moto's stubber would still execute a request we answer: a throttled
        # request is pointed at a URL moto ignores. A retry re-sends the same
        # request object: its URL is put back first.
        original = request.__dict__.pop("_sim_url", None)
        if original is not None:
            request.url = original
        op = _op(event_name)
        with self._lock:
            self.attempts[op] += 1
        if self._fire("throttle", op):
            request.__dict__["_sim_url"] = request.url
            request.url = "https://throttled.invalid/"
            return _throttle_response(op.split(".")[0], original or request.__dict__["_sim_url"])
        return None

    def _after_call(self, event_name: str, http_response: Any, parsed: dict[str, Any],
                    context: dict[str, Any], **kwargs: Any) -> None:
        op = _op(event_name)
        if http_response is not None and http_response.status_code < 300:
            with self._lock:
                self.succeeded[op] += 1
                self.params.setdefault(op, []).append(context.get("sim_params", {}))
                simulate = getattr(self, "_sim_" + op.replace(".", "_").replace("-", "_"), None)
                if simulate is not None:
                    simulate(context.get("sim_params", {}), parsed)
        if self._fire("after", op):
            raise Crash(f"crash after {op}")

    # -- RDS lifecycle ----------------------------------------------------
    def _tick(self) -> None:
        backend = rds_backend()
        for key, states in list(self._lifecycle.items()):
            kind, identifier = key.split(":", 1)
            target = (backend.databases if kind == "instance" else backend.clusters).get(
                identifier)
            if target is None:
                del self._lifecycle[key]
                continue
            state = states.pop(0) if len(states) > 1 else states[0]
            target.status = state
            if len(states) == 1 and states[0] == state and state == "available":
                del self._lifecycle[key]

    def _point_of_snapshot(self, snapshot_id: str) -> datetime:
        if snapshot_id in self.snapshot_points:
            return self.snapshot_points[snapshot_id]
        backend = rds_backend()
        snap = backend.database_snapshots.get(snapshot_id) or backend.cluster_snapshots.get(
            snapshot_id)
        assert snap is not None, f"simulator: unknown snapshot {snapshot_id}"
        return datetime.fromisoformat(str(snap.created_at).replace("Z", "+00:00"))

    def _make_copy(self, key: str, point: datetime) -> LocalCluster:
        self.prod.archive_current_wal(self.wal_dir)
        copy = pitr_copy(self.base_backup, self.wal_dir,
                         self.workdir / f"rds_{key.replace(':', '_')}_{next(_counter)}",
                         point, self.prod.password)
        self.copies[key] = copy
        return copy

    def _point_at(self, key: str, kind: str, identifier: str, copy: LocalCluster,
                  final: str | None = None) -> None:
        backend = rds_backend()
        target = (backend.databases if kind == "instance" else backend.clusters)[identifier]
        target.__dict__["_sim_address"] = "127.0.0.1"
        try:
            target.port = copy.port
        except NotImplementedError:   # clustered instances take the cluster's port
            pass
        outcome = final or self.restore_outcome
        self._lifecycle[f"{kind}:{identifier}"] = ["creating"] * self.creating_describes + [
            outcome]
        target.status = "creating"

    def _restored(self, kind: str, identifier: str, point: datetime) -> None:
        key = f"{kind}:{identifier}"
        copy = self._make_copy(key, point)
        self._point_at(key, kind, identifier, copy)

    def _sim_rds_RestoreDBInstanceToPointInTime(self, params, parsed) -> None:
        self._restored("instance", params["TargetDBInstanceIdentifier"], params["RestoreTime"])

    def _sim_rds_RestoreDBInstanceFromDBSnapshot(self, params, parsed) -> None:
        self._restored("instance", params["DBInstanceIdentifier"],
                       self._point_of_snapshot(params["DBSnapshotIdentifier"]))

    def _sim_rds_RestoreDBClusterToPointInTime(self, params, parsed) -> None:
        self._restored("cluster", params["DBClusterIdentifier"], params["RestoreToTime"])

    def _sim_rds_RestoreDBClusterFromSnapshot(self, params, parsed) -> None:
        self._restored("cluster", params["DBClusterIdentifier"],
                       self._point_of_snapshot(params["SnapshotIdentifier"]))

    def _sim_rds_CreateDBInstance(self, params, parsed) -> None:
        cluster = params.get("DBClusterIdentifier")
        copy = self.copies.get(f"cluster:{cluster}")
        if copy is not None:     # a writer of a restored cluster: same database
            self._point_at(f"cluster:{cluster}", "instance", params["DBInstanceIdentifier"],
                           copy, final="available")

    def _reset_password(self, key: str, master: str, password: str) -> None:
        copy = self.copies.get(key)
        if copy is None:
            return
        with copy.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(master), sql.Literal(password)))
        if master == "postgres":
            copy.password = password

    def _sim_rds_ModifyDBInstance(self, params, parsed) -> None:
        if "MasterUserPassword" not in params:
            return
        identifier = params["DBInstanceIdentifier"]
        instance = rds_backend().databases[identifier]
        self._reset_password(f"instance:{identifier}", instance.master_username,
                             params["MasterUserPassword"])
        self._lifecycle[f"instance:{identifier}"] = ["resetting-master-credentials"] * \
            self.resetting_describes + ["available"]

    def _sim_rds_ModifyDBCluster(self, params, parsed) -> None:
        if "MasterUserPassword" not in params:
            return
        identifier = params["DBClusterIdentifier"]
        cluster = rds_backend().clusters[identifier]
        self._reset_password(f"cluster:{identifier}", cluster.master_username,
                             params["MasterUserPassword"])
        self._lifecycle[f"cluster:{identifier}"] = ["resetting-master-credentials"] * \
            self.resetting_describes + ["available"]

    def _destroy(self, key: str) -> None:
        copy = self.copies.pop(key, None)
        if copy is not None:
            copy.destroy()
            self.destroyed.append(key)

    def _sim_rds_DeleteDBInstance(self, params, parsed) -> None:
        self._destroy(f"instance:{params['DBInstanceIdentifier']}")

    def _sim_rds_DeleteDBCluster(self, params, parsed) -> None:
        self._destroy(f"cluster:{params['DBClusterIdentifier']}")

    def _sim_rds_DescribeDBInstanceAutomatedBackups(self, params, parsed) -> None:
        for backup in parsed.get("DBInstanceAutomatedBackups", []):
            earliest = self.windows.get(backup.get("DBInstanceIdentifier", ""))
            if earliest is not None and backup.get("Status") == "active":
                backup["RestoreWindow"] = {"EarliestTime": earliest,
                                           "LatestTime": datetime.now(timezone.utc)}

    def close(self) -> None:
        for key in list(self.copies):
            self._destroy(key)


class _FastTime:
    """Stands in for the `time` module inside botocore.endpoint: retry
    backoffs are recorded, not slept."""

    def __init__(self, sleeps: list[float]) -> None:
        self._sleeps = sleeps

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        self._sleeps.append(seconds)


@pytest.fixture
def aws_sim(mocked_aws, prod, prod_base_backup, wal_archive, pg_base, monkeypatch):
    from moto.rds.models import DBCluster, DBInstance

    address = DBInstance.address
    endpoint = DBCluster.endpoint
    monkeypatch.setattr(DBInstance, "address", property(
        lambda self: self.__dict__.get("_sim_address") or address.fget(self)))
    monkeypatch.setattr(DBCluster, "endpoint", property(
        lambda self: self.__dict__.get("_sim_address") or endpoint.fget(self)))
    sim = AwsSimulator(prod, prod_base_backup, wal_archive, pg_base)
    monkeypatch.setattr(botocore.endpoint, "time", _FastTime(sim.retry_sleeps))
    yield sim
    sim.close()


# -- engine plumbing ----------------------------------------------------------
class FakeClock:
    """Poller clock: `sleep` advances time instantly."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def fast_poller(clock: FakeClock | None = None):
    from pg_schema_restore.aws.session import Poller

    clock = clock or FakeClock()
    return Poller(sleep=clock.sleep, clock=clock.clock, initial=5.0, max_delay=60.0)


class SavedRecord:
    """The context's `save`: keeps the last saved record as JSON, as a state
    file would, and can crash the "process" once per listed phase, right
    after the save that records the phase as completed (`crash_after`), or
    right before it (`crash_before_saved`: the phase's work is done but not
    recorded, so the resumed run does it again)."""

    def __init__(self, *, crash_after: tuple[str, ...] | list[str] = (),
                 crash_before_saved: tuple[str, ...] | list[str] = ()) -> None:
        self.text: str | None = None
        self.saves = 0
        self.crash_after = set(crash_after)
        self.crash_before_saved = set(crash_before_saved)
        self.crashes: list[str] = []

    def __call__(self, record: RestoreRecord) -> None:
        done = record.completed[-1] if record.completed else None
        if done in self.crash_before_saved:
            self.crash_before_saved.discard(done)
            self.crashes.append(f"before saving {done}")
            raise Crash(f"crash before saving the end of {done}")
        self.text = record.to_json()
        self.saves += 1
        if done in self.crash_after:
            self.crash_after.discard(done)
            self.crashes.append(f"after {done}")
            raise Crash(f"crash after {done}")

    def load(self) -> RestoreRecord:
        assert self.text is not None, "nothing was saved"
        return RestoreRecord.from_dict(json.loads(self.text))


# -- production, in PostgreSQL --------------------------------------------------
TENANT_DDL = """
CREATE SCHEMA {s};
CREATE TABLE {s}.customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    country text NOT NULL REFERENCES shared.countries(code));
CREATE TABLE {s}.orders (
    id bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES {s}.customers(id),
    amount numeric(12,2) NOT NULL CHECK (amount >= 0),
    note text);
CREATE INDEX ON {s}.orders (customer_id);
CREATE TABLE {s}.audit (id bigserial PRIMARY KEY, event text NOT NULL);
CREATE FUNCTION {s}.log_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO {s}.audit(event) VALUES ('order ' || NEW.id);
  RETURN NEW;
END $$;
CREATE TRIGGER orders_audit AFTER INSERT ON {s}.orders
    FOR EACH ROW EXECUTE FUNCTION {s}.log_order();
CREATE VIEW {s}.customer_totals AS
    SELECT c.id, c.name, sum(o.amount) AS total
    FROM {s}.customers c LEFT JOIN {s}.orders o ON o.customer_id = c.id GROUP BY c.id;
"""


def _fill_tenant(conn: psycopg.Connection, schema: str, customers: int, orders: int) -> None:
    s = sql.Identifier(schema)
    conn.execute(sql.SQL(TENANT_DDL).format(s=s))
    conn.execute(sql.SQL("INSERT INTO {}.customers(name, country) SELECT 'c' || g, "
                         "(ARRAY['FR','DE','ES'])[1 + g %% 3] FROM generate_series(1, %s) g"
                         ).format(s), (customers,))
    conn.execute(sql.SQL("INSERT INTO {}.orders(customer_id, amount, note) SELECT "
                         "1 + g %% %s, (g %% 1000) / 10.0, 'order ' || g "
                         "FROM generate_series(1, %s) g").format(s), (customers, orders))


_FINGERPRINT_SQL = """
SELECT 'rel ' || c.relname || ' ' || c.relkind::text || ' ' || c.relowner::regrole::text
  FROM pg_class c WHERE c.relnamespace = %(ns)s::oid
UNION ALL SELECT 'con ' || conname || ' ' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = %(ns)s::oid
UNION ALL SELECT 'idx ' || pg_get_indexdef(indexrelid)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relnamespace = %(ns)s::oid
UNION ALL SELECT 'fn ' || pg_get_functiondef(p.oid)
  FROM pg_proc p WHERE p.pronamespace = %(ns)s::oid AND p.prokind IN ('f', 'p')
UNION ALL SELECT 'trg ' || pg_get_triggerdef(t.oid)
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
  WHERE c.relnamespace = %(ns)s::oid AND NOT t.tgisinternal
UNION ALL SELECT 'view ' || c.relname || ' ' || pg_get_viewdef(c.oid)
  FROM pg_class c WHERE c.relnamespace = %(ns)s::oid AND c.relkind IN ('v', 'm')
UNION ALL SELECT 'comment ' || coalesce(obj_description(%(ns)s::oid, 'pg_namespace'), '')
"""


def fingerprint(cluster: LocalCluster, database: str) -> dict[str, str]:
    """schema -> sha256 of its catalog definitions, data and sequence states."""
    out: dict[str, str] = {}
    with cluster.connect(database) as conn:
        spaces = conn.execute(
            "SELECT oid, nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%%' "
            "AND nspname <> 'information_schema' ORDER BY nspname").fetchall()
        for oid, name in spaces:
            lines = sorted(r[0] for r in conn.execute(_FINGERPRINT_SQL, {"ns": oid}))
            tables = conn.execute("SELECT relname FROM pg_class WHERE relnamespace = %s "
                                  "AND relkind IN ('r', 'p') ORDER BY relname",
                                  (oid,)).fetchall()
            for (table,) in tables:
                digest = conn.execute(sql.SQL(
                    "SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' "
                    "ORDER BY t::text), '')) FROM {} t").format(
                    sql.Identifier(name, table))).fetchone()
                lines.append(f"data {table} {digest}")
            sequences = conn.execute("SELECT relname FROM pg_class WHERE relnamespace = %s "
                                     "AND relkind = 'S' ORDER BY relname", (oid,)).fetchall()
            for (seq,) in sequences:
                state = conn.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(
                    sql.Identifier(name, seq))).fetchone()
                lines.append(f"seq {seq} {state}")
            out[name] = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    return out


def table_counts(cluster: LocalCluster, database: str, schema: str) -> dict[str, int]:
    with cluster.connect(database) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (schema,))]
        return {t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            sql.Identifier(schema, t))).fetchone()[0] for t in tables}


# -- the world ----------------------------------------------------------------------
@dataclass
class AwsWorld:
    sim: AwsSimulator
    prod: LocalCluster
    database: str
    role: str            # the master user the secret holds (no superuser)
    owner: str           # the application role owning the tenants
    role_password: str
    secret_arn: str
    subnet_group: str
    security_group: str
    earliest: datetime
    outcomes: list[RestoreRecord] = field(default_factory=list)
    contexts: list[Any] = field(default_factory=list)

    # -- inputs ---------------------------------------------------------
    def spec(self, **overrides: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "database": self.database,
            "schemas": list(TENANTS),
            "source": {"dbIdentifier": "prod-db", "secretArn": self.secret_arn,
                       "region": REGION},
            "temporaryDatabase": {"instanceClass": "db.t4g.medium",
                                  "subnetGroup": self.subnet_group,
                                  "securityGroupIds": [self.security_group]},
        }
        source = overrides.pop("source", None)
        if source:
            base["source"] = {**base["source"], **source}
        base.update(overrides)
        return base

    def record(self, spec: dict[str, Any], restore_id: str | None = None) -> RestoreRecord:
        """A new restore of `spec` (API form), parsed as every entry point parses it."""
        restore_id = restore_id or restore_id_for(secrets.token_hex(8))
        return RestoreRecord(restore_id=restore_id, spec=RestoreSpec.from_dict(spec))

    def context(self, record: RestoreRecord, *,
                save: Callable[[RestoreRecord], None] | None = None,
                events: list[dict[str, Any]] | None = None, clock: FakeClock | None = None,
                session: boto3.Session | None = None, **kwargs: Any):
        """The composition root's context on a fresh hooked Session, a fast
        poller, S3 artifacts and the audit table."""
        from pg_schema_restore import wiring
        from pg_schema_restore.config import OperatorConfig

        sink = events if events is not None else []
        settings = OperatorConfig(provider="aws", executor="subprocess",
                                  artifacts_root=f"s3://{BUCKET}/restores",
                                  audit_table=AUDIT_TABLE)
        ctx = wiring.build_context(settings, record, save=save or (lambda record: None),
                                   on_event=sink.append, session=session or self.sim.session(),
                                   poller=fast_poller(clock), **kwargs)
        self.contexts.append(ctx)
        return ctx

    def run(self, spec: dict[str, Any], *, restore_id: str | None = None,
            **kwargs: Any) -> RestoreRecord:
        record = self.record(spec, restore_id)
        result = runner.run(record, self.context(record, **kwargs))
        self.outcomes.append(result)
        return result

    # -- production over time --------------------------------------------------
    def snapshot(self, snapshot_id: str, source: str = "prod-db") -> datetime:
        """A manual snapshot of `source`, taken now (data as of now)."""
        point = restore_point()
        rds = boto3.client("rds", region_name=REGION)
        if source in rds_backend().clusters:
            rds.create_db_cluster_snapshot(DBClusterIdentifier=source,
                                           DBClusterSnapshotIdentifier=snapshot_id)
        else:
            rds.create_db_snapshot(DBInstanceIdentifier=source, DBSnapshotIdentifier=snapshot_id)
        self.sim.snapshot_points[snapshot_id] = point
        return point

    def damage(self) -> None:
        """What the restore is for: tenant data lost/changed after the point."""
        with self.prod.connect(self.database) as conn:
            conn.execute("DELETE FROM customer_a1.orders WHERE id % 2 = 0")
            conn.execute("INSERT INTO customer_b2.orders(customer_id, amount, note) "
                         "VALUES (1, 1, 'after the restore point')")

    def rotate_password(self) -> str:
        """Rotate the production role's password, in PostgreSQL and in the secret."""
        new = "pw-" + secrets.token_hex(12)
        self.prod.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
            sql.Identifier(self.role), sql.Literal(new)).as_string(None), user=SUPERUSER)
        sm = boto3.client("secretsmanager", region_name=REGION)
        value = json.loads(sm.get_secret_value(SecretId=self.secret_arn)["SecretString"])
        value["password"] = new
        sm.put_secret_value(SecretId=self.secret_arn, SecretString=json.dumps(value))
        self.role_password = new
        return new

    def fingerprint(self) -> dict[str, str]:
        return fingerprint(self.prod, self.database)

    def counts(self, schema: str) -> dict[str, int]:
        return table_counts(self.prod, self.database, schema)

    def schemas(self) -> set[str]:
        with self.prod.connect(self.database) as conn:
            return {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")}

    # -- what must be gone ----------------------------------------------------------
    def leftovers(self, restore_id: str) -> list[str]:
        """Every AWS resource, local copy or S3 object carrying the restore id."""
        found: list[str] = []
        rds = rds_backend()

        def tagged(obj: Any) -> bool:
            return any(t.get("Key") == TAG and t.get("Value") == restore_id
                       for t in (getattr(obj, "tags", None) or []))

        for identifier, db in rds.databases.items():
            if restore_id in identifier or tagged(db):
                found.append(f"instance {identifier} ({db.status})")
        for identifier, cluster in rds.clusters.items():
            if restore_id in identifier or tagged(cluster):
                found.append(f"cluster {identifier} ({cluster.status})")
        for identifier, snap in rds.database_snapshots.items():
            if snap.snapshot_type != "automated" and (restore_id in identifier or tagged(snap)):
                found.append(f"snapshot {identifier}")
        for identifier, snap in rds.cluster_snapshots.items():
            # moto keeps automated cluster snapshots after DeleteDBCluster; AWS deletes them.
            if snap.snapshot_type != "automated" and (restore_id in identifier or tagged(snap)):
                found.append(f"cluster snapshot {identifier}")
        sm = boto3.client("secretsmanager", region_name=REGION)
        for page in sm.get_paginator("list_secrets").paginate(IncludePlannedDeletion=True):
            for entry in page["SecretList"]:
                tags = entry.get("Tags") or []
                if restore_id in entry["Name"] or any(
                        t.get("Key") == TAG and t.get("Value") == restore_id for t in tags):
                    found.append(f"secret {entry['Name']}")
        s3 = boto3.client("s3", region_name=REGION)
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for obj in page.get("Contents", []):
                if restore_id in obj["Key"]:
                    found.append(f"s3 {obj['Key']}")
        for key in self.sim.copies:
            if restore_id in key:
                found.append(f"local copy {key}")
        return found


def _moto_world(sim: AwsSimulator, earliest: datetime, master: str) -> dict[str, str]:
    ec2 = boto3.client("ec2", region_name=REGION)
    rds = boto3.client("rds", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24",
                                 AvailabilityZone=f"{REGION}{az}")["Subnet"]["SubnetId"]
               for i, az in ((1, "a"), (2, "b"))]
    group = ec2.create_security_group(GroupName="pgsr-temporary-db",
                                      Description="pg-schema-restore temporary DBs",
                                      VpcId=vpc)["GroupId"]
    rds.create_db_subnet_group(DBSubnetGroupName="pgsr-isolated",
                               DBSubnetGroupDescription="isolated subnets, no route out",
                               SubnetIds=subnets)
    # Production's own settings, which a copy inherits unless the spec says otherwise.
    production_group = ec2.create_security_group(GroupName="prod-db",
                                                 Description="production databases",
                                                 VpcId=vpc)["GroupId"]
    rds.create_db_parameter_group(DBParameterGroupName="prod-pg15",
                                  DBParameterGroupFamily="postgres15",
                                  Description="max_locks_per_transaction raised")
    rds.create_db_cluster_parameter_group(DBClusterParameterGroupName="prod-apg15",
                                          DBParameterGroupFamily="aurora-postgresql15",
                                          Description="rds.force_ssl on")
    rds.create_db_parameter_group(DBParameterGroupName="prod-apg15-writer",
                                  DBParameterGroupFamily="aurora-postgresql15",
                                  Description="writer settings")
    common = {"Engine": "postgres", "EngineVersion": ENGINE_VERSION,
              "DBInstanceClass": "db.r6g.large", "MasterUsername": master,
              "MasterUserPassword": "unused-by-tests", "AllocatedStorage": 100,
              "BackupRetentionPeriod": 7, "DBSubnetGroupName": "pgsr-isolated",
              "VpcSecurityGroupIds": [production_group], "DBParameterGroupName": "prod-pg15",
              "Tags": [{"Key": "env", "Value": "production"}]}
    rds.create_db_instance(DBInstanceIdentifier="prod-db", **common)
    rds.create_db_instance(DBInstanceIdentifier="other-db", **common)
    rds.create_db_cluster(DBClusterIdentifier="prod-aurora", Engine="aurora-postgresql",
                          EngineVersion=ENGINE_VERSION, MasterUsername=master,
                          MasterUserPassword="unused-by-tests", BackupRetentionPeriod=7,
                          DBSubnetGroupName="pgsr-isolated",
                          VpcSecurityGroupIds=[production_group],
                          DBClusterParameterGroupName="prod-apg15",
                          ServerlessV2ScalingConfiguration={"MinCapacity": 0.5,
                                                            "MaxCapacity": 16})
    rds.create_db_instance(DBInstanceIdentifier="prod-aurora-1",
                           DBClusterIdentifier="prod-aurora", Engine="aurora-postgresql",
                           DBInstanceClass="db.serverless",
                           DBParameterGroupName="prod-apg15-writer")
    sim.windows["prod-db"] = earliest
    sim.windows["other-db"] = earliest
    rds_backend().clusters["prod-aurora"].earliest_restorable_time = earliest
    boto3.client("s3", region_name=REGION).create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    boto3.client("dynamodb", region_name=REGION).create_table(
        TableName=AUDIT_TABLE, KeySchema=[{"AttributeName": "restoreId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "restoreId", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST")
    return {"subnet_group": "pgsr-isolated", "security_group": group}


@pytest.fixture
def aws_world(aws_sim, prod, prod_base_backup, new_db):
    """Production in moto + PostgreSQL (see the module docstring)."""
    # The base backup taken for this test is complete now: any later instant
    # is a consistent point-in-time target, as RDS's restore window promises.
    # The test's own setup and observations log in as the superuser; the
    # restore connects with the production secret: the per-test master user.
    with as_superuser(prod):
        earliest = datetime.now(timezone.utc)
        database = new_db(prod, "appdb")
        role, owner = f"master_{database}", f"app_{database}"
        password = "pw-" + secrets.token_hex(12)
        prod.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB CREATEROLE PASSWORD {} IN ROLE {}").format(
            sql.Identifier(role), sql.Literal(password), sql.Identifier(RDS_SUPERUSER)
        ).as_string(None), user=SUPERUSER)
        prod.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
            sql.Identifier(database), sql.Identifier(role)).as_string(None), user=SUPERUSER)
        with psycopg.connect(prod.dsn(database, user=role, password=password),
                             autocommit=True) as conn:
            # the master user makes the application role, which owns the tenants
            conn.execute(sql.SQL("CREATE ROLE {owner} NOLOGIN; GRANT {owner} TO {role}; "
                                 "GRANT CREATE ON DATABASE {db} TO {owner}").format(
                owner=sql.Identifier(owner), role=sql.Identifier(role),
                db=sql.Identifier(database)))
            conn.execute("CREATE SCHEMA shared; CREATE TABLE shared.countries(code text PRIMARY "
                         "KEY); INSERT INTO shared.countries VALUES ('FR'), ('DE'), ('ES');")
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA shared TO {owner}; "
                                 "GRANT SELECT, REFERENCES ON shared.countries TO {owner}; "
                                 "SET ROLE {owner}").format(owner=sql.Identifier(owner)))
            for i, tenant in enumerate(TENANTS):
                _fill_tenant(conn, tenant, customers=50 + 10 * i, orders=2000 + 500 * i)
        names = _moto_world(aws_sim, earliest, role)   # RDS's master user: ours
        sm = boto3.client("secretsmanager", region_name=REGION)
        secret_arn = sm.create_secret(
            Name=f"prod/{database}",
            SecretString=json.dumps({"engine": "postgres", "host": "127.0.0.1", "port": prod.port,
                                     "username": role, "password": password,
                                     "dbname": database}))["ARN"]
        world = AwsWorld(sim=aws_sim, prod=prod, database=database, role=role, owner=owner,
                         role_password=password, secret_arn=secret_arn,
                         subnet_group=names["subnet_group"],
                         security_group=names["security_group"], earliest=earliest)
        yield world
        try:
            prod.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(database)).as_string(None), user=SUPERUSER)
            for name in (owner, role):
                prod.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(
                    sql.Identifier(name)).as_string(None), user=SUPERUSER)
        except psycopg.Error:
            pass
