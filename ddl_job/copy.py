"""Copy every table's rows from the renamed disposable copy to production.

Why it looks like this (docs/facts.md, "Copy throughput"):

- Rows never pass through Python. psycopg surfaces COPY data one row per
  chunk (25 M rows took 29 s just to read); two piped `psql` processes keep
  the stream inside libpq: `psql -c "COPY … TO STDOUT (FORMAT binary)" |
  psql -c "COPY … FROM STDIN (FORMAT binary)"`. Binary COPY works between
  servers of the same major version, including arrays of enums and
  composites whose type OIDs differ between the two databases. Types without
  binary I/O functions make their table fall back to text COPY.
- Tables are loaded before their PK and indexes exist (post-data comes
  after), so the write side runs near the server's bulk-load bound.
- `jobs` workers (threads that only wait on subprocesses) take units largest
  first. Tables larger than one chunk are split into ctid page ranges (a TID
  range scan reads only those pages, PostgreSQL ≥ 14), so a single big table
  keeps every worker busy. The last range of a table has no upper bound:
  rows beyond the size measured at planning time are never missed. Equal
  chunks are taken round-robin across tables, so workers seldom append to
  the same table at once: its pages then keep the source's order, and an
  index build on a key in insertion order sorts presorted input (measured
  here: a PK build on 8 M rows, 3.4 s in order vs 4.2-5.2 s interleaved).
- Every source session shares one exported snapshot, so all ranges and
  tables are read at the same instant even if the copy were being written.
- Source sessions run with `row_security=off`: row-level security can then
  never silently filter rows; it raises an error instead. Target sessions
  run with `synchronous_commit=off`. Both use ISO dates, UTC, exact floats
  and the source's encoding, so text-format tables round-trip exactly.
- Connection parameters reach psql through the environment only; every SQL
  text is composed with `psycopg.sql` (identifiers are always quoted).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psycopg
from psycopg import sql

from . import catalog
from .conn import Endpoint
from .errors import DataPlaneError
from .names import shown
from .progress import Reporter

MIN_CHUNK_BYTES = 16 * 1024 * 1024   # never split finer than this by default
CHUNKS_PER_WORKER = 4                # enough units to keep every worker busy
TID_RANGE_SCAN_VERSION = 140000      # older servers would scan the whole table per range
_STDERR_TAIL = 800
EXACT_COUNT_PAGES = 128              # tables up to 1 MB are counted exactly up front
CHUNK_PAGES_ENV = "PGSR_COPY_CHUNK_PAGES"   # overrides the range size (tests)
_COPY_TAG = re.compile(rb"^COPY (\d+)\s*$", re.MULTILINE)

_COMMON_SETTINGS = {
    "statement_timeout": "0", "lock_timeout": "0",
    "idle_in_transaction_session_timeout": "0",
    "DateStyle": "ISO", "IntervalStyle": "postgres", "TimeZone": "UTC",
    "extra_float_digits": "3",
    # reg* values as text are qualified names unless in pg_catalog
    "search_path": "pg_catalog",
}
SOURCE_SETTINGS = {**_COMMON_SETTINGS, "row_security": "off"}
TARGET_SETTINGS = {**_COMMON_SETTINGS, "synchronous_commit": "off"}


@dataclass(frozen=True)
class Unit:
    """One COPY stream: a whole table, or the pages [first_page, end_page) of it."""

    table: catalog.Table
    first_page: int | None = None   # None: whole table, no ctid filter
    end_page: int | None = None     # None: no upper bound
    weight: int = 0                 # estimated pages, for ordering and byte shares


def plan_units(tables: list[catalog.Table], *, jobs: int, block_size: int = 8192,
               chunk_pages: int | None = None, split: bool = True) -> tuple[list[Unit], int]:
    """Cut tables into units, largest first; return (units, chunk_pages used)."""
    if chunk_pages is None:
        total = sum(t.pages for t in tables)
        chunk_pages = max(total // (max(jobs, 1) * CHUNKS_PER_WORKER),
                          MIN_CHUNK_BYTES // block_size)
    chunk_pages = max(int(chunk_pages), 1)
    ranked: list[tuple[int, int, int, Unit]] = []   # (-weight, chunk no., table no., unit)
    for rank, table in enumerate(tables):
        if not split or table.pages <= chunk_pages:
            ranked.append((-table.pages, 0, rank, Unit(table, weight=table.pages)))
            continue
        for number, first in enumerate(range(0, table.pages, chunk_pages)):
            end = first + chunk_pages
            last = end >= table.pages
            weight = min(end, table.pages) - first
            ranked.append((-weight, number, rank,
                           Unit(table, first, None if last else end, weight)))
    ranked.sort(key=lambda entry: entry[:3])
    return [entry[3] for entry in ranked], chunk_pages


def copy_sql(unit: Unit, *, binary: bool = True) -> tuple[sql.Composed, sql.Composed]:
    """(source COPY … TO STDOUT, target COPY … FROM STDIN) for one unit."""
    table = unit.table
    rel = sql.Identifier(table.schema, table.name)
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in table.columns)
    # No column list when there are no copyable columns (a zero-column table):
    # `COPY t` then moves zero-field rows, so the row count is kept.
    col_list = sql.SQL(" ({})").format(cols) if table.columns else sql.SQL("")
    opts = sql.SQL(" (FORMAT binary)") if binary else sql.SQL("")
    if unit.first_page is None:
        source = sql.SQL("COPY {}{} TO STDOUT{}").format(rel, col_list, opts)
    else:
        cond = sql.SQL("ctid >= {}::tid").format(sql.Literal(f"({unit.first_page},0)"))
        if unit.end_page is not None:
            cond = sql.SQL("{} AND ctid < {}::tid").format(
                cond, sql.Literal(f"({unit.end_page},0)"))
        # FROM ONLY: an inheritance parent's rows without its children's.
        source = sql.SQL("COPY (SELECT {} FROM ONLY {} WHERE {}) TO STDOUT{}").format(
            cols, rel, cond, opts)
    target = sql.SQL("COPY {}{} FROM STDIN{}").format(rel, col_list, opts)
    return source, target


def _tail(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip()
    return text[-_STDERR_TAIL:]


@dataclass
class _TableProgress:
    remaining: int = 0
    chunks: int = 0
    rows: int = 0
    started: float | None = None


@dataclass
class _Copier:
    """Runs units on `jobs` threads; the first failure stops everything."""

    source: Endpoint
    target: Endpoint
    psql: str
    source_env: dict[str, str]
    target_env: dict[str, str]
    snapshot: str | None
    render_conn: psycopg.Connection
    text_tables: set[tuple[str, str]]
    sizes: dict[tuple[str, str], int]
    reporter: Reporter
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _live: set[subprocess.Popen] = field(default_factory=set)
    _failed: threading.Event = field(default_factory=threading.Event)
    _error: DataPlaneError | None = None
    _progress: dict[tuple[str, str], _TableProgress] = field(default_factory=dict)
    counter: CopyCounter | None = None

    # -- processes ---------------------------------------------------------
    def _spawn(self, args: list[str], env: dict[str, str], **kwargs) -> subprocess.Popen:
        with self._lock:
            if self._failed.is_set():
                raise _Stopped()
            proc = subprocess.Popen(args, env=env, **kwargs)
            self._live.add(proc)
            return proc

    def _reap(self, *procs: subprocess.Popen) -> None:
        with self._lock:
            for proc in procs:
                self._live.discard(proc)

    def _fail(self, error: DataPlaneError) -> None:
        with self._lock:
            if self._error is None:
                self._error = error
            self._failed.set()
            for proc in self._live:
                if proc.poll() is None:
                    proc.terminate()

    # -- one unit ----------------------------------------------------------
    def _psql(self, *commands: str, quiet: bool) -> list[str]:
        args = [self.psql, "-X", "-v", "ON_ERROR_STOP=1"] + (["-q"] if quiet else [])
        for command in commands:
            args += ["-c", command]
        return args

    def render(self, unit: Unit) -> tuple[list[str], str]:
        """psql commands for one unit: (source commands, target COPY)."""
        table = unit.table
        binary = (table.schema, table.name) not in self.text_tables
        source_sql, target_sql = (q.as_string(self.render_conn)
                                  for q in copy_sql(unit, binary=binary))
        if self.snapshot is None:
            return [source_sql], target_sql
        return ["BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
                sql.SQL("SET TRANSACTION SNAPSHOT {}").format(
                    sql.Literal(self.snapshot)).as_string(self.render_conn),
                source_sql], target_sql

    def run_unit(self, unit: Unit, source_cmds: list[str], target_sql: str) -> int:
        """Stream one unit; return the row count the target reported."""
        table = unit.table
        with tempfile.TemporaryFile() as src_err, tempfile.TemporaryFile() as tgt_err:
            src = self._spawn(self._psql(*source_cmds, quiet=True), self.source_env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=src_err)
            try:
                tgt = self._spawn(self._psql(target_sql, quiet=False), self.target_env,
                                  stdin=src.stdout, stdout=subprocess.PIPE, stderr=tgt_err)
            except BaseException:
                src.kill()
                src.wait()
                self._reap(src)
                raise
            finally:
                assert src.stdout is not None
                src.stdout.close()  # only the target holds the read end now
            out, _ = tgt.communicate()
            src.wait()
            self._reap(src, tgt)
            if self._failed.is_set():
                raise _Stopped()
            if src.returncode != 0 or tgt.returncode != 0:
                raise DataPlaneError("CopyFailed", self._describe(
                    table, src.returncode, tgt.returncode, _read(src_err), _read(tgt_err)))
        match = _COPY_TAG.search(out)
        if match is None:
            raise DataPlaneError("CopyFailed", f"{table.label}: target psql reported no "
                                               "COPY row count")
        return int(match.group(1))

    def _describe(self, table: catalog.Table, src_rc: int, tgt_rc: int,
                  src_err: bytes, tgt_err: bytes) -> str:
        """The failing side's error first; a source killed by SIGPIPE only
        saw the target go away, and a target fed a cut stream only saw the
        source go away."""
        parts = []
        if src_rc != 0 and (src_rc != -signal.SIGPIPE or tgt_rc == 0):
            parts.append(f"source (exit {src_rc}): {_tail(src_err) or 'no message'}")
        if tgt_rc != 0:
            parts.append(f"target (exit {tgt_rc}): {_tail(tgt_err) or 'no message'}")
        message = f"{table.label}: " + "; ".join(parts)
        return self.target.sanitize(self.source.sanitize(message))

    # -- the pool ----------------------------------------------------------
    def run(self, units: list[Unit], jobs: int) -> int:
        for unit in units:
            key = (unit.table.schema, unit.table.name)
            state = self._progress.setdefault(key, _TableProgress())
            state.remaining += 1
            state.chunks += 1
        # Rendered here, on one thread: workers then only run processes.
        queue = [(unit, *self.render(unit)) for unit in units]
        totals = {"rows": 0}

        def worker() -> None:
            while not self._failed.is_set():
                with self._lock:
                    if not queue:
                        return
                    unit, source_cmds, target_sql = queue.pop(0)
                    state = self._progress[(unit.table.schema, unit.table.name)]
                    if state.started is None:
                        state.started = time.monotonic()
                try:
                    rows = self.run_unit(unit, source_cmds, target_sql)
                except _Stopped:
                    return
                except DataPlaneError as exc:
                    self._fail(exc)
                    return
                except Exception as exc:  # noqa: BLE001 - any bug must stop the pool too
                    self._fail(DataPlaneError("CopyFailed", self.target.sanitize(
                        self.source.sanitize(f"{unit.table.label}: {exc}"))))
                    return
                self._unit_done(unit, rows, totals)

        threads = [threading.Thread(target=worker, name=f"copy-{i}", daemon=True)
                   for i in range(max(1, min(jobs, len(units))))]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        except BaseException:  # Ctrl-C, or a signal handler raising: leave no psql behind
            self._fail(DataPlaneError("CopyFailed", "copy interrupted"))
            raise
        if self._error is not None:
            raise self._error
        return totals["rows"]

    def _unit_done(self, unit: Unit, rows: int, totals: dict[str, int]) -> None:
        table = unit.table
        key = (table.schema, table.name)
        with self._lock:
            state = self._progress[key]
            state.rows += rows
            state.remaining -= 1
            totals["rows"] += rows
            finished = state.remaining == 0
            started = state.started or time.monotonic()
            if self.counter is not None:   # emitted under the lock: counters never go back
                self.reporter.emit("copy_progress", **self.counter.add(
                    rows, unit_bytes(unit, self.sizes.get(key, 0)), finished))
        if finished:
            self.reporter.emit(
                "table_done", table=table.label, rows=state.rows,
                bytes=self.sizes.get(key, 0), seconds=round(time.monotonic() - started, 3),
                chunks=state.chunks, format="text" if key in self.text_tables else "binary")


def unit_bytes(unit: Unit, table_bytes: int) -> int:
    """A unit's share of its table's heap+TOAST bytes, by pages (whole table: all)."""
    if unit.first_page is None or unit.table.pages <= 0:
        return table_bytes
    return table_bytes * unit.weight // unit.table.pages


@dataclass
class CopyCounter:
    """Absolute counters of a copy, reported after every unit (chunk or table).

    Absolute, not increments: an executor that reads the lines twice (a log
    stream re-opened) or a resumed step cannot count anything twice."""

    tables: int
    rows_total: int
    bytes_total: int
    tables_done: int = 0
    rows: int = 0
    bytes: int = 0

    def add(self, rows: int, nbytes: int, table_finished: bool) -> dict[str, int]:
        self.rows += rows
        # Estimated per chunk; never past the total before the last unit.
        self.bytes = min(self.bytes + nbytes, self.bytes_total)
        self.tables_done += 1 if table_finished else 0
        if self.tables_done == self.tables:
            self.bytes = self.bytes_total
        return {"tables_done": self.tables_done, "tables": self.tables, "rows": self.rows,
                "rows_total": max(self.rows_total, self.rows), "bytes": self.bytes,
                "bytes_total": self.bytes_total}


def _row_estimates(conn: psycopg.Connection, tables: list[catalog.Table],
                   exact_pages: int = EXACT_COUNT_PAGES) -> int:
    """Rows to copy, estimated up front: `count(*)` where the table is small
    (cheap, and exact), else `pg_class.reltuples` (the planner's estimate;
    -1 when never analyzed: then pages × the sampled tables' rows per page)."""
    if not tables:
        return 0
    rows = conn.execute(
        "SELECT n.nspname, c.relname, c.reltuples FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = ANY(%s) AND c.relkind = 'r'",
        (sorted({t.schema for t in tables}),)).fetchall()
    estimates = {(r[0], r[1]): float(r[2]) for r in rows}
    total = 0
    for table in tables:
        estimate = estimates.get((table.schema, table.name), -1.0)
        if table.pages <= exact_pages:
            row = conn.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(
                sql.Identifier(table.schema, table.name))).fetchone()
            total += int(row[0]) if row else 0
        elif estimate >= 0:
            total += int(estimate)
    return total


