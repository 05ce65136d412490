"""The catalog queries behind `catalog_compare`: one per kind of object.

Each query takes the schema's OID as `%(nsp)s` and returns one row per
object: the first `key` columns name it (without its schema), the others are
its attributes, named by the column. Everything that could differ between two
clusters only by OID is printed by name (`::regprocedure`, `format_type`,
`pg_get_*def`); the session runs with an empty search_path, so every name
outside pg_catalog comes out schema-qualified and can be mapped.

ACLs are compared as effective privileges: `acldefault()` stands in for a
NULL ACL, and items are sorted, so "never granted" and "granted the default
back" are equal while any lost or extra privilege is not.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    """One kind of catalog object: its label, SQL, and how many key columns."""

    label: str
    query: str
    key: int = 1


def _not_extension_member(catalog: str, oid: str) -> str:
    """Objects an extension owns are the extension's, not the schema's."""
    return (f"NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '{catalog}'::regclass "
            f"AND e.objid = {oid} AND e.deptype = 'e')")


def _acl(column: str, kind: str, owner: str) -> str:
    """Effective privileges, sorted; `kind` is SQL for acldefault's object type."""
    return (f"array(SELECT a::text FROM unnest(coalesce({column}, "
            f"acldefault(({kind})::\"char\", {owner}))) a ORDER BY 1)")


def _regproc(column: str) -> str:
    """A regproc column by signature (NULL when unset)."""
    return f"nullif({column}::oid, 0)::regprocedure::text"


def _qualified(catalog: str, name_col: str, nsp_col: str, oid: str) -> str:
    return (f"(SELECT quote_ident(n.nspname) || '.' || quote_ident(x.{name_col}) FROM {catalog} x"
            f" JOIN pg_namespace n ON n.oid = x.{nsp_col} WHERE x.oid = {oid})")


SCHEMA = Kind("schema", f"""
SELECT n.nspname, pg_get_userbyid(n.nspowner) AS owner,
       {_acl('n.nspacl', "'n'", 'n.nspowner')} AS acl,
       obj_description(n.oid, 'pg_namespace') AS comment
FROM pg_namespace n WHERE n.oid = %(nsp)s""")

RELATIONS = Kind("relation", f"""
SELECT c.relname, c.relkind AS kind, c.relpersistence AS persistence,
       pg_get_userbyid(c.relowner) AS owner,
       {_acl('c.relacl', "CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END", 'c.relowner')} AS acl,
       c.relrowsecurity AS row_security, c.relforcerowsecurity AS force_row_security,
       c.relreplident AS replica_identity,
       array(SELECT o FROM unnest(c.reloptions) o ORDER BY 1) AS options,
       am.amname AS access_method,
       CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partition_key,
       pg_get_expr(c.relpartbound, c.oid) AS partition_bound,
       array(SELECT i.inhparent::regclass::text FROM pg_inherits i WHERE i.inhrelid = c.oid
             ORDER BY i.inhseqno) AS parents,
       CASE WHEN c.reloftype <> 0 THEN c.reloftype::regtype::text END AS of_type,
       CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END AS definition,
       CASE WHEN c.relkind = 'm' THEN c.relispopulated END AS populated,
       array(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
             AND NOT a.attisdropped ORDER BY a.attnum) AS columns,
       obj_description(c.oid, 'pg_class') AS comment
FROM pg_class c LEFT JOIN pg_am am ON am.oid = c.relam
WHERE c.relnamespace = %(nsp)s AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
  AND {_not_extension_member('pg_class', 'c.oid')}""")

COLUMNS = Kind("column", """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull AS not_null, pg_get_expr(d.adbin, d.adrelid) AS default,
       a.attidentity AS identity, a.attgenerated AS generated,
       CASE WHEN a.attcollation <> t.typcollation THEN a.attcollation::regcollation::text
       END AS collation,
       CASE WHEN a.attstorage <> t.typstorage THEN a.attstorage END AS storage,
       a.attcompression AS compression, a.attstattarget AS statistics,
       a.attislocal AS local, a.attinhcount AS inherited_count,
       array(SELECT o FROM unnest(a.attoptions) o ORDER BY 1) AS options,
       array(SELECT x::text FROM unnest(a.attacl) x ORDER BY 1) AS acl,
       col_description(c.oid, a.attnum) AS comment
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relnamespace = %(nsp)s AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c')
  AND a.attnum > 0 AND NOT a.attisdropped""", key=2)

