"""Database endpoints: DSNs from the environment, never from argv, never printed.

A DSN (`postgresql://…` or `key=value …`) reaches a step only through the
environment (`PGSR_SOURCE_DSN`, `PGSR_TARGET_DSN`). Subprocesses (pg_dump,
pg_restore, psql) get it back as libpq `PG*` variables, so no credential
ever appears on a command line, in `ps`, in a log or in an artifact.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

import psycopg
from psycopg.conninfo import conninfo_to_dict

from .errors import DataPlaneError

SOURCE_ENV = "PGSR_SOURCE_DSN"
TARGET_ENV = "PGSR_TARGET_DSN"

# conninfo keyword -> libpq environment variable
_LIBPQ_ENV = {
    "host": "PGHOST", "hostaddr": "PGHOSTADDR", "port": "PGPORT", "dbname": "PGDATABASE",
    "user": "PGUSER", "password": "PGPASSWORD", "passfile": "PGPASSFILE",
    "service": "PGSERVICE", "options": "PGOPTIONS", "sslmode": "PGSSLMODE",
    "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY", "sslrootcert": "PGSSLROOTCERT",
    "sslcrl": "PGSSLCRL", "sslcompression": "PGSSLCOMPRESSION",
    "requiressl": "PGREQUIRESSL", "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME", "target_session_attrs": "PGTARGETSESSIONATTRS",
    "gssencmode": "PGGSSENCMODE", "krbsrvname": "PGKRBSRVNAME", "channel_binding":
    "PGCHANNELBINDING", "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION", "client_encoding":
    "PGCLIENTENCODING",
}
_CONNECT_TIMEOUT = "10"
# A backend whose client died (its step was killed with the operator) stops
# at the next check instead of finishing a long statement or lock wait and
# committing it (`client_connection_check_interval`, PostgreSQL 14+).
CLIENT_CHECK_INTERVAL = "2s"
_CHECKS_CLIENTS: dict[tuple[tuple[str, str], ...], bool] = {}   # endpoint -> server is 14+


@dataclass(frozen=True)
class Endpoint:
    """One database to talk to; `role` is 'source' or 'target' (for messages)."""

    role: str
    params: dict[str, str]

    @classmethod
    def from_env(cls, role: str, variable: str) -> "Endpoint":
        dsn = os.environ.get(variable)
        if not dsn:
            raise DataPlaneError("MissingConnection",
                                 f"set {variable} to the {role} database's connection string")
        return cls.from_dsn(role, dsn)

    @classmethod
    def from_dsn(cls, role: str, dsn: str) -> "Endpoint":
        try:
            params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
        except psycopg.ProgrammingError:
            raise DataPlaneError("InvalidConnection",
                                 f"the {role} connection string cannot be parsed") from None
        unknown = sorted(set(params) - set(_LIBPQ_ENV))
        if unknown:
            raise DataPlaneError("InvalidConnection",
                                 f"unsupported {role} connection parameters: {unknown}")
        params.setdefault("connect_timeout", _CONNECT_TIMEOUT)
        return cls(role, params)

    @property
    def dbname(self) -> str:
        return self.params.get("dbname") or self.params.get("user") or os.environ.get(
            "PGDATABASE", "postgres")

    def describe(self) -> str:
        """`user@host:port/db`: safe to print, holds no secret."""
        host = self.params.get("host") or self.params.get("hostaddr") or "local socket"
        port = self.params.get("port", "5432")
        user = self.params.get("user", "?")
        return f"{user}@{host}:{port}/{self.dbname}"

    def libpq_env(self, base: dict[str, str] | None = None,
                  settings: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for a libpq subprocess: PG* variables, nothing on argv.

        `settings` become server settings of its sessions (PGOPTIONS `-c`),
        after any `options` of the DSN itself."""
        env = dict(os.environ if base is None else base)
        for var in _LIBPQ_ENV.values():
            env.pop(var, None)
        for key in (SOURCE_ENV, TARGET_ENV):
            env.pop(key, None)
        for key, value in self.params.items():
            env[_LIBPQ_ENV[key]] = value
        if self.checks_clients():   # pg_dump, psql and pg_restore sessions too
            settings = {"client_connection_check_interval": CLIENT_CHECK_INTERVAL,
                        **(settings or {})}
        if settings:
            extra = " ".join(f"-c {k}={v}" for k, v in settings.items())
            env["PGOPTIONS"] = f"{self.params.get('options', '')} {extra}".strip()
        return env

    def _sanitize(self, text: str) -> str:
        password = self.params.get("password")
        return text.replace(password, "***") if password else text

    def connect(self, *, autocommit: bool = False, application_name: str | None = None
                ) -> psycopg.Connection:
        """Open a connection; failures become ConnectionFailed with a clean message."""
        params = dict(self.params)
        if application_name:
            params["application_name"] = application_name
        try:
            conn = psycopg.connect(autocommit=True, **params)
        except psycopg.OperationalError as exc:
            first = self._sanitize(str(exc).strip().splitlines()[0] if str(exc).strip()
                                   else type(exc).__name__)
            raise DataPlaneError(
                "ConnectionFailed",
                f"cannot connect to the {self.role} database {self.describe()}: {first}"
            ) from None
        _CHECKS_CLIENTS[self._key] = conn.info.server_version >= 140000
        if _CHECKS_CLIENTS[self._key]:
            # Outside a transaction, so no later rollback undoes it.
            conn.execute("SELECT set_config('client_connection_check_interval', %s, false)",
                         (CLIENT_CHECK_INTERVAL,))
        conn.autocommit = autocommit
        return conn

    @property
    def _key(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(self.params.items()))

    def checks_clients(self) -> bool:
        """The server knows `client_connection_check_interval` (14+); known
        from this process's first connection to it (one is opened if none was)."""
        if self._key not in _CHECKS_CLIENTS:
            self.connect(autocommit=True, application_name="pgsr-version").close()
        return _CHECKS_CLIENTS[self._key]

    def sanitize(self, text: str) -> str:
        """Remove this endpoint's password from a message (belt and braces)."""
        return self._sanitize(text)


def refuse_same_database(src: psycopg.Connection, tgt: psycopg.Connection,
                         source: Endpoint, target: Endpoint) -> None:
    """A step that changes its source (renames, grants) must never be given
    production as the copy."""
    if same_database(src, tgt):
        raise DataPlaneError(
            "SameDatabase",
            f"source {source.describe()} and target {target.describe()} are the same "
            "database; a restore only changes a disposable copy")


def same_database(source: psycopg.Connection, target: psycopg.Connection) -> bool:
    """True when both connections reach the very same database.

    System identifiers do not tell: a point-in-time copy (RDS or local) keeps
    the identifier of the cluster it was restored from. An advisory lock does:
    locks are per database, so a random key held through one connection is
    unavailable through the other only if they share the database.
    """
    key = secrets.randbits(63)
    held = source.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
    if not held or not held[0]:
        return False  # pragma: no cover - a random 63-bit key is never taken
    try:
        got = target.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if got and got[0]:
            target.execute("SELECT pg_advisory_unlock(%s)", (key,))
            return False
        return True
    finally:
        source.execute("SELECT pg_advisory_unlock(%s)", (key,))
        for conn in (source, target):
            if not conn.autocommit:
                conn.rollback()