class _Stopped(Exception):
    """Another worker failed: this one stops quietly."""


def _read(handle: IO[bytes]) -> bytes:
    handle.seek(0)
    return handle.read()


def _find_psql() -> str:
    """`PGSR_PSQL`, else psql on PATH; Debian's Perl pg_wrapper (50 ms a start,
    two starts per unit) is bypassed for the newest installed client."""
    found = os.environ.get("PGSR_PSQL") or shutil.which("psql")
    if not found:
        raise DataPlaneError("ToolMissing", "psql is not installed (PostgreSQL client)")
    if os.path.basename(os.path.realpath(found)) == "pg_wrapper":
        clients = sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"),
                         key=lambda p: int(p.parent.parent.name)
                         if p.parent.parent.name.isdigit() else 0)
        if clients:
            return str(clients[-1])
    return found


def _table_facts(conn: psycopg.Connection, schemas: list[str]
                 ) -> tuple[dict[tuple[str, str], int], set[tuple[str, str]]]:
    """Heap+TOAST size per table (no indexes), and tables needing text COPY.

    Text is needed when a copied column's type (through domains) or its array
    element type has no binary send/receive function, or is a reg* type: in
    binary those are bare OIDs, which name other objects in the target; as
    text (search_path = pg_catalog) they are qualified names, and names in
    the renamed schemas resolve to the restored objects.
    """
    rows = conn.execute(
        """
        WITH RECURSIVE cols AS (
            SELECT c.oid AS rel, a.atttypid AS typ
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_attribute a ON a.attrelid = c.oid
            WHERE n.nspname = ANY(%(schemas)s) AND c.relkind = 'r'
              AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
          UNION  -- a domain's base type, an array's element type
            SELECT cols.rel, CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.typelem END
            FROM cols JOIN pg_type t ON t.oid = cols.typ
            WHERE t.typtype = 'd' OR (t.typcategory = 'A' AND t.typelem <> 0)
        )
        SELECT n.nspname, c.relname, pg_table_size(c.oid),
               EXISTS (SELECT 1 FROM cols JOIN pg_type t ON t.oid = cols.typ
                       WHERE cols.rel = c.oid AND t.typtype <> 'd'
                         AND (t.typsend = 0 OR t.typreceive = 0
                              OR (t.typnamespace = 'pg_catalog'::regnamespace
                                  AND t.typcategory = 'N' AND t.typname LIKE 'reg%%')))
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%(schemas)s) AND c.relkind = 'r'
        """, {"schemas": schemas}).fetchall()
    sizes = {(r[0], r[1]): int(r[2]) for r in rows}
    text = {(r[0], r[1]) for r in rows if r[3]}
    return sizes, text


