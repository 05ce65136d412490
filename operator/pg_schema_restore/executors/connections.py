"""Connections for a step, from a secret: the one place a DSN is made."""

from __future__ import annotations

from typing import Any

from psycopg.conninfo import make_conninfo

from ddl_job.errors import ProviderError


def dsn_from_secret(secret: dict[str, Any], database: str) -> str:
    """A libpq DSN from an RDS-style secret (host, port, username, password)."""
    try:
        return make_conninfo(host=secret["host"], port=str(secret.get("port", 5432)),
                             user=secret["username"], password=secret["password"],
                             dbname=database)
    except KeyError as exc:
        raise ProviderError("InvalidSecret",
                            f"secret lacks the {exc.args[0]!r} field") from None
