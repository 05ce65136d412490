"""A test double for AWS DMS on top of moto 5.2.5 (test code, not product code).

moto's DMS records tasks and endpoints but never runs anything (docs/facts.md, "AWS behaviour"):
tasks stay `creating` and, once started, `running` forever; endpoint
connection tests always succeed (and re-testing a pair crashes moto);
`describe_table_statistics` is not implemented. This double hooks the
boto3 Session's events so that the code under test talks to "DMS" through an
ordinary client:

- `CreateReplicationTask` -> the task becomes `ready` after one describe.
- `StartReplicationTask` -> the rows of the selected tables are REALLY
  copied from the source endpoint's PostgreSQL to the target endpoint's
  (connection details read from the endpoints' Secrets Manager secrets in
  moto), honouring the task's table mapping (selection rules with DMS
  wildcards) and TargetTablePrepMode DO_NOTHING (a missing target table is a
  table error). The task then reports `running` for `polls_to_finish`
  describes and ends `stopped` with `Stop Reason FULL_LOAD_ONLY_FINISHED`
  (or `failed`, per its ErrorBehavior / an injected fault), with table
  statistics recorded.
- `DescribeTableStatistics`, `TestConnection`, `DescribeConnections` are
  answered by the double (before-call short-circuit). A connection test
  really connects to the endpoint's database.
- `StopReplicationTask` -> `stopping`, then `stopped` (`Stop Reason NORMAL`)
  at the next describe. Deleting a running task, an endpoint used by a task,
  or an instance that still has tasks is refused like AWS does
  (InvalidResourceStateFault).

Faults: `fail_connection`, `fail_task`, `error_table`.
Observations: `started`, `max_running`, `calls`.

Pinned to moto 5.2.5's `moto.dms.models` internals.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import psycopg
from moto.dms.models import dms_backends
from moto.secretsmanager.models import secretsmanager_backends
from psycopg import sql

FINISHED = "Stop Reason FULL_LOAD_ONLY_FINISHED"


class _Http:
    """Enough of a botocore HTTP response for a short-circuited call."""

    def __init__(self, status_code: int) -> None:
        self.status_code = status_code
        self.headers: dict[str, str] = {}
        self.content = b""
        self.raw = None


def _ok(body: dict[str, Any]) -> tuple[_Http, dict[str, Any]]:
    body = dict(body)
    body["ResponseMetadata"] = {"HTTPStatusCode": 200, "HTTPHeaders": {}, "RetryAttempts": 0,
                                "RequestId": "dms-double"}
    return _Http(200), body


def _error(code: str, message: str) -> tuple[_Http, dict[str, Any]]:
    return _Http(400), {"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": 400, "HTTPHeaders": {},
                                             "RetryAttempts": 0}}


def _arn_parts(arn: str) -> tuple[str, str]:
    """(account, region) of a DMS ARN."""
    parts = arn.split(":")
    return parts[4], parts[3]


def dms_regex(pattern: str) -> re.Pattern[str]:
    """A DMS table-mapping pattern (% _ [set]) as a regular expression."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        elif ch == "[":
            end = pattern.index("]", i + 2) if pattern[i + 1] == "]" else pattern.index("]", i)
            body = pattern[i + 1:end]
            out.append("[" + "".join("\\" + c if c in "\\^]" else c for c in body) + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("^" + "".join(out) + "$", re.S)


def literal_schema(pattern: str) -> str:
    """The literal name behind an escaped single-name pattern (`a[_]b` -> `a_b`)."""
    return re.sub(r"\[(.)\]", r"\1", pattern)


@dataclass
class _Run:
    """One started task as the double carries it out."""

    arn: str
    schema: str
    polls_left: int
    final_status: str = "stopped"
    stop_reason: str = FINISHED
    failure: str = ""
    stats: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


@dataclass
class _Connection:
    instance_arn: str
    endpoint_arn: str
    instance_id: str
    endpoint_id: str
    final: str
    message: str
    polls_left: int = 1

    @property
    def status(self) -> str:
        return "testing" if self.polls_left > 0 else self.final

    def to_dict(self) -> dict[str, Any]:
        return {"ReplicationInstanceArn": self.instance_arn, "EndpointArn": self.endpoint_arn,
                "Status": self.status,
                "LastFailureMessage": self.message if self.status == "failed" else "",
                "EndpointIdentifier": self.endpoint_id,
                "ReplicationInstanceIdentifier": self.instance_id}


class DmsDouble:
    def __init__(self, session: Any, *, polls_to_finish: int = 2) -> None:
        self.session = session
        self.polls_to_finish = polls_to_finish
        self._lock = threading.RLock()
        self._runs: dict[str, _Run] = {}
        self._creating: dict[str, int] = {}
        self._stopping: set[str] = set()
        self._connections: dict[tuple[str, str], _Connection] = {}
        self._connection_faults: dict[str, str] = {}
        self._task_faults: dict[str, tuple[str, str, str]] = {}
        self._table_faults: dict[tuple[str, str], str] = {}
        self._handlers: list[tuple[str, Any]] = []
        # observations
        self.started: list[str] = []          # task identifiers, in start order
        self.max_running = 0
        self.calls: list[str] = []            # DMS operations seen

    # -- faults ----------------------------------------------------------------
    def fail_connection(self, endpoint_type: str, message: str) -> None:
        """Connection tests of `source` or `target` endpoints end `failed`."""
        self._connection_faults[endpoint_type] = message

    def fail_task(self, schema: str, message: str,
                  stop_reason: str = "Stop Reason FATAL_ERROR", status: str = "failed") -> None:
        """The task of `schema` ends `status` with `stop_reason` and `message`,
        after loading nothing."""
        self._task_faults[schema] = (status, stop_reason, message)

    def error_table(self, schema: str, table: str, message: str = "injected table error") -> None:
        """Loading `schema.table` fails; the task itself still ends normally
        (`stopped`, FULL_LOAD_ONLY_FINISHED) -- the case the original workflow
        reported as success."""
        self._table_faults[(schema, table)] = message

    # -- installation ----------------------------------------------------------
    def install(self) -> "DmsDouble":
        """Register on the Session before its DMS client is made.

        The short-circuiting `before-call` handler is registered on the
        generic `before-call` event, *after* whatever is already there:
        botocore runs the handlers of a more specific event name first and
        stops at the first answer, so a specific registration would hide the
        call from other hooks (API call counters, fault injection).
        """
        events = self.session.events
        for event, handler in (
            ("before-call", self._before_call),
            ("after-call.dms", self._count),
            ("after-call.dms.CreateReplicationTask", self._after_create_task),
            ("after-call.dms.StartReplicationTask", self._after_start_task),
            ("after-call.dms.StopReplicationTask", self._after_stop_task),
            ("after-call.dms.DescribeReplicationTasks", self._after_describe_tasks),
        ):
            events.register(event, handler)
            self._handlers.append((event, handler))
        return self

    def _before_call(self, event_name: str, **kwargs: Any) -> Any:
        parts = event_name.split(".")
        if len(parts) < 3 or parts[1] not in ("database-migration-service", "dms"):
            return None
        handler = {
            "DescribeReplicationTasks": self._before_describe_tasks,
            "DescribeTableStatistics": self._describe_table_statistics,
            "TestConnection": self._test_connection,
            "DescribeConnections": self._describe_connections,
            "DeleteReplicationTask": self._before_delete_task,
            "DeleteEndpoint": self._before_delete_endpoint,
            "DeleteReplicationInstance": self._before_delete_instance,
        }.get(parts[2])
        return handler(**kwargs) if handler is not None else None

    def uninstall(self) -> None:
        for event, handler in self._handlers:
            self.session.events.unregister(event, handler)
        self._handlers.clear()

    # -- moto state ------------------------------------------------------------
    @staticmethod
    def _backend(arn: str) -> Any:
        account, region = _arn_parts(arn)
        return dms_backends[account][region]

    @staticmethod
    def _params(params: dict[str, Any]) -> dict[str, Any]:
        body = params.get("body") or b"{}"
        return json.loads(body.decode() if isinstance(body, bytes) else body)

    def _endpoint(self, backend: Any, arn: str) -> Any:
        for endpoint in backend.endpoints.values():
            if endpoint.endpoint_arn == arn:
                return endpoint
        return None

    def _connection_info(self, endpoint: Any) -> dict[str, Any]:
        """host/port/user/password/dbname from the endpoint's secret in moto."""
        settings = endpoint.postgre_sql_settings or {}
        secret_id = settings.get("SecretsManagerSecretId")
        account, region = _arn_parts(endpoint.endpoint_arn)
        if secret_id:
            secrets = secretsmanager_backends[account][region]
            value = json.loads(secrets.get_secret_value(secret_id, None, None)["SecretString"])
        else:
            value = {"host": endpoint.server_name, "port": endpoint.port,
                     "username": endpoint.username, "password": endpoint.password}
        return {"host": value["host"], "port": int(value["port"]), "user": value["username"],
                "password": value["password"],
                "dbname": settings.get("DatabaseName") or endpoint.database_name
                or value.get("dbname")}

    def _connect(self, endpoint: Any, **kwargs: Any) -> psycopg.Connection:
        return psycopg.connect(**self._connection_info(endpoint), connect_timeout=5, **kwargs)

    def _running_now(self) -> int:
        return sum(1 for run in self._runs.values() if not run.done)

    # -- handlers --------------------------------------------------------------
    def _count(self, model: Any = None, **_: Any) -> None:
        if model is not None:
            self.calls.append(model.name)

    def _after_create_task(self, parsed: dict[str, Any], **_: Any) -> None:
        task = parsed.get("ReplicationTask")
        if task:
            with self._lock:
                self._creating[task["ReplicationTaskArn"]] = 1

    def _before_describe_tasks(self, **_: Any) -> None:
        with self._lock:
            for arn, left in list(self._creating.items()):
                task = self._backend(arn).replication_tasks.get(arn)
                if task is None:
                    del self._creating[arn]
                elif left <= 0:
                    task.ready()
                    del self._creating[arn]
                else:
                    self._creating[arn] = left - 1
            for arn in list(self._stopping):
                task = self._backend(arn).replication_tasks.get(arn)
                if task is not None and task.status == "stopping":
                    task.status = "stopped"
                    task.stop_date = datetime.now(timezone.utc)
                self._stopping.discard(arn)
            for run in self._runs.values():
                if run.done:
                    continue
                task = self._backend(run.arn).replication_tasks.get(run.arn)
                if task is None or task.status != "running":
                    run.done = True
                    continue
                run.polls_left -= 1
                if run.polls_left <= 0:
                    task.status = run.final_status
                    task.stop_date = datetime.now(timezone.utc)
                    run.done = True

    def _decorate(self, task: dict[str, Any]) -> None:
        """Add what moto leaves out: StopReason, LastFailureMessage, real stats."""
        run = self._runs.get(task.get("ReplicationTaskArn", ""))
        status = task.get("Status")
        if run is not None and run.done and status == run.final_status:
            task["StopReason"] = run.stop_reason
            if run.failure:
                task["LastFailureMessage"] = run.failure
        elif status == "stopped":
            task["StopReason"] = "Stop Reason NORMAL"
        stats = task.get("ReplicationTaskStats")
        if isinstance(stats, dict):
            tables = run.stats if run is not None else []
            loaded = sum(1 for t in tables if t["TableState"] == "Table completed")
            errored = sum(1 for t in tables if t["TableState"] == "Table error")
            running = run is not None and not run.done
            stats.update({"TablesLoaded": 0 if running else loaded,
                          "TablesLoading": loaded if running else 0,
                          "TablesQueued": 0, "TablesErrored": 0 if running else errored,
                          "FullLoadProgressPercent": 50 if running else (100 if run else 0)})

    def _after_describe_tasks(self, parsed: dict[str, Any], **_: Any) -> None:
        with self._lock:
            for task in parsed.get("ReplicationTasks", []):
                self._decorate(task)

    def _after_stop_task(self, parsed: dict[str, Any], http_response: Any, **_: Any) -> None:
        task = parsed.get("ReplicationTask")
        if http_response.status_code >= 300 or not task:
            return
        arn = task["ReplicationTaskArn"]
        with self._lock:
            backend_task = self._backend(arn).replication_tasks.get(arn)
            if backend_task is not None:
                backend_task.status = "stopping"
                task["Status"] = "stopping"
            self._stopping.add(arn)
            run = self._runs.get(arn)
            if run is not None and not run.done:
                run.done, run.final_status = True, "stopped"
                run.stop_reason, run.failure = "Stop Reason NORMAL", ""

    def _before_delete_task(self, params: dict[str, Any], **_: Any) -> Any:
        arn = self._params(params).get("ReplicationTaskArn", "")
        task = self._backend(arn).replication_tasks.get(arn) if arn.count(":") >= 6 else None
        if task is not None and task.status in ("running", "starting", "stopping"):
            return _error("InvalidResourceStateFault",
                          f"Replication task {task.id} is {task.status}: stop it first")
        return None

    def _before_delete_endpoint(self, params: dict[str, Any], **_: Any) -> Any:
        arn = self._params(params).get("EndpointArn", "")
        if arn.count(":") < 6:
            return None
        for task in self._backend(arn).replication_tasks.values():
            if arn in (task.source_endpoint_arn, task.target_endpoint_arn):
                return _error("InvalidResourceStateFault",
                              f"Endpoint is used by replication task {task.id}")
        return None

    def _before_delete_instance(self, params: dict[str, Any], **_: Any) -> Any:
        arn = self._params(params).get("ReplicationInstanceArn", "")
        if arn.count(":") < 6:
            return None
        for task in self._backend(arn).replication_tasks.values():
            if task.replication_instance_arn == arn:
                return _error("InvalidResourceStateFault",
                              f"Replication instance has replication task {task.id}")
        return None

    # -- connection tests ----------------------------------------------------------
    def _test_connection(self, params: dict[str, Any], **_: Any) -> Any:
        body = self._params(params)
        instance_arn, endpoint_arn = body["ReplicationInstanceArn"], body["EndpointArn"]
        backend = self._backend(instance_arn)
        instance = backend.replication_instances.get(instance_arn)
        if instance is None:
            return _error("ResourceNotFoundFault", "Replication instance could not be found.")
        endpoint = self._endpoint(backend, endpoint_arn)
        if endpoint is None:
            return _error("ResourceNotFoundFault", "Endpoint could not be found.")
        if instance.status != "available":
            return _error("InvalidResourceStateFault", "Replication instance is not available")
        final, message = "successful", ""
        fault = self._connection_faults.get(endpoint.endpoint_type)
        if fault is not None:
            final, message = "failed", fault
        else:
            try:
                with self._connect(endpoint):
                    pass
            except Exception as exc:  # noqa: BLE001 - any failure is the test's result
                final, message = "failed", f"Test connection failed: {exc}".strip()
        connection = _Connection(instance_arn, endpoint_arn, instance.id,
                                 endpoint.endpoint_identifier, final, message)
        with self._lock:
            self._connections[(instance_arn, endpoint_arn)] = connection
        return _ok({"Connection": connection.to_dict()})

    def _describe_connections(self, params: dict[str, Any], **_: Any) -> Any:
        filters = self._params(params).get("Filters") or []
        with self._lock:
            found = []
            for (instance_arn, endpoint_arn), connection in list(self._connections.items()):
                backend = self._backend(instance_arn)
                if (instance_arn not in backend.replication_instances
                        or self._endpoint(backend, endpoint_arn) is None):
                    del self._connections[(instance_arn, endpoint_arn)]
                    continue
                values = {"endpoint-arn": endpoint_arn, "replication-instance-arn": instance_arn}
                if all(values.get(f["Name"]) in f["Values"] for f in filters):
                    found.append(connection)
            result = [c.to_dict() for c in found]
            for connection in found:
                connection.polls_left -= 1
        return _ok({"Connections": result})

    # -- table statistics --------------------------------------------------------
    def _describe_table_statistics(self, params: dict[str, Any], **_: Any) -> Any:
        body = self._params(params)
        arn = body["ReplicationTaskArn"]
        if arn.count(":") < 6 or arn not in self._backend(arn).replication_tasks:
            return _error("ResourceNotFoundFault", "Replication task could not be found.")
        with self._lock:
            run = self._runs.get(arn)
            stats = [dict(t) for t in run.stats] if run is not None else []
        size = int(body.get("MaxRecords") or 100)
        start = int(body.get("Marker") or 0)
        page: dict[str, Any] = {"ReplicationTaskArn": arn,
                                "TableStatistics": stats[start:start + size]}
        if start + size < len(stats):
            page["Marker"] = str(start + size)
        return _ok(page)

    # -- the full load ---------------------------------------------------------
    def _after_start_task(self, parsed: dict[str, Any], http_response: Any, **_: Any) -> None:
        task_dict = parsed.get("ReplicationTask")
        if http_response.status_code >= 300 or not task_dict:
            return
        arn = task_dict["ReplicationTaskArn"]
        backend = self._backend(arn)
        task = backend.replication_tasks[arn]
        rules = json.loads(task.table_mappings)["rules"]
        settings = json.loads(task.replication_task_settings or "{}")
        includes = [r for r in rules if r.get("rule-type") == "selection"
                    and r.get("rule-action") == "include"]
        schema = literal_schema(includes[0]["object-locator"]["schema-name"]) if includes else ""
        run = _Run(arn=arn, schema=schema, polls_left=self.polls_to_finish)
        with self._lock:
            self._runs[arn] = run
            self.started.append(task.id)
            self.max_running = max(self.max_running, self._running_now())
        fault = self._task_faults.get(schema)
        if fault is not None:
            run.final_status, run.stop_reason, run.failure = fault
            return
        source = self._endpoint(backend, task.source_endpoint_arn)
        target = self._endpoint(backend, task.target_endpoint_arn)
        self._full_load(run, rules, settings, source, target)

    def _selected_tables(self, conn: psycopg.Connection,
                         rules: list[dict[str, Any]]) -> list[tuple[str, str]]:
        tables = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname NOT LIKE 'pg\\_%' "
            "AND n.nspname <> 'information_schema' ORDER BY 1, 2").fetchall()
        selected = []
        for schema, table in tables:
            verdict = None
            for rule in rules:
                if rule.get("rule-type") != "selection":
                    continue
                locator = rule["object-locator"]
                if (dms_regex(locator["schema-name"]).match(schema)
                        and dms_regex(locator.get("table-name", "%")).match(table)):
                    if rule["rule-action"] == "exclude":
                        verdict = False
                    elif verdict is None:
                        verdict = True
            if verdict:
                selected.append((schema, table))
        return selected

    def _full_load(self, run: _Run, rules: list[dict[str, Any]], settings: dict[str, Any],
                   source: Any, target: Any) -> None:
        if settings.get("FullLoadSettings", {}).get("TargetTablePrepMode") not in (
                None, "DO_NOTHING"):
            raise NotImplementedError("the DMS double only implements DO_NOTHING")
        if any(r.get("rule-type") == "transformation" for r in rules):
            raise NotImplementedError("the DMS double implements no transformation rule")
        stop_on_table_error = settings.get("ErrorBehavior", {}).get(
            "TableErrorPolicy", "SUSPEND_TABLE") == "STOP_TASK"
        validate = settings.get("ValidationSettings", {}).get("EnableValidation", False)
        try:
            src_conn = self._connect(source, autocommit=True)
            tgt_conn = self._connect(target, autocommit=True)
        except psycopg.OperationalError as exc:
            run.final_status, run.stop_reason = "failed", "Stop Reason FATAL_ERROR"
            run.failure = f"Failed to connect to database: {exc}"
            return
        with src_conn, tgt_conn:
            for schema, table in self._selected_tables(src_conn, rules):
                started = datetime.now(timezone.utc)
                entry: dict[str, Any] = {
                    "SchemaName": schema, "TableName": table, "Inserts": 0, "Deletes": 0,
                    "Updates": 0, "Ddls": 0, "FullLoadRows": 0,
                    "FullLoadCondtnlChkFailedRows": 0, "FullLoadErrorRows": 0,
                    "FullLoadStartTime": started, "FullLoadReloaded": False,
                    "ValidationPendingRecords": 0, "ValidationFailedRecords": 0,
                    "ValidationSuspendedRecords": 0,
                    "ValidationState": "Pending records" if validate else "Not enabled"}
                try:
                    injected = self._table_faults.get((schema, table))
                    if injected is not None:
                        raise RuntimeError(injected)
                    entry["FullLoadRows"] = self._copy_table(src_conn, tgt_conn, schema, table)
                    entry["TableState"] = "Table completed"
                    if validate:
                        entry["ValidationState"] = self._validate(src_conn, tgt_conn,
                                                                  schema, table)
                except Exception as exc:  # noqa: BLE001 - a table error, as DMS reports it
                    entry["TableState"] = "Table error"
                    message = f"Table {schema}.{table}: {exc}".strip()
                    if stop_on_table_error and (schema, table) not in self._table_faults:
                        run.final_status, run.stop_reason = "failed", "Stop Reason FATAL_ERROR"
                        run.failure = message
                        entry["FullLoadEndTime"] = entry["LastUpdateTime"] = \
                            datetime.now(timezone.utc)
                        run.stats.append(entry)
                        return
                entry["FullLoadEndTime"] = entry["LastUpdateTime"] = datetime.now(timezone.utc)
                run.stats.append(entry)

    @staticmethod
    def _copy_table(src: psycopg.Connection, tgt: psycopg.Connection,
                    schema: str, table: str) -> int:
        """COPY the loadable columns of one table, in one target transaction."""
        exists = tgt.execute("SELECT to_regclass(%s)", [
            sql.Identifier(schema, table).as_string(tgt)]).fetchone()
        if exists is None or exists[0] is None:
            raise RuntimeError(f'relation "{schema}.{table}" does not exist on the target')
        columns = [row[0] for row in src.execute(
            "SELECT a.attname FROM pg_attribute a "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
            "AND a.attgenerated = '' ORDER BY a.attnum",
            [sql.Identifier(schema, table).as_string(src)]).fetchall()]
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        name = sql.Identifier(schema, table)
        rows = 0
        with tgt.transaction():
            with src.cursor().copy(sql.SQL("COPY (SELECT {} FROM ONLY {}) TO STDOUT").format(
                    cols, name)) as out, tgt.cursor().copy(
                    sql.SQL("COPY {} ({}) FROM STDIN").format(name, cols)) as into:
                for chunk in out:
                    into.write(chunk)
                    rows += bytes(chunk).count(b"\n")
        return rows

    @staticmethod
    def _validate(src: psycopg.Connection, tgt: psycopg.Connection,
                  schema: str, table: str) -> str:
        query = sql.SQL("SELECT count(*) FROM ONLY {}").format(sql.Identifier(schema, table))
        same = src.execute(query).fetchone() == tgt.execute(query).fetchone()
        return "Validated" if same else "Mismatched records"