def _check_target(conn: psycopg.Connection, tables: list[catalog.Table],
                  restart_for: str | None = None) -> None:
    """Every table must exist on the target and be empty (no double copy).

    `restart_for` (a restore id) allows a resumed copy: tables already holding
    rows are truncated, but only in schemas carrying that restore's marker.
    """
    schemas = sorted({t.schema for t in tables})
    present = {(t.schema, t.name) for t in catalog.list_tables(conn, schemas)}
    missing = [t.label for t in tables if (t.schema, t.name) not in present]
    if missing:
        raise DataPlaneError("CopyFailed", f"tables missing on the target: {missing[:20]}")
    loaded = []
    for table in tables:
        row = conn.execute(sql.SQL("SELECT EXISTS (SELECT FROM ONLY {})").format(
            sql.Identifier(table.schema, table.name))).fetchone()
        if row and row[0]:
            loaded.append(table.label)
    if loaded and restart_for:
        ours = catalog.schemas_marked_by(conn, schemas, restart_for)
        partial = [t for t in tables if t.label in loaded]
        if all(t.schema in ours for t in partial):
            conn.execute(sql.SQL("TRUNCATE ONLY {}").format(sql.SQL(", ").join(
                sql.Identifier(t.schema, t.name) for t in partial)))
            return
    if loaded:
        raise DataPlaneError("TargetNotEmpty",
                             f"target tables already hold rows (copy ran before?): {loaded[:20]}")


