"""Compare restored schemas with their source, catalog by catalog.

`compare_schemas(source, target, {"public": "public_r1"})` reads every kind
of object in each mapped schema on both sides (`catalog_queries.KINDS`:
relations, columns in attnum order, constraints, indexes, functions,
triggers, rules, policies, views, sequences with their values, types,
domains, enums, ranges, operators, text search, statistics, owners, ACLs,
default privileges, comments, casts) plus every table's rows, and returns
the differences as readable lines. An empty list means identical up to the
schema rename.

Normalising the rename: both sessions run with an empty search_path, so
deparsed definitions qualify every name outside pg_catalog; a schema name of
the mapping is then replaced by a placeholder where it is a *reference*: an
identifier followed by `.` (not itself after a `.`), a string literal whose
whole value is the name (`SET search_path TO 'tenant'`, `format('%I.%I',
'tenant', t)`), an element of a search_path list (in a literal or after
`search_path TO`/`=`). Other literals, comments and longer names are left as
they are: a body that still names the old schema, or a literal that was
rewritten when it should not have been, shows as a difference.

The oracle is independent of the product: it imports nothing of ddl_job.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import sql

from support.catalog_queries import KINDS, Kind

SESSION_SETTINGS = {
    # Deparsed names come out qualified, data text is the same on both sides.
    "search_path": "", "datestyle": "ISO, MDY", "timezone": "UTC",
    "intervalstyle": "postgres", "extra_float_digits": "3", "bytea_output": "hex",
}
_PLAIN = re.compile(r"[a-z_][a-z0-9_$]*")
_LITERAL = re.compile(r"'((?:[^']|'')*)'")
_SEARCH_PATH = re.compile(r"(search_path\s*(?:TO|=)\s*)([^;'\n]*)", re.IGNORECASE)
_LIST = re.compile(r'\s*(?:"(?:[^"]|"")+"|[\w$]+)(?:\s*,\s*(?:"(?:[^"]|"")+"|[\w$]+))*\s*')

Key = tuple[str, ...]
Snapshot = dict[str, dict[Key, dict[str, Any]]]


def placeholder(name: str) -> str:
    return f"«{name}»"


class Renamer:
    """Replaces schema references (the module docstring's rules) by placeholders."""

    def __init__(self, names: dict[str, str]) -> None:
        """`names`: schema name on this side -> canonical (source) name."""
        self.names = names
        parts = []
        for name in sorted(names, key=len, reverse=True):
            parts.append(re.escape('"' + name.replace('"', '""') + '"'))
            if _PLAIN.fullmatch(name):
                parts.append(r"(?i:" + re.escape(name) + r")(?![\w$])")
        self._qualifier = re.compile(r"(?<![\w$.\"])(" + "|".join(parts) + r")(?=\s*\.)") \
            if parts else None

    def _ident(self, token: str) -> str | None:
        """The canonical name if `token` (quoted or not) names a mapped schema."""
        if token.startswith('"'):
            return self.names.get(token[1:-1].replace('""', '"'))
        return self.names.get(token.lower()) if _PLAIN.fullmatch(token.lower()) else None

    def _list(self, text: str) -> str:
        items = text.split(",")
        out = []
        for item in items:
            canon = self._ident(item.strip())
            out.append(item.replace(item.strip(), placeholder(canon)) if canon else item)
        return ",".join(out)

    def _literal(self, match: re.Match) -> str:
        value = match.group(1)
        if value in self.names:
            return "'" + placeholder(self.names[value]) + "'"
        if "," in value and _LIST.fullmatch(value):
            return "'" + self._list(value) + "'"
        return match.group(0)

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self(v) for v in value]
        if not isinstance(value, str) or not self.names:
            return value
        if self._qualifier is not None:
            value = self._qualifier.sub(
                lambda m: placeholder(self._ident(m.group(1)) or m.group(1)), value)
        value = _SEARCH_PATH.sub(lambda m: m.group(1) + self._list(m.group(2)), value)
        return _LITERAL.sub(self._literal, value)


# -- reading one side -----------------------------------------------------------

def _configure(conn: psycopg.Connection) -> None:
    for name, value in SESSION_SETTINGS.items():
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))


