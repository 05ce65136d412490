"""Who may restore what: the administrator's declared sources.

The operator holds rights over every database its IAM role sees; a
SchemaRestore must not borrow them. The administrator declares the
restorable sources once, in the operator's configuration (Helm values
`sources`, env `PGSR_SOURCES`), which only whoever installs the operator
writes: name -> RDS id, production secret, region, the namespaces that may
restore it and, optionally, the databases and schemas they may restore.

A SchemaRestore names one (`spec.source.name`). `SourcePolicy.resolve`
turns its spec into the one the engine runs, or refuses it with
`SourceNotAllowed` before anything is read or created. Raw ids
(`dbIdentifier`, `secretArn`, `region` in the spec or in the defaults) are
refused unless the administrator's `allow_raw` switch is on (off by
default). The command line is an administrator's tool and does not go
through this policy.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from ddl_job.errors import InvalidSpec, SourceNotAllowed

RAW_FIELDS = ("dbIdentifier", "secretArn", "region")


@dataclass(frozen=True)
class DeclaredSource:
    """One restorable source, as the administrator declared it."""

    name: str
    db_identifier: str
    secret_arn: str
    region: str = ""
    namespaces: tuple[str, ...] = ()      # who may restore it ("*": every watched one)
    databases: tuple[str, ...] = ()       # empty: any database
    schemas: tuple[str, ...] = ()         # empty: any schema (exact names otherwise)

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any]) -> "DeclaredSource":
        unknown = set(data) - {"dbIdentifier", "secretArn", "region", "namespaces",
                               "databases", "schemas"}
        if unknown:
            raise ValueError(f"source {name!r}: unknown fields {sorted(unknown)}")
        return cls(name=name, db_identifier=str(data.get("dbIdentifier", "")),
                   secret_arn=str(data.get("secretArn", "")), region=str(data.get("region", "")),
                   namespaces=tuple(data.get("namespaces") or ()),
                   databases=tuple(data.get("databases") or ()),
                   schemas=tuple(data.get("schemas") or ()))

    def allows(self, namespace: str) -> bool:
        return "*" in self.namespaces or namespace in self.namespaces

    def as_spec(self) -> dict[str, str]:
        return {"name": self.name, "dbIdentifier": self.db_identifier,
                "secretArn": self.secret_arn, "region": self.region}


@dataclass(frozen=True)
class SourcePolicy:
    sources: dict[str, DeclaredSource] = field(default_factory=dict)
    allow_raw: bool = False

    @classmethod
    def from_dict(cls, sources: dict[str, Any], allow_raw: bool = False) -> "SourcePolicy":
        """From the configuration's form: {name: {dbIdentifier, secretArn, …}}."""
        return cls({name: DeclaredSource.from_dict(name, dict(data))
                    for name, data in (sources or {}).items()}, allow_raw)

    def allowed_for(self, namespace: str) -> list[str]:
        return sorted(name for name, source in self.sources.items() if source.allows(namespace))

    def resolve(self, namespace: str, requested: dict[str, Any],
                effective: dict[str, Any]) -> dict[str, Any]:
        """The spec to run for a SchemaRestore of `namespace`.

        `requested` is the object's own spec (what the tenant wrote),
        `effective` the same with the operator's defaults merged in. Raises
        SourceNotAllowed (nothing was read or created yet)."""
        asked = dict(requested.get("source") or {})
        source = dict(effective.get("source") or {})
        raw_asked = [f for f in RAW_FIELDS if asked.get(f)]
        if raw_asked and not self.allow_raw:
            raise SourceNotAllowed(
                f"namespace {namespace!r} may not name a database directly "
                f"(source.{', source.'.join(raw_asked)}); name a declared source in "
                f"source.name ({self._offer(namespace)})")
        name = source.get("name") or ""
        if not name:
            if any(source.get(f) for f in RAW_FIELDS) and not self.allow_raw:
                raise SourceNotAllowed(
                    f"the operator's default source is not a declared one; name a declared "
                    f"source in source.name ({self._offer(namespace)})")
            return effective
        if raw_asked:
            raise InvalidSpec("source.name excludes source.dbIdentifier, source.secretArn "
                              "and source.region")
        declared = self.sources.get(name)
        # An unknown source and another team's are refused alike: a namespace
        # learns nothing about sources it may not use.
        if declared is None or not declared.allows(namespace):
            raise SourceNotAllowed(f"namespace {namespace!r} may not restore source {name!r} "
                                   f"({self._offer(namespace)})")
        database = effective.get("database")
        if declared.databases and database not in declared.databases:
            raise SourceNotAllowed(f"source {name!r} does not allow database {database!r}")
        outside = [s for s in effective.get("schemas") or [] if declared.schemas
                   and s not in declared.schemas]
        if outside:
            raise SourceNotAllowed(f"source {name!r} does not allow schemas {outside!r}")
        resolved = copy.deepcopy(effective)
        resolved["source"] = {k: v for k, v in declared.as_spec().items() if v}
        return resolved

    def _offer(self, namespace: str) -> str:
        allowed = self.allowed_for(namespace)
        return f"allowed here: {', '.join(allowed)}" if allowed else "none is allowed here"
