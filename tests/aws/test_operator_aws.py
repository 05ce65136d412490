"""The operator with the AWS provider: moto + real PostgreSQL + real apiserver.

The minimal SchemaRestore (the seed's input: database, schemas, restoreTime)
gets its source and temporary-database settings from the operator's
defaults. kopf runs in-process (moto is in-process), the Jobs' pods are run
by the test kubelet, RDS restores become genuine local PITR copies.
"""

from __future__ import annotations

import json
import urllib.request

import pytest
from kopf.testing import KopfRunner
from kubernetes import client

from pg_schema_restore import wiring
from pg_schema_restore.k8s import handlers
from pg_schema_restore.config import OperatorConfig
from pg_schema_restore.local.cluster import free_port
from support.aws import BUCKET, REGION, TENANTS
from support.kube import serve_in_process
from support.kubelet import LocalKubelet
from support.pg import restore_point

GROUP, VERSION, PLURAL = "pgschemarestore.io", "v1alpha1", "schemarestores"


def _start(aws_world, kube_cluster, monkeypatch, request, ns: str,
           **config) -> tuple[dict, int, int]:
    """CRD, namespace, operator config on moto; returns (minimal spec, ports)."""
    serve_in_process(kube_cluster, monkeypatch, ns)
    defaults = {k: v for k, v in aws_world.spec(snapshotId="unused").items()
                if k in ("source", "temporaryDatabase")}
    metrics_port, health_port = free_port(), free_port()
    handlers.configure(OperatorConfig(
        provider="aws", executor="job", artifacts_root=f"s3://{BUCKET}/operator",
        spec_defaults=defaults, metrics_port=metrics_port, max_concurrent=2,
        job_namespace=ns, allow_raw_sources=True,   # the defaults name raw ids
        job_poll_seconds=0.2, **config))
    monkeypatch.setattr(wiring, "SESSION_FACTORY", lambda region=None: aws_world.sim.session())
    point = restore_point()
    minimal = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SchemaRestore",
               "metadata": {"name": "seed-input", "namespace": ns},
               "spec": {"database": aws_world.database, "schemas": list(TENANTS),
                        "restoreTime": point.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}}
    return minimal, metrics_port, health_port


def _kopf(ns: str, health_port: int) -> KopfRunner:
    return KopfRunner(["run", "-m", "pg_schema_restore.k8s.handlers", "--namespace", ns,
                       "--standalone", f"--liveness=http://127.0.0.1:{health_port}/healthz"])


@pytest.mark.e2e
def test_operator_restores_on_aws(aws_world, kube_cluster, monkeypatch, request):
    ns = "aws-operator"
    minimal, metrics_port, health_port = _start(aws_world, kube_cluster, monkeypatch,
                                                request, ns)
    expected = {t: aws_world.counts(t) for t in TENANTS}
    aws_world.damage()
    before = aws_world.fingerprint()
    api = kube_cluster.api_client()
    kubelet = LocalKubelet(api, ns).start()
    try:
        with _kopf(ns, health_port) as runner:
            kube_cluster.kubectl("apply", "-f", "-", input=json.dumps(minimal))
            kube_cluster.kubectl("wait", "--for=condition=Succeeded", "--timeout=240s",
                                 "schemarestore/seed-input", "-n", ns, timeout=260)
            health = urllib.request.urlopen(f"http://127.0.0.1:{health_port}/healthz").read()
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read()
            obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
                GROUP, VERSION, ns, PLURAL, "seed-input")
    finally:
        kubelet.stop()
    assert runner.exception is None, runner.output[-3000:]
    status = obj["status"]
    assert status["phase"] == "Succeeded"
    record = status["record"]
    # The CR names no source: the defaults' prod-db was found (an instance).
    assert "source" not in minimal["spec"] and record["source"]["kind"] == "instance"
    for tenant, target in status["targetSchemas"].items():
        assert aws_world.counts(target) == expected[tenant]
    after = aws_world.fingerprint()
    assert {k: after[k] for k in before} == before
    assert aws_world.leftovers(record["restoreId"]) == []
    assert json.loads(health)["restores"] == {"running": 0}
    text = metrics.decode()
    assert 'pgsr_restores_total{reason="",result="succeeded"} 1.0' in text
    assert "pgsr_phase_duration_seconds_count" in text
    assert aws_world.role_password not in json.dumps(obj)
    assert REGION in json.dumps(record["resources"])


@pytest.mark.e2e
def test_operator_retries_a_failed_cleanup(aws_world, kube_cluster, monkeypatch,
                                           request):
    """The temporary instance cannot be deleted at first: the restore reports
    CleanupFailed, the operator retries on its own, and ends Succeeded with
    nothing left behind and the restored schemas in place."""
    ns = "aws-cleanup-retry"
    minimal, _, health_port = _start(aws_world, kube_cluster, monkeypatch, request, ns,
                                     cleanup_retry_seconds=1)
    expected = {t: aws_world.counts(t) for t in TENANTS}
    aws_world.sim.fail("rds.DeleteDBInstance", code="AccessDenied")
    api = kube_cluster.api_client()
    kubelet = LocalKubelet(api, ns).start()
    try:
        with _kopf(ns, health_port) as runner:
            kube_cluster.kubectl("apply", "-f", "-", input=json.dumps(minimal))
            kube_cluster.kubectl("wait", "--for=condition=Succeeded", "--timeout=240s",
                                 "schemarestore/seed-input", "-n", ns, timeout=260)
            obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
                GROUP, VERSION, ns, PLURAL, "seed-input")
            events = client.CoreV1Api(api).list_namespaced_event(ns).items
    finally:
        kubelet.stop()
    assert runner.exception is None, runner.output[-3000:]
    record = obj["status"]["record"]
    assert record["result"]["cleanupRetries"] == 1
    assert "AccessDenied" in record["result"]["previousCleanupErrors"][0]
    assert "CleanupRetry" in {e.reason for e in events}
    assert aws_world.leftovers(record["restoreId"]) == []
    for tenant, target in obj["status"]["targetSchemas"].items():
        assert aws_world.counts(target) == expected[tenant]
