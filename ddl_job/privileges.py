"""Owners and privileges of the restored schemas: equal to the copy's.

pg_dump's GRANTs and REVOKEs are not enough (docs/facts.md, privileges):

- they are written relative to an object's *initial* privileges
  (`pg_init_privs`): the `public` schema's `=U/pg_database_owner` is one, and a
  schema renamed from `public` keeps its OID, hence that row, so the restored
  schema had no PUBLIC USAGE;
- types that are not dumped on their own get none: a table's, view's or
  foreign table's row type, a range's multirange (whose owner `ALTER TYPE …
  OWNER` on the range does not change either);
- objects whose ACL is the default get none, so production's own default
  privileges for the restoring role stuck to them;
- a grant made by a role other than the owner is replayed under `SET SESSION
  AUTHORIZATION`, which only a superuser may run: the whole pre-data failed for
  anyone else (an RDS master user).

So extract reads every owner and ACL of the renamed schemas in the copy
(`collect`, stored by `save`) and leaves pg_dump's ACL entries out;
apply-pre makes production's owners and ACLs equal inside the pre-data
transaction (`reconcile`: each grant as its grantor where PostgreSQL allows,
else as the owner, reported), apply-post the schemas' default privileges
(`reconcile_default_privileges`); verify compares both sides (`compare`).
Role names stand for roles on both sides (`None` is PUBLIC): copy and
production are two clusters with the same roles, not the same OIDs. ACLs are
compared as sets of privileges: a NULL ACL is its kind's `acldefault`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from .artifacts import ArtifactStore
from .errors import DataPlaneError
from .manifest import PRIVILEGES
from .progress import Reporter

_LISTED = 20
_PLAIN_NAME = re.compile(r"^[a-z_][a-z0-9_$]*$")   # object names listed in a progress event

# Kinds whose ACL is set with GRANT/REVOKE ... ON <keyword> <object>.
_ON = {"schema": "SCHEMA", "relation": "TABLE", "sequence": "SEQUENCE", "column": "TABLE",
       "routine": "ROUTINE", "type": "TYPE"}
# aclexplode's privilege names (MAINTAIN: PostgreSQL 17): SQL keywords, not identifiers.
_DEFAULT_OBJECT_TYPES = frozenset({"TABLES", "SEQUENCES", "FUNCTIONS", "TYPES", "SCHEMAS"})
_PRIVILEGES = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES",
                         "TRIGGER", "EXECUTE", "USAGE", "CREATE", "MAINTAIN"})

_NOT_EXTENSION_MEMBER = """NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = o.classid
                                   AND e.objid = o.objid AND e.deptype = 'e')"""

# One row per object that has an owner or an ACL in the schemas. `acl` is the
# effective ACL (NULL means acldefault); columns without grants are left out
# (their effective ACL is empty). Array types take their element's privileges
# and cannot be granted on: left out.
_COLLECT_SQL = """
WITH nsp AS (SELECT oid, nspname FROM pg_namespace WHERE nspname = ANY(%(schemas)s)),
o(kind, classid, objid, objsubid, schema, name, col, owner, acl) AS (
    SELECT 'schema', 'pg_namespace'::regclass, s.oid, 0, s.nspname, s.nspname, NULL::name,
           s.nspowner, coalesce(s.nspacl, acldefault('n', s.nspowner))
    FROM pg_namespace s JOIN nsp ON nsp.oid = s.oid
    UNION ALL
    SELECT CASE WHEN c.relkind = 'S' THEN 'sequence' ELSE 'relation' END,
           'pg_class'::regclass, c.oid, 0, n.nspname, c.relname, NULL, c.relowner,
           coalesce(c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char",
                                         c.relowner))
    FROM pg_class c JOIN nsp n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
    UNION ALL
    SELECT 'column', 'pg_class'::regclass, c.oid, a.attnum, n.nspname, c.relname, a.attname,
           c.relowner, a.attacl
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    JOIN nsp n ON n.oid = c.relnamespace
    WHERE a.attnum > 0 AND NOT a.attisdropped AND cardinality(a.attacl) > 0
    UNION ALL
    SELECT 'routine', 'pg_proc'::regclass, p.oid, 0, n.nspname, p.proname, NULL, p.proowner,
           coalesce(p.proacl, acldefault('f', p.proowner))
    FROM pg_proc p JOIN nsp n ON n.oid = p.pronamespace
    UNION ALL
    SELECT 'type', 'pg_type'::regclass, t.oid, 0, n.nspname, t.typname, NULL, t.typowner,
           coalesce(t.typacl, acldefault('T', t.typowner))
    FROM pg_type t JOIN nsp n ON n.oid = t.typnamespace
    WHERE NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid)
    UNION ALL
    SELECT 'default_acl', 'pg_default_acl'::regclass, d.oid, 0, n.nspname,
           CASE d.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES'
                WHEN 'f' THEN 'FUNCTIONS' WHEN 'T' THEN 'TYPES' WHEN 'n' THEN 'SCHEMAS' END,
           NULL, d.defaclrole, d.defaclacl
    FROM pg_default_acl d JOIN nsp n ON n.oid = d.defaclnamespace
    UNION ALL  -- objects with an owner and no ACL
    SELECT 'collation', 'pg_collation'::regclass, x.oid, 0, n.nspname, NULL, NULL,
           x.collowner, NULL FROM pg_collation x JOIN nsp n ON n.oid = x.collnamespace
    UNION ALL
    SELECT 'conversion', 'pg_conversion'::regclass, x.oid, 0, n.nspname, NULL, NULL,
           x.conowner, NULL FROM pg_conversion x JOIN nsp n ON n.oid = x.connamespace
    UNION ALL
    SELECT 'operator', 'pg_operator'::regclass, x.oid, 0, n.nspname, NULL, NULL,
           x.oprowner, NULL FROM pg_operator x JOIN nsp n ON n.oid = x.oprnamespace
    UNION ALL
    SELECT 'operator_class', 'pg_opclass'::regclass, x.oid, 0, n.nspname, NULL, NULL,
           x.opcowner, NULL FROM pg_opclass x JOIN nsp n ON n.oid = x.opcnamespace
    UNION ALL
    SELECT 'operator_family', 'pg_opfamily'::regclass, x.oid, 0, n.nspname, NULL, NULL,
           x.opfowner, NULL FROM pg_opfamily x JOIN nsp n ON n.oid = x.opfnamespace
    UNION ALL
    SELECT 'text_search_dictionary', 'pg_ts_dict'::regclass, x.oid, 0, n.nspname, NULL,
           NULL, x.dictowner, NULL FROM pg_ts_dict x JOIN nsp n ON n.oid = x.dictnamespace
    UNION ALL
    SELECT 'text_search_configuration', 'pg_ts_config'::regclass, x.oid, 0, n.nspname,
           NULL, NULL, x.cfgowner, NULL FROM pg_ts_config x JOIN nsp n ON n.oid = x.cfgnamespace
    UNION ALL
    SELECT 'statistics', 'pg_statistic_ext'::regclass, x.oid, 0, n.nspname, NULL, NULL,
           x.stxowner, NULL FROM pg_statistic_ext x JOIN nsp n ON n.oid = x.stxnamespace
)
SELECT o.kind, i.identity, o.schema, o.name, o.col,
       CASE WHEN o.kind = 'routine' THEN o.objid::regprocedure::text END,
       r.rolname,
       ARRAY(SELECT ARRAY[g.rolname, e.rolname, x.privilege_type,
                          CASE WHEN x.is_grantable THEN 'grantable' END]
             FROM aclexplode(o.acl) WITH ORDINALITY
                  AS x(grantor, grantee, privilege_type, is_grantable, n)
             JOIN pg_roles g ON g.oid = x.grantor
             LEFT JOIN pg_roles e ON e.oid = x.grantee
             ORDER BY x.n)
