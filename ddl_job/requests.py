"""Typed step requests: what the engine asks of the data plane.

A request is built once (by the engine, from the parsed spec) and travels
as argv (`python -m ddl_job …` in a subprocess, a Kubernetes Job or an ECS
task). `to_argv` and `from_argv` are the one pair that writes and reads
that form, and each field is checked by one rule on construction (the same
`names` / `marker` rules the spec uses), so a value that passes one side
passes the other.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar

from .dump import DEFAULT_MAINTENANCE_WORK_MEM
from .errors import InvalidRequest
from .foreign_keys import KEEP_NOT_VALID, validate_policy
from .marker import validate_restore_id
from .names import split_schema_list, validate_schema_list, validate_suffix


class ArgumentParser(argparse.ArgumentParser):
    """argparse, except that `--opt=--` keeps its value: Python before 3.13
    drops a `--` even from an option's explicit value, and a schema may be
    named `--`. Subparsers are of the same class (argparse's default)."""

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> Any:
        if arg_strings == ["--"] and action.option_strings and action.nargs is None:
            return self._get_value(action, "--")
        return super()._get_values(action, arg_strings)


def _flag(name: str, default: Any = MISSING, help: str | None = None) -> Any:
    """A field written as `--name value` (tuples: repeated; bools: present or not)."""
    return field(default=default, metadata={"flag": name, "help": help})


def _positive(name: str, value: int) -> int:
    if not isinstance(value, int) or value < 1:
        raise InvalidRequest("InvalidArgument", f"{name} must be a positive integer")
    return value


@dataclass(frozen=True)
class StepRequest:
    """Base: `command` is the argv prefix, `step` the name executors report
    (and name a step's Kubernetes Job after)."""

    command: ClassVar[tuple[str, ...]]

    @property
    def step(self) -> str:
        return "-".join(self.command)

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        """Subclasses check their fields here (one rule per field)."""

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def to_argv(self) -> list[str]:
        """`--flag=value`, one word each: a value that starts with `-` (a schema
        named `-x` or `--x`) would otherwise be read as a flag."""
        argv = list(self.command)
        for spec_field in fields(self):
            flag, value = spec_field.metadata["flag"], getattr(self, spec_field.name)
            if isinstance(value, bool):
                argv += [flag] if value else []
            elif isinstance(value, tuple):
                argv += [f"{flag}={item}" for item in value]
            else:
                argv.append(f"{flag}={value}")
        return argv


@dataclass(frozen=True)
class Precheck(StepRequest):
    command = ("precheck",)
    schemas: tuple[str, ...] = _flag("--schema")
    suffix: str = _flag("--suffix")
    grant_membership: bool = _flag(
        "--grant-membership", False,
        "memberships the connecting role lacks will be granted for the restore's duration")

    def _validate(self) -> None:
        self._set("schemas", tuple(validate_schema_list(list(self.schemas))))
        validate_suffix(self.suffix)


@dataclass(frozen=True)
class Rights(StepRequest):
    """Before extraction: may the connecting role read and own every object?"""

    command = ("rights",)
    schemas: tuple[str, ...] = _flag("--schema")
    suffix: str = _flag("--suffix")
    grant_membership: bool = _flag(
        "--grant-membership", False,
        "report missing memberships instead of failing (the caller grants them)")

    def _validate(self) -> None:
        self._set("schemas", tuple(validate_schema_list(list(self.schemas))))
        validate_suffix(self.suffix)


@dataclass(frozen=True)
class Membership(StepRequest):
    """GRANT (or REVOKE) roles to the connecting role in the copy or production."""

    command = ("membership",)
    side: str = _flag("--side", help="copy or production")
    roles: tuple[str, ...] = _flag("--role")
    revoke: bool = _flag("--revoke", False, "revoke instead of grant")

    def _validate(self) -> None:
        if self.side not in SIDES:
            raise InvalidRequest("InvalidArgument", f"side must be one of {SIDES}")
        if not self.roles or any(not r or "\x00" in r for r in self.roles):
            raise InvalidRequest("InvalidArgument", "roles must be non-empty names")


SIDES = ("copy", "production")


@dataclass(frozen=True)
class Extract(StepRequest):
    command = ("extract",)
    schemas: tuple[str, ...] = _flag("--schema")
    suffix: str = _flag("--suffix")
    artifacts: str = _flag("--artifacts")
    restore_id: str = _flag("--restore-id")
    mode: str = _flag("--mode", "copy", "copy: our COPY streams; dms: DMS copies the rows")
    disposable_source: bool = _flag(
        "--disposable-source", False,
        "acknowledge that the source copy is modified (schemas renamed)")

    def _validate(self) -> None:
        self._set("schemas", tuple(validate_schema_list(list(self.schemas))))
        validate_suffix(self.suffix)
        validate_restore_id(self.restore_id)   # the mode: extract's own check


@dataclass(frozen=True)
class ApplyPre(StepRequest):
    command = ("apply", "pre")
    artifacts: str = _flag("--artifacts")


@dataclass(frozen=True)
class ApplyPost(StepRequest):
    command = ("apply", "post")
    artifacts: str = _flag("--artifacts")
    jobs: int = _flag("--jobs", 2)
    maintenance_work_mem: str = _flag(
        "--maintenance-work-mem", DEFAULT_MAINTENANCE_WORK_MEM,
        "per connection, for index builds; larger is often slower (cache-hostile sorts)")
    invalid_foreign_keys: str = _flag(
        "--invalid-foreign-keys", KEEP_NOT_VALID,
        "a foreign key to a table outside the restored schemas that production's rows no "
        "longer satisfy: keepNotValid (kept NOT VALID, with a warning) or fail")

    def _validate(self) -> None:
        _positive("jobs", self.jobs)
        validate_policy(self.invalid_foreign_keys)


@dataclass(frozen=True)
class Copy(StepRequest):
    command = ("copy",)
    artifacts: str = _flag("--artifacts")
    jobs: int = _flag("--jobs", 2)
    restart: bool = _flag(
        "--restart", False, "resume: empty tables a crashed copy loaded (only in schemas "
        "carrying this restore's marker)")
    sequences_only: bool = _flag("--sequences-only", False,
                                 "only set sequences (rows were copied by DMS)")

    def _validate(self) -> None:
        _positive("jobs", self.jobs)

    @property
    def step(self) -> str:
        """DMS copies rows itself: this request then only sets sequences."""
        return "sequences" if self.sequences_only else "copy"


@dataclass(frozen=True)
class Verify(StepRequest):
    command = ("verify",)
    artifacts: str = _flag("--artifacts")


@dataclass(frozen=True)
class Drop(StepRequest):
    command = ("drop",)
    restore_id: str = _flag("--restore-id")

    def _validate(self) -> None:
        validate_restore_id(self.restore_id)


REQUESTS: dict[str, type[StepRequest]] = {
    " ".join(r.command): r for r in (Precheck, Rights, Membership, Extract, ApplyPre,
                                     ApplyPost, Copy, Verify, Drop)}


def add_arguments(parser: argparse.ArgumentParser, request: type[StepRequest]) -> None:
    """The argparse form of a request's fields: what `to_argv` writes and
    `from_args` reads back. Tuple fields are filled by the caller (schemas
    also come as `--schemas a,b` from humans)."""
    for spec_field in fields(request):
        flag, help_text = spec_field.metadata["flag"], spec_field.metadata["help"]
        kind, default = spec_field.type, spec_field.default
        if kind.startswith("tuple"):
            if spec_field.name != "schemas":   # schemas: add_schema_args
                parser.add_argument(flag, action="append", dest=spec_field.name, default=[],
                                    help=help_text)
            continue
        if kind == "bool":
            parser.add_argument(flag, action="store_true", dest=spec_field.name,
                                help=help_text)
        else:
            parser.add_argument(flag, dest=spec_field.name, required=default is MISSING,
                                default=None if default is MISSING else default,
                                type=int if kind == "int" else str, help=help_text)


def from_args(request: type[StepRequest], args: argparse.Namespace,
              **given: Any) -> StepRequest:
    """The request from parsed arguments (`given` supplies fields parsed otherwise)."""
    values = {f.name: getattr(args, f.name) for f in fields(request) if f.name not in given}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return request(**values, **given)


_HELP = {"precheck": "check production before anything is created",
         "rights": "check the connecting role may read and own every object (copy and "
                   "production)",
         "membership": "grant or revoke roles to the connecting role (grantMembership)",
         "extract": "rename in the copy, dump, store DDL artifacts",
         "apply": "apply pre-data (one transaction) or post-data",
         "copy": "copy all rows and sequence values",
         "verify": "compare source and target",
         "drop": "drop the schemas created by a restore id"}


def add_schema_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--schemas", help="comma-separated schema names (exact, case-sensitive)")
    parser.add_argument("--schema", action="append",
                        help="one schema name, exactly (commas, spaces included); repeatable; "
                             "--schema=NAME for a name that starts with '-'")


def schemas_from(args: argparse.Namespace) -> list[str]:
    """`--schemas a,b` and/or repeated `--schema NAME` (for names with commas)."""
    names = split_schema_list(args.schemas) if args.schemas else []
    return validate_schema_list(names + (args.schema or []))


def add_step_parsers(steps: Any) -> None:
    """One sub-command per request (`apply pre` / `apply post` nested)."""
    sections = None
    for command, request in REQUESTS.items():
        if command.startswith("apply "):
            if sections is None:
                sections = steps.add_parser("apply", help=_HELP["apply"]).add_subparsers(
                    dest="section", required=True)
            p = sections.add_parser(command.split()[1])
        else:
            p = steps.add_parser(command, help=_HELP[command])
        if _takes_schemas(request):
            add_schema_args(p)
        add_arguments(p, request)
        p.set_defaults(request=request)


def _takes_schemas(request: type[StepRequest]) -> bool:
    return any(f.name == "schemas" for f in fields(request))


def request_from(args: argparse.Namespace) -> StepRequest:
    """The typed request parsed arguments describe."""
    request = args.request
    if _takes_schemas(request):
        return from_args(request, args, schemas=tuple(schemas_from(args)))
    return from_args(request, args)


def from_argv(argv: list[str]) -> StepRequest:
    """Read back what `to_argv` wrote."""
    parser = ArgumentParser(prog="python -m ddl_job")
    add_step_parsers(parser.add_subparsers(dest="step", required=True))
    return request_from(parser.parse_args(argv))