SEQUENCES = Kind("sequence", """
SELECT c.relname, format_type(s.seqtypid, NULL) AS type, s.seqstart AS start,
       s.seqincrement AS increment, s.seqmax AS max, s.seqmin AS min, s.seqcache AS cache,
       s.seqcycle AS cycle,
       (SELECT d.deptype::text || ' ' || d.refobjid::regclass::text || '.' || quote_ident(a.attname)
        FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid
             AND a.attnum = d.refobjsubid
        WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
          AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')) AS owned_by
FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid WHERE c.relnamespace = %(nsp)s""")

INDEXES = Kind("index", """
SELECT ic.relname, tc.relname AS table, pg_get_indexdef(i.indexrelid) AS definition,
       i.indisclustered AS clustered, i.indisreplident AS replica_identity,
       i.indisvalid AS valid,
       (SELECT p.inhparent::regclass::text FROM pg_inherits p WHERE p.inhrelid = ic.oid)
           AS attached_to,
       array(SELECT a.attnum || '=' || a.attstattarget FROM pg_attribute a
             WHERE a.attrelid = ic.oid AND a.attstattarget >= 0 ORDER BY a.attnum) AS statistics,
       obj_description(ic.oid, 'pg_class') AS comment
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class tc ON tc.oid = i.indrelid
WHERE ic.relnamespace = %(nsp)s""")

# connoinherit is not compared: NO INHERIT shows in a CHECK's definition, and on
# a PRIMARY KEY or UNIQUE it only records whether a partition's index was made
# with the partition or attached later (pg_dump's own round trip flips it).
CONSTRAINTS = Kind("constraint", """
SELECT coalesce(r.relname, t.typname) AS on_object, con.conname,
       con.contype AS type, pg_get_constraintdef(con.oid) AS definition,
       con.convalidated AS validated, con.condeferrable AS deferrable,
       con.condeferred AS deferred, con.conislocal AS local,
       con.coninhcount AS inherited_count,
       CASE WHEN con.conindid <> 0 THEN con.conindid::regclass::text END AS index,
       (SELECT p.conrelid::regclass::text || '.' || quote_ident(p.conname) FROM pg_constraint p
        WHERE p.oid = con.conparentid) AS parent,
       obj_description(con.oid, 'pg_constraint') AS comment
FROM pg_constraint con LEFT JOIN pg_class r ON r.oid = con.conrelid
LEFT JOIN pg_type t ON t.oid = con.contypid
WHERE con.connamespace = %(nsp)s""", key=2)

_AGGREGATE = " || ' ' || ".join(f"coalesce('{label}=' || ({expr})::text, '')" for label, expr in [
    ("kind", "ag.aggkind"), ("direct", "ag.aggnumdirectargs"),
    ("sfunc", _regproc("ag.aggtransfn")), ("stype", "format_type(ag.aggtranstype, NULL)"),
    ("sspace", "ag.aggtransspace"), ("final", _regproc("ag.aggfinalfn")),
    ("finalextra", "ag.aggfinalextra"), ("finalmodify", "ag.aggfinalmodify"),
    ("combine", _regproc("ag.aggcombinefn")), ("serial", _regproc("ag.aggserialfn")),
    ("deserial", _regproc("ag.aggdeserialfn")), ("msfunc", _regproc("ag.aggmtransfn")),
    ("minv", _regproc("ag.aggminvtransfn")), ("mstype", "nullif(ag.aggmtranstype, 0)::regtype"),
    ("mfinal", _regproc("ag.aggmfinalfn")), ("mfinalextra", "ag.aggmfinalextra"),
    ("sortop", "nullif(ag.aggsortop::oid, 0)::regoperator"), ("init", "ag.agginitval"),
    ("minit", "ag.aggminitval"), ("parallel", "p.proparallel")])