FROM o CROSS JOIN LATERAL pg_identify_object(o.classid, o.objid, o.objsubid) i
LEFT JOIN pg_roles r ON r.oid = o.owner
WHERE """ + _NOT_EXTENSION_MEMBER + """
"""

# Roles policies apply to: pre-data fails if one is missing, like an owner.
_POLICY_ROLES_SQL = """
SELECT DISTINCT r.rolname FROM pg_policy p
JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_roles r ON r.oid = ANY(p.polroles)
WHERE n.nspname = ANY(%(schemas)s)
"""


@dataclass(frozen=True)
class Grant:
    """One aclitem privilege: `grantee` None is PUBLIC."""

    grantor: str
    grantee: str | None
    privilege: str
    grantable: bool

    def describe(self) -> str:
        option = " WITH GRANT OPTION" if self.grantable else ""
        return (f"{self.privilege}{option} to {self.grantee or 'PUBLIC'} "
                f"(granted by {self.grantor})")


@dataclass(frozen=True)
class Securable:
    """An object of a restored schema with its owner and effective ACL.

    `identity` is pg_identify_object's (schema-qualified, quoted by the server):
    with the schemas renamed in the copy, the same on both sides."""

    kind: str
    identity: str
    schema: str
    name: str | None          # relation, routine or type name; default ACLs: TABLES…
    column: str | None
    signature: str | None     # routines: regprocedure text, quoted by the server
    owner: str | None         # default ACLs: the role whose new objects they apply to
    grants: tuple[Grant, ...]   # in aclitem order (granted back in that order)

    @property
    def grant_set(self) -> frozenset[Grant]:
        return frozenset(self.grants)

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.identity)

    @property
    def label(self) -> str:
        return self.identity if self.kind == "default_acl" else f"{self.kind} {self.identity}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "identity": self.identity, "schema": self.schema,
                "name": self.name, "column": self.column, "signature": self.signature,
                "owner": self.owner,
                "grants": [[g.grantor, g.grantee, g.privilege, g.grantable]
                           for g in self.grants]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Securable:
        grants = tuple(Grant(g[0], g[1], g[2], bool(g[3])) for g in data["grants"])
        return cls(data["kind"], data["identity"], data["schema"], data["name"],
                   data["column"], data["signature"], data["owner"], grants)


def _grant_order(grant: Grant) -> tuple[str, str, str, bool]:
    return (grant.grantor, grant.grantee or "", grant.privilege, grant.grantable)


Securables = dict[tuple[str, str], Securable]


# -- reading -------------------------------------------------------------------------

def collect(conn: psycopg.Connection, schemas: list[str]) -> Securables:
    """Every owner and effective ACL in `schemas`, by (kind, identity)."""
    # regprocedure text must be schema-qualified the same way on both sides
    conn.execute("SELECT set_config('search_path', 'pg_catalog', true)")
    found: Securables = {}
    for kind, identity, schema, name, column, signature, owner, acl in conn.execute(
            _COLLECT_SQL, {"schemas": schemas}):
        grants = tuple(Grant(g[0], g[1], g[2], g[3] == "grantable") for g in acl)
        item = Securable(kind, identity, schema, name, column, signature, owner, grants)
        found[item.key] = item
    return found


def roles_used(conn: psycopg.Connection, schemas: list[str]) -> set[str]:
    """Every role the schemas' DDL names: owners, grantors, grantees, policy roles."""
    names: set[str] = set()
    for item in collect(conn, schemas).values():
        names.update(r for r in [item.owner] if r)
        for grant in item.grants:
            names.update(r for r in (grant.grantor, grant.grantee) if r)
    names.update(r[0] for r in conn.execute(_POLICY_ROLES_SQL, {"schemas": schemas}))
    return names