def copy_sequences(source: psycopg.Connection, target: psycopg.Connection,
                   schemas: list[str]) -> int:
    """Set every sequence on the target to the source's `last_value, is_called`."""
    sequences = catalog.list_sequences(source, schemas)
    with target.transaction():
        for schema, name in sequences:
            rel = sql.Identifier(schema, name)
            row = source.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(rel)
                                 ).fetchone()
            assert row is not None
            target.execute("SELECT setval(%s::regclass, %s, %s)",
                           (rel.as_string(target), row[0], row[1]))
    return len(sequences)


def copy_data(source: Endpoint, target: Endpoint, schemas: list[str], *, jobs: int = 2,
              reporter: Reporter, chunk_pages: int | None = None,
              restart_for: str | None = None) -> dict:
    """Copy all tables of `schemas` (same names on both sides), then sequences.

    `chunk_pages` overrides the range size (tests use it to force splitting).
    `restart_for` (restore id) lets a resumed copy truncate what a crashed one
    loaded, in that restore's own schemas only.
    Returns {tables, rows, bytes, seconds, sequences}.
    """
    started = time.monotonic()
    jobs = max(1, jobs)
    psql = _find_psql()
    src = source.connect(application_name="pgsr-copy")
    tgt = target.connect(autocommit=True, application_name="pgsr-copy")
    try:
        # One REPEATABLE READ transaction stays open until the end: it plans
        # the copy and exports the snapshot every source stream imports.
        src.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        src.read_only = True
        # The snapshot dies with this transaction: no server timeout may end it.
        src.execute("SET idle_in_transaction_session_timeout = 0")
        src.execute("SET statement_timeout = 0")
        snap_row = src.execute("SELECT pg_export_snapshot(), "
                               "current_setting('block_size')::int, "
                               "current_setting('server_version_num')::int, "
                               "current_setting('server_encoding')").fetchone()
        assert snap_row is not None
        snapshot, block_size, version, encoding = snap_row
        tables = catalog.list_tables(src, schemas)
        sizes, text_tables = _table_facts(src, schemas)
        _check_target(tgt, tables, restart_for)
        if chunk_pages is None and os.environ.get(CHUNK_PAGES_ENV):
            chunk_pages = int(os.environ[CHUNK_PAGES_ENV])
        units, chunk = plan_units(tables, jobs=jobs, block_size=block_size,
                                  chunk_pages=chunk_pages,
                                  split=version >= TID_RANGE_SCAN_VERSION)
        total_bytes = sum(sizes.get((t.schema, t.name), 0) for t in tables)
        rows_total = _row_estimates(src, tables)
        reporter.emit("copy_plan", tables=len(tables), units=len(units), jobs=jobs,
                      chunk_pages=chunk, bytes=total_bytes, rows_total=rows_total,
                      text_format=sorted(f"{shown(s)}.{shown(n)}" for s, n in text_tables))

        source_env = source.libpq_env(settings=SOURCE_SETTINGS)
        target_env = target.libpq_env(settings=TARGET_SETTINGS)
        for env in (source_env, target_env):
            env["PGCLIENTENCODING"] = encoding  # both ends speak the source's encoding
            env.setdefault("PGAPPNAME", "pgsr-copy")
        copier = _Copier(source, target, psql, source_env, target_env, snapshot, src,
                         text_tables, sizes, reporter,
                         counter=CopyCounter(len(tables), rows_total, total_bytes))
        rows = copier.run(units, jobs) if units else 0

        sequences = copy_sequences(src, tgt, schemas)
        reporter.emit("sequences_done", sequences=sequences)
    finally:
        src.close()
        tgt.close()
    return {"tables": len(tables), "rows": rows, "bytes": total_bytes,
            "seconds": round(time.monotonic() - started, 3), "sequences": sequences}


def sync_sequences(source: Endpoint, target: Endpoint, schemas: list[str], *,
                   reporter: Reporter) -> dict:
    """Only the sequences (after a copy done by someone else, e.g. DMS)."""
    with source.connect(application_name="pgsr-copy") as src, \
            target.connect(autocommit=True, application_name="pgsr-copy") as tgt:
        count = copy_sequences(src, tgt, schemas)
    reporter.emit("sequences_done", sequences=count)
    return {"sequences": count}