def _namespace(conn: psycopg.Connection, schema: str) -> int | None:
    row = conn.execute("SELECT oid FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    return row[0] if row else None


def _read_kind(conn: psycopg.Connection, kind: Kind, nsp: int, canon: str,
               rename: Renamer) -> dict[Key, dict[str, Any]]:
    cur = conn.execute(kind.query, {"nsp": nsp})
    names = [d.name for d in cur.description or []]
    out: dict[Key, dict[str, Any]] = {}
    for row in cur.fetchall():
        # The schema's own row is keyed by its canonical name alone.
        key = (canon,) if kind.label == "schema" else \
            (canon,) + tuple(str(rename(v)) for v in row[:kind.key])
        out[key] = {name: rename(_plain(v)) for name, v in zip(names[kind.key:], row[kind.key:])}
    return out


def _plain(value: Any) -> Any:
    """psycopg values as comparable plain data (jsonb dicts become sorted text)."""
    if isinstance(value, dict):
        return repr(sorted(value.items()))
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _sequence_values(conn: psycopg.Connection, schema: str, canon: str,
                     rename: Renamer) -> dict[Key, dict[str, Any]]:
    rows = conn.execute("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON "
                        "n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'S'",
                        (schema,)).fetchall()
    out = {}
    for (name,) in rows:
        last, called = conn.execute(sql.SQL("SELECT last_value, is_called FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(name))).fetchone()
        out[(canon, str(rename(name)))] = {"last_value": last, "is_called": called}
    return out


def snapshot(conn: psycopg.Connection, schemas: dict[str, str]) -> Snapshot:
    """Every kind of object of `schemas` (name here -> canonical name), renamed."""
    rename = Renamer(schemas)
    _configure(conn)
    snap: Snapshot = {kind.label: {} for kind in KINDS}
    snap["sequence value"] = {}
    for schema, canon in schemas.items():
        nsp = _namespace(conn, schema)
        if nsp is None:
            continue
        for kind in KINDS:
            snap[kind.label].update(_read_kind(conn, kind, nsp, canon, rename))
        snap["sequence value"].update(_sequence_values(conn, schema, canon, rename))
    conn.rollback()
    return snap


# -- comparing ------------------------------------------------------------------

def _show(value: Any, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _text_diff(a: str, b: str, lines: int = 12) -> str:
    diff = list(difflib.unified_diff(a.splitlines(), b.splitlines(), "source", "target",
                                     lineterm="", n=1))
    body = diff[2:2 + lines]
    more = f"\n      … {len(diff) - 2 - lines} more diff lines" if len(diff) - 2 > lines else ""
    return "\n".join("      " + line for line in body) + more


def _describe(a: Any, b: Any) -> str:
    if isinstance(a, str) and isinstance(b, str) and ("\n" in a or "\n" in b or len(a) > 160):
        return "\n" + _text_diff(a, b)
    if isinstance(a, list) and isinstance(b, list) and sorted(map(str, a)) != sorted(map(str, b)):
        gone = [x for x in a if x not in b]
        new = [x for x in b if x not in a]
        return f"only in source {_show(gone)}; only in target {_show(new)}"
    return f"source {_show(a)}, target {_show(b)}"


def _name(key: Key, label: str = "") -> str:
    if label in ("function", "operator"):       # name(argument types)
        return f"{key[0]}.{key[1]}({', '.join(key[2:])})"
    if label == "cast":
        return f"{key[0]}: ({key[1]} AS {key[2]})"
    return ".".join(key)


def _pair_renamed(label: str, missing: list[Key], extra: list[Key], src: dict, tgt: dict
                  ) -> tuple[list[str], list[Key], list[Key]]:
    """Objects missing under one name and present under another with equal
    attributes: reported once, as a name difference."""
    out: list[str] = []
    left = list(extra)
    still_missing = []
    for key in missing:
        match = next((k for k in left if k[:-1] == key[:-1] and tgt[k] == src[key]), None)
        if match is None:
            still_missing.append(key)
            continue
        left.remove(match)
        out.append(f"[{label}] {_name(key, label)}: named {match[-1]!r} in target")
    return out, still_missing, left


def diff_snapshots(src: Snapshot, tgt: Snapshot, *, marker_prefix: str | None = None
                   ) -> list[str]:
    out: list[str] = []
    for label in src:
        a, b = src[label], tgt.get(label, {})
        missing = [k for k in a if k not in b]
        extra = [k for k in b if k not in a]
        renamed, missing, extra = _pair_renamed(label, missing, extra, a, b)
        out.extend(renamed)
        for key in missing:
            out.append(f"[{label}] {_name(key, label)}: missing in target "
                       f"{_show(a[key].get('definition') or a[key])}")
        for key in extra:
            out.append(f"[{label}] {_name(key, label)}: only in target "
                       f"{_show(b[key].get('definition') or b[key])}")
        for key in a:
            if key not in b:
                continue
            for attr, value in a[key].items():
                other = b[key].get(attr)
                if label == "schema" and attr == "comment" and marker_prefix:
                    other, problem = strip_marker(other, marker_prefix)
                    if problem:
                        out.append(f"[schema] {_name(key)}: comment: {problem}")
                if value != other:
                    out.append(f"[{label}] {_name(key, label)}: {attr}: "
                               f"{_describe(value, other)}")
    return out


def strip_marker(comment: str | None, prefix: str) -> tuple[str | None, str | None]:
    """A restored schema's comment without the restore's marker line (and a
    problem when the marker is missing)."""
    if not comment or not comment.rstrip("\n").rsplit("\n", 1)[-1].startswith(prefix):
        return comment, f"no restore marker (prefix {prefix!r}) in {comment!r}"
    head = comment.rstrip("\n").rsplit("\n", 1)[0] if "\n" in comment.rstrip("\n") else ""
    return (head.rstrip("\n") or None), None


# -- data -------------------------------------------------------------------------

# Columns of these types print object names (schema-qualified): their text
# is renamed like the catalogs' before hashing.
_REG_TYPES = {"regclass", "regtype", "regproc", "regprocedure", "regoper", "regoperator",
              "regconfig", "regdictionary", "regnamespace", "regcollation"}


def _column_expr(column: str, col_type: str, schema: str, canon: str) -> sql.Composable:
    if col_type.removesuffix("[]") not in _REG_TYPES:
        return sql.Identifier(column)
    quoted = schema if _PLAIN.fullmatch(schema) else '"' + schema.replace('"', '""') + '"'
    return sql.SQL("regexp_replace({}::text, {}, {}, 'g')").format(
        sql.Identifier(column), sql.Literal('(^|[{,"])' + re.escape(quoted) + r"\."),
        sql.Literal("\\1" + placeholder(canon) + "."))


def _table_digest(conn: psycopg.Connection, schema: str, canon: str, table: str,
                  columns: list[tuple[str, str]]) -> tuple[int, str]:
    """Row count and md5 of the rows (the given (column, type)s, in that order)
    sorted as text."""
    query = sql.SQL(
        "SELECT count(*), md5(coalesce(string_agg(r::text, E'\\n' ORDER BY r::text COLLATE \"C\"),"
        " '')) FROM (SELECT {} FROM ONLY {}.{}) r").format(
        sql.SQL(", ").join(_column_expr(c, t, schema, canon) for c, t in columns),
        sql.Identifier(schema), sql.Identifier(table))
    count, digest = conn.execute(query).fetchone()
    return count, digest


def diff_data(source: psycopg.Connection, target: psycopg.Connection, mapping: dict[str, str],
              src: Snapshot, tgt: Snapshot) -> list[str]:
    """Per table (and populated materialized view) on both sides: rows equal?
    Columns are read by name in the source's order, so a column-order
    difference is reported once (by the relation), not as every row."""
    out: list[str] = []
    for key, rel in src["relation"].items():
        other = tgt["relation"].get(key)
        if other is None or rel["kind"] not in ("r", "m") or rel["kind"] != other["kind"]:
            continue
        if rel["kind"] == "m" and not (rel["populated"] and other["populated"]):
            continue
        schema, table = key          # the canonical name is the source's
        columns = [(c, src["column"][(schema, table, c)]["type"]) for c in rel["columns"]
                   if c in other["columns"]]
        try:
            a = _table_digest(source, schema, schema, table, columns)
            b = _table_digest(target, mapping[schema], schema, table, columns)
        except psycopg.Error as exc:
            source.rollback()
            target.rollback()
            out.append(f"[data] {_name(key)}: cannot compare: {str(exc).strip()[:200]}")
            continue
        if a != b:
            out.append(f"[data] {_name(key)}: source {a[0]} rows (md5 {a[1][:12]}), "
                       f"target {b[0]} rows (md5 {b[1][:12]})")
    source.rollback()
    target.rollback()
    return out


# -- the entry points -----------------------------------------------------------

def compare_schemas(source: psycopg.Connection, target: psycopg.Connection,
                    mapping: dict[str, str], *, data: bool = True,
                    marker_prefix: str | None = None,
                    counts: dict[str, int] | None = None) -> list[str]:
    """Differences between each source schema and its target schema
    (`mapping`: source name -> target name); empty when identical.

    `marker_prefix`: the target schemas' comments end with a line starting
    with it (the restore's ownership marker), which is not a difference.
    `counts`, if given, receives how many source objects of each kind were
    compared (what an empty result vouches for).
    """
    src = snapshot(source, {s: s for s in mapping})
    tgt = snapshot(target, {t: s for s, t in mapping.items()})
    if counts is not None:
        counts.update({label: len(objects) for label, objects in src.items() if objects})
    out = []
    absent = set()
    for s, t in mapping.items():
        if (s,) not in src["schema"]:
            out.append(f"[schema] {s}: missing in source")
            absent.add(s)
        if (s,) not in tgt["schema"]:
            out.append(f"[schema] {s}: target schema {t!r} does not exist")
            absent.add(s)
    if absent:   # one line, not one per object of a schema that is not there
        for snap in (src, tgt):
            for objects in snap.values():
                for key in [k for k in objects if k[0] in absent]:
                    del objects[key]
    out += diff_snapshots(src, tgt, marker_prefix=marker_prefix)
    if data:
        _configure(source)
        _configure(target)
        out += diff_data(source, target, mapping, src, tgt)
    return out


def compare_schema(source: psycopg.Connection, source_schema: str,
                   target: psycopg.Connection, target_schema: str, **kwargs: Any) -> list[str]:
    return compare_schemas(source, target, {source_schema: target_schema}, **kwargs)


def summarize(differences: Iterable[str]) -> str:
    """Counts per kind, then the lines: what a failing test prints."""
    lines = list(differences)
    counts: dict[str, int] = {}
    for line in lines:
        label = line[1:line.index("]")] if line.startswith("[") else "?"
        counts[label] = counts.get(label, 0) + 1
    head = ", ".join(f"{label}: {n}" for label, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    return f"{len(lines)} differences ({head})\n" + "\n".join(lines)
