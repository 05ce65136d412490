"""The chart's RBAC per mode, as `helm template` renders it.

`watchNamespaces: [a, b]`: a Role in each, and no cluster-wide right but
reading the CRD. Cluster-wide: one ClusterRole on SchemaRestores. Either
way Jobs, Pods and Secrets only in the release's namespace. That the
rendered rules are exactly what the operator uses (no extra verb) is
proven on the control plane: tests/kube/test_tenancy.py.
"""

from __future__ import annotations

import json

from support.helm import of_kind, render, rules_of

NS = "pgsr-system"
CRD_READ = {("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")}
JOB_RULES = {("batch", "jobs", v) for v in ("get", "list", "create", "delete")} | {
    ("", "pods", "list")} | {("", "secrets", v) for v in ("create", "patch", "delete")}
WATCH_RULES = {("pgschemarestore.io", "schemarestores", v)
               for v in ("get", "list", "watch", "patch")} | {
    ("pgschemarestore.io", "schemarestores/status", "patch"), ("", "events", "create")}


def _args(manifests):
    deployment, = of_kind(manifests, "Deployment")
    return deployment["spec"]["template"]["spec"]["containers"][0]


def test_watch_namespaces_mode_has_roles_there_and_no_cluster_rights():
    manifests = render(NS, {"watchNamespaces": ["team-a", "team-b"]})
    cluster_roles = of_kind(manifests, "ClusterRole")
    assert [rules_of(r) for r in cluster_roles] == [CRD_READ]
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]): rules_of(r)
             for r in of_kind(manifests, "Role")}
    assert roles == {(NS, "pg-schema-restore-jobs"): JOB_RULES,
                     ("team-a", "pg-schema-restore-restores"): WATCH_RULES,
                     ("team-b", "pg-schema-restore-restores"): WATCH_RULES}
    bindings = of_kind(manifests, "RoleBinding", "ClusterRoleBinding")
    assert len(bindings) == 4
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
    assert cluster_roles == {"pg-schema-restore-crd-read": CRD_READ,
                             "pg-schema-restore-restores": WATCH_RULES}
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
