"""Throwaway local PostgreSQL clusters and genuine point-in-time copies.

Used by the demo, by the `local` temporary-database provider and by the
tests: a "production" cluster with WAL archiving, a base backup, and a
second cluster restored from that backup by replaying archived WAL up to an
exact instant -- the same thing RDS does, on this machine. `rds_roles`
gives a cluster the roles RDS gives an instance: a master user that is no
superuser, so the data plane runs here as it will run there.

PostgreSQL refuses to run as root, so when we are root every server-side
command runs as the `postgres` system user (created by Debian's package).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

SUPERUSER = "postgres"
RDS_SUPERUSER = "rds_superuser"   # RDS's NOLOGIN role of the master user
MASTER = "master"                 # RDS's master user: CREATEDB, CREATEROLE, no superuser


def rds_roles(cluster: "LocalCluster", password: str,
              application_roles: tuple[str, ...] = ()) -> None:
    """The roles RDS gives an instance: `rds_superuser` (NOLOGIN) and the
    master user in it with CREATEDB and CREATEROLE, no superuser. The
    application roles are created by the master user, as on RDS (on
    PostgreSQL 16+ it then holds ADMIN OPTION on them; it is no member)."""
    with cluster.connect(user=SUPERUSER, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(RDS_SUPERUSER)))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB CREATEROLE PASSWORD {} IN ROLE {}")
                     .format(sql.Identifier(MASTER), sql.Literal(password),
                             sql.Identifier(RDS_SUPERUSER)))
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(MASTER)))
        for role in application_roles:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))


def server_bindir() -> Path:
    """The newest installed server's bin directory (Debian layout first)."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                        key=lambda p: int(p.parent.parent.name), reverse=True)
    if candidates:
        return candidates[0].parent
    found = shutil.which("postgres")
    if found:
        return Path(found).resolve().parent
    raise RuntimeError("PostgreSQL server binaries not found; install Debian's "
                       "`postgresql` package (scripts/setup.sh does)")


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_as() -> str | None:
    """System user to run server commands as (None: ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:  # pragma: no cover - Debian's package creates it
        raise RuntimeError("running as root needs the `postgres` system user") from exc
    return "postgres"


def _give_to_server_user(path: Path) -> None:
    """Make a directory usable by the server's user (when we are root)."""
    user = _run_as()
    if user is None:
        return
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def _open_parents(path: Path) -> None:
    """Let the server user traverse to `path` (tempdirs are 0700 when root)."""
    if _run_as() is None:
        return
    for parent in list(path.parents)[:-1]:
        if parent == Path("/"):
            break
        mode = parent.stat().st_mode
        if not mode & 0o001:
            os.chmod(parent, mode | 0o011)