def check_roles_exist(src: psycopg.Connection, tgt: psycopg.Connection, schemas: list[str],
                      where: str) -> None:
    """Refuse early, before the copy is touched, when production lacks a role.

    pre-data would fail on it anyway (`role … does not exist`), later and with
    a less useful message."""
    used = sorted(roles_used(src, schemas))
    rows = tgt.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)",
                       (used,)).fetchall()
    missing = sorted(set(used) - {r[0] for r in rows})
    if missing:
        raise DataPlaneError(
            "MissingRoles",
            f"roles that own or hold privileges on the schemas do not exist in {where}: "
            f"{missing}; nothing was changed (create them first: roles are not restored)")


# -- the artifact --------------------------------------------------------------------

def save(securables: Securables, store: ArtifactStore, workdir: Path) -> None:
    path = Path(workdir) / PRIVILEGES
    items = [s.to_json() for _, s in sorted(securables.items())]
    path.write_text(json.dumps(items, indent=1, ensure_ascii=False))
    store.put_file(PRIVILEGES, path)


def load(store: ArtifactStore) -> Securables | None:
    """The copy's owners and ACLs; None for artifacts written before they were kept."""
    if PRIVILEGES not in store.names():
        return None
    try:
        items = [Securable.from_json(d) for d in json.loads(store.read_text(PRIVILEGES))]
    except (json.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
        raise DataPlaneError("InvalidArtifacts", f"{PRIVILEGES} unreadable: {exc}") from None
    return {s.key: s for s in items}


# -- making production equal ---------------------------------------------------------

def reconcile(conn: psycopg.Connection, desired: Securables, schemas: list[str],
              reporter: Reporter) -> list[str]:
    """Make production's owners and ACLs of `schemas` equal the copy's, inside the
    caller's transaction; return what could not be made equal.

    Only objects that differ after pg_dump's script are touched. Owners first:
    a new owner also becomes the grantor of the old owner's grants. Grants are
    made in the copy's aclitem order, each as its original grantor (`SET
    ROLE`); when the restoring role may not act as that role, as the owner,
    reported.
    """
    actual = collect(conn, schemas)
    owners, notes = _reconcile_owners(conn, desired, actual)
    if owners:
        actual = collect(conn, schemas)
    acls, acl_notes = _reconcile_acls(conn, desired, actual, schemas)
    notes += acl_notes
    if owners or acls:
        after = collect(conn, schemas)
        notes += [f"{label}: privileges still differ from the copy's after reconciling"
                  for label in _still_different(desired, after)]
        reporter.emit("privileges_reconciled", owners=owners[:_LISTED], acls=acls[:_LISTED],
                      objects=len(set(owners) | set(acls)))
    for note in notes:
        reporter.emit("warning", caveat="Privileges", message=note)
    return notes


def _reconcile_owners(conn: psycopg.Connection, desired: Securables,
                      actual: Securables) -> tuple[list[str], list[str]]:
    """ALTER … OWNER TO where pg_dump's did not reach: PostgreSQL (15 at least)
    leaves a range's multirange type to the role that created the range."""
    changed: list[str] = []
    notes: list[str] = []
    for key, want in sorted(desired.items()):
        have = actual.get(key)
        if want.kind not in _ON or want.kind == "column" or have is None or want.owner is None:
            continue
        if have.owner != want.owner:
            statement = sql.SQL("ALTER {} OWNER TO {}").format(_object(want),
                                                               sql.Identifier(want.owner))
            notes += _attempt(conn, want, statement)
            changed.append(want.label)
    return changed, notes


def _reconcile_acls(conn: psycopg.Connection, desired: Securables, actual: Securables,
                    schemas: list[str]) -> tuple[list[str], list[str]]:
    """GRANT/REVOKE where the ACL differs: the schemas first (their USAGE lets a
    grantor reach the objects), columns last and from a fresh reading (revoking
    a table privilege revokes it from every column too)."""
    changed: list[str] = []
    notes: list[str] = []
    for key in sorted(desired, key=lambda k: (k[0] != "schema", k)):
        if key[0] != "column":
            notes += _reconcile_one(conn, desired[key], actual.get(key), changed)
    if changed:
        actual = collect(conn, schemas)
    for key in sorted(k for k in set(desired) | set(actual) if k[0] == "column"):
        want = desired.get(key) or _without_grants(actual[key])
        notes += _reconcile_one(conn, want, actual.get(key), changed)
    return changed, notes


def _without_grants(item: Securable) -> Securable:
    """A column with grants in production only: the copy's has none."""
    return Securable(item.kind, item.identity, item.schema, item.name, item.column,
                     item.signature, item.owner, ())


def _reconcile_one(conn: psycopg.Connection, want: Securable, have: Securable | None,
                   changed: list[str]) -> list[str]:
    """Make one object's ACL equal; a column without grants is not listed."""
    if want.kind not in _ON or (have is None and want.kind != "column"):
        return []   # no ACL of its own, or missing: verify reports it
    have_grants = have.grant_set if have is not None else frozenset()
    if have_grants == want.grant_set:
        return []
    changed.append(want.label)
    return _make_equal(conn, want, have_grants)


def reconcile_default_privileges(conn: psycopg.Connection, desired: Securables,
                                 schemas: list[str], reporter: Reporter) -> list[str]:
    """Make production's default privileges in `schemas` equal the copy's (after
    post-data: they must not touch the restored objects); return what could not.

    `ALTER DEFAULT PRIVILEGES FOR ROLE r` needs membership in r (or a
    superuser): when refused, it is reported and left out."""
    actual = collect(conn, schemas)
    changed: list[str] = []
    notes: list[str] = []
    for key in sorted(k for k in set(desired) | set(actual) if k[0] == "default_acl"):
        have = actual.get(key)
        want = desired.get(key) or _without_grants(actual[key])
        held = {(g.grantee, g.privilege): g.grantable for g in (have.grants if have else ())}
        wanted = {(g.grantee, g.privilege): g.grantable for g in want.grants}
        if held == wanted:
            continue
        changed.append(want.label)
        for right, grantable in held.items():
            if right not in wanted or (grantable and not wanted[right]):
                notes += _attempt(conn, want, _default_revoke(want, *right, right in wanted))
        for right, grantable in wanted.items():
            if right not in held or (grantable and not held[right]):
                notes += _attempt(conn, want, _default_grant(want, *right, grantable))
    if changed:
        reporter.emit("default_privileges_reconciled", objects=changed[:_LISTED],
                      count=len(changed))
    for note in notes:
        reporter.emit("warning", caveat="Privileges", message=note)
    return notes


def _default_clause(obj: Securable) -> sql.Composable:
    """`ALTER DEFAULT PRIVILEGES FOR ROLE r IN SCHEMA s`."""
    assert obj.owner is not None
    return sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {}").format(
        sql.Identifier(obj.owner), sql.Identifier(obj.schema))


