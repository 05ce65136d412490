"""The built images, run on a private Docker engine (scripts/images/dockerd.sh).

`./scripts/test.sh` builds them before pytest starts (scripts/images/build.sh,
the base cached per machine), never inside a test: a test only finds them,
and fails with the command to run if they are missing. One engine runs at a
time (a file lock: xdist workers share the image store); each test starts its
own and stops it, so no daemon outlives the run.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
DOCKERD = REPO / "scripts/images/dockerd.sh"
DATA_ROOT = Path(os.environ.get("PGSR_DOCKER_DATA_ROOT", "/var/lib/pg-schema-restore/docker"))
OPERATOR_IMAGE = "pg-schema-restore/operator:test"
DDL_JOB_IMAGE = "pg-schema-restore/ddl-job:test"


class Engine:
    """`docker` against one private engine."""

    def __init__(self, host: str) -> None:
        self.host = host

    def __call__(self, *args: str, env: dict[str, str] | None = None, timeout: float = 300,
                 check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(["docker", "-H", self.host, *args], capture_output=True,
                              text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})
        if check and proc.returncode != 0:
            pytest.fail(f"docker {' '.join(args[:3])}… failed ({proc.returncode}):\n"
                        f"{proc.stderr[-3000:]}")
        return proc

    def require(self, *images: str) -> None:
        for image in images:
            if self("image", "inspect", image, check=False).returncode != 0:
                pytest.fail(f"image {image} is not built: run ./scripts/images/build.sh "
                            "(./scripts/test.sh does before the tests)")


@contextmanager
def docker_engine() -> Iterator[Engine]:
    """The engine, in a short run directory of its own: containerd's sockets
    live there, and a unix socket path may not exceed 107 bytes (a pytest
    tmp_path under xdist does)."""
    if not DATA_ROOT.exists():
        pytest.fail(f"no image store at {DATA_ROOT}: run ./scripts/images/build.sh")
    run_dir = Path(tempfile.mkdtemp(prefix="pgsr-dockerd-", dir="/tmp"))
    with open(DATA_ROOT.parent / "docker.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        started = subprocess.run([str(DOCKERD), "start", str(run_dir), str(DATA_ROOT)],
                                 capture_output=True, text=True, timeout=120)
        if started.returncode != 0:
            pytest.fail(f"the private Docker engine did not start:\n{started.stderr}")
        try:
            yield Engine(started.stdout.strip())
        finally:
            subprocess.run([str(DOCKERD), "stop", str(run_dir)], capture_output=True,
                           timeout=120)
            shutil.rmtree(run_dir, ignore_errors=True)