FUNCTIONS = Kind("function", f"""
SELECT p.proname, pg_get_function_identity_arguments(p.oid) AS args,
       p.prokind AS kind, pg_get_function_result(p.oid) AS result,
       pg_get_userbyid(p.proowner) AS owner, {_acl('p.proacl', "'f'", 'p.proowner')} AS acl,
       CASE WHEN p.prokind <> 'a' THEN pg_get_functiondef(p.oid) END AS definition,
       (SELECT {_AGGREGATE} FROM pg_aggregate ag WHERE ag.aggfnoid = p.oid) AS aggregate,
       obj_description(p.oid, 'pg_proc') AS comment
FROM pg_proc p WHERE p.pronamespace = %(nsp)s
  AND {_not_extension_member('pg_proc', 'p.oid')}""", key=2)

TRIGGERS = Kind("trigger", """
SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid) AS definition, t.tgenabled AS enabled,
       t.tgparentid <> 0 AS cloned, obj_description(t.oid, 'pg_trigger') AS comment
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE c.relnamespace = %(nsp)s AND NOT t.tgisinternal""", key=2)

RULES = Kind("rule", """
SELECT c.relname, r.rulename, pg_get_ruledef(r.oid) AS definition, r.ev_enabled AS enabled,
       obj_description(r.oid, 'pg_rewrite') AS comment
FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
WHERE c.relnamespace = %(nsp)s AND NOT (r.rulename = '_RETURN' AND c.relkind IN ('v', 'm'))""",
              key=2)

POLICIES = Kind("policy", """
SELECT c.relname, p.polname, p.polcmd AS command, p.polpermissive AS permissive,
       array(SELECT CASE WHEN r = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(r) END
             FROM unnest(p.polroles) r ORDER BY 1) AS roles,
       pg_get_expr(p.polqual, p.polrelid) AS using,
       pg_get_expr(p.polwithcheck, p.polrelid) AS with_check,
       obj_description(p.oid, 'pg_policy') AS comment
FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid WHERE c.relnamespace = %(nsp)s""", key=2)

_RANGE = " || ' ' || ".join(f"coalesce('{label}=' || ({expr})::text, '')" for label, expr in [
    ("subtype", "format_type(r.rngsubtype, NULL)"),
    ("opclass", _qualified("pg_opclass", "opcname", "opcnamespace", "r.rngsubopc")),
    ("collation", "nullif(r.rngcollation, 0)::regcollation"),
    ("canonical", _regproc("r.rngcanonical")), ("subdiff", _regproc("r.rngsubdiff")),
    ("multirange", "format_type(r.rngmultitypid, NULL)")])

_BASE = " || ' ' || ".join(f"coalesce('{label}=' || ({expr})::text, '')" for label, expr in [
    ("input", _regproc("t.typinput")), ("output", _regproc("t.typoutput")),
    ("receive", _regproc("t.typreceive")), ("send", _regproc("t.typsend")),
    ("typmod_in", _regproc("t.typmodin")), ("typmod_out", _regproc("t.typmodout")),
    ("analyze", _regproc("t.typanalyze")), ("subscript", _regproc("t.typsubscript")),
    ("length", "t.typlen"), ("byval", "t.typbyval"), ("align", "t.typalign"),
    ("storage", "t.typstorage"), ("category", "t.typcategory"),
    ("preferred", "t.typispreferred"), ("delimiter", "t.typdelim"),
    ("element", "nullif(t.typelem, 0)::regtype")])

TYPES = Kind("type", f"""
SELECT t.typname, t.typtype AS kind, pg_get_userbyid(t.typowner) AS owner,
       {_acl('t.typacl', "'T'", 't.typowner')} AS acl, t.typisdefined AS defined,
       CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END AS base_type,
       t.typnotnull AS not_null,
       CASE WHEN t.typtype = 'd' THEN pg_get_expr(t.typdefaultbin, 0) ELSE t.typdefault
       END AS default,
       CASE WHEN t.typcollation <> 0 THEN t.typcollation::regcollation::text END AS collation,
       CASE WHEN t.typtype = 'e' THEN array(SELECT e.enumlabel::text FROM pg_enum e
            WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder) END AS labels,
       (SELECT {_RANGE} FROM pg_range r WHERE r.rngtypid = t.oid) AS range,
       CASE WHEN t.typtype = 'b' THEN {_BASE} END AS base,
       obj_description(t.oid, 'pg_type') AS comment
FROM pg_type t LEFT JOIN pg_class c ON c.oid = t.typrelid
WHERE t.typnamespace = %(nsp)s AND (t.typrelid = 0 OR c.relkind = 'c')
  AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid)
  AND {_not_extension_member('pg_type', 't.oid')}""")