def _default_objects(obj: Securable) -> sql.Composable:
    if obj.name not in _DEFAULT_OBJECT_TYPES:
        raise DataPlaneError("InvalidArtifacts", f"unknown default ACL type {obj.name!r}")
    return sql.SQL(obj.name)


def _default_grant(obj: Securable, grantee: str | None, privilege: str,
                   grantable: bool) -> sql.Composable:
    return sql.SQL("{} GRANT {} ON {} TO {}{}").format(
        _default_clause(obj), _privilege(obj, privilege), _default_objects(obj),
        _role(grantee), sql.SQL(" WITH GRANT OPTION" if grantable else ""))


def _default_revoke(obj: Securable, grantee: str | None, privilege: str,
                    option_only: bool) -> sql.Composable:
    return sql.SQL("{} REVOKE {}{} ON {} FROM {}").format(
        _default_clause(obj), sql.SQL("GRANT OPTION FOR " if option_only else ""),
        _privilege(obj, privilege), _default_objects(obj), _role(grantee))


def _still_different(desired: Securables, actual: Securables) -> list[str]:
    """Labels of ACL-bearing objects whose grants (grantors aside) still differ."""
    def loose(grants: Iterable[Grant]) -> set[tuple[str | None, str, bool]]:
        return {(g.grantee, g.privilege, g.grantable) for g in grants}

    labels = []
    for key, want in desired.items():
        have = actual.get(key)
        if (want.kind in _ON and (have is not None or want.kind == "column")
                and loose(want.grants) != loose(have.grants if have else ())):
            labels.append(want.label)
    return labels


