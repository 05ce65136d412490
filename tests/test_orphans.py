"""No orphan work: a data-plane step's processes die with whoever started them,
and a cancelled step is killed with everything it started.

Real processes and real PostgreSQL: the step is the real `drop` step of
`python -m ddl_job`, run by the real `SubprocessExecutor`, held waiting on a
lock this test takes on a table of the schema it would drop. Whatever is
left of it after its parent dies (or after a cancellation) would drop the
schema as soon as the lock is released; so each test releases the lock and
checks the schema is still there, no backend of the step is left in
production's `pg_stat_activity`, and no process of the step is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from psycopg import sql

from ddl_job.errors import Cancelled
from ddl_job.marker import marker_line
from ddl_job.requests import Drop
from pg_schema_restore.engine.stopping import Stop
from pg_schema_restore.executors.subprocess import SubprocessExecutor
from pg_schema_restore.local.secrets import LocalSecrets

from support.waiting import wait_until

REPO = Path(__file__).resolve().parents[1]
STEP_APP = "pg-schema-restore drop"


def _wait(predicate, what: str, timeout: float = 20.0):
    """Bounded below the drop step's own 30 s lock timeout, which would end
    an orphan by itself."""
    return wait_until(predicate, timeout, what, interval=0.1)


def _processes_with(marker: str) -> list[int]:
    """Pids of live processes whose command line contains `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = next((line for line in (entry / "status").read_text().splitlines()
                          if line.startswith("State:")), "")
        except OSError:
            continue
        if marker in cmdline and "zombie" not in state:
            found.append(int(entry.name))
    return found


class HeldDrop:
    """A schema marked as restore `restore_id`'s, with a table this test locks:
    the `drop` step for that restore waits on the lock."""

    def __init__(self, prod, db: str, restore_id: str, secrets_dir: Path) -> None:
        self.prod, self.db, self.restore_id = prod, db, restore_id
        self.schema = f"doomed_{restore_id.replace('-', '_')}"
        with prod.connect(db) as conn:
            s = sql.Identifier(self.schema)
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(s))
            conn.execute(sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
                s, sql.Literal(marker_line(restore_id, "tenant"))))
            conn.execute(sql.SQL("CREATE TABLE {} (id int)").format(
                sql.Identifier(self.schema, "t")))
        self.lock = prod.connect(db)
        self.lock.execute(sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(
            sql.Identifier(self.schema, "t")))
        LocalSecrets(secrets_dir).write("production", {
            "host": "127.0.0.1", "port": prod.port, "username": prod.user,
            "password": prod.password})
        self.secrets_dir = secrets_dir

    def step_backends(self) -> list[tuple[int, str | None]]:
        with self.prod.connect(self.db) as conn:
            return conn.execute(
                "SELECT pid, wait_event_type FROM pg_stat_activity "
                "WHERE datname = %s AND application_name = %s",
                (self.db, STEP_APP)).fetchall()

    def step_waits_on_lock(self) -> bool:
        return any(kind == "Lock" for _, kind in self.step_backends())

    def release(self) -> None:
        self.lock.rollback()
        self.lock.close()

    def schema_exists(self) -> bool:
        with self.prod.connect(self.db) as conn:
            return conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s",
                                (self.schema,)).fetchone()[0] == 1


PARENT = """
import sys
from ddl_job.requests import Drop
from pg_schema_restore.executors.subprocess import SubprocessExecutor
from pg_schema_restore.local.secrets import LocalSecrets
secrets_dir, db, restore_id = sys.argv[1:]
SubprocessExecutor(LocalSecrets(secrets_dir)).run(
    Drop(restore_id), source_secret=None, target_secret="production", database=db,
    on_event=lambda event: None)
"""


def test_step_dies_with_its_killed_parent(prod, new_db, tmp_path):
    """SIGKILL of the process running the executor (the operator, the CLI)
    leaves no step process and no backend behind, and nothing is dropped."""
    held = HeldDrop(prod, new_db(prod, "orphan"), "orphan-kill", tmp_path / "secrets")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO / "operator"), str(REPO), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(held.secrets_dir), held.db,
                               held.restore_id], env=env, cwd=REPO)
    try:
        _wait(held.step_waits_on_lock, "the drop step to wait on the lock")
        assert _processes_with(held.restore_id)          # the step runs, held
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        _wait(lambda: not _processes_with(held.restore_id), "the step's processes to die")
        # Its backend notices the dead client while still waiting on the lock
        # (client_connection_check_interval): it cannot drop after the release.
        _wait(lambda: not held.step_backends(), "the step's backend to go")
    finally:
        if parent.poll() is None:
            parent.kill()
        held.release()
    assert held.schema_exists()


def test_cancelled_step_is_killed_with_its_group(prod, new_db, tmp_path):
    """A cancellation (the SchemaRestore deleted) kills the running step's
    process group and raises Cancelled; the step changed nothing."""
    held = HeldDrop(prod, new_db(prod, "orphan"), "orphan-cancel", tmp_path / "secrets")
    cancel = threading.Event()
    executor = SubprocessExecutor(LocalSecrets(held.secrets_dir), grace_seconds=2.0)
    outcome: list[BaseException | object] = []

    def run() -> None:
        try:
            outcome.append(executor.run(Drop(held.restore_id), source_secret=None,
                                        target_secret="production", database=held.db,
                                        on_event=lambda event: None,
                                        stop=Stop(cancelled=cancel.is_set)))
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            outcome.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    try:
        _wait(held.step_waits_on_lock, "the drop step to wait on the lock")
        cancel.set()
        runner.join(timeout=60)
        assert not runner.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], Cancelled), outcome
        assert _processes_with(held.restore_id) == []
        _wait(lambda: not held.step_backends(), "the step's backend to go")
    finally:
        cancel.set()
        held.release()
    assert held.schema_exists()


CHILD = """
import subprocess, sys, time
from ddl_job.lifeline import tie_to_parent
tie_to_parent()
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", sys.argv[1]])
print("ready", flush=True)
time.sleep(600)
"""

GRANDPARENT = """
import os, subprocess, sys
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]],
                         env={**os.environ, "PGSR_PARENT_PID": str(os.getpid())},
                         start_new_session=True, stdout=subprocess.PIPE, text=True)
print(child.stdout.readline().strip(), flush=True)
import time; time.sleep(600)
"""


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_lifeline_takes_the_steps_children_along(signum):
    """`ddl_job`'s children (pg_dump, psql: here a sleeper) die with it when
    the process that started it dies, however it dies."""
    tag = f"lifeline-{os.getpid()}-{signum}-{time.monotonic_ns()}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, "-c", GRANDPARENT, CHILD, tag], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "ready"
        assert len(set(_processes_with(tag)) - {parent.pid}) == 2   # the step, its child
        parent.send_signal(signum)
        parent.wait(timeout=30)
        _wait(lambda: not _processes_with(tag), "the step and its child to die")
    finally:
        if parent.poll() is None:
            parent.kill()
        for pid in _processes_with(tag):
            os.kill(pid, signal.SIGKILL)
