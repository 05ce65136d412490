"""The chart's RBAC per mode, as `helm template` renders it.

`watchNamespaces: [a, b]`: a Role in each, and no cluster-wide right at
all. Cluster-wide: one ClusterRole on SchemaRestores. Either
way Jobs, Pods and Secrets only in the release's namespace. That the
rendered rules are exactly what the operator uses (no extra verb) is
proven on the control plane: tests/kube/test_tenancy.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from support.helm import CHART, helm, of_kind, render, rules_of, with_images

NS = "pgsr-system"
FULLNAME = "pgsr-pg-schema-restore"     # release "pgsr" (support/helm.render)
JOB_RULES = {("batch", "jobs", v) for v in ("get", "list", "create", "delete")} | {
    ("", "pods", "list"), ("", "pods/log", "get")} | {("", "secrets", v) for v in ("create", "patch", "delete")}
WATCH_RULES = {("pgschemarestore.io", "schemarestores", v)
               for v in ("get", "list", "watch", "patch")} | {
    ("pgschemarestore.io", "schemarestores/status", "patch"), ("", "events", "create")}


def _args(manifests):
    deployment, = of_kind(manifests, "Deployment")
    return deployment["spec"]["template"]["spec"]["containers"][0]


def test_watch_namespaces_mode_has_roles_there_and_no_cluster_role():
    manifests = render(NS, {"watchNamespaces": ["team-a", "team-b"]})
    assert of_kind(manifests, "ClusterRole", "ClusterRoleBinding") == []
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]): rules_of(r)
             for r in of_kind(manifests, "Role")}
    assert roles == {(NS, f"{FULLNAME}-jobs"): JOB_RULES,
                     ("team-a", f"{FULLNAME}-{NS}-restores"): WATCH_RULES,
                     ("team-b", f"{FULLNAME}-{NS}-restores"): WATCH_RULES}
    bindings = of_kind(manifests, "RoleBinding", "ClusterRoleBinding")
    assert len(bindings) == 3
    for binding in bindings:
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME,
                                        "namespace": NS}]
    args = _args(manifests)["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args
    assert "--all-namespaces" not in args


def test_cluster_wide_mode_keeps_jobs_and_secrets_in_the_operators_namespace():
    manifests = render(NS)
    cluster_roles = {r["metadata"]["name"]: rules_of(r)
                     for r in of_kind(manifests, "ClusterRole")}
    assert cluster_roles == {f"{FULLNAME}-{NS}-restores": WATCH_RULES}
    roles = of_kind(manifests, "Role")
    assert [(r["metadata"]["namespace"], rules_of(r)) for r in roles] == [(NS, JOB_RULES)]
    assert "--all-namespaces" in _args(manifests)["args"]


def test_no_rule_grants_finalizers_escalation_or_wildcards():
    for values in ({}, {"watchNamespaces": ["team-a"]}):
        for role in of_kind(render(NS, values), "Role", "ClusterRole"):
            for group, resource, verb in rules_of(role):
                assert "*" not in (group, resource, verb)
                assert verb not in ("escalate", "bind", "impersonate", "update")
                assert resource not in ("schemarestores/finalizers", "serviceaccounts/token")


def test_the_deployment_hands_sources_and_the_job_namespace_to_the_operator():
    sources = {"team-a-db": {"dbIdentifier": "prod-a", "secretArn": "arn:a",
                             "region": "eu-west-1", "namespaces": ["team-a"]}}
    env = {e["name"]: e.get("value") for e in _args(render(NS, {"sources": sources}))["env"]}
    assert env["PGSR_JOB_NAMESPACE"] == NS
    assert json.loads(env["PGSR_SOURCES"]) == sources
    assert env["PGSR_ALLOW_RAW_SOURCES"] == "false"


# -- the chart as a user installs it ------------------------------------------
VALUE_SETS = {
    "defaults": {},
    "watch-namespaces": {"watchNamespaces": ["team-a", "team-b"], "awsRegion": "eu-west-1"},
    "everything": {
        "sources": {"team-a-db": {"dbIdentifier": "prod-a", "secretArn": "arn:aws:x",
                                  "region": "eu-west-1", "namespaces": ["team-a"]}},
        "metrics": {"serviceMonitor": True}, "awsRegion": "eu-west-1",
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/r"}},
        "stepFunctions": {"stateMachineArn": "arn:aws:states:eu-west-1:1:stateMachine:m"}},
}


@pytest.mark.parametrize("name", VALUE_SETS)
def test_lint_strict_and_every_manifest_validates(name, tmp_path):
    values = with_images(VALUE_SETS[name])
    lint = helm("lint", "--strict", str(CHART), values=values)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    out = tmp_path / "rendered.yaml"
    out.write_text(yaml.safe_dump_all(
        [m for m in render(NS, VALUE_SETS[name]) if m["kind"] != "ServiceMonitor"]))
    check = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict",
                            "--quiet", "-k", "1.30.0", str(out)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_misspelt_value_is_refused():
    res = helm("template", "pgsr", str(CHART), values=with_images({"maxConcurentRestores": 2}))
    assert res.returncode != 0 and "maxConcurentRestores" in res.stderr


def test_no_image_means_a_clear_refusal_not_someone_elses_image():
    res = helm("template", "pgsr", str(CHART), values={})
    assert res.returncode != 0 and "image.repository" in res.stderr


def test_service_monitor_renders_a_service_for_the_metrics_port():
    manifests = render(NS, {"metrics": {"serviceMonitor": True, "port": 9191}})
    service, = of_kind(manifests, "Service")
    assert service["spec"]["ports"][0]["port"] == 9191
    monitor, = of_kind(manifests, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert of_kind(render(NS), "Service", "ServiceMonitor") == []


def test_no_empty_aws_region_and_names_follow_the_release():
    env = {e["name"] for e in _args(render(NS))["env"]}
    assert "AWS_REGION" not in env
    first = {(m["kind"], m["metadata"]["name"]) for m in render(NS, release="one")}
    second = {(m["kind"], m["metadata"]["name"]) for m in render(NS, release="two")}
    assert first and not first & second


def test_notes_say_what_to_do_next():
    res = helm("install", "pgsr", str(CHART), "--dry-run=client", "-n", NS,
               values=with_images({}))
    assert res.returncode == 0, res.stderr
    assert "kubectl apply -n NAMESPACE" in res.stdout and "SourceNotAllowed" in res.stdout
