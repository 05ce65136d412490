"""The chart's RBAC per mode, as `helm template` renders it.

`watchNamespaces: [a, b]`: a Role in each, and no cluster-wide right at
all. Cluster-wide: one ClusterRole on SchemaRestores. Either
way Jobs, Pods and Secrets only in the release's namespace. That the
rendered rules are exactly what the operator uses (no extra verb) is
proven on the control plane: tests/kube/test_tenancy.py.
"""

from __future__ import annotations

import base64
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
    "cert-manager": {"webhook": {"certManager": {"enabled": True}, "failurePolicy": "Fail"}},
    "no-webhook": {"webhook": {"enabled": False}},
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
    # Kinds of other operators' CRDs (Prometheus Operator, cert-manager) have
    # no schema in kubernetes-validate; tests below read them.
    out.write_text(yaml.safe_dump_all(
        [m for m in render(NS, VALUE_SETS[name])
         if m["kind"] not in ("ServiceMonitor", "Certificate", "Issuer")]))
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
    service, = [s for s in of_kind(manifests, "Service") if s["metadata"]["name"].endswith(
        "-metrics")]
    assert service["spec"]["ports"][0]["port"] == 9191
    monitor, = of_kind(manifests, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert of_kind(render(NS, {"webhook": {"enabled": False}}), "Service", "ServiceMonitor") == []


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


# -- the admission webhook -------------------------------------------------------
WEBHOOK_SERVICE = f"{FULLNAME}-webhook"
WEBHOOK_SECRET = f"{FULLNAME}-webhook-tls"


def _webhook(manifests):
    config, = of_kind(manifests, "ValidatingWebhookConfiguration")
    webhook, = config["webhooks"]
    return config, webhook


def _mounted_secret(manifests) -> str:
    deployment, = of_kind(manifests, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    mount, = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "webhook-tls"]
    volume, = [v for v in spec["volumes"] if v["name"] == "webhook-tls"]
    env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    assert env["PGSR_WEBHOOK_CERTFILE"] == f"{mount['mountPath']}/tls.crt"
    assert env["PGSR_WEBHOOK_PKEYFILE"] == f"{mount['mountPath']}/tls.key"
    return volume["secret"]["secretName"]


def test_the_webhook_is_called_for_create_and_update_only_never_status_or_delete():
    manifests = render(NS)
    config, webhook = _webhook(manifests)
    assert config["metadata"]["name"] == f"{FULLNAME}-{NS}"     # cluster-scoped: one per release
    assert webhook["rules"] == [{"apiGroups": ["pgschemarestore.io"], "apiVersions": ["v1alpha1"],
                                 "resources": ["schemarestores"],
                                 "operations": ["CREATE", "UPDATE"], "scope": "Namespaced"}]
    assert (webhook["sideEffects"], webhook["failurePolicy"], webhook["timeoutSeconds"]) == (
        "None", "Ignore", 5)
    assert webhook["clientConfig"]["service"] == {"name": WEBHOOK_SERVICE, "namespace": NS,
                                                  "path": "/validate-spec", "port": 443}
    service, = [s for s in of_kind(manifests, "Service")
                if s["metadata"]["name"] == WEBHOOK_SERVICE]
    port, = service["spec"]["ports"]
    container = _args(manifests)
    served = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert port["targetPort"] == "webhook" and served["webhook"] == 9443
    assert env["PGSR_WEBHOOK_PORT"] == "9443"
    assert "PGSR_WEBHOOK_MANAGED" not in env          # Helm writes the configuration


def test_helm_makes_a_ca_and_a_certificate_for_the_service():
    from cryptography import x509

    manifests = render(NS)
    _, webhook = _webhook(manifests)
    secret, = [s for s in of_kind(manifests, "Secret") if s["metadata"]["name"] == WEBHOOK_SECRET]
    assert _mounted_secret(manifests) == WEBHOOK_SECRET
    assert secret["type"] == "kubernetes.io/tls"
    assert webhook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"{WEBHOOK_SERVICE}.{NS}.svc" in names.get_values_for_type(x509.DNSName)
    assert "lookup" in (CHART / "templates" / "webhook.yaml").read_text()   # kept on upgrade


def test_cert_manager_mode_injects_its_ca_and_helm_makes_no_certificate():
    manifests = render(NS, {"webhook": {"certManager": {"enabled": True}}})
    config, webhook = _webhook(manifests)
    certificate, = of_kind(manifests, "Certificate")
    issuer, = of_kind(manifests, "Issuer")
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == \
        f"{NS}/{certificate['metadata']['name']}"
    assert "caBundle" not in webhook["clientConfig"]
    assert [s for s in of_kind(manifests, "Secret")
            if s["metadata"]["name"] == WEBHOOK_SECRET] == []
    assert certificate["spec"]["secretName"] == _mounted_secret(manifests) == WEBHOOK_SECRET
    assert f"{WEBHOOK_SERVICE}.{NS}.svc" in certificate["spec"]["dnsNames"]
    assert certificate["spec"]["issuerRef"] == {"kind": "Issuer",
                                                "name": issuer["metadata"]["name"]}
    assert "selfSigned" in issuer["spec"]
    theirs = render(NS, {"webhook": {"certManager": {
        "enabled": True, "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}}})
    assert of_kind(theirs, "Issuer") == []
    certificate, = of_kind(theirs, "Certificate")
    assert certificate["spec"]["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer"}


def test_webhook_disabled_renders_nothing_of_it():
    manifests = render(NS, {"webhook": {"enabled": False}})
    assert of_kind(manifests, "ValidatingWebhookConfiguration", "Certificate", "Secret") == []
    assert not [e for e in _args(manifests)["env"] if e["name"].startswith("PGSR_WEBHOOK_")]


def test_no_mode_grants_rights_on_webhook_configurations():
    """Helm writes the configuration; the operator's managed mode (development)
    would need these rights, and the chart must not give them."""
    for values in ({}, {"watchNamespaces": ["team-a"]},
                   {"webhook": {"certManager": {"enabled": True}}}):
        for role in of_kind(render(NS, values), "Role", "ClusterRole"):
            assert not [r for r in rules_of(role) if r[0] == "admissionregistration.k8s.io"]


def test_a_bad_failure_policy_is_refused():
    res = helm("template", "pgsr", str(CHART), values=with_images(
        {"webhook": {"failurePolicy": "Maybe"}}))
    assert res.returncode != 0 and "failurePolicy" in res.stderr