OPERATORS = Kind("operator", f"""
SELECT o.oprname, format_type(o.oprleft, NULL) AS left_type,
       format_type(o.oprright, NULL) AS right_type, pg_get_userbyid(o.oprowner) AS owner,
       format_type(o.oprresult, NULL) AS result, {_regproc('o.oprcode')} AS function,
       nullif(o.oprcom::oid, 0)::regoperator::text AS commutator,
       nullif(o.oprnegate::oid, 0)::regoperator::text AS negator,
       {_regproc('o.oprrest')} AS restrict, {_regproc('o.oprjoin')} AS join,
       o.oprcanmerge AS merges, o.oprcanhash AS hashes,
       obj_description(o.oid, 'pg_operator') AS comment
FROM pg_operator o WHERE o.oprnamespace = %(nsp)s
  AND {_not_extension_member('pg_operator', 'o.oid')}""", key=3)

OPERATOR_FAMILIES = Kind("operator family", f"""
SELECT am.amname, f.opfname, pg_get_userbyid(f.opfowner) AS owner,
       array(SELECT concat_ws(' ', o.amopstrategy, format_type(o.amoplefttype, NULL),
                              format_type(o.amoprighttype, NULL), o.amopopr::regoperator,
                              o.amoppurpose,
                              {_qualified('pg_opfamily', 'opfname', 'opfnamespace',
                                          'o.amopsortfamily')})
             FROM pg_amop o WHERE o.amopfamily = f.oid ORDER BY 1) AS operators,
       array(SELECT concat_ws(' ', p.amprocnum, format_type(p.amproclefttype, NULL),
                              format_type(p.amprocrighttype, NULL), {_regproc('p.amproc')})
             FROM pg_amproc p WHERE p.amprocfamily = f.oid ORDER BY 1) AS functions,
       obj_description(f.oid, 'pg_opfamily') AS comment
FROM pg_opfamily f JOIN pg_am am ON am.oid = f.opfmethod WHERE f.opfnamespace = %(nsp)s
  AND {_not_extension_member('pg_opfamily', 'f.oid')}""", key=2)

OPERATOR_CLASSES = Kind("operator class", f"""
SELECT am.amname, c.opcname, pg_get_userbyid(c.opcowner) AS owner,
       {_qualified('pg_opfamily', 'opfname', 'opfnamespace', 'c.opcfamily')} AS family,
       format_type(c.opcintype, NULL) AS input_type, c.opcdefault AS is_default,
       nullif(c.opckeytype, 0)::regtype::text AS storage,
       obj_description(c.oid, 'pg_opclass') AS comment
FROM pg_opclass c JOIN pg_am am ON am.oid = c.opcmethod WHERE c.opcnamespace = %(nsp)s
  AND {_not_extension_member('pg_opclass', 'c.oid')}""", key=2)

COLLATIONS = Kind("collation", """
SELECT c.collname, pg_get_userbyid(c.collowner) AS owner,
       to_jsonb(c) - 'oid' - 'collname' - 'collnamespace' - 'collowner' AS properties,
       obj_description(c.oid, 'pg_collation') AS comment
FROM pg_collation c WHERE c.collnamespace = %(nsp)s""")

CONVERSIONS = Kind("conversion", f"""
SELECT c.conname, pg_get_userbyid(c.conowner) AS owner,
       pg_encoding_to_char(c.conforencoding) AS source,
       pg_encoding_to_char(c.contoencoding) AS destination,
       {_regproc('c.conproc')} AS function, c.condefault AS is_default,
       obj_description(c.oid, 'pg_conversion') AS comment
FROM pg_conversion c WHERE c.connamespace = %(nsp)s""")

