"""The operator on a real kube-apiserver + Job controller, end to end.

The operator runs as a real `kopf run` process (so it can be killed), with
the `local` provider: every restore makes a genuine PITR copy of the local
production cluster. Its Jobs' pods are run by the test kubelet as local
processes, and the real Job controller completes or fails the Jobs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from kubernetes import client, watch
from psycopg import sql

from pg_schema_restore.local.secrets import LocalSecrets
from support.kube import install_crd
from support.kubelet import LocalKubelet
from support.pg import restore_point
from support.processes import stop_gracefully

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "schemarestores.pgschemarestore.io.yaml"
GROUP, VERSION, PLURAL = "pgschemarestore.io", "v1alpha1", "schemarestores"

TENANT = """
CREATE SCHEMA {s};
CREATE TABLE {s}.accounts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text);
CREATE TABLE {s}.entries (id bigserial PRIMARY KEY,
                          account_id bigint REFERENCES {s}.accounts(id), amount numeric);
CREATE INDEX ON {s}.entries (account_id);
"""


class World:
    """Production database, local provider paths, the operator process, the kubelet."""

    def __init__(self, kube, prod, base_backup: Path, wal_archive: Path, tmp: Path,
                 namespace: str, db: str):
        self.kube, self.prod, self.tmp, self.ns, self.db = kube, prod, tmp, namespace, db
        self.secrets = LocalSecrets(tmp / "secrets")
        self.secrets.write("production", {"host": "127.0.0.1", "port": prod.port,
                                          "username": prod.user, "password": prod.password})
        (tmp / "temporary").mkdir()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PGSR_")},
            "KUBECONFIG": str(kube.kubeconfig),
            "PGSR_PROVIDER": "local", "PGSR_EXECUTOR": "job",
            # Jobs go to the operator's namespace; here the restores' own one
            # holds both (tests/kube/test_tenancy.py separates them).
            "PGSR_JOB_NAMESPACE": namespace,
            "PGSR_LOCAL_BASE_BACKUP": str(base_backup),
            "PGSR_LOCAL_WAL_ARCHIVE": str(wal_archive),
            "PGSR_LOCAL_WORKDIR": str(tmp / "temporary"),
            "PGSR_LOCAL_SECRETS_DIR": str(tmp / "secrets"),
            "PGSR_ARTIFACTS_ROOT": str(tmp / "artifacts"),
            "PGSR_METRICS_PORT": "0",
            "PGSR_MAX_CONCURRENT": "4",
            "PGSR_JOB_POLL_SECONDS": "0.2",
        }
        self.api = kube.api_client()
        self.custom = client.CustomObjectsApi(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.core = client.CoreV1Api(self.api)
        self.kubelet = LocalKubelet(self.api, namespace).start()
        self.operator: subprocess.Popen | None = None
        self.peak_rss_kb = 0

    # -- operator process ------------------------------------------------------
    def start_operator(self, **env: str) -> None:
        log = open(self.tmp / "operator.log", "a")
        self.operator = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", "-m", "pg_schema_restore.k8s.handlers",
             "--namespace", self.ns, "--standalone", "--log-format=json"],
            env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)

    def rss_kb(self) -> int:
        if self.operator is None or self.operator.poll() is not None:
            return self.peak_rss_kb
        for line in Path(f"/proc/{self.operator.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                self.peak_rss_kb = max(self.peak_rss_kb, int(line.split()[1]))
        return self.peak_rss_kb

    def kill_operator(self) -> None:
        if self.operator and self.operator.poll() is None:
            self.rss_kb()
            self.operator.send_signal(signal.SIGKILL)
            self.operator.wait(timeout=30)

    def stop(self) -> None:
        if self.operator and self.operator.poll() is None:
            self.rss_kb()
        stop_gracefully(self.operator)
        self.kubelet.stop()

    def full_log(self) -> str:
        return (self.tmp / "operator.log").read_text()

    def operator_log(self) -> str:
        return self.full_log()[-6000:]

    # -- resources ---------------------------------------------------------------
    def apply(self, name: str, spec: dict) -> None:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SchemaRestore",
                "metadata": {"name": name, "namespace": self.ns}, "spec": spec}
        self.kube.kubectl("apply", "-f", "-", input=json.dumps(body))

    def get(self, name: str) -> dict | None:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL,
                                                            name)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def condition(self, name: str, type_: str = "Succeeded") -> dict:
        obj = self.get(name) or {}
        for cond in (obj.get("status") or {}).get("conditions") or []:
            if cond["type"] == type_:
                return cond
        return {}

    def wait_for(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.rss_kb()
            value = predicate()
            if value:
                return value
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}\n{self.operator_log()}")

    def wait_done(self, name: str, timeout: float = 240) -> dict:
        return self.wait_for(lambda: (c := self.condition(name)) and c["status"] != "Unknown"
                             and c, timeout, f"{name} to finish")

    def events(self, name: str) -> list[dict]:
        """The Events of one SchemaRestore, oldest first (by their micro-time)."""
        found = json.loads(self.kube.kubectl("get", "events", "-n", self.ns, "-o",
                                             "json").stdout)["items"]
        mine = [e for e in found if e["involvedObject"].get("kind") == "SchemaRestore"
                and e["involvedObject"]["name"] == name]
        return sorted(mine, key=lambda e: e.get("eventTime") or e.get("firstTimestamp") or "")

    def leftovers(self) -> list[str]:
        """Temporary copies and secrets of any restore, still on this machine."""
        found = [p.name for p in (self.tmp / "temporary").iterdir()]
        found += [s for s in self.secrets.ids() if s.startswith("pgsr-")]
        return sorted(found)

    def phases_seen(self, name: str) -> "PhaseWatch":
        """Collect every `status.phase` of `name` from now on (a watch: no
        state is missed between two polls)."""
        return PhaseWatch(self, name)

    def events_of(self, name: str, reason: str) -> list[dict]:
        items = self.core.list_namespaced_event(
            self.ns, field_selector=f"involvedObject.name={name}").items
        return [{"reason": e.reason, "message": e.message, "count": e.count}
                for e in items if e.reason == reason]

    def restore_jobs(self) -> list[str]:
        return [j.metadata.name for j in self.batch.list_namespaced_job(
            self.ns, label_selector="pgschemarestore.io/restore-id").items]

    def backends(self, application: str) -> list[tuple[int, str | None]]:
        """Production sessions of one data-plane client (psql sets its name)."""
        with self.prod.connect(self.db) as conn:
            return conn.execute(
                "SELECT pid, wait_event_type FROM pg_stat_activity "
                "WHERE datname = %s AND application_name = %s AND pid <> pg_backend_pid()",
                (self.db, application)).fetchall()

    def schemas(self) -> set[str]:
        with self.prod.connect(self.db) as conn:
            return {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")}

    def counts(self, schema: str) -> tuple[int, int]:
        with self.prod.connect(self.db) as conn:
            return tuple(conn.execute(sql.SQL(
                "SELECT (SELECT count(*) FROM {}), (SELECT count(*) FROM {})").format(
                    sql.Identifier(schema, "accounts"), sql.Identifier(schema, "entries"))
            ).fetchone())


class PhaseWatch:
    """Every `status.phase` and `Succeeded` reason a SchemaRestore shows, in order."""

    def __init__(self, world: World, name: str) -> None:
        self.seen: list[tuple[str | None, str | None]] = []
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, args=(world, name), daemon=True)
        self._thread.start()

    def _run(self, world: World, name: str) -> None:
        for event in self._watch.stream(world.custom.list_namespaced_custom_object, GROUP,
                                        VERSION, world.ns, PLURAL,
                                        field_selector=f"metadata.name={name}",
                                        timeout_seconds=600):
            status = event["object"].get("status") or {}
            top = next((c for c in status.get("conditions") or []
                        if c["type"] == "Succeeded"), {})
            self.seen.append((status.get("phase"), top.get("reason")))

    def stop(self) -> list[tuple[str | None, str | None]]:
        self._watch.stop()
        return self.seen


@pytest.fixture(scope="module")
def crd(kube_cluster):
    # 1.20 does not know x-kubernetes-validations (CEL, 1.25+): install_crd
    # applies crds/kubernetes-1.20-1.24/ (tests/test_crd.py checks the rules
    # with a CEL library; the admission webhook enforces them here).
    install_crd(kube_cluster)
    return CRD


@pytest.fixture
def world(kube_cluster, crd, prod, prod_base_backup, wal_archive, new_db, tmp_path, request):
    namespace = "t-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    kube_cluster.kubectl("create", "namespace", namespace)
    db = new_db(prod, "op")
    with prod.connect(db) as conn:
        for tenant in ("tenant_a", "tenant_b"):
            s = sql.Identifier(tenant)
            conn.execute(sql.SQL(TENANT).format(s=s))
            conn.execute(sql.SQL("INSERT INTO {}.accounts(name) SELECT 'acct ' || g "
                                 "FROM generate_series(1, 50) g").format(s))
            conn.execute(sql.SQL("INSERT INTO {}.entries(account_id, amount) "
                                 "SELECT 1 + g % 50, g FROM generate_series(1, 2000) g")
                         .format(s))
    w = World(kube_cluster, prod, prod_base_backup, wal_archive, tmp_path, namespace, db)
    w.point = restore_point()
    w.wal_archive = wal_archive
    with prod.connect(db) as conn:  # damage after the restore point
        conn.execute("DELETE FROM tenant_a.entries WHERE id % 2 = 0")
    prod.archive_current_wal(wal_archive)
    yield w
    w.stop()


def _spec(world: World, **extra) -> dict:
    return {"database": world.db, "schemas": ["tenant_a"],
            "restoreTime": world.point.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), **extra}


@pytest.mark.longest    # the run's longest case: it starts first
def test_twenty_restores_with_limit_four(world):
    world.start_operator()
    names = [f"many-{i:02d}" for i in range(20)]
    for i, name in enumerate(names):
        world.apply(name, _spec(world, schemas=["tenant_b"], targetSuffix=f"_n{i:02d}"))
    running_max = 0

    def all_done():
        nonlocal running_max
        # One list call: a consistent snapshot of all twenty.
        objs = world.custom.list_namespaced_custom_object(GROUP, VERSION, world.ns,
                                                          PLURAL)["items"]
        running = sum(1 for o in objs if (o.get("status") or {}).get("phase") not in
                      (None, "Queued", "Succeeded", "Failed"))
        running_max = max(running_max, running)
        return all(world.condition(n).get("status") in ("True", "False") for n in names)

    world.wait_for(all_done, 1200, "20 restores")
    results = {n: world.condition(n) for n in names}
    assert all(c["status"] == "True" for c in results.values()), results
    assert 2 <= running_max <= 4, running_max   # ran side by side, never above the limit
    for i in range(20):
        assert world.counts(f"tenant_b_n{i:02d}") == (50, 2000)
    assert world.leftovers() == []
    print(f"\noperator peak RSS with 20 restores (limit 4): {world.rss_kb() / 1024:.1f} MiB; "
          f"most running at once: {running_max}")


def test_a_spec_changed_mid_restore_is_reported_and_the_first_spec_runs(world):
    """No webhook and no CEL (1.20): the change is accepted; the operator says,
    in a condition and one event, that the restore keeps its first spec."""
    world.kubelet.hold_steps = {"copy"}
    world.start_operator()
    world.apply("edited", _spec(world, targetSuffix="_ed"))
    world.wait_for(lambda: "copy" in world.kubelet.held, 240, "the copy Job to start")
    world.kube.kubectl("patch", "schemarestore", "edited", "-n", world.ns, "--type=merge",
                       "-p", json.dumps({"spec": {"schemas": ["tenant_b"]}}))
    ignored = world.wait_for(lambda: world.condition("edited", "SpecChangeIgnored"), 60,
                             "SpecChangeIgnored")
    assert (ignored["status"], ignored["reason"]) == ("True", "SpecImmutable")
    world.kubelet.hold_steps = set()
    cond = world.wait_done("edited", 240)
    assert cond["status"] == "True", cond
    obj = world.get("edited")
    assert obj["metadata"]["generation"] == 2 and obj["status"]["observedGeneration"] == 1
    assert obj["status"]["targetSchemas"] == {"tenant_a": "tenant_a_ed"}
    assert obj["status"]["record"]["spec"]["schemas"] == ["tenant_a"]
    # Still there after the phases' status writes, with its first transition time.
    assert world.condition("edited", "SpecChangeIgnored") == ignored
    assert world.counts("tenant_a_ed") == (50, 2000)
    assert "tenant_b_ed" not in world.schemas()
    events = json.loads(world.kube.kubectl("get", "events", "-n", world.ns, "-o", "json",
                                           "--field-selector", "reason=SpecImmutable").stdout)
    assert len(events["items"]) == 1 and events["items"][0]["type"] == "Warning"


def test_happy_path_succeeds_and_cleans_up(world):
    world.start_operator()
    world.apply("restore-a", _spec(world))
    world.kube.kubectl("wait", "--for=condition=Succeeded", "--timeout=240s",
                       "schemarestore/restore-a", "-n", world.ns, timeout=260)
    obj = world.get("restore-a")
    status = obj["status"]
    target = status["targetSchemas"]["tenant_a"]
    assert world.counts(target) == (50, 2000)
    assert world.counts("tenant_a") == (50, 1000)       # the damaged one is untouched
    conds = {c["type"]: c for c in status["conditions"]}
    for type_ in ("TemporaryDatabaseReady", "SchemaExtracted", "PreDataApplied", "DataCopied",
                  "PostDataApplied", "CleanedUp", "Succeeded"):
        assert conds[type_]["status"] == "True", (type_, conds[type_])
        assert conds[type_]["observedGeneration"] == obj["metadata"]["generation"]
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert status["phase"] == "Succeeded"
    assert world.leftovers() == []
    # The printer columns.
    table = world.kube.kubectl("get", "schemarestores", "-n", world.ns).stdout
    header = table.splitlines()[0].split()
    assert header == ["NAME", "DATABASE", "SCHEMAS", "POINT", "STATUS", "PROGRESS", "AGE"]
    assert "Succeeded" in table.splitlines()[1]
    # Cleanup removed the Jobs and their connections Secret; the connections
    # never reached status or events.
    assert world.kubelet.started
    assert world.batch.list_namespaced_job(world.ns).items == []
    assert world.core.list_namespaced_secret(
        world.ns, label_selector="pgschemarestore.io/restore-id").items == []
    events = world.kube.kubectl("get", "events", "-n", world.ns, "-o", "json").stdout
    assert "DataCopyDone" in events and "Succeeded" in events
    password = world.prod.password
    assert password not in json.dumps(obj) and password not in events
    # issue 13: one Event per transition, in sentences; the end is one Event.
    said = [(e["type"], e["reason"], e["message"]) for e in world.events("restore-a")]
    assert [reason for _, reason, _ in said] == [
        "InitializeDone", "TemporaryDatabaseDone", "SchemaExtractionDone", "DataCopyDone",
        "PostDataDone", "CleanupDone", "Succeeded"], said
    assert all(kind == "Normal" and not set("{}[]'") & set(message)
               for kind, _, message in said), said
    assert said[-1][2] == f"restore succeeded: restored tenant_a as {target} (2050 rows)"
    # A finished restore's status is compact: no second copy of itself.
    assert conds["Finished"]["status"] == "True"
    assert set(status["record"]) <= {"restoreId", "spec", "phase", "completed", "source",
                                     "resources", "timings", "schemasCreated",
                                     "cleanupRequested", "error", "result"}, status["record"]
    described = world.kube.kubectl("describe", "schemarestore", "restore-a", "-n",
                                   world.ns).stdout
    shown = described[described.index("\nStatus:"):described.index("\nEvents:")]
    print(f"\n`kubectl describe` status section of a finished restore: "
          f"{len(shown.splitlines())} lines")
    assert "restore_id" not in shown and "started_at" not in shown, shown
    assert table.splitlines()[1].split()[3] == status["point"] == _spec(world)["restoreTime"]
    explained = world.kube.kubectl("explain", "schemarestores.status").stdout
    assert "conditions" in explained and "targetSchemas" in explained, explained
    # Deleting a finished restore leaves the restored schema in place.
    world.custom.delete_namespaced_custom_object(GROUP, VERSION, world.ns, PLURAL, "restore-a")
    world.wait_for(lambda: world.get("restore-a") is None, 60, "deletion")
    assert target in world.schemas()


def test_invalid_specs(world):
    world.start_operator()
    bad = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SchemaRestore",
           "metadata": {"name": "bad", "namespace": world.ns},
           "spec": {"database": world.db, "schemas": ['x"; DROP'],
                    "restoreTime": "yesterday"}}
    result = world.kube.kubectl("apply", "--validate=false", "-f", "-",
                                input=json.dumps(bad), check=False)
    assert result.returncode != 0 and "Invalid" in result.stderr
    assert world.get("bad") is None
    # Valid for the server's patterns, refused by the operator's own validation
    # (a system schema; `tenant--a` once was, but it is a legal name).
    world.apply("sneaky", _spec(world, schemas=["pg_tenant"]))
    cond = world.wait_done("sneaky", 60)
    assert cond["status"] == "False" and cond["reason"] == "InvalidSpec"
    # A missing schema ends with a precise reason and nothing left behind;
    # Initialize said it was not in production before the copy was made.
    world.apply("missing", _spec(world, schemas=["no_such_tenant"], targetSuffix="_m"))
    cond = world.wait_done("missing", 240)
    assert cond["status"] == "False" and cond["reason"] == "MissingSchema", cond
    assert world.leftovers() == []
    assert "no_such_tenant_m" not in world.schemas()
    assert world.get("missing")["status"]["warnings"] == [
        "schema no_such_tenant is not in production now; it will be looked for in the copy"]
    # Refused in Initialize (a time not yet in the WAL archive): nothing was
    # created, so no Event says it was cleaned up; one warning says why.
    late = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    world.apply("late", _spec(world, restoreTime=late, targetSuffix="_l"))
    world.kube.kubectl("wait", "--for=condition=Finished", "--timeout=120s",
                       "schemarestore/late", "-n", world.ns, timeout=140)
    assert world.condition("late")["reason"] == "RestoreTimeOutOfWindow"
    said = [(e["type"], e["reason"]) for e in world.events("late")]
    assert said == [("Warning", "InitializeFailed"), ("Normal", "Failed")], said


def test_delete_mid_restore_cleans_everything(world):
    world.kubelet.hold_steps = {"copy"}
    world.start_operator()
    world.apply("to-delete", _spec(world, targetSuffix="_del"))
    world.wait_for(lambda: "copy" in world.kubelet.held, 240, "the copy Job to start")
    assert "tenant_a_del" in world.schemas()             # pre-data was applied
    world.custom.delete_namespaced_custom_object(GROUP, VERSION, world.ns, PLURAL, "to-delete")
    world.wait_for(lambda: world.get("to-delete") is None, 120, "the object to go")
    assert world.leftovers() == []
    assert "tenant_a_del" not in world.schemas()
    assert world.core.list_namespaced_secret(
        world.ns, label_selector="pgschemarestore.io/restore-id").items == []


def test_operator_killed_mid_phase_resumes_without_duplicates(world):
    world.kubelet.hold_steps = {"copy"}
    world.start_operator()
    world.apply("resumed", _spec(world, targetSuffix="_res"))
    world.wait_for(lambda: "copy" in world.kubelet.held, 240, "the copy Job to start")
    world.kill_operator()
    world.start_operator()
    # The restarted operator adopts the copy's Job (it waits for it before
    # anything else starts): only then is the Job released.
    world.wait_for(lambda: "adopting Job" in world.full_log(), 120,
                   "the restarted operator to resume the copy")
    world.kubelet.hold_steps = set()
    cond = world.wait_done("resumed", 240)
    assert cond["status"] == "True", cond
    assert world.counts("tenant_a_res") == (50, 2000)
    # One Job per step, one temporary copy: nothing was created twice.
    names = [p for p in world.kubelet.started]
    assert len(names) == len(set(names))
    jobs = [j.metadata.name for j in world.batch.list_namespaced_job(world.ns).items]
    assert len(jobs) == len(set(jobs))
    record = world.get("resumed")["status"]["record"]
    assert record["phase"] == "Succeeded"
    assert world.leftovers() == []


def test_failed_job_fails_restore_and_cleans_up(world):
    world.kubelet.fail_steps = {"copy"}
    world.start_operator()
    world.apply("failing", _spec(world, targetSuffix="_f"))
    # issue 13: `kubectl wait --for=condition=Finished` returns on a failure too.
    world.kube.kubectl("wait", "--for=condition=Finished", "--timeout=240s",
                       "schemarestore/failing", "-n", world.ns, timeout=260)
    cond = world.condition("failing")
    assert cond["status"] == "False" and cond["reason"] == "JobFailed", cond
    assert "injected failure" in cond["message"]
    # One warning for the failure, in words; the end said once; the log too.
    said = [(e["type"], e["reason"], e["message"]) for e in world.events("failing")]
    warnings = [s for s in said if s[0] == "Warning"]
    assert len(warnings) == 1 and warnings[0][1] == "DataCopyFailed", said
    assert warnings[0][2].startswith("phase 4/7 DataCopy failed (JobFailed): ")
    assert said[-1][:2] == ("Normal", "Failed") and "RecordDone" not in str(said)
    assert said[-1][2] == "restore failed in DataCopy (JobFailed); dropped the schemas it " \
                          "had created: tenant_a_f"
    logged = [json.loads(line) for line in world.full_log().splitlines()
              if line.startswith("{") and "/failing (restore" in line]
    failed = [entry for entry in logged if entry.get("severity") == "warn"]   # kopf's JSON
    assert any("restore failed in DataCopy (JobFailed)" in e["message"] for e in failed), \
        logged
    assert world.leftovers() == []
    assert "tenant_a_f" not in world.schemas()           # dropped after the failure
    assert world.counts("tenant_a") == (50, 1000)


def test_progress_advances_in_status_during_the_copy(world):
    """PROGRESS moves while the copy Job runs: the operator reads the pod's log
    (`pods/log`, served by the test kubelet) and saves the counters. The table
    is split in many ranges (PGSR_COPY_CHUNK_PAGES) and every report is saved
    (PGSR_PROGRESS_SECONDS=0), so the count of updates does not depend on timing."""
    with world.prod.connect(world.db) as conn:
        conn.execute("CREATE TABLE tenant_a.ledger (id bigint, memo text)")
        conn.execute("INSERT INTO tenant_a.ledger SELECT g, repeat(md5(g::text), 3) "
                     "FROM generate_series(1, 20000) g")
        conn.execute("ANALYZE tenant_a.ledger")
    point = restore_point()
    world.prod.archive_current_wal(world.wal_archive)
    world.kubelet.extra_env["PGSR_COPY_CHUNK_PAGES"] = "24"
    world.start_operator(PGSR_PROGRESS_SECONDS="0")
    # What a user sees: `kubectl get -w`, whose PROGRESS column is the CRD's
    # printer column over status.progress.summary.
    watcher = subprocess.Popen([world.kube.kubectl_path, "--kubeconfig",
                                str(world.kube.kubeconfig), "get", "schemarestores", "-n",
                                world.ns, "-w"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    world.apply("live", _spec(world, targetSuffix="_live",
                              restoreTime=point.strftime("%Y-%m-%dT%H:%M:%S.%fZ")))
    seen: list[tuple[str, dict]] = []       # (phase, status.progress) of every update
    stream = watch.Watch()
    for change in stream.stream(world.custom.list_namespaced_custom_object, GROUP, VERSION,
                                world.ns, PLURAL, field_selector="metadata.name=live",
                                timeout_seconds=240):
        status = change["object"].get("status") or {}
        seen.append((status.get("phase", ""), status.get("progress") or {}))
        if status.get("phase") in ("Succeeded", "Failed"):
            stream.stop()
    assert seen and seen[-1][0] == "Succeeded", (seen[-1:], world.operator_log())
    copying = [p for phase, p in seen if phase == "DataCopy" and p.get("bytesTotal")]
    assert copying, seen
    total = copying[0]["bytesTotal"]
    middle = {(p["bytes"], p["tablesDone"]) for p in copying if 0 < p["bytes"] < total}
    assert len(middle) >= 2, copying           # advanced at least twice mid-copy
    assert [p["bytes"] for p in copying] == sorted(p["bytes"] for p in copying)
    first = next(p for p in copying if 0 < p["bytes"] < total)
    assert re.fullmatch(r"4/7 copy \d+/3 tables \d+%( ETA \S+)?", first["summary"]), first
    assert first["tablesTotal"] == 3 and first["rowsTotal"] >= 20000
    assert copying[-1]["bytes"] == total and copying[-1]["tablesDone"] == 3
    print("\nPROGRESS during the copy: " + " | ".join(
        dict.fromkeys(p["summary"] for p in copying)))
    time.sleep(1)                           # the watch's last lines
    watcher.terminate()
    transcript = watcher.communicate(timeout=30)[0]
    print("kubectl get -w:\n" + transcript)
    shown = [line for line in transcript.splitlines() if re.search(r"4/7 copy \d+/3 tables", line)]
    assert len(set(shown)) >= 2, transcript  # the column moved while copying
    assert re.search(r"\bSucceeded\b", transcript.splitlines()[-1]), transcript
    with world.prod.connect(world.db) as conn:
        assert conn.execute("SELECT count(*) FROM tenant_a_live.ledger").fetchone()[0] == 20000


# Deletion before the restore succeeded: the running step is stopped, cleanup
# drops what the restore created (docs/operations.md, "Deleting a restore").
# phase -> the step held (its Job exists, its Pod waits), and whether the
# restored schema exists in production by then.
DELETE_DURING = {
    "Initialize": ("precheck", False),
    "SchemaExtraction": ("rights", False),
    "DataCopy": ("copy", True),        # the copy really runs: blocked on a lock
    "PostData": ("apply-post", True),
}


@pytest.mark.parametrize("phase", list(DELETE_DURING))
def test_deletion_during(world, phase):
    """Deleted while `step` runs: `Deleting` at once, the step stopped, the
    schema dropped, nothing left."""
    step, created = DELETE_DURING[phase]
    world.kubelet.hold_steps = {step}
    world.start_operator()
    name, target = f"del-{phase.lower()}", "tenant_a_dp"
    world.apply(name, _spec(world, targetSuffix="_dp"))
    world.wait_for(lambda: step in world.kubelet.held, 240, f"the {step} Job to start")
    assert (target in world.schemas()) == created
    lock = None
    if step == "copy":   # a copy really writing: started, then blocked by our lock
        lock = world.prod.connect(world.db)
        lock.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(
            sql.Identifier(target, "entries")))
        world.kubelet.hold_steps = set()
        world.wait_for(lambda: any(kind == "Lock" for _, kind in world.backends("pgsr-copy")),
                       120, "the copy to wait on the lock")
    phases = world.phases_seen(name)
    world.custom.delete_namespaced_custom_object(GROUP, VERSION, world.ns, PLURAL, name)
    if lock is not None:
        # The Job is deleted in the foreground: its process group is killed
        # and production loses the copy's session before cleanup starts.
        world.wait_for(lambda: world.kubelet.killed, 60, "the copy's process to be stopped")
        world.wait_for(lambda: not world.backends("pgsr-copy"), 60, "the copy's session to go")
        lock.rollback()
        lock.close()
    world.wait_for(lambda: world.get(name) is None, 120, "the object to go")
    seen = phases.stop()
    assert ("Deleting", "Deleting") in seen, seen
    deleting = world.events_of(name, "Deleting")
    assert len(deleting) == 1 and (deleting[0]["count"] or 1) == 1, deleting
    assert target not in world.schemas()
    assert world.leftovers() == []
    assert world.restore_jobs() == []
    assert world.core.list_namespaced_secret(
        world.ns, label_selector="pgschemarestore.io/restore-id").items == []
    assert "did not exit in time" not in world.full_log()


def test_queued_restore_deletes_at_once(world):
    world.kubelet.hold_steps = {"copy"}
    world.start_operator(PGSR_MAX_CONCURRENT="1")
    world.apply("first", _spec(world, targetSuffix="_q1"))
    world.wait_for(lambda: "copy" in world.kubelet.held, 240, "the first copy to start")
    world.apply("second", _spec(world, targetSuffix="_q2"))
    world.wait_for(lambda: (world.get("second") or {}).get("status", {}).get("phase")
                   == "Queued", 60, "the second restore to queue")
    world.custom.delete_namespaced_custom_object(GROUP, VERSION, world.ns, PLURAL, "second")
    # At once: the old operator took 30 s (a daemon re-check kopf scheduled
    # after its cancellation timeout); the bound here is well under it.
    world.wait_for(lambda: world.get("second") is None, 15, "the queued restore to go")
    assert world.condition("first")["status"] == "Unknown"   # it still holds the slot
    assert len(world.events_of("second", "Deleting")) == 1
    assert "tenant_a_q2" not in world.schemas()
    world.kubelet.hold_steps = set()
    assert world.wait_done("first")["status"] == "True"
    assert world.leftovers() == []


def test_operator_killed_mid_step_adopts_the_running_job(world):
    """SIGKILL of the operator while a copy Job really runs: the Job goes on
    (it belongs to the cluster, not to the operator) and the restarted
    operator adopts it before starting anything: it never runs a second
    copy beside it, and the rows are copied once."""
    world.kubelet.hold_steps = {"copy"}
    world.start_operator()
    world.apply("adopted", _spec(world, targetSuffix="_ad"))
    world.wait_for(lambda: "copy" in world.kubelet.held, 240, "the copy Job to start")
    lock = world.prod.connect(world.db)
    lock.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(
        sql.Identifier("tenant_a_ad", "entries")))
    world.kubelet.hold_steps = set()
    world.wait_for(lambda: any(kind == "Lock" for _, kind in world.backends("pgsr-copy")), 120,
                   "the copy to wait on the lock")
    world.kill_operator()
    world.start_operator()
    world.wait_for(lambda: "adopting Job" in world.full_log(), 120,
                   "the restarted operator to adopt the Job")
    # The one copy still waits; nothing was started beside it.
    assert [kind for _, kind in world.backends("pgsr-copy")].count("Lock") == 1
    lock.rollback()
    lock.close()
    cond = world.wait_done("adopted", 240)
    assert cond["status"] == "True", cond
    assert world.counts("tenant_a_ad") == (50, 2000)
    copies = [p for p in world.kubelet.started if "-copy-" in p]
    assert len(copies) == 1, world.kubelet.started
    assert world.kubelet.killed == []
    assert world.leftovers() == []
