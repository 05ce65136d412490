"""The validating admission webhook, and the report of a spec it did not
stop, on the real control plane (kube-apiserver 1.20: no CEL, so without
the webhook a spec change is accepted).

The operator runs as a `kopf run` process serving kopf's webhook server on
127.0.0.1 with a self-signed certificate, and writes its own
ValidatingWebhookConfiguration (`PGSR_WEBHOOK_MANAGED`, the development
mode; the chart's is tested in tests/test_chart.py). Its restores are
refused by the source policy (no source declared), so nothing runs and
nothing is created: these tests are about admission and status only. The
restore that keeps running its first spec is tests/kube/test_spec_change.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client

from support.kube import install_crd
from support.processes import stop_gracefully
from support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "pgschemarestore.io", "v1alpha1", "schemarestores"
SPEC = {"database": "app", "schemas": ["tenant_a"], "restoreTime": "2024-01-28T14:30:00Z"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Admission:
    """A namespace, the operator process (with or without its webhook), kubectl."""

    def __init__(self, kube, namespace: str, tmp: Path) -> None:
        self.kube, self.ns, self.tmp = kube, namespace, tmp
        self.webhook_name = f"{namespace}.test.pgschemarestore.io"
        self.port = _free_port()
        self.custom = client.CustomObjectsApi(kube.api_client())
        self.operator: subprocess.Popen | None = None

    def start(self, webhook: bool) -> None:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("PGSR_")},
               "KUBECONFIG": str(self.kube.kubeconfig), "PGSR_PROVIDER": "local",
               "PGSR_EXECUTOR": "subprocess", "PGSR_JOB_NAMESPACE": self.ns,
               "PGSR_METRICS_PORT": "0", "PGSR_LOCAL_WORKDIR": str(self.tmp)}
        if webhook:
            env.update({"PGSR_WEBHOOK_PORT": str(self.port), "PGSR_WEBHOOK_ADDR": "127.0.0.1",
                        "PGSR_WEBHOOK_HOST": "127.0.0.1",
                        "PGSR_WEBHOOK_MANAGED": self.webhook_name})
        log = open(self.tmp / "operator.log", "a")
        self.operator = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", "-m", "pg_schema_restore.k8s.handlers",
             "--namespace", self.ns, "--standalone"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        if webhook:   # the API server calls it once it has read the configuration
            wait_until(self._refuses_a_probe, 60, "the webhook to answer", self.log)

    def _refuses_a_probe(self) -> bool:
        probe = self.kubectl_apply("probe", {**SPEC, "snapshotId": "s"}, "--dry-run=server")
        return probe.returncode != 0 and "denied the request" in probe.stderr

    def stop(self) -> None:
        stop_gracefully(self.operator)

    def remove_webhook(self) -> None:
        for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
            self.kube.kubectl("delete", kind, self.webhook_name, "--ignore-not-found",
                              check=False)

    def log(self, tail: int | None = 6000) -> str:
        path = self.tmp / "operator.log"
        text = path.read_text() if path.exists() else ""
        return text[-tail:] if tail else text

    def kubectl_apply(self, name: str, spec: dict, *args: str) -> subprocess.CompletedProcess:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SchemaRestore",
                "metadata": {"name": name, "namespace": self.ns}, "spec": spec}
        return self.kube.kubectl("apply", *args, "-f", "-", input=json.dumps(body), check=False)

    def patch_spec(self, name: str, spec: dict) -> subprocess.CompletedProcess:
        return self.kube.kubectl("patch", "schemarestore", name, "-n", self.ns, "--type=merge",
                                 "-p", json.dumps({"spec": spec}), check=False)

    def get(self, name: str) -> dict | None:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL,
                                                            name)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def condition(self, name: str, type_: str) -> dict:
        for cond in ((self.get(name) or {}).get("status") or {}).get("conditions") or []:
            if cond["type"] == type_:
                return cond
        return {}

    def events(self, reason: str) -> list[dict]:
        listed = self.kube.kubectl("get", "events", "-n", self.ns, "-o", "json",
                                   "--field-selector", f"reason={reason}").stdout
        return json.loads(listed)["items"]

    def refused_by_the_operator(self, name: str) -> dict:
        """Created, and ended by the operator itself (no source declared)."""
        return wait_until(lambda: (c := self.condition(name, "Succeeded")) and c["status"] == "False"
                     and c, 60, f"{name} to be refused by the operator", self.log)


@pytest.fixture
def admission(kube_cluster, tmp_path, request):
    install_crd(kube_cluster)
    namespace = "adm-" + request.node.name.replace("_", "-")[5:40].lower().strip("-")
    kube_cluster.kubectl("create", "namespace", namespace)
    world = Admission(kube_cluster, namespace, tmp_path)
    try:
        yield world
    finally:
        # The control plane is shared by this worker's other tests: the
        # cluster-wide configuration must not outlive this test.
        world.stop()
        world.remove_webhook()


def test_the_webhook_refuses_spec_changes_and_invalid_specs_and_lets_the_rest_through(admission):
    admission.start(webhook=True)
    # A create the spec parser refuses: never stored; kubectl says why.
    both = admission.kubectl_apply("both", {**SPEC, "snapshotId": "nightly"})
    assert both.returncode != 0, both.stdout
    assert "denied the request: InvalidSpec: exactly one of restoreTime and snapshotId" \
        in both.stderr
    assert admission.get("both") is None
    created = admission.kubectl_apply("mine", SPEC)
    assert created.returncode == 0, created.stderr
    admission.refused_by_the_operator("mine")      # status written through the subresource
    # A spec change: refused, with the fields named.
    changed = admission.patch_spec("mine", {"schemas": ["tenant_b"], "jobs": 4})
    assert changed.returncode != 0
    assert "spec is immutable; create a new SchemaRestore (changed: jobs, schemas)" \
        in changed.stderr
    obj = admission.get("mine")
    assert obj["spec"]["schemas"] == ["tenant_a"] and obj["metadata"]["generation"] == 1
    # Metadata and status: accepted (kopf's own finalizer was added the same way).
    assert "pgschemarestore.io/cleanup" in obj["metadata"]["finalizers"]
    for args in (("label", "schemarestore", "mine", "team=a"),
                 ("annotate", "schemarestore", "mine", "note=kept")):
        done = admission.kube.kubectl(*args, "-n", admission.ns, check=False)
        assert done.returncode == 0, done.stderr
    admission.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, admission.ns, PLURAL, "mine", {"status": {"warnings": ["seen by test"]}})
    obj = admission.get("mine")
    assert obj["metadata"]["labels"]["team"] == "a"
    assert obj["status"]["warnings"] == ["seen by test"]
    assert obj["metadata"]["generation"] == 1
    assert admission.condition("mine", "SpecChangeIgnored") == {}
    # A deletion: never refused (the finalizer's removal is an update it passes).
    deleted = admission.kube.kubectl("delete", "schemarestore", "mine", "-n", admission.ns,
                                     "--timeout=60s", check=False)
    assert deleted.returncode == 0, deleted.stderr + admission.log()
    assert admission.get("mine") is None


def test_a_change_made_while_the_webhook_is_down_is_reported(admission):
    """failurePolicy Ignore (the default): with the operator down the change
    is accepted; back up, the operator says it is not honoured, once."""
    admission.start(webhook=True)
    assert admission.kubectl_apply("mine", SPEC).returncode == 0
    refused = admission.refused_by_the_operator("mine")
    admission.stop()
    changed = admission.patch_spec("mine", {"schemas": ["tenant_b"]})
    assert changed.returncode == 0, changed.stderr
    obj = admission.get("mine")
    assert obj["metadata"]["generation"] == 2 and obj["status"]["observedGeneration"] == 1
    admission.remove_webhook()
    admission.start(webhook=False)
    ignored = wait_until(lambda: admission.condition("mine", "SpecChangeIgnored"), 60,
                    "SpecChangeIgnored", admission.log)
    assert (ignored["status"], ignored["reason"]) == ("True", "SpecImmutable")
    assert "generation 2" in ignored["message"] and "generation 1" in ignored["message"]
    events = wait_until(lambda: admission.events("SpecImmutable"), 30, "the event", admission.log)
    obj = admission.get("mine")
    assert obj["status"]["observedGeneration"] == 1         # the generation it ran
    assert admission.condition("mine", "Succeeded") == refused   # its verdict is untouched
    # One event, still one after the operator's next start (nothing new to say).
    admission.stop()
    admission.start(webhook=False)
    wait_until(lambda: admission.log(None).count("Daemon 'drive' succeeded") >= 3, 60,
          "the restarted operator to look at the restore again", admission.log)
    assert admission.log(None).count("Handler 'spec-changed") == 1
    events = admission.events("SpecImmutable")
    assert len(events) == 1 and events[0]["type"] == "Warning", events
    assert events[0].get("count", 1) == 1