TS_CONFIGS = Kind("text search configuration", f"""
SELECT c.cfgname, pg_get_userbyid(c.cfgowner) AS owner,
       {_qualified('pg_ts_parser', 'prsname', 'prsnamespace', 'c.cfgparser')} AS parser,
       array(SELECT m.maptokentype || ' ' || m.mapseqno || ' ' || m.mapdict::regdictionary
             FROM pg_ts_config_map m WHERE m.mapcfg = c.oid ORDER BY 1) AS mapping,
       obj_description(c.oid, 'pg_ts_config') AS comment
FROM pg_ts_config c WHERE c.cfgnamespace = %(nsp)s""")

TS_DICTIONARIES = Kind("text search dictionary", f"""
SELECT d.dictname, pg_get_userbyid(d.dictowner) AS owner,
       {_qualified('pg_ts_template', 'tmplname', 'tmplnamespace', 'd.dicttemplate')} AS template,
       d.dictinitoption AS options, obj_description(d.oid, 'pg_ts_dict') AS comment
FROM pg_ts_dict d WHERE d.dictnamespace = %(nsp)s""")

TS_PARSERS = Kind("text search parser", f"""
SELECT p.prsname, {_regproc('p.prsstart')} AS start, {_regproc('p.prstoken')} AS token,
       {_regproc('p.prsend')} AS end_function, {_regproc('p.prsheadline')} AS headline,
       {_regproc('p.prslextype')} AS lextypes, obj_description(p.oid, 'pg_ts_parser') AS comment
FROM pg_ts_parser p WHERE p.prsnamespace = %(nsp)s""")

TS_TEMPLATES = Kind("text search template", f"""
SELECT t.tmplname, {_regproc('t.tmplinit')} AS init, {_regproc('t.tmpllexize')} AS lexize,
       obj_description(t.oid, 'pg_ts_template') AS comment
FROM pg_ts_template t WHERE t.tmplnamespace = %(nsp)s""")

STATISTICS = Kind("statistics object", """
SELECT s.stxname, pg_get_userbyid(s.stxowner) AS owner,
       pg_get_statisticsobjdef(s.oid) AS definition, s.stxstattarget AS target,
       obj_description(s.oid, 'pg_statistic_ext') AS comment
FROM pg_statistic_ext s WHERE s.stxnamespace = %(nsp)s""")

EXTENSIONS = Kind("extension", """
SELECT x.extname, x.extversion AS version FROM pg_extension x WHERE x.extnamespace = %(nsp)s""")

DEFAULT_PRIVILEGES = Kind("default privileges", """
SELECT pg_get_userbyid(d.defaclrole) AS role, d.defaclobjtype AS object_type,
       array(SELECT a::text FROM unnest(d.defaclacl) a ORDER BY 1) AS acl
FROM pg_default_acl d WHERE d.defaclnamespace = %(nsp)s""", key=2)

# Casts belong to no schema: pg_dump -n leaves them out even when their types
# or function are the schema's. Listed so that a lost cast shows.
CASTS = Kind("cast", f"""
SELECT format_type(c.castsource, NULL) AS source, format_type(c.casttarget, NULL) AS target,
       {_regproc('c.castfunc')} AS function, c.castcontext AS context, c.castmethod AS method,
       obj_description(c.oid, 'pg_cast') AS comment
FROM pg_cast c
WHERE EXISTS (SELECT 1 FROM pg_type t WHERE t.oid IN (c.castsource, c.casttarget)
              AND t.typnamespace = %(nsp)s)
   OR EXISTS (SELECT 1 FROM pg_proc p WHERE p.oid = c.castfunc AND p.pronamespace = %(nsp)s)""",
             key=2)

KINDS: tuple[Kind, ...] = (
    SCHEMA, RELATIONS, COLUMNS, SEQUENCES, INDEXES, CONSTRAINTS, FUNCTIONS, TRIGGERS, RULES,
    POLICIES, TYPES, OPERATORS, OPERATOR_FAMILIES, OPERATOR_CLASSES, COLLATIONS, CONVERSIONS,
    TS_CONFIGS, TS_DICTIONARIES, TS_PARSERS, TS_TEMPLATES, STATISTICS, EXTENSIONS,
    DEFAULT_PRIVILEGES, CASTS,
)
