"""pg_dump / pg_restore wrappers: one archive, split by TOC entry, never by regex.

The archive is pg_dump's custom format with the pre-data and post-data
sections (not `-s`, which drops `REFRESH MATERIALIZED VIEW`). TOC entries are
selected by catalog OID, never by parsing the names `pg_restore -l` prints
unquoted. Text renderings drop pg_dump's `\\restrict` / `\\unrestrict` lines
(pg_dump ≥ 15.14), which no driver can execute: only the two lines that carry
the key of the header, so a line of a schema name that reads like them stays.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from psycopg.conninfo import make_conninfo

from . import clients
from .conn import Endpoint
from .errors import DataPlaneError

PG_NAMESPACE = 2615
PG_CONSTRAINT = 2606
PG_DEFAULT_ACL = 826
_TOC_LINE = re.compile(r"^(\d+); (\d+) (\d+) ")
_RESTRICT = re.compile(r"^\\restrict ([A-Za-z0-9]+)$")
# The script header's session timeouts. apply sets its own (a lock_timeout
# that the header's `SET lock_timeout = 0` would cancel), and pg_restore 17
# writes `SET transaction_timeout`, which an older server refuses.
_HEADER_TIMEOUT = re.compile(
    r"^SET (statement_timeout|lock_timeout|idle_in_transaction_session_timeout"
    r"|transaction_timeout) = 0;$")
_VERSION = re.compile(r"\) (\d+)(?:\.(\d+))?")
# pg_restore writes each object's name into a `--` comment line of the SQL it
# renders. Before these releases (CVE-2025-8715) a line break in a name ended
# the comment, and the rest of the name became SQL that `apply pre` would run;
# since them, line breaks in comment lines become spaces (seen on 15.18).
COMMENT_SAFE_MINOR = {13: 22, 14: 19, 15: 14, 16: 10, 17: 6}


@dataclass(frozen=True)
class TocEntry:
    line: str
    dump_id: int
    catalog: int
    oid: int


def _run(args: list[str], endpoint: Endpoint, what: str,
         settings: dict[str, str] | None = None) -> str:
    args = [clients.program(args[0], endpoint), *args[1:]]
    result = subprocess.run(args, env=endpoint.libpq_env(settings=settings),
                            capture_output=True, text=True)
    if result.returncode != 0:
        tail = endpoint.sanitize(result.stderr.strip())[-2000:]
        raise DataPlaneError(what, f"{Path(args[0]).name} failed: {tail}")
    return result.stdout


def schema_pattern(name: str) -> str:
    """A pg_dump `-n` pattern matching exactly `name`.

    Inside double quotes pg_dump folds no case, treats `*`, `?` and `.` as
    plain characters, escapes regex characters (backslash included) and reads
    `""` as one quote (checked with pg_dump 15: tests/test_identifiers.py)."""
    return '"' + name.replace('"', '""') + '"'


def comment_safe(version: str) -> bool:
    """Whether `pg_restore --version` names a release whose comment lines
    cannot be ended by a line break in a name (COMMENT_SAFE_MINOR)."""
    match = _VERSION.search(version)
    if match is None:
        return False
    major, minor = int(match[1]), int(match[2]) if match[2] else -1
    return major > max(COMMENT_SAFE_MINOR) or minor >= COMMENT_SAFE_MINOR.get(major, 10**6)


def require_comment_safe(names: list[str], endpoint: Endpoint) -> None:
    """Refuse names holding a line break when the local pg_restore predates
    CVE-2025-8715's fix: its rendering of them could be run as SQL."""
    if not any("\n" in name or "\r" in name for name in names):
        return
    version = _run(["pg_restore", "--version"], endpoint, "DumpFailed").strip()
    if not comment_safe(version):
        raise DataPlaneError(
            "ToolTooOld",
            f"{version} writes line breaks of names into SQL comments (CVE-2025-8715); "
            "schema names with line breaks need pg_restore 13.22, 14.19, 15.14, 16.10, "
            "17.6 or later")


def dump_schemas(source: Endpoint, schemas: list[str], archive: Path) -> None:
    """pg_dump the schemas' DDL (pre-data + post-data) into a custom archive."""
    args = ["pg_dump", "--format=custom", "--section=pre-data", "--section=post-data",
            "--strict-names", "--no-password", f"--file={archive}"]
    for name in schemas:
        args.append(f"--schema={schema_pattern(name)}")
    _run(args, source, "DumpFailed")  # database from PGDATABASE


def toc(archive: Path, section: str, endpoint: Endpoint) -> list[TocEntry]:
    """The archive's TOC entries of one section (`pre-data` / `post-data`)."""
    out = _run(["pg_restore", "--list", f"--section={section}", str(archive)],
               endpoint, "DumpFailed")
    entries = []
    for line in out.splitlines():
        match = _TOC_LINE.match(line)
        if match:
            entries.append(TocEntry(line, int(match[1]), int(match[2]), int(match[3])))
    return entries


