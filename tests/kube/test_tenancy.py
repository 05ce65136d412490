"""Tenancy and credentials on the real control plane, under real RBAC.

The operator runs as a ServiceAccount holding exactly the RBAC that `helm
template` renders from the chart, with the chart's own kopf arguments and
environment (sources, job namespace); only the provider is the local one
(genuine PITR copies) and the kubelet is the test's. Tenants are users the
admin impersonates (`Impersonate-User`, what `kubectl --as` sends), each
holding only a team's Role in its namespace.

The apiserver audits service accounts (scripts/kube/up.sh): after the run,
every verb the rendered Roles grant must have been used by the operator and
none of its requests refused: the chart grants exactly what it needs.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.config import new_client_from_config
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from kube.test_operator import TENANT, World
from support.helm import of_kind, render, rules_of
from support.kube import install_crd
from support.pg import restore_point
from support.processes import stop_gracefully
from support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "pgschemarestore.io", "v1alpha1", "schemarestores"
SA = "pgsr-pg-schema-restore"   # the chart's service account for release "pgsr"
RBAC_KINDS = ("ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
# What a team gets: SchemaRestores, and (for the scan) what it can read of its
# namespace, secrets and pod logs included.
TEAM_ROLE = [
    {"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["create", "get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["secrets", "pods", "pods/log", "events", "configmaps"],
     "verbs": ["get", "list"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list"]},
]


class Tenancy:
    """The operator's namespace and RBAC from the chart, tenants, and the operator."""

    def __init__(self, kube, operator_ns: str, values: dict[str, Any], tmp: Path) -> None:
        self.kube, self.ns, self.tmp = kube, operator_ns, tmp
        self.admin = kube.api_client()
        self.manifests = render(operator_ns, values)
        self.operator: subprocess.Popen | None = None
        kube.kubectl("create", "namespace", operator_ns)
        for manifest in self.manifests:
            for namespace in [manifest["metadata"].get("namespace")]:
                if namespace and namespace != operator_ns:
                    kube.kubectl("create", "namespace", namespace, check=False)
        rbac = [m for m in self.manifests if m["kind"] in RBAC_KINDS]
        kube.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                           "items": rbac}))
        self.user = f"system:serviceaccount:{operator_ns}:{SA}"
        self.kubeconfig = self._service_account_kubeconfig()

    def _service_account_kubeconfig(self) -> Path:
        """A kubeconfig holding the ServiceAccount's token: the operator is it."""
        core = client.CoreV1Api(self.admin)
        for account in (SA, "default"):   # Job pods need the namespace's default token too
            wait_until(lambda: core.read_namespaced_service_account(account, self.ns).secrets,
                  60, f"the token of {account}")
        token_secret = core.read_namespaced_service_account(SA, self.ns).secrets[0].name
        token = base64.b64decode(core.read_namespaced_secret(token_secret, self.ns)
                                 .data["token"]).decode()
        admin = yaml.safe_load(Path(self.kube.kubeconfig).read_text())
        config = {**admin, "users": [{"name": "operator", "user": {"token": token}}],
                  "contexts": [{"name": "operator", "context": {
                      "cluster": admin["clusters"][0]["name"], "user": "operator",
                      "namespace": self.ns}}],
                  "current-context": "operator"}
        path = self.tmp / "operator.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def as_user(self, user: str) -> client.ApiClient:
        """An admin client that impersonates `user` (what `kubectl --as` does)."""
        api = self.kube.api_client()
        api.set_default_header("Impersonate-User", user)
        return api

    def operator_may(self, verb: str, resource: str, namespace: str = "",
                     group: str = "") -> bool:
        """What the apiserver answers for the operator's ServiceAccount
        (a SubjectAccessReview, asked as the admin)."""
        review = client.AuthorizationV1Api(self.admin).create_subject_access_review({"spec": {
            "user": self.user, "groups": ["system:serviceaccounts"],
            "resourceAttributes": {"verb": verb, "resource": resource, "group": group,
                                   "namespace": namespace}}})
        return review.status.allowed

    def team(self, namespace: str, user: str) -> client.ApiClient:
        """`user` with a team's Role in `namespace`, and nothing else."""
        self.kube.kubectl("create", "namespace", namespace, check=False)
        role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": "team", "namespace": namespace}, "rules": TEAM_ROLE}
        binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": "team", "namespace": namespace},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                               "name": "team"},
                   "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                                 "name": user}]}
        self.kube.kubectl("apply", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": [role, binding]}))
        return self.as_user(user)

    # -- the operator, as the chart runs it ---------------------------------------
    def container(self) -> dict[str, Any]:
        deployment, = of_kind(self.manifests, "Deployment")
        return deployment["spec"]["template"]["spec"]["containers"][0]

    def start(self, local_env: dict[str, str]) -> None:
        container = self.container()
        args = [a for a in container["args"][1:] if not a.startswith("--liveness")]
        # The webhook needs the chart's Service and certificate: tested on its
        # own (tests/kube/test_admission.py); here the operator runs without it.
        chart_env = {e["name"]: e["value"] for e in container["env"] if "value" in e
                     and not e["name"].startswith("PGSR_WEBHOOK_")}
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("PGSR_")},
               **chart_env, **local_env, "KUBECONFIG": str(self.kubeconfig)}
        assert env["PGSR_JOB_NAMESPACE"] == self.ns    # from the chart
        log = open(self.tmp / "operator.log", "a")
        self.operator = subprocess.Popen([sys.executable, "-m", "kopf", *args], env=env,
                                         stdout=log, stderr=subprocess.STDOUT, cwd=REPO)

    def stop(self) -> None:
        stop_gracefully(self.operator)

    def log(self) -> str:
        path = self.tmp / "operator.log"
        return path.read_text()[-6000:] if path.exists() else ""

    def audited(self) -> list[dict[str, Any]]:
        """The operator's requests, from the apiserver's audit log."""
        path = self.kube.dir / "logs" / "audit.log"
        events = [json.loads(line) for line in path.read_text().splitlines() if line]
        return [e for e in events if e["user"]["username"] == self.user]

    def rules(self, kind: str, namespace: str | None = None) -> set[tuple[str, str, str]]:
        found: set[tuple[str, str, str]] = set()
        for manifest in of_kind(self.manifests, kind):
            if namespace is None or manifest["metadata"].get("namespace") == namespace:
                found |= rules_of(manifest)
        return found

    def teardown(self) -> None:
        self.stop()
        cluster_wide = [m for m in self.manifests
                        if m["kind"] in ("ClusterRole", "ClusterRoleBinding")]
        for manifest in cluster_wide:
            self.kube.kubectl("delete", manifest["kind"], manifest["metadata"]["name"],
                              "--ignore-not-found", check=False)