def _make_equal(conn: psycopg.Connection, want: Securable,
                have: frozenset[Grant]) -> list[str]:
    """Revoke what the copy lacks, then grant what it has, grant options first."""
    notes: list[str] = []
    wanted = {(g.grantor, g.grantee, g.privilege): g.grantable for g in want.grants}
    held = {(g.grantor, g.grantee, g.privilege): g.grantable for g in have}
    for (grantor, grantee, privilege), grantable in sorted(held.items(), key=str):
        if (grantor, grantee, privilege) not in wanted:
            notes += _run_as(conn, want, grantor, _revoke(want, privilege, grantee, False))
        elif grantable and not wanted[(grantor, grantee, privilege)]:
            notes += _run_as(conn, want, grantor, _revoke(want, privilege, grantee, True))
    missing = [g for g in want.grants
               if (g.grantor, g.grantee, g.privilege) not in held
               or (g.grantable and not held[(g.grantor, g.grantee, g.privilege)])]
    for grant in _grant_order_by_option(missing, want.owner):
        notes += _run_as(conn, want, grant.grantor,
                         _grant(want, grant.privilege, grant.grantee, grant.grantable))
    return notes


def _grant_order_by_option(grants: list[Grant], owner: str | None) -> list[Grant]:
    """The owner's grants first, then each grantor once it holds the grant option;
    otherwise in the copy's aclitem order."""
    pending = list(grants)
    options: set[tuple[str | None, str]] = set()
    ordered: list[Grant] = []
    while pending:
        ready = [g for g in pending if g.grantor == owner or (g.grantor, g.privilege) in options]
        if not ready:
            return ordered + pending   # granted anyway; a failure is reported
        ordered += ready
        options |= {(g.grantee, g.privilege) for g in ready if g.grantable}
        pending = [g for g in pending if g not in ready]
    return ordered