def _server_cmd(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    user = _run_as()
    result = subprocess.run(args, user=user, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{Path(args[0]).name} failed ({result.returncode}):\n"
                           f"{result.stdout}\n{result.stderr}")
    return result


@dataclass
class LocalCluster:
    """One PostgreSQL cluster in a directory, listening on 127.0.0.1 only."""

    datadir: Path
    port: int
    password: str
    user: str = SUPERUSER   # whom connections log in as by default (`rds_roles`: MASTER)
    logfile: Path = field(init=False)

    def __post_init__(self) -> None:
        self.logfile = self.datadir.parent / f"{self.datadir.name}.log"

    # -- lifecycle -------------------------------------------------------
    @classmethod
    def create(cls, datadir: Path, password: str, *, archive_dir: Path | None = None,
               port: int | None = None, settings: dict[str, str] | None = None) -> "LocalCluster":
        """initdb a new cluster (password auth on TCP, optional WAL archiving)."""
        datadir = Path(datadir).resolve()
        datadir.mkdir(parents=True, exist_ok=False)
        _open_parents(datadir)
        _give_to_server_user(datadir)
        pwfile = datadir.parent / f".{datadir.name}.pw"
        pwfile.write_text(password + "\n")
        _give_to_server_user(pwfile)
        try:
            _server_cmd([str(server_bindir() / "initdb"), "-D", str(datadir), "-U", SUPERUSER,
                         "--pwfile", str(pwfile), "--auth-local=scram-sha-256",
                         "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"])
        finally:
            pwfile.unlink()
        cluster = cls(datadir, port or free_port(), password)
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": "''",
            "fsync": "off",
            "full_page_writes": "off",
            "max_connections": "60",
            "shared_buffers": "'256MB'",
            "max_wal_size": "'4GB'",
            "wal_level": "replica",
        }
        if archive_dir is not None:
            archive_dir = Path(archive_dir).resolve()
            archive_dir.mkdir(parents=True, exist_ok=True)
            _open_parents(archive_dir)
            _give_to_server_user(archive_dir)
            conf.update({
                "archive_mode": "on",
                "archive_command": f"'test ! -f {archive_dir}/%f && cp %p {archive_dir}/%f'",
                "archive_timeout": "'60s'",
            })
        conf.update(settings or {})
        cluster._append_conf(conf)
        return cluster

    def _append_conf(self, settings: dict[str, str]) -> None:
        lines = "".join(f"{k} = {v}\n" for k, v in settings.items())
        with open(self.datadir / "postgresql.auto.conf", "a") as fh:
            fh.write(lines)

    def start(self) -> None:
        self.logfile.touch()
        _give_to_server_user(self.logfile)
        _server_cmd([str(server_bindir() / "pg_ctl"), "-D", str(self.datadir), "-l",
                     str(self.logfile), "-o", f"-p {self.port}", "-w", "-t", "120", "start"])

    def stop(self) -> None:
        if (self.datadir / "postmaster.pid").exists():
            _server_cmd([str(server_bindir() / "pg_ctl"), "-D", str(self.datadir),
                         "-m", "fast", "-w", "stop"])

    def destroy(self) -> None:
        """Stop and delete the cluster's files."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.datadir, ignore_errors=True)
            if self.logfile.exists():
                self.logfile.unlink()

    # -- connections -----------------------------------------------------
    def dsn(self, dbname: str = "postgres", user: str | None = None,
            password: str | None = None) -> str:
        return make_conninfo(host="127.0.0.1", port=self.port, dbname=dbname,
                             user=self.user if user is None else user,
                             password=self.password if password is None else password)

    def connect(self, dbname: str = "postgres", *, user: str | None = None,
                **kwargs) -> psycopg.Connection:
        return psycopg.connect(self.dsn(dbname, user=user), **kwargs)

    def execute(self, sql: str, dbname: str = "postgres", *, user: str | None = None,
                password: str | None = None) -> None:
        """Run a script with autocommit (CREATE DATABASE and friends)."""
        with psycopg.connect(self.dsn(dbname, user=user, password=password),
                             autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, name: str, template: str | None = None) -> None:
        """CREATE DATABASE by copying the template's files (STRATEGY FILE_COPY).

        PostgreSQL 15's default strategy (WAL_LOG) writes the whole template
        into the WAL; on an archiving cluster every later point-in-time copy
        then replays it. FILE_COPY logs a few records instead.
        """
        statement = sql.SQL("CREATE DATABASE {} STRATEGY FILE_COPY").format(sql.Identifier(name))
        if template is not None:
            statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
        with self.connect(autocommit=True) as conn:
            conn.execute(statement)

    # -- PITR --------------------------------------------------------------
    def base_backup(self, target: Path) -> Path:
        """pg_basebackup into `target` (WAL streamed in, so it is self-consistent).

        No backup manifest: nothing verifies these throwaway backups, and
        checksumming every file was half of pg_basebackup's CPU time.
        """
        target = Path(target).resolve()
        target.mkdir(parents=True, exist_ok=False)
        _open_parents(target)
        _give_to_server_user(target)
        env = dict(os.environ, PGPASSWORD=self.password)
        user = _run_as()
        result = subprocess.run(
            [str(server_bindir() / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.port),
             "-U", SUPERUSER, "-D", str(target), "-X", "stream", "-c", "fast", "--no-manifest"],
            env=env, user=user, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"pg_basebackup failed: {result.stderr}")
        return target

    def archive_current_wal(self, archive_dir: Path, timeout: float = 60.0) -> None:
        """Switch WAL and wait until that segment is in the archive.

        Recovery to a time needs WAL *after* the target to know it is reached.
        """
        with self.connect(user=SUPERUSER, autocommit=True) as conn:   # pg_switch_wal
            # Make sure the segment we switch away from holds a commit record.
            conn.execute("SELECT txid_current()")
            lsn_row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
            assert lsn_row is not None
            segment = lsn_row[0]
            deadline = time.monotonic() + timeout
            while not (Path(archive_dir) / segment).exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"WAL segment {segment} was not archived in {timeout}s")
                time.sleep(0.1)


def pitr_copy(base_backup: Path, archive_dir: Path, datadir: Path, target_time: datetime | None,
              password: str, port: int | None = None) -> LocalCluster:
    """A genuine point-in-time copy: base backup + archived WAL replayed to `target_time`
    (None: to the end of the backup itself, like restoring a snapshot).

    Returns the started, promoted cluster (new timeline), like a restored RDS
    instance. The caller owns it and must `destroy()` it.
    """
    if target_time is not None and target_time.tzinfo is None:
        raise ValueError("target_time must be timezone-aware")
    datadir = Path(datadir).resolve()
    shutil.copytree(base_backup, datadir, symlinks=True)
    _open_parents(datadir)
    user = _run_as()
    if user is not None:
        subprocess.run(["chown", "-R", f"{user}:{user}", str(datadir)], check=True)
    os.chmod(datadir, 0o700)
    for stale in ("postmaster.pid", "postmaster.opts"):
        (datadir / stale).unlink(missing_ok=True)
    cluster = LocalCluster(datadir, port or free_port(), password)
    target = ({"recovery_target": "'immediate'"} if target_time is None else
              {"recovery_target_time": f"'{target_time.isoformat()}'",
               "recovery_target_inclusive": "on"})
    cluster._append_conf({
        "archive_mode": "off",
        "restore_command": f"'cp {Path(archive_dir).resolve()}/%f %p'",
        "recovery_target_action": "'promote'",
        **target,
    })
    signal = datadir / "recovery.signal"
    signal.touch()
    _give_to_server_user(signal)
    cluster.start()
    deadline = time.monotonic() + 300
    while True:
        try:
            with cluster.connect() as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                if row is not None and not row[0]:
                    return cluster
        except psycopg.OperationalError:
            pass
        if not (datadir / "postmaster.pid").exists():   # the server gave up and stopped
            raise RecoveryStopped("the point-in-time copy stopped before it was promoted: "
                                  f"{log_errors(cluster.logfile)}")
        if time.monotonic() > deadline:
            raise RecoveryStopped("the point-in-time copy did not promote in 300 s: "
                                  f"{log_errors(cluster.logfile)}")
        time.sleep(0.2)


class RecoveryStopped(RuntimeError):
    """A PITR copy that will not come up; the message quotes the server's log,
    which is deleted with the copy."""


def log_errors(logfile: Path, limit: int = 3) -> str:
    """The server log's last FATAL/ERROR lines, quoted (the file goes with the copy)."""
    try:
        lines = logfile.read_text(errors="replace").splitlines()
    except OSError:
        return "(no server log)"
    errors = [line for line in lines if "FATAL:" in line or "ERROR:" in line]
    return " | ".join((errors or lines)[-limit:]) or "(empty server log)"
