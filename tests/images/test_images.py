"""The built images do what the local code does.

- the `ddl_job` image runs extract, apply pre, copy, apply post and verify
  against local PostgreSQL (`--network host`) and restores exactly what the
  same steps run as local processes restore;
- the operator image starts against the test control plane, answers
  /healthz and reconciles a SchemaRestore.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from pg_schema_restore.local.cluster import free_port
from support.ddl_job_cli import run_ddl_job
from support.images import DDL_JOB_IMAGE, OPERATOR_IMAGE, Engine, docker_engine

pytestmark = pytest.mark.e2e

SCHEMA_SQL = """
CREATE SCHEMA shop;
CREATE TABLE shop.customer (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                            name text NOT NULL CHECK (name <> ''), created date);
CREATE TABLE shop.orders (id bigserial PRIMARY KEY,
                          customer_id int NOT NULL REFERENCES shop.customer,
                          total numeric(10, 2), note text);
CREATE INDEX orders_customer ON shop.orders (customer_id);
CREATE FUNCTION shop.touch() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN NEW.note := coalesce(NEW.note, 'n/a'); RETURN NEW; END$$;
CREATE TRIGGER orders_touch BEFORE INSERT ON shop.orders
  FOR EACH ROW EXECUTE FUNCTION shop.touch();
CREATE VIEW shop.big_orders AS SELECT * FROM shop.orders WHERE total > 100;
COMMENT ON TABLE shop.orders IS 'one row per order';
INSERT INTO shop.customer (name, created)
  SELECT 'c' || g, date '2024-01-01' + g FROM generate_series(1, 300) g;
INSERT INTO shop.orders (customer_id, total)
  SELECT 1 + g % 300, g * 0.5 FROM generate_series(1, 3000) g;
"""
STEPS = (["apply", "pre"], ["copy"], ["apply", "post"], ["verify"])


def _restore(run_step, suffix: str) -> list[dict]:
    """The steps a Job runs, in order; each step's last JSON line."""
    results = []
    for args in (["extract", "--schema", "shop", "--suffix", suffix, "--restore-id",
                  f"img{suffix.strip('_')}", "--disposable-source"], *STEPS):
        run = run_step(args)
        assert run.returncode == 0, str(run)
        results.append(run.last)
    return results


def _schema_dump(cluster, db: str, schema: str) -> str:
    proc = subprocess.run(["pg_dump", "--schema", schema, "--no-owner", "-d",
                           cluster.dsn(db)], capture_output=True, text=True, check=True)
    lines = [line for line in proc.stdout.splitlines()
             if not line.startswith(("--", "\\restrict", "\\unrestrict"))]
    restore_id = "img" + schema.removeprefix("shop_")
    return "\n".join(lines).replace(schema, "SCHEMA").replace(restore_id, "RESTORE_ID")


def _comparable(result: dict) -> object:
    """A step's result without what differs between two runs (names, timings,
    and the copy's `bytes`: the source tables' size on disk, which two loads
    of the same rows need not share to the page)."""
    text = json.dumps(result.get("result", result), sort_keys=True)
    for name in ("shop_local", "shop_image", "imglocal", "imgimage"):
        text = text.replace(name, "X")
    data = json.loads(text)
    if isinstance(data, dict):
        return {k: v for k, v in data.items()
                if "second" not in k and k not in ("elapsed", "source_database", "bytes")}
    return data