def _restore(namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SchemaRestore",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def _succeeded(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict:
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == "Succeeded" and cond["status"] != "Unknown":
            return cond
    return {}


def _everything_readable(api: client.ApiClient, namespace: str) -> str:
    """All a tenant can read in its namespace: objects of every kind it may
    list, and every pod's log, as one text."""
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    custom = client.CustomObjectsApi(api)
    texts = [json.dumps(api.sanitize_for_serialization(listed), default=str) for listed in (
        core.list_namespaced_secret(namespace), core.list_namespaced_pod(namespace),
        core.list_namespaced_event(namespace), core.list_namespaced_config_map(namespace),
        batch.list_namespaced_job(namespace))]
    texts.append(json.dumps(custom.list_namespaced_custom_object(GROUP, VERSION, namespace,
                                                                 PLURAL)))
    for pod in core.list_namespaced_pod(namespace).items:
        texts.append(core.read_namespaced_pod_log(pod.metadata.name, namespace))
    return "\n".join(texts)


def _credentials(dsns: list[str], *passwords: str) -> set[str]:
    """Every password and connection string the restore's steps were given."""
    found = {p for p in passwords if p}
    for dsn in dsns:
        found.add(dsn)
        found.add(conninfo_to_dict(dsn)["password"])
    return found


@pytest.fixture
def team_world(kube_cluster, prod, prod_base_backup, wal_archive, new_db, tmp_path):
    """Production with two tenants' schemas, a restore point, damage after it."""
    install_crd(kube_cluster)
    db = new_db(prod, "tn")
    with prod.connect(db) as conn:
        for tenant in ("tenant_a", "tenant_b"):
            s = sql.Identifier(tenant)
            conn.execute(sql.SQL(TENANT).format(s=s))
            conn.execute(sql.SQL("INSERT INTO {}.accounts(name) SELECT 'acct ' || g "
                                 "FROM generate_series(1, 20) g").format(s))
    point = restore_point()
    prod.archive_current_wal(wal_archive)
    return db, point, (prod, prod_base_backup, wal_archive)


@pytest.mark.e2e
def test_tenants_under_the_charts_rbac(kube_cluster, team_world, tmp_path):
    """team-a restores its source; other sources and raw ids are refused with
    nothing created; team-a reads no credential after a success nor after a
    failure; team-c (not watched) is ignored; the operator has no
    cluster-wide right on secrets or jobs and used every verb it was given."""
    db, point, (prod, base_backup, wal_archive) = team_world
    sources = {"team-a-db": {"dbIdentifier": "prod-a", "region": "eu-west-1",
                             "secretArn": "arn:aws:secretsmanager:eu-west-1:1:secret:a",
                             "namespaces": ["team-a"], "databases": [db],
                             "schemas": ["tenant_a"]},
               "team-b-db": {"dbIdentifier": "prod-b", "secretArn": "b",
                             "namespaces": ["team-b"]}}
    world = Tenancy(kube_cluster, "pgsr-system", {"watchNamespaces": ["team-a", "team-b"],
                                                  "sources": sources}, tmp_path)
    alice = world.team("team-a", "alice")
    kube_cluster.kubectl("create", "namespace", "team-c")
    # World supplies the local provider (production, PITR, secrets directory) and
    # the test kubelet, which plays the node in the operator's namespace only.
    local = World(kube_cluster, prod, base_backup, wal_archive, tmp_path, "pgsr-system", db)
    local_env = {k: v for k, v in local.env.items() if k.startswith("PGSR_")}
    as_alice = client.CustomObjectsApi(alice)
    admin = client.CustomObjectsApi(world.admin)
    admin_core, admin_batch = client.CoreV1Api(world.admin), client.BatchV1Api(world.admin)
    base = {"database": db, "schemas": ["tenant_a"],
            "restoreTime": point.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    try:
        world.start(local_env)
        # -- refused: another team's source, a raw id ----------------------------
        t0 = time.monotonic()
        refused = {"names-b": {**base, "source": {"name": "team-b-db"}},
                   "raw-id": {**base, "source": {"dbIdentifier": "prod-b"}}}
        for name, spec in refused.items():
            as_alice.create_namespaced_custom_object(GROUP, VERSION, "team-a", PLURAL,
                                                     _restore("team-a", name, spec))
        # Not watched: a restore that team-a's source would allow, in team-c.
        admin.create_namespaced_custom_object(GROUP, VERSION, "team-c", PLURAL, _restore(
            "team-c", "elsewhere", {**base, "source": {"name": "team-a-db"}}))
        for name in refused:
            cond = wait_until(lambda n=name: _succeeded(as_alice, "team-a", n), 60,
                         f"{name} to be refused", world.log)
            assert (cond["status"], cond["reason"]) == ("False", "SourceNotAllowed"), cond
            obj = as_alice.get_namespaced_custom_object(GROUP, VERSION, "team-a", PLURAL, name)
            assert "record" not in obj["status"]          # the engine never saw it
        print(f"\nrefusals: {time.monotonic() - t0:.1f} s")
        # Nothing created anywhere: no Job, no Secret of ours, no copy, no pod run.
        # (This test's namespaces: other tests share the control plane.)
        ours = "app.kubernetes.io/managed-by=pg-schema-restore"
        namespaces = (world.ns, "team-a", "team-b", "team-c")

        def created() -> list[str]:
            return [f"{kind} {o.metadata.namespace}/{o.metadata.name}" for ns in namespaces
                    for kind, listed in (
                        ("job", admin_batch.list_namespaced_job(ns, label_selector=ours)),
                        ("secret", admin_core.list_namespaced_secret(ns, label_selector=ours)))
                    for o in listed.items]

        assert created() == []
        assert local.leftovers() == [] and local.kubelet.started == []
        # -- team-a restores its own source ------------------------------------------
        t0 = time.monotonic()
        as_alice.create_namespaced_custom_object(GROUP, VERSION, "team-a", PLURAL, _restore(
            "team-a", "mine", {**base, "source": {"name": "team-a-db"}, "targetSuffix": "_ok"}))
        cond = wait_until(lambda: _succeeded(as_alice, "team-a", "mine"), 240, "mine", world.log)
        assert cond["status"] == "True", cond
        print(f"restore: {time.monotonic() - t0:.1f} s")
        assert local.counts("tenant_a_ok")[0] == 20
        assert local.kubelet.started                       # its Jobs ran, in pgsr-system
        assert admin_batch.list_namespaced_job("team-a").items == []
        # Removed once the restore ended: no Secret holds production's password now.
        assert created() == []
        _scan(alice, world, local, prod.password)
        # -- a failed restore leaks nothing either -----------------------------------
        local.kubelet.fail_steps = {"copy"}
        as_alice.create_namespaced_custom_object(GROUP, VERSION, "team-a", PLURAL, _restore(
            "team-a", "failing", {**base, "source": {"name": "team-a-db"},
                                  "targetSuffix": "_f"}))
        cond = wait_until(lambda: _succeeded(as_alice, "team-a", "failing"), 240, "failing",
                     world.log)
        assert (cond["status"], cond["reason"]) == ("False", "JobFailed"), cond
        assert local.leftovers() == [] and "tenant_a_f" not in local.schemas()
        _scan(alice, world, local, prod.password)
        # -- team-c was never touched ------------------------------------------------
        elsewhere = admin.get_namespaced_custom_object(GROUP, VERSION, "team-c", PLURAL,
                                                       "elsewhere")
        assert "status" not in elsewhere and not elsewhere["metadata"].get("finalizers")
        # Deleting a finished restore: the operator's delete handler reads it again.
        admin.delete_namespaced_custom_object(GROUP, VERSION, "team-a", PLURAL, "mine")
        wait_until(lambda: not any(o["metadata"]["name"] == "mine" for o in admin.
                              list_namespaced_custom_object(GROUP, VERSION, "team-a",
                                                            PLURAL)["items"]),
              60, "mine to go", world.log)
        _no_cluster_rights(world)
    finally:
        world.teardown()
        local.stop()
    _granted_is_used(world)


def _scan(tenant: client.ApiClient, world: Tenancy, local: World, *passwords: str) -> None:
    """Everything the tenant can read holds none of the credentials used."""
    secrets = _credentials(local.kubelet.secret_values, *passwords)
    assert len(secrets) >= 3       # production's and the copy's passwords, their DSNs
    readable = _everything_readable(tenant, "team-a")
    assert "password=" not in readable and "postgresql://" not in readable
    for secret in secrets:
        assert secret not in readable
    # And the connections Secrets themselves are out of its reach.
    core = client.CoreV1Api(tenant)
    with pytest.raises(client.ApiException) as denied:
        core.list_namespaced_secret(world.ns)
    assert denied.value.status == 403


def _no_cluster_rights(world: Tenancy) -> None:
    """The operator's effective rights, asked of the apiserver as itself
    (SelfSubjectRulesReview) and about it (SubjectAccessReview)."""
    operator = client.AuthorizationV1Api(new_client_from_config(str(world.kubeconfig)))
    for namespace, expect in (("team-a", set()), ("team-c", set()),
                              (world.ns, {"jobs", "secrets", "pods"})):
        review = operator.create_self_subject_rules_review(
            {"spec": {"namespace": namespace}}).status
        resources = {r for rule in review.resource_rules for r in rule.resources or []}
        assert resources & {"jobs", "secrets", "pods", "*"} == expect, (namespace, resources)
    allowed = world.operator_may

    for verb in ("get", "list", "create", "patch"):
        assert not allowed(verb, "secrets")                        # cluster-wide
        assert not allowed(verb, "secrets", "team-a")
        assert not allowed(verb, "jobs", "team-a", "batch")
    assert not allowed("list", "schemarestores", "", GROUP)        # not cluster-wide
    assert not allowed("list", "schemarestores", "team-c", GROUP)  # not watched
    assert allowed("create", "secrets", world.ns) and allowed("list", "schemarestores",
                                                              "team-a", GROUP)


def _granted_is_used(world: Tenancy) -> None:
    """No extra verb: each rule the chart rendered was used by the operator
    (in team-a, for the watched namespaces' Role), none of its requests denied."""
    audited = world.audited()
    denied = [(e["verb"], e.get("objectRef"), e["responseStatus"].get("code"))
              for e in audited if e["responseStatus"].get("code") == 403]
    assert denied == [], denied

    def used(namespace: str | None) -> set[tuple[str, str, str]]:
        out = set()
        for e in audited:
            ref = e.get("objectRef") or {}
            if namespace is not None and ref.get("namespace") != namespace:
                continue
            resource = ref.get("resource", "")
            if ref.get("subresource"):
                resource += "/" + ref["subresource"]
            out.add((ref.get("apiGroup", ""), resource, e["verb"]))
        return out

    assert world.rules("Role", world.ns) - used(world.ns) == set()
    assert world.rules("Role", "team-a") - used("team-a") == set()
    assert world.rules("ClusterRole") - used(None) == set()


def test_cluster_wide_mode_keeps_jobs_and_secrets_home(kube_cluster, tmp_path):
    """Without watchNamespaces the operator serves every namespace through
    the chart's ClusterRole, and still holds rights on secrets and jobs only
    in its own namespace. (No restore runs: a refusal shows it serves.)"""
    install_crd(kube_cluster)
    world = Tenancy(kube_cluster, "pgsr-cluster", {"sources": {
        "x-db": {"dbIdentifier": "prod-x", "secretArn": "x", "namespaces": ["team-x"]}}},
        tmp_path)
    bob = client.CustomObjectsApi(world.team("team-x", "bob"))
    allowed = world.operator_may

    try:
        world.start({"PGSR_PROVIDER": "local", "PGSR_EXECUTOR": "job",
                     "PGSR_METRICS_PORT": "0", "PGSR_LOCAL_WORKDIR": str(tmp_path)})
        bob.create_namespaced_custom_object(GROUP, VERSION, "team-x", PLURAL, _restore(
            "team-x", "raw", {"database": "app", "schemas": ["s"], "snapshotId": "snap",
                              "source": {"dbIdentifier": "prod-y"}}))
        cond = wait_until(lambda: _succeeded(bob, "team-x", "raw"), 60, "the refusal", world.log)
        assert (cond["status"], cond["reason"]) == ("False", "SourceNotAllowed"), cond
        assert allowed("list", "schemarestores", "", GROUP)          # every namespace
        assert allowed("patch", "schemarestores", "team-x", GROUP, )
        for verb in ("get", "list", "create", "patch", "delete"):
            assert not allowed(verb, "secrets"), verb                # not cluster-wide
            assert not allowed(verb, "secrets", "team-x"), verb
            assert not allowed(verb, "jobs", "team-x", "batch"), verb
        assert allowed("create", "secrets", world.ns)
        assert allowed("create", "jobs", world.ns, "batch")
        assert not allowed("get", "secrets", world.ns)               # creates, never reads
    finally:
        world.teardown()
    denied = [e for e in world.audited() if e["responseStatus"].get("code") == 403]
    assert denied == [], denied