def _run_as(conn: psycopg.Connection, obj: Securable, grantor: str,
            statement: sql.Composable) -> list[str]:
    """Run one GRANT/REVOKE as `grantor` (in a savepoint); say what went wrong.

    A superuser or a member of the owner running GRANT acts as the owner, so the
    owner's grants need no SET ROLE. Another grantor needs one; when the
    restoring role may not become it, the statement runs as the owner instead."""
    if grantor == obj.owner:
        return _attempt(conn, obj, statement)
    try:
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(grantor)))
    except psycopg.Error:
        fallback = _attempt(conn, obj, statement)
        note = (f"{obj.label}: the restoring role cannot act as {grantor}; done as the "
                f"owner {obj.owner} instead: {statement.as_string(conn)}")
        return [note, *fallback]
    try:
        return _attempt(conn, obj, statement)
    finally:
        conn.execute("RESET ROLE")


def _attempt(conn: psycopg.Connection, obj: Securable, statement: sql.Composable) -> list[str]:
    try:
        with conn.transaction():
            conn.execute(statement)
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return [f"{obj.label}: {statement.as_string(conn)} failed: {first}"]
    return []


def _privilege(obj: Securable, privilege: str) -> sql.Composable:
    if privilege not in _PRIVILEGES:
        raise DataPlaneError("InvalidArtifacts", f"unknown privilege {privilege!r}")
    if obj.kind == "column":
        assert obj.column is not None
        return sql.SQL("{} ({})").format(sql.SQL(privilege), sql.Identifier(obj.column))
    return sql.SQL(privilege)


def _object(obj: Securable) -> sql.Composable:
    """`SCHEMA s`, `TABLE s.t`, `ROUTINE s.f(int)`, …"""
    if obj.kind == "schema":
        target: sql.Composable = sql.Identifier(obj.schema)
    elif obj.kind == "routine":
        assert obj.signature is not None
        target = sql.SQL(obj.signature)   # regprocedure text: quoted by the server itself
    else:
        assert obj.name is not None
        target = sql.Identifier(obj.schema, obj.name)
    return sql.SQL("{} {}").format(sql.SQL(_ON[obj.kind]), target)


def _role(name: str | None) -> sql.Composable:
    return sql.SQL("PUBLIC") if name is None else sql.Identifier(name)


def _grant(obj: Securable, privilege: str, grantee: str | None,
           grantable: bool) -> sql.Composable:
    return sql.SQL("GRANT {} ON {} TO {}{}").format(
        _privilege(obj, privilege), _object(obj), _role(grantee),
        sql.SQL(" WITH GRANT OPTION" if grantable else ""))


def _revoke(obj: Securable, privilege: str, grantee: str | None,
            option_only: bool) -> sql.Composable:
    return sql.SQL("REVOKE {}{} ON {} FROM {} CASCADE").format(
        sql.SQL("GRANT OPTION FOR " if option_only else ""), _privilege(obj, privilege),
        _object(obj), _role(grantee))


# -- comparing (verify) --------------------------------------------------------------

@dataclass(frozen=True)
class Difference:
    kind: str        # "owner", "privileges", "default_privileges"
    schema: str
    object: str
    source: Any
    target: Any
    message: str


