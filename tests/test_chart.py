"""The chart's RBAC per mode, as `helm template` renders it.

`watchNamespaces: [a, b]`: a Role in each, and no cluster-wide right at
all. Cluster-wide: one ClusterRole on SchemaRestores. Either
way Jobs, Pods and Secrets only in the release's namespace. That the
rendered rules are exactly what the operator uses (no extra verb) is
proven on the control plane: tests/kube/test_tenancy.py.
"""

from __future__ import annotations

import json

from support.helm import of_kind, render, rules_of

NS = "pgsr-system"
JOB_RULES = {("batch", "jobs", v) for v in ("get", "list", "create", "delete")} | {
    ("", "pods", "list")} | {("", "secrets", v) for v in ("create", "patch", "delete")}
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
    assert roles == {(NS, "pg-schema-restore-jobs"): JOB_RULES,
                     ("team-a", f"pg-schema-restore-{NS}-restores"): WATCH_RULES,
                     ("team-b", f"pg-schema-restore-{NS}-restores"): WATCH_RULES}
    bindings = of_kind(manifests, "RoleBinding", "ClusterRoleBinding")
    assert len(bindings) == 3
    for binding in bindings:
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "pg-schema-restore",
                                        "namespace": NS}]
    args = _args(manifests)["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args
    assert "--all-namespaces" not in args


def test_cluster_wide_mode_keeps_jobs_and_secrets_in_the_operators_namespace():
    manifests = render(NS)
    cluster_roles = {r["metadata"]["name"]: rules_of(r)
                     for r in of_kind(manifests, "ClusterRole")}
    assert cluster_roles == {f"pg-schema-restore-{NS}-restores": WATCH_RULES}
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