# `pg_restore --jobs` can deadlock an `ALTER INDEX … ATTACH PARTITION` against
# index builds on the same partition tree (PostgreSQL before 17; seen here on
# a two-level partitioned table). So post-data runs in passes: (1) everything
# else in parallel; (2) index attachments one at a time; (3) foreign keys,
# which may need a partitioned PK whose attachments are done, and comments,
# which may be on those keys, in parallel. Without attachments, one pass.
_ATTACH_PASS = ("INDEX ATTACH ",)
_LAST_PASS = ("FK CONSTRAINT ", "COMMENT ", "SECURITY LABEL ")


def post_data_passes(lines: list[str]) -> list[tuple[list[str], bool]]:
    """Split a post-data TOC list into ordered passes: (lines, may run in parallel)."""
    first: list[str] = []
    attach: list[str] = []
    last: list[str] = []
    for line in lines:
        match = _TOC_LINE.match(line)
        rest = line[match.end():] if match else ""
        if rest.startswith(_ATTACH_PASS):
            attach.append(line)
        elif rest.startswith(_LAST_PASS):
            last.append(line)
        else:
            first.append(line)
    if not attach:  # one pass: FK validations overlap the remaining index builds
        return [(lines, True)] if lines else []
    passes = [(first, True), (attach, False), (last, True)]
    return [(chunk, parallel) for chunk, parallel in passes if chunk]


def without_entries(lines: list[str], dump_ids: set[int]) -> list[str]:
    """A TOC list without the entries of `dump_ids` (applied another way)."""
    kept = []
    for line in lines:
        match = _TOC_LINE.match(line)
        if match is None or int(match[1]) not in dump_ids:
            kept.append(line)
    return kept


def is_privilege_entry(entry: TocEntry) -> bool:
    """GRANT/REVOKE (`ACL`, catalog 0) and `DEFAULT ACL` (pg_default_acl) entries.

    privileges.py applies them instead: pg_dump grants as a role other than the
    owner with `SET SESSION AUTHORIZATION`, which only a superuser may run (an
    RDS master user is none), and misses what `pg_init_privs` records. The
    description follows the catalog fields; for catalog 0 no name comes first.
    """
    if entry.catalog == PG_DEFAULT_ACL:
        return True
    match = _TOC_LINE.match(entry.line)
    return entry.catalog == 0 and match is not None and \
        entry.line[match.end():].startswith("ACL ")


def write_list(entries: list[TocEntry], path: Path) -> Path:
    path.write_text("".join(e.line + "\n" for e in entries))
    return path


def render_sql(archive: Path, toc_list: Path | None, out: Path, endpoint: Endpoint) -> Path:
    """Plain SQL for a TOC list (or the whole archive), `\\restrict` lines removed."""
    args = ["pg_restore", f"--file={out}", str(archive)]
    if toc_list is not None:
        args[1:1] = [f"--use-list={toc_list}"]
    _run(args, endpoint, "DumpFailed")
    # Bytes: text mode would turn a carriage return inside a quoted name into "\n".
    text = without_header_timeouts(without_restrict(out.read_bytes().decode()))
    out.write_bytes(text.encode())
    return out


def without_header_timeouts(text: str) -> str:
    """The script without its header's timeout settings (`_HEADER_TIMEOUT`).

    Only the header is touched: the lines before the first entry (`-- Name:`
    or `-- Data for Name:` comment), where no object's text can be."""
    lines = text.splitlines(keepends=True)
    out = []
    in_header = True
    for line in lines:
        if line.startswith(("-- Name: ", "-- Data for Name: ")):
            in_header = False
        if in_header and _HEADER_TIMEOUT.match(line.rstrip("\n")):
            continue
        out.append(line)
    return "".join(out)


def without_restrict(text: str) -> str:
    """The text without pg_restore's `\\restrict KEY` and `\\unrestrict KEY`
    lines: only those with the key of the first one (the header's), which a
    name cannot guess."""
    lines = text.splitlines(keepends=True)
    key = next((m[1] for line in lines if (m := _RESTRICT.match(line.rstrip("\n")))), None)
    if key is None:
        return text
    drop = {f"\\restrict {key}", f"\\unrestrict {key}"}
    return "".join(line for line in lines if line.rstrip("\n") not in drop)


# Sort memory per index build. Measured here (8 M rows, PostgreSQL 15): a
# random-key btree build took 6.4-7.9 s at 16-64MB and 10-12.9 s at 256MB-1GB;
# a large in-memory quicksort is cache-hostile, a 64MB external sort is not.
DEFAULT_MAINTENANCE_WORK_MEM = "64MB"


def restore_list(archive: Path, toc_list: Path, target: Endpoint, jobs: int,
                 maintenance_work_mem: str = DEFAULT_MAINTENANCE_WORK_MEM) -> None:
    """Apply a TOC list to the target with `jobs` parallel connections.

    pg_restore schedules by dependency: PKs and unique indexes before the FKs
    that need them, independent index builds side by side. The sort memory is
    set per session so a production server's own setting does not decide it.
    """
    args = ["pg_restore", "--exit-on-error", "--no-password", f"--jobs={max(1, jobs)}",
            f"--use-list={toc_list}",
            # pg_restore needs -d to connect; a conninfo keeps odd names literal.
            f"--dbname={make_conninfo(dbname=target.dbname)}", str(archive)]
    _run(args, target, "PostDataFailed", settings={
        "maintenance_work_mem": maintenance_work_mem, "synchronous_commit": "off"})
