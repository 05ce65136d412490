"""Which client programs a server gets (ddl_job/clients.py): exactly its major
version, or a reason naming what is missing, before anything is changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from ddl_job import clients
from ddl_job.conn import Endpoint
from ddl_job.errors import DataPlaneError

BOTH = {15: Path("/usr/lib/postgresql/15/bin"), 17: Path("/usr/lib/postgresql/17/bin")}


@pytest.mark.parametrize("server", [15, 17])
def test_each_server_gets_its_own_major(server: int) -> None:
    assert clients.choose(server, BOTH, "production") == BOTH[server]


def test_a_server_newer_than_every_client_is_pg_dump_too_old() -> None:
    with pytest.raises(DataPlaneError) as caught:
        clients.choose(18, BOTH, "the copy")
    assert caught.value.reason == "PgDumpTooOld"
    assert "PostgreSQL 18" in caught.value.message and "15, 17" in caught.value.message


def test_a_server_older_than_its_nearest_client_is_refused_before_the_copy() -> None:
    with pytest.raises(DataPlaneError) as caught:
        clients.choose(16, BOTH, "production")
    assert caught.value.reason == "PgClientMismatch"
    assert "postgresql-client-16" in caught.value.message


def test_no_client_at_all() -> None:
    with pytest.raises(DataPlaneError) as caught:
        clients.choose(15, {}, "production")
    assert caught.value.reason == "PgDumpTooOld" and "none" in caught.value.message


def test_this_hosts_servers_find_their_clients(prod) -> None:
    """The test clusters run the newest server installed here; its client is there."""
    endpoint = Endpoint.from_dsn("target", prod.dsn())
    path = Path(clients.program("pg_restore", endpoint))
    assert path.name == "pg_restore" and path.exists()
    assert str(clients.server_major(endpoint)) in str(path) or len(clients.installed()) == 1
