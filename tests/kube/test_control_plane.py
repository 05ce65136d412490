"""Smoke test of the real control plane (tests/support/kube.py): a CRD with
a structural schema and a status subresource, server-side validation (422),
and the real Job controller + garbage collector with a test playing the
kubelet."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from kubernetes import client

from support.kube import pod_succeeded_status

GROUP = "smoke.pgsr.test"

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                  "shortNames": ["wdg"]},
        "versions": [{
            "name": "v1alpha1", "served": True, "storage": True,
            "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {
                        "type": "object", "required": ["size"],
                        "properties": {
                            "size": {"type": "integer", "minimum": 1},
                            "color": {"type": "string", "enum": ["red", "blue"],
                                      "default": "red"},
                        },
                    },
                    "status": {
                        "type": "object",
                        "properties": {"phase": {"type": "string"}},
                    },
                },
            }},
        }],
    },
}


def wait_for(what: str, fn, timeout: float = 60, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@pytest.fixture
def namespace(kube_cluster):
    name = "smoke-" + uuid.uuid4().hex[:8]
    kube_cluster.kubectl("create", "namespace", name)
    # Pods need the namespace's default ServiceAccount token (ServiceAccount
    # admission); the controller-manager creates it within a second or so.
    wait_for("default service account token", lambda: json.loads(
        kube_cluster.kubectl("get", "serviceaccount", "default", "-n", name, "-o", "json",
                             check=False).stdout or "{}").get("secrets"))
    yield name
    kube_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_crd_validation_status_and_job_lifecycle(kube_cluster, namespace):
    k = kube_cluster.kubectl
    api = kube_cluster.api_client()
    version = client.VersionApi(api).get_code()
    assert version.git_version.startswith("v1.20"), version

    # --- CRD: apply, Established
    k("apply", "-f", "-", input=json.dumps(CRD))
    k("wait", "--for=condition=Established", f"crd/widgets.{GROUP}", "--timeout=60s")

    # --- an instance: defaults applied, generation, status subresource
    custom = client.CustomObjectsApi(api)
    widget = {"apiVersion": f"{GROUP}/v1alpha1", "kind": "Widget",
              "metadata": {"name": "w1"}, "spec": {"size": 3}}
    k("apply", "-n", namespace, "-f", "-", input=json.dumps(widget))
    got = custom.get_namespaced_custom_object(GROUP, "v1alpha1", namespace, "widgets", "w1")
    assert got["spec"] == {"size": 3, "color": "red"}
    assert got["metadata"]["generation"] == 1
    custom.patch_namespaced_custom_object_status(
        GROUP, "v1alpha1", namespace, "widgets", "w1", {"status": {"phase": "Ready"}})
    got = custom.get_namespaced_custom_object(GROUP, "v1alpha1", namespace, "widgets", "w1")
    assert got["status"] == {"phase": "Ready"}
    assert got["metadata"]["generation"] == 1  # status writes do not bump generation
    assert k("get", "wdg", "w1", "-n", namespace, "-o", "name").stdout.strip() == \
        f"widget.{GROUP}/w1"

    # --- the server's structural-schema validation: 422 (not kubectl's)
    bad = {**widget, "metadata": {"name": "bad"}, "spec": {"size": 0, "color": "green"}}
    res = k("--validate=false", "create", "-n", namespace, "-f", "-", "-v=6",
            input=json.dumps(bad), check=False)
    assert res.returncode != 0
    assert "422" in res.stderr, res.stderr
    assert "is invalid" in res.stderr and "spec.size" in res.stderr \
        and "spec.color" in res.stderr, res.stderr
    with pytest.raises(client.ApiException) as exc:
        custom.create_namespaced_custom_object(
            GROUP, "v1alpha1", namespace, "widgets",
            {**bad, "metadata": {"name": "bad2"}, "spec": {"size": "three"}})
    assert exc.value.status == 422

    # --- a Job: the real Job controller makes a Pod (Pending: no kubelet)
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j1"},
           "spec": {"backoffLimit": 0, "template": {"spec": {
               "restartPolicy": "Never",
               "containers": [{"name": "main", "image": "busybox",
                               "command": ["sh", "-c", "exit 0"]}]}}}}
    created = batch.create_namespaced_job(namespace, job)
    pods = wait_for("the Job's Pod", lambda: core.list_namespaced_pod(
        namespace, label_selector=f"controller-uid={created.metadata.uid}").items)
    assert len(pods) == 1
    pod = pods[0]
    assert pod.status.phase == "Pending"
    owner = pod.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("Job", "j1", True)

    # --- play the kubelet: the Pod ran and exited 0 -> the Job completes
    core.patch_namespaced_pod_status(pod.metadata.name, namespace,
                                     pod_succeeded_status(["main"]))

    def complete():
        j = batch.read_namespaced_job("j1", namespace)
        conds = {c.type: c.status for c in (j.status.conditions or [])}
        return j if conds.get("Complete") == "True" else None
    done = wait_for("Job j1 Complete", complete)
    assert done.status.succeeded == 1
    assert not done.status.failed
    assert done.status.completion_time is not None

    # --- garbage collection by ownerRef: deleting the Job deletes its Pod
    batch.delete_namespaced_job("j1", namespace, propagation_policy="Background")
    wait_for("the Job's Pod garbage-collected", lambda: not core.list_namespaced_pod(
        namespace, label_selector=f"controller-uid={created.metadata.uid}").items)
    api.close()
