"""Real-world corpora: schemas nobody on this project wrote, loaded for restores.

- **pagila** (the PostgreSQL sample database), read at test time from
  `<repo's parent>/shared/data/pagila` (or `$PGSR_PAGILA_DIR`). Not ours to
  commit: never copied into the repository; a test skips where it is absent.
- **PostgreSQL 15's regression scripts**, fetched from Debian 12's
  `postgresql-15` source package by `scripts/fetch-regress.sh` into
  `/var/cache/pg-schema-restore/pg15-regress` (or `$PGSR_REGRESS_DIR`) before
  pytest starts (`scripts/test.sh` runs it); a test fails with that command
  when the cache is missing, never fetches.

Scripts are loaded with `psql` and ON_ERROR_STOP off, as pg_regress does:
what fails is skipped, what loads is kept, and the failed statements are
counted so a test can say how much of the corpus it restored.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from psycopg import sql

from pg_schema_restore.local.cluster import SUPERUSER, LocalCluster, server_bindir

REPO = Path(__file__).resolve().parents[2]
PAGILA_ENV = "PGSR_PAGILA_DIR"
REGRESS_ENV = "PGSR_REGRESS_DIR"
REGRESS_CACHE = Path("/var/cache/pg-schema-restore/pg15-regress")
FETCH_COMMAND = "./scripts/fetch-regress.sh"

# psql reports each failed statement as `psql:FILE:LINE: ERROR:  ...`.
_ERROR_LINE = re.compile(r"^psql:[^\n]*?:\d+: (ERROR|FATAL):\s+(.*)$", re.MULTILINE)

# The regression scripts loaded into one schema, in pg_regress's schedule
# order (parallel_schedule: later scripts use earlier ones' tables). Chosen
# because each leaves many objects behind (most scripts drop what they
# create), needs no C library of the suite (regress.so), no tablespace, no
# other database and no `\c`, and loads in about a second. Skipped although
# rich: stats_ext and multirangetypes (5 s and 2.5 s of queries for a few
# objects), privileges and rowsecurity (drop nearly everything, reconnect).
REGRESS_SELECTION: tuple[str, ...] = (
    "test_setup",         # the shared tables (onek, tenk1, ...) and their rows
    "enum",               # enum types, labels added BEFORE/AFTER
    "rangetypes",         # range types (with their multiranges), range columns
    "create_misc",        # inheritance family a_star..f_star, rows
    "create_operator",    # operators with commutators, negators, selectivity
    "create_type",        # shell and composite types, typmods
    "create_index",       # btree/gist/spgist/gin/hash, partial, expression indexes
    "create_view",        # views of many shapes, views on views
    "create_aggregate",   # aggregates: moving, ordered-set, hypothetical, parallel
    "create_cast",        # casts on schema types (pg_dump -n leaves casts out)
    "constraints",        # CHECK, UNIQUE, EXCLUDE, deferrable, NOT VALID
    "triggers",           # row/statement/transition-table/constraint triggers
    "inherit",            # multiple inheritance, merged columns, inherited CHECKs
    "typed_table",        # tables OF a composite type
    "matview",            # materialized views, populated or not, their indexes
    "identity",           # identity columns, their sequences' options
    "generated",          # stored generated columns, inherited and partitioned
    "create_table_like",  # LIKE INCLUDING comments, storage, statistics...
    "rules",              # rules, views with rules, the rules test's tables
    "foreign_key",        # FKs of every kind, partitioned, other schemas (fkpart*)
    "tsdicts",            # text search dictionaries and configurations
    "plpgsql",            # plpgsql functions and trigger functions by the dozen
    "domain",             # domains over domains, arrays, composites; constraints
    "alter_table",        # dropped columns, altered types, renamed constraints
    "sequence",           # sequences with every option, owned sequences
    "indexing",           # partitioned indexes, attached and detached
)
@dataclass
class Load:
    """What a corpus load did: scripts run, statements that failed, time."""

    scripts: list[str] = field(default_factory=list)
    failed: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())

    def summary(self) -> str:
        worst = sorted(self.failed.items(), key=lambda kv: -kv[1])
        return (f"{len(self.scripts)} scripts in {self.seconds:.1f}s, "
                f"{self.failed_total} statements failed "
                f"({', '.join(f'{k}: {v}' for k, v in worst if v)})")


# -- where the corpora are ------------------------------------------------------

def pagila_dir() -> Path:
    """The pagila folder: `$PGSR_PAGILA_DIR`, else next to the repository."""
    configured = os.environ.get(PAGILA_ENV)
    return Path(configured) if configured else REPO.parent / "shared" / "data" / "pagila"


def pagila_missing() -> str | None:
    """Why pagila cannot be loaded (None: it can)."""
    folder = pagila_dir()
    missing = [name for name in ("pagila-schema.sql", "pagila-data.sql")
               if not (folder / name).is_file()]
    if missing:
        return (f"pagila corpus not found: {', '.join(missing)} missing in {folder} "
                f"(set {PAGILA_ENV} to its folder)")
    return None


# For tests: skipped before any cluster starts.
needs_pagila = pytest.mark.skipif(pagila_missing() is not None, reason=pagila_missing() or "")


def require_pagila() -> Path:
    """The pagila folder, or skip the test saying where it was looked for."""
    reason = pagila_missing()
    if reason:
        pytest.skip(reason)
    return pagila_dir()


def regress_dir() -> Path:
    configured = os.environ.get(REGRESS_ENV)
    return Path(configured) if configured else REGRESS_CACHE


def require_regress() -> Path:
    """The cached regression scripts, or fail with the command that fetches them."""
    folder = regress_dir()
    missing = [str(folder / "sql" / f"{name}.sql") for name in REGRESS_SELECTION
               if not (folder / "sql" / f"{name}.sql").is_file()]
    if not (folder / ".complete").is_file() or missing:
        pytest.fail(f"PostgreSQL's regression scripts are not cached in {folder} "
                    f"({', '.join(missing[:3]) or 'no .complete marker'}); run "
                    f"`{FETCH_COMMAND}` (scripts/test.sh runs it before pytest)",
                    pytrace=False)
    return folder


# -- loading ----------------------------------------------------------------------

def _psql_env(cluster: LocalCluster, db: str, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGHOST="127.0.0.1", PGPORT=str(cluster.port), PGUSER=SUPERUSER,
               PGPASSWORD=cluster.password, PGDATABASE=db)
    env.update(extra)
    return env


def run_psql_files(cluster: LocalCluster, db: str, files: list[Path], *,
                   env: dict[str, str] | None = None, timeout: float = 300) -> Load:
    """Each file in its own psql session (as pg_regress runs them), errors counted."""
    load = Load()
    started = time.monotonic()
    for path in files:
        began = time.monotonic()
        proc = subprocess.run(
            [str(server_bindir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=0",
             "-f", str(path)], check=False, env=_psql_env(cluster, db, env or {}),
            cwd=path.parent, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:   # statement errors are not psql's: 1 = no file, 2 = lost
            raise RuntimeError(f"psql -f {path} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
        errors = [m.group(2) for m in _ERROR_LINE.finditer(proc.stderr)]
        load.scripts.append(path.stem)
        load.failed[path.stem] = len(errors)
        load.timings[path.stem] = round(time.monotonic() - began, 2)
        load.errors.extend(f"{path.stem}: {e}" for e in errors)
    load.seconds = time.monotonic() - started
    return load


def load_pagila(cluster: LocalCluster, db: str, *, schema: str = "public",
                owner: str | None = None) -> Load:
    """pagila as shipped (in `public`); with another `schema`, public is then
    renamed to it and a fresh `public` made (pagila's README). With `owner`,
    its objects belong to that role instead of the superuser (an application
    role, as on RDS): the script's own `OWNER TO postgres` lines name it. By
    default they belong to the role the cluster's connections log in as (the
    master user of `support.pg.rds_roles`), so that it can restore them."""
    folder = require_pagila()
    owner = owner or (cluster.user if cluster.user != SUPERUSER else None)
    files = [folder / "pagila-schema.sql", folder / "pagila-data.sql"]
    with tempfile.TemporaryDirectory(prefix="pgsr-pagila-") as tmp:
        if owner is not None:
            owned = Path(tmp) / "pagila-schema.sql"
            owned.write_text(files[0].read_text().replace(
                "OWNER TO postgres;", sql.SQL("OWNER TO {};").format(
                    sql.Identifier(owner)).as_string(None)))
            files[0] = owned
        load = run_psql_files(cluster, db, files)
    with cluster.connect(db, user=SUPERUSER, autocommit=True) as conn:   # as it was loaded
        if schema != "public":
            conn.execute(sql.SQL("ALTER SCHEMA public RENAME TO {}").format(sql.Identifier(schema)))
            conn.execute("CREATE SCHEMA public AUTHORIZATION pg_database_owner")
            conn.execute("GRANT USAGE ON SCHEMA public TO PUBLIC")
            if owner is not None:
                conn.execute(sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(
                    sql.Identifier(schema), sql.Identifier(owner)))
    return load


def regress_env(folder: Path, schema: str) -> dict[str, str]:
    """What pg_regress gives each script, with `schema` as the session default
    search_path (so RESET and reconnects land there too)."""
    return {
        # Nothing of the selection writes files; a script that would finds no
        # build dir instead of writing into the cache.
        "PG_ABS_SRCDIR": str(folder), "PG_ABS_BUILDDIR": "/nonexistent-regress-build",
        "PG_LIBDIR": "/nonexistent-regress-lib", "PG_DLSUFFIX": ".so",
        "PGTZ": "PST8PDT", "PGDATESTYLE": "Postgres, MDY",
        "PGOPTIONS": f"-c search_path={schema}",
    }


def load_regress(cluster: LocalCluster, db: str, schema: str,
                 selection: tuple[str, ...] = REGRESS_SELECTION) -> Load:
    """The selection into one fresh schema that every role may create in (as
    the regression suite's `public`)."""
    folder = require_regress()
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", schema):
        raise ValueError(f"{schema!r}: PGOPTIONS carries it unquoted; use a plain name")
    with cluster.connect(db, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("GRANT ALL ON SCHEMA {} TO PUBLIC").format(sql.Identifier(schema)))
    return run_psql_files(cluster, db, [folder / "sql" / f"{name}.sql" for name in selection],
                          env=regress_env(folder, schema))


def replicate(source: LocalCluster, source_db: str, target: LocalCluster, target_db: str) -> Load:
    """The same state in another cluster, far cheaper than loading it again:
    the source's roles (by name), then `pg_dump -Fc | pg_restore` of the
    database. What the target cannot restore is counted like a load's errors."""
    started = time.monotonic()
    with source.connect(source_db) as src, target.connect(autocommit=True) as tgt:
        roles = [r for (r,) in src.execute(
            "SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_' AND rolname <> current_user")]
        have = {r for (r,) in tgt.execute("SELECT rolname FROM pg_roles")}
        for role in roles:
            if role not in have:
                tgt.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
    bindir = server_bindir()
    dump = subprocess.Popen([str(bindir / "pg_dump"), "-Fc", "-Z0"],
                            env=_psql_env(source, source_db, {}), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    restore = subprocess.run([str(bindir / "pg_restore"), "-d", target_db],
                             env=_psql_env(target, target_db, {}), stdin=dump.stdout,
                             capture_output=True, text=True, check=False)
    dump.stdout.close()
    dumped = dump.wait()
    if dumped != 0:
        raise RuntimeError(f"pg_dump of {source_db} failed: {dump.stderr.read().decode()[-2000:]}")
    errors = re.findall(r"^pg_restore: error: (.*)$", restore.stderr, re.MULTILINE)
    return Load(scripts=["pg_dump | pg_restore"], failed={"pg_restore": len(errors)},
                errors=errors, seconds=time.monotonic() - started,
                timings={"pg_restore": round(time.monotonic() - started, 2)})


def load_both(loader: Callable[[LocalCluster, str], Load],
              sides: list[tuple[LocalCluster, str]]) -> list[Load]:
    """The same load into several databases at once (the work is in the servers)."""
    with ThreadPoolExecutor(len(sides)) as pool:
        return list(pool.map(lambda side: loader(*side), sides))
