"""Which PostgreSQL client programs (pg_dump, pg_restore) run against which server.

pg_dump refuses a server of a newer major version. pg_restore restoring
into a server writes the session settings of its own version (pg_restore 17
writes `SET transaction_timeout`, which PostgreSQL 16 and older refuse, so
every post-data restore into them fails), and it reads only archives of a
pg_dump no newer than itself. The copy runs the same major version as
production, so both ends need the programs of exactly that major version.
Debian installs several side by side (/usr/lib/postgresql/N/bin; the
ddl_job image carries more than one); elsewhere the programs on PATH are the
only ones. A step checks before it changes anything: `require`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

from .conn import Endpoint
from .errors import DataPlaneError

DEBIAN_ROOT = Path("/usr/lib/postgresql")
_MAJOR = re.compile(r"\(PostgreSQL\) (\d+)")


@cache
def installed() -> dict[int, Path]:
    """Major version -> the directory holding its pg_dump and pg_restore.

    PGSR_PG_BINDIR names the one directory to use instead (another layout)."""
    override = os.environ.get("PGSR_PG_BINDIR")
    if override:
        return _by_version(Path(override) / "pg_dump")
    found = {int(d.parent.name): d for d in DEBIAN_ROOT.glob("*/bin")
             if d.parent.name.isdigit() and (d / "pg_dump").exists()
             and (d / "pg_restore").exists()}
    if found:
        return found
    on_path = shutil.which("pg_dump")
    return _by_version(Path(on_path)) if on_path else {}


def _by_version(pg_dump: Path) -> dict[int, Path]:
    try:
        version = subprocess.run([str(pg_dump), "--version"], capture_output=True,
                                 text=True).stdout
    except OSError:
        return {}
    match = _MAJOR.search(version)
    return {int(match[1]): pg_dump.parent} if match else {}


def choose(server_major: int, clients: dict[int, Path], where: str) -> Path:
    """The client directory for a server of `server_major`, or the reason there is none."""
    if server_major in clients:
        return clients[server_major]
    have = ", ".join(str(m) for m in sorted(clients)) or "none"
    if not clients or max(clients) < server_major:
        raise DataPlaneError(
            "PgDumpTooOld",
            f"{where} runs PostgreSQL {server_major}; the PostgreSQL clients here are "
            f"{have}, and pg_dump refuses a newer server: use the ddl_job image with "
            f"postgresql-client-{server_major}")
    raise DataPlaneError(
        "PgClientMismatch",
        f"{where} runs PostgreSQL {server_major}; the PostgreSQL clients here are {have}: "
        f"a newer pg_restore writes settings PostgreSQL {server_major} refuses, so the "
        f"restore would fail after the copy; install postgresql-client-{server_major} "
        "beside them (docs/operations.md: the ddl_job image)")


_server_majors: dict[tuple, int] = {}


def server_major(endpoint: Endpoint) -> int:
    """The endpoint's server major version (asked once per process)."""
    key = (endpoint.role, tuple(sorted(endpoint.params.items())))
    if key not in _server_majors:
        with endpoint.connect(autocommit=True, application_name="pgsr-version") as conn:
            _server_majors[key] = conn.info.server_version // 10000
    return _server_majors[key]


def program(name: str, endpoint: Endpoint) -> str:
    """The path of `name` (pg_dump, pg_restore) for this endpoint's server."""
    return str(choose(server_major(endpoint), installed(), endpoint.describe()) / name)


def require(*endpoints: Endpoint) -> None:
    """Fail now, before a step changes anything, if an endpoint has no matching client."""
    for endpoint in endpoints:
        program("pg_dump", endpoint)