def compare(source: Securables, target: Securables,
            can_act_as: ActingRoles) -> tuple[list[Difference], list[str]]:
    """Owner and ACL differences (failures) and grantor-only differences that the
    target's role could not have avoided (warnings, with the reason).

    Objects missing on one side are left to the object comparison, except
    default privileges (no other check sees them) and columns (no grants on one
    side is an empty ACL)."""
    failures: list[Difference] = []
    warnings: list[str] = []
    for key in sorted(set(source) | set(target)):
        src, tgt = source.get(key), target.get(key)
        item = src or tgt
        assert item is not None
        if (src is None or tgt is None) and item.kind not in ("column", "default_acl"):
            continue
        kind = "default_privileges" if item.kind == "default_acl" else "privileges"
        prefix = f"{_quote(item.schema)} {item.label}"
        if src is not None and tgt is not None and src.owner != tgt.owner:
            failures.append(Difference("owner", item.schema, item.label, src.owner, tgt.owner,
                                       f"{prefix}: owner: source {src.owner}, "
                                       f"target {tgt.owner}"))
        s_grants = src.grant_set if src else frozenset()
        t_grants = tgt.grant_set if tgt else frozenset()
        if s_grants == t_grants:
            continue
        excused = (_excused_default(item, can_act_as) if item.kind == "default_acl"
                   else _excused_grantors(s_grants, t_grants, can_act_as))
        if excused is not None:
            warnings.append(f"{prefix}: {excused}")
            continue
        failures.append(Difference(
            kind, item.schema, item.label,
            [g.describe() for g in sorted(s_grants, key=_grant_order)],
            [g.describe() for g in sorted(t_grants, key=_grant_order)],
            f"{prefix}: privileges differ: " + "; ".join(_acl_diff(s_grants, t_grants))))
    return failures, warnings


def _acl_diff(source: frozenset[Grant], target: frozenset[Grant]) -> list[str]:
    return ([f"{g.describe()}: missing in target"
             for g in sorted(source - target, key=_grant_order)]
            + [f"{g.describe()}: only in target"
               for g in sorted(target - source, key=_grant_order)])


def _excused_default(item: Securable, can_act_as: ActingRoles) -> str | None:
    """Default privileges for a role can only be set by its members (or a superuser)."""
    if item.owner is None or can_act_as(item.owner):
        return None
    return (f"default privileges differ: {can_act_as.role} cannot set default privileges "
            f"for role {item.owner} (not a member of it)")


def _excused_grantors(source: frozenset[Grant], target: frozenset[Grant],
                      can_act_as: ActingRoles) -> str | None:
    """The reason, when the ACLs differ only in grantors the target's role could not
    have acted as (PostgreSQL records the role that granted; only a superuser or
    a member may grant as another role); else None."""
    def loose(grants: frozenset[Grant]) -> dict[tuple[str | None, str, bool], set[str]]:
        out: dict[tuple[str | None, str, bool], set[str]] = {}
        for g in grants:
            out.setdefault((g.grantee, g.privilege, g.grantable), set()).add(g.grantor)
        return out

    s_loose, t_loose = loose(source), loose(target)
    if set(s_loose) != set(t_loose):
        return None
    reasons = []
    for right in sorted(s_loose, key=str):
        s_by, t_by = s_loose[right], t_loose[right]
        if s_by == t_by:
            continue
        unreachable = sorted(r for r in s_by - t_by if not can_act_as(r))
        if not unreachable or len(s_by) != len(t_by):
            return None
        grantee, privilege, _ = right
        reasons.append(
            f"{privilege} to {grantee or 'PUBLIC'} granted by {', '.join(sorted(s_by))} in the "
            f"source, by {', '.join(sorted(t_by))} in the target "
            f"({can_act_as.role} cannot act as {', '.join(unreachable)})")
    return "grantor differs: " + "; ".join(reasons) if reasons else None


class ActingRoles:
    """Which roles the connected role may act as (SET ROLE): every role for a
    superuser, else those it is a member of (with the SET option on 16+)."""

    def __init__(self, role: str, superuser: bool, roles: Iterable[str]) -> None:
        self.role = role
        self.superuser = superuser
        self.roles = frozenset(roles)

    def __call__(self, name: str) -> bool:
        return self.superuser or name in self.roles

    @classmethod
    def of(cls, conn: psycopg.Connection) -> ActingRoles:
        option = "SET" if conn.info.server_version >= 160000 else "MEMBER"
        row = conn.execute("SELECT current_user, rolsuper FROM pg_roles "
                           "WHERE rolname = current_user").fetchone()
        assert row is not None
        members = conn.execute("SELECT rolname FROM pg_roles "
                               "WHERE pg_has_role(current_user, oid, %s)", (option,)).fetchall()
        return cls(row[0], bool(row[1]), (r[0] for r in members))


def _quote(name: str) -> str:
    """An identifier as a human would type it (as verify's messages write them)."""
    return name if _PLAIN_NAME.match(name) else '"' + name.replace('"', '""') + '"'