def test_the_ddl_job_image_restores_what_the_local_steps_restore(
        copyhost, prod, new_db, tmp_path: Path) -> None:
    target = new_db(prod, "imgtgt")
    sources = {}
    for run_kind in ("local", "image"):
        sources[run_kind] = new_db(copyhost, f"img{run_kind}")
        copyhost.execute(SCHEMA_SQL, sources[run_kind])
    local_artifacts = tmp_path / "local"
    local = _restore(lambda args: run_ddl_job(
        [*args, "--artifacts", str(local_artifacts)], source=copyhost.dsn(sources["local"]),
        target=prod.dsn(target)), "_local")

    image_artifacts = tmp_path / "image"
    image_artifacts.mkdir()
    image_artifacts.chmod(0o777)   # the image runs as uid 65532
    with docker_engine() as docker:
        docker.require(DDL_JOB_IMAGE)
        version = docker("run", "--rm", DDL_JOB_IMAGE, "pg_dump", "--version").stdout
        assert "(PostgreSQL) 17" in version, version

        def in_image(args: list[str]):
            # The connections go in by name (-e NAME): their passwords never
            # appear on a command line.
            return run_ddl_job(
                [*args, "--artifacts", str(image_artifacts)],
                source=copyhost.dsn(sources["image"]), target=prod.dsn(target),
                command=["docker", "-H", docker.host, "run", "--rm", "--network", "host",
                         "-e", "PGSR_SOURCE_DSN", "-e", "PGSR_TARGET_DSN",
                         "-v", f"{image_artifacts}:{image_artifacts}", DDL_JOB_IMAGE,
                         "python", "-m", "ddl_job"])
        image = _restore(in_image, "_image")

    assert local[-1]["result"]["ok"] is True and image[-1]["result"]["ok"] is True
    assert [_comparable(r) for r in image] == [_comparable(r) for r in local]
    assert _schema_dump(prod, target, "shop_image") == _schema_dump(prod, target, "shop_local")
    with prod.connect(target) as conn:
        for table in ("customer", "orders"):
            rows = {suffix: conn.execute(
                f"SELECT * FROM shop_{suffix}.{table} ORDER BY id").fetchall()
                for suffix in ("local", "image")}
            assert rows["image"] == rows["local"] and rows["local"]


def test_the_operator_image_answers_healthz_and_reconciles(kube_cluster, tmp_path: Path) -> None:
    namespace = f"img-{uuid.uuid4().hex[:6]}"
    kube_cluster.kubectl("create", "namespace", namespace)
    crd = Path(__file__).resolve().parents[2] / "crds/schemarestores.pgschemarestore.io.yaml"
    kube_cluster.kubectl("apply", "--validate=false", "-f", str(crd))
    kubeconfig = tmp_path / "kubeconfig"   # readable by the image's uid 65532
    shutil.copy(kube_cluster.kubeconfig, kubeconfig)
    kubeconfig.chmod(0o644)
    port = free_port()
    with docker_engine() as docker:
        docker.require(OPERATOR_IMAGE)
        name = f"pgsr-operator-{namespace}"
        docker("run", "-d", "--name", name, "--network", "host",
               "-v", f"{kubeconfig}:/config/kubeconfig:ro", "-e", "KUBECONFIG=/config/kubeconfig",
               "-e", "PGSR_METRICS_PORT=0", "-e", f"PGSR_JOB_NAMESPACE={namespace}",
               OPERATOR_IMAGE,
               "kopf", "run", "-m", "pg_schema_restore.k8s.handlers", "--namespace", namespace,
               "--standalone", f"--liveness=http://127.0.0.1:{port}/healthz",
               "--log-format=json")
        try:
            assert _healthz(port, docker, name) == 200
            bad = {"apiVersion": "pgschemarestore.io/v1alpha1", "kind": "SchemaRestore",
                   "metadata": {"name": "bad", "namespace": namespace},
                   "spec": {"database": "app", "schemas": ["pg_catalog"],
                            "restoreTime": "2024-01-28T14:30:00Z"}}
            kube_cluster.kubectl("apply", "--validate=false", "-f", "-",
                                 input=yaml.safe_dump(bad))
            condition = _succeeded_condition(kube_cluster, namespace, "bad", docker, name)
            assert (condition["status"], condition["reason"]) == ("False", "InvalidSpec")
            assert "pg_catalog" in condition["message"]
        finally:
            docker("rm", "-f", name, check=False)


def _healthz(port: int, docker: Engine, name: str) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                return resp.status
        except OSError:
            time.sleep(0.5)
    pytest.fail("no /healthz answer in 60 s; operator log:\n"
                + docker("logs", name, check=False).stderr[-3000:])


def _succeeded_condition(kube_cluster, namespace: str, obj: str, docker: Engine,
                         name: str) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        out = kube_cluster.kubectl("get", "schemarestore", obj, "-n", namespace, "-o", "json")
        for condition in json.loads(out.stdout).get("status", {}).get("conditions", []):
            if condition["type"] == "Succeeded" and condition["status"] != "Unknown":
                return condition
        time.sleep(0.5)
    pytest.fail("no verdict in 60 s; operator log:\n"
                + docker("logs", name, check=False).stderr[-3000:])
