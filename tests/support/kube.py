"""A real Kubernetes control plane for tests: Debian's etcd, and
kube-apiserver + kube-controller-manager 1.20 built from Debian's
`kubernetes` source package (scripts/kube/build.sh, run by scripts/test.sh
before pytest, cached by version outside the repo; ~15 min cold on 2 cores,
instant afterwards), all on 127.0.0.1 with free ports (scripts/kube/up.sh /
down.sh). Each xdist worker that runs a kube test starts its own.

Fixtures:
- `kube_cluster` (session) -> `KubeCluster`: `kubeconfig` (path), `api_url`,
  `dir` (certs, logs, etcd data), `bin_dir`, `kubectl_path`;
  `kubectl(*args)`, `api_client()` (a `kubernetes.client.ApiClient`).
- `kubectl` -> the cluster's `kubectl(*args, input=None, check=True)`.

There is no kubelet: Pods stay Pending. To finish a Job, a test plays the
node by patching the Pod's status subresource (`pod_succeeded_status`): the
real Job controller then completes (or fails) the Job.

No skipping: a control plane that cannot be built or started FAILS the tests
with the build/up output.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts" / "kube"


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def find_kubectl(bin_dir: Path | None) -> str:
    """Debian's kubectl 1.20 (extracted by build.sh next to the server
    binaries) when there, else whatever `kubectl` is on PATH."""
    if bin_dir is not None and (bin_dir / "kubectl").is_file():
        return str(bin_dir / "kubectl")
    found = shutil.which("kubectl")
    if not found:
        pytest.fail("no kubectl: neither Debian's (cached by scripts/kube/build.sh) nor one on PATH")
    return found


def kubectl(kubeconfig: str | os.PathLike, *args: str, input: str | None = None,
            check: bool = True, timeout: float = 60, kubectl_path: str | None = None
            ) -> subprocess.CompletedProcess:
    """Runs `kubectl --kubeconfig KUBECONFIG ARGS...`; text output captured.
    With check=True a non-zero exit fails the test with stdout/stderr."""
    cmd = [kubectl_path or find_kubectl(None), "--kubeconfig", str(kubeconfig), *args]
    res = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} -> exit {res.returncode}\n"
                    f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}")
    return res


@dataclass
class KubeCluster:
    kubeconfig: Path
    api_url: str
    dir: Path
    bin_dir: Path
    kubectl_path: str

    def kubectl(self, *args: str, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("kubectl_path", self.kubectl_path)
        return kubectl(self.kubeconfig, *args, **kw)

    def api_client(self):
        """A fresh `kubernetes.client.ApiClient` for this cluster."""
        from kubernetes import config
        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def logs(self, name: str, lines: int = 40) -> str:
        """Tail of etcd / kube-apiserver / kube-controller-manager's log."""
        path = self.dir / "logs" / f"{name}.log"
        return _tail(path.read_text(errors="replace"), lines) if path.exists() else ""


def cached_kube() -> Path:
    """The bin dir of the binaries scripts/kube/build.sh cached.

    The build (~15 min cold) runs before pytest (scripts/test.sh does it),
    never inside a test: it would run once per xdist worker and count
    against the per-test timeout.
    """
    res = subprocess.run([str(SCRIPTS / "build.sh"), "--print-dir"], capture_output=True,
                         text=True, timeout=60)
    if res.returncode != 0 or not res.stdout.strip():
        pytest.fail("no cached kube-apiserver: run scripts/kube/build.sh first "
                    "(./scripts/test.sh does); the kube tests need it and are not skipped.")
    return Path(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory) -> KubeCluster:
    bin_dir = cached_kube()
    cdir = tmp_path_factory.mktemp("kube")
    env = {**os.environ, "PGSR_KUBE_BIN": str(bin_dir)}
    res = subprocess.run([str(SCRIPTS / "up.sh"), str(cdir)], capture_output=True, text=True,
                         env=env, timeout=300)
    if res.returncode != 0:
        subprocess.run([str(SCRIPTS / "down.sh"), str(cdir)], capture_output=True)
        pytest.fail(f"scripts/kube/up.sh failed (exit {res.returncode}):\n"
                    f"{_tail(res.stdout)}\n{_tail(res.stderr, 120)}")
    cluster = KubeCluster(
        kubeconfig=cdir / "kubeconfig",
        api_url=(cdir / "api_url").read_text().strip(),
        dir=cdir,
        bin_dir=bin_dir,
        kubectl_path=find_kubectl(bin_dir),
    )
    try:
        yield cluster
    finally:
        subprocess.run([str(SCRIPTS / "down.sh"), str(cdir)], capture_output=True, timeout=60)


@pytest.fixture
def kubectl_run(kube_cluster):
    """`kubectl_run("get", "pods", "-o", "json")` on the test cluster."""
    return kube_cluster.kubectl


def pod_succeeded_status(container_names: list[str], exit_code: int = 0) -> dict:
    """A Pod status body (for the status subresource) that a kubelet would
    write when every container has terminated with `exit_code`: phase
    Succeeded (0) or Failed (non-zero). The Job controller counts Pods by
    phase alone; the terminated containerStatuses are for readers (kubectl,
    operators reading exit codes)."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    reason = "Completed" if exit_code == 0 else "Error"
    return {"status": {
        "phase": "Succeeded" if exit_code == 0 else "Failed",
        "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted",
                        "lastTransitionTime": now}],
        "startTime": now,
        "containerStatuses": [{
            "name": name, "ready": False, "restartCount": 0,
            "image": "local", "imageID": "",
            "state": {"terminated": {"exitCode": exit_code, "reason": reason,
                                     "startedAt": now, "finishedAt": now}},
        } for name in container_names],
    }}


# The control plane is 1.20: the CRD without CEL rules (crds/kubernetes-1.20-1.24/).
CRD_FILE = (Path(__file__).resolve().parents[2] / "crds" / "kubernetes-1.20-1.24"
            / "schemarestores.pgschemarestore.io.yaml")


def install_crd(kube_cluster: KubeCluster) -> None:
    """The SchemaRestore CRD applied and Established (the operator serves the
    CRD present when it starts: its CRD scanning is off)."""
    kube_cluster.kubectl("apply", "-f", str(CRD_FILE))
    kube_cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                         "crd/schemarestores.pgschemarestore.io")


def serve_in_process(kube_cluster: KubeCluster, monkeypatch, namespace: str) -> None:
    """The CRD established, `namespace` created, and this process's kubernetes
    client (kopf's, in a KopfRunner) pointed at the test control plane."""
    install_crd(kube_cluster)
    kube_cluster.kubectl("create", "namespace", namespace)
    monkeypatch.setenv("KUBECONFIG", str(kube_cluster.kubeconfig))
    # The client library read KUBECONFIG when first imported (kopf logs in with it).
    import kubernetes.config.kube_config as kube_config_module
    monkeypatch.setattr(kube_config_module, "KUBE_CONFIG_DEFAULT_LOCATION",
                        str(kube_cluster.kubeconfig))
