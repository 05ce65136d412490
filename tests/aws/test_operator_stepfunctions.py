"""The operator with `engine: stepfunctions`: the real apiserver, kopf in-process,
the state machine executed by moto (support/sfn_world.py), real PostgreSQL.

The SchemaRestore shows the same conditions, status and record as with the
native engine; its deletion mid-execution stops the execution and runs the
engine's cleanup; an operator restarted mid-execution follows the execution
it started and never starts a second one.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from kopf.testing import KopfRunner
from kubernetes import client

from pg_schema_restore import wiring
from pg_schema_restore.config import OperatorConfig
from pg_schema_restore.k8s import handlers
from pg_schema_restore.local.cluster import free_port
from support.aws import BUCKET, TENANTS
from support.kube import serve_in_process
from support.kubelet import LocalKubelet
from support.pg import restore_point
from support.sfn_world import Machine, iso
from support.waiting import wait_until

GROUP, VERSION, PLURAL = "pgschemarestore.io", "v1alpha1", "schemarestores"
PHASE_CONDITIONS = ("TemporaryDatabaseReady", "SchemaExtracted", "PreDataApplied",
                    "DataCopied", "PostDataApplied", "CleanedUp")


def _start(aws_world, kube_cluster, monkeypatch, request, ns: str) -> tuple[dict, Machine]:
    serve_in_process(kube_cluster, monkeypatch, ns)
    machine = Machine(aws_world, monkeypatch)
    defaults = {k: v for k, v in aws_world.spec(snapshotId="unused").items()
                if k in ("source", "temporaryDatabase")}
    handlers.configure(OperatorConfig(
        # An operator outside a pod is told where Jobs go (the chart sets
        # PGSR_JOB_NAMESPACE); without it the operator refuses to start. The
        # defaults name raw ids, which only allow_raw_sources admits.
        provider="aws", executor="job", job_namespace=ns, allow_raw_sources=True,
        artifacts_root=f"s3://{BUCKET}/restores",
        spec_defaults=defaults, metrics_port=0, job_poll_seconds=0.2,
        state_machine_arn=machine.arn, sfn_poll_seconds=0.2,
        sfn_waits={"seconds": 0, "maxPolls": 40}))
    monkeypatch.setattr(wiring, "SESSION_FACTORY", lambda region=None: aws_world.sim.session())
    cr = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SchemaRestore",
          "metadata": {"name": "sfn", "namespace": ns},
          "spec": {"database": aws_world.database, "schemas": list(TENANTS),
                   "restoreTime": iso(restore_point()), "engine": "stepfunctions"}}
    return cr, machine


def _kopf(ns: str) -> KopfRunner:
    return KopfRunner(["run", "-m", "pg_schema_restore.k8s.handlers", "--namespace", ns,
                       "--standalone", f"--liveness=http://127.0.0.1:{free_port()}/healthz"])


def _get(kube_cluster, ns: str) -> dict:
    return client.CustomObjectsApi(kube_cluster.api_client()).get_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, "sfn")


def _wait_for(predicate, timeout: float = 240, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.e2e
def test_operator_restores_with_step_functions(aws_world, kube_cluster, monkeypatch, request):
    ns = "sfn-operator"
    cr, machine = _start(aws_world, kube_cluster, monkeypatch, request, ns)
    expected = {t: aws_world.counts(t) for t in TENANTS}
    aws_world.damage()
    before = aws_world.fingerprint()
    with _kopf(ns) as runner:
        kube_cluster.kubectl("apply", "-f", "-", input=json.dumps(cr))
        kube_cluster.kubectl("wait", "--for=condition=Succeeded", "--timeout=240s",
                             "schemarestore/sfn", "-n", ns, timeout=260)
        obj = _get(kube_cluster, ns)
        core = client.CoreV1Api(kube_cluster.api_client())
        # The end's Event follows the status that says Succeeded (kopf posts
        # Events from a queue): wait for it rather than read once.
        events = wait_until(lambda: [e for e in core.list_namespaced_event(ns).items
                                     if e.reason == "Succeeded"]
                            and core.list_namespaced_event(ns).items, 60,
                            "the Succeeded Event", log=lambda: runner.output[-3000:])
    assert runner.exception is None, runner.output[-3000:]
    status = obj["status"]
    assert status["phase"] == "Succeeded"
    conditions = {c["type"]: c for c in status["conditions"]}
    for kind in ("Succeeded", *PHASE_CONDITIONS):     # the native engine's conditions
        assert conditions[kind]["status"] == "True", conditions[kind]
    record = status["record"]
    assert record["completed"] == ["Initialize", "TemporaryDatabase", "SchemaExtraction",
                                   "DataCopy", "PostData", "Cleanup", "Record"]
    assert record["resources"]["stepFunctionsExecution"].endswith(f":{record['restoreId']}")
    for tenant, target in status["targetSchemas"].items():
        assert aws_world.counts(target) == expected[tenant]
    after = aws_world.fingerprint()
    assert {k: after[k] for k in before} == before
    assert aws_world.leftovers(record["restoreId"]) == []
    assert len(machine.executions()) == 1
    succeeded = [e for e in events if e.reason == "Succeeded"]
    assert len(succeeded) == 1 and succeeded[0].type == "Normal", succeeded
    assert succeeded[0].message.startswith("restore succeeded: restored "), succeeded[0].message
    assert aws_world.role_password not in json.dumps(obj)


@pytest.mark.e2e
def test_deletion_mid_execution_stops_it_and_cleans_up(aws_world, kube_cluster, monkeypatch,
                                                      request):
    ns = "sfn-delete"
    cr, machine = _start(aws_world, kube_cluster, monkeypatch, request, ns)
    before = aws_world.fingerprint()
    machine.gates["copy"] = threading.Event()        # hold the execution in DataCopy
    api = kube_cluster.api_client()
    kubelet = LocalKubelet(api, ns).start()          # the engine's drop runs as a Job
    try:
        with _kopf(ns) as runner:
            kube_cluster.kubectl("apply", "-f", "-", input=json.dumps(cr))
            _wait_for(lambda: "copy" in machine.entered, what="the copy step")
            restore_id = _get(kube_cluster, ns)["status"]["record"]["restoreId"]
            kube_cluster.kubectl("delete", "schemarestore/sfn", "-n", ns, "--wait=false")
            _wait_for(machine.stop_requested, what="the execution to be stopped")
            machine.gates["copy"].set()
            kube_cluster.kubectl("wait", "--for=delete", "--timeout=240s",
                                 "schemarestore/sfn", "-n", ns, timeout=260)
            # moto keeps running a stopped execution's next states (AWS ends it
            # ABORTED at once): wait for it to end, whatever it says.
            _wait_for(lambda: machine.executions()[0]["status"] != "RUNNING",
                      what="the execution to end")
    finally:
        machine.gates["copy"].set()
        kubelet.stop()
    assert runner.exception is None, runner.output[-3000:]
    assert len(machine.executions()) == 1
    stopped = aws_world.sim.params["sfn.StopExecution"][0]
    assert stopped["executionArn"].endswith(f":{restore_id}")
    assert aws_world.fingerprint() == before, "the cancelled restore's schemas were not dropped"
    assert aws_world.leftovers(restore_id) == []


@pytest.mark.e2e
def test_restarted_operator_follows_the_same_execution(aws_world, kube_cluster, monkeypatch,
                                                       request):
    ns = "sfn-restart"
    cr, machine = _start(aws_world, kube_cluster, monkeypatch, request, ns)
    expected = {t: aws_world.counts(t) for t in TENANTS}
    machine.gates["applyPost"] = threading.Event()
    try:
        with _kopf(ns) as first:
            kube_cluster.kubectl("apply", "-f", "-", input=json.dumps(cr))
            _wait_for(lambda: "applyPost" in machine.entered, what="post-data")
        # The first operator is gone; the execution goes on without it.
        assert first.exception is None, first.output[-3000:]
        machine.gates["applyPost"].set()
        with _kopf(ns) as second:
            kube_cluster.kubectl("wait", "--for=condition=Succeeded", "--timeout=240s",
                                 "schemarestore/sfn", "-n", ns, timeout=260)
            obj = _get(kube_cluster, ns)
    finally:
        machine.gates["applyPost"].set()
    assert second.exception is None, second.output[-3000:]
    assert len(machine.executions()) == 1, "a second execution was started"
    assert obj["status"]["phase"] == "Succeeded"
    for tenant, target in obj["status"]["targetSchemas"].items():
        assert aws_world.counts(target) == expected[tenant]
    assert aws_world.leftovers(obj["status"]["record"]["restoreId"]) == []
