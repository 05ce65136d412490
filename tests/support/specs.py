"""Invalid SchemaRestore specs, each with the words its refusal must say.

One table serves the unit test of the spec model (tests/test_spec.py: every
case) and the engine test on AWS (tests/aws/test_more_faults.py: one case
per family, through Initialize, proving nothing is created).
"""

from __future__ import annotations

from typing import Any, Callable

Mutation = Callable[[dict[str, Any]], None]


def _bad(**changes: Any) -> Mutation:
    def mutate(spec: dict[str, Any]) -> None:
        spec.update(changes)
    return mutate


def _drop(key: str) -> Mutation:
    def mutate(spec: dict[str, Any]) -> None:
        spec.pop(key)
    return mutate


def _source(**changes: Any) -> Mutation:
    def mutate(spec: dict[str, Any]) -> None:
        spec["source"].update(changes)
    return mutate


# (case id, mutation of a valid restoreTime spec, words the message must hold)
INVALID_SPECS: list[tuple[str, Mutation, tuple[str, ...]]] = [
    ("schemas-duplicated", _bad(schemas=["customer_a1", "customer_b2", "customer_a1"]),
     ("twice", "customer_a1")),
    ("schemas-empty", _bad(schemas=[]), ("no schema",)),
    ("schemas-not-a-list", _bad(schemas="customer_a1"), ("list",)),
    # Quotes, semicolons and `--` are legal names (tests/test_identifiers.py);
    # what PostgreSQL refuses is refused.
    ("schema-nul-byte", _bad(schemas=["customer\x00a1"]), ("NUL",)),
    ("schema-over-63-bytes", _bad(schemas=["é" * 32]), ("63 bytes",)),
    ("schema-system", _bad(schemas=["pg_catalog"]), ("system schema",)),
    ("schema-empty-name", _bad(schemas=["customer_a1", ""]), ("empty",)),
    ("suffix-invalid", _bad(targetSuffix="-restored!"), ("suffix", "-restored!")),
    ("suffix-empty", _bad(targetSuffix=""), ("suffix",)),
    ("suffix-too-long-for-names", _bad(schemas=["t" * 30], targetSuffix="_" + "x" * 39),
     ("63",)),
    ("suffix-equals-schema", _bad(schemas=["a", "a_old"], targetSuffix="_old"),
     ("a_old",)),
    ("time-and-snapshot", _bad(snapshotId="prod-db-manual"), ("exactly one",)),
    ("neither-time-nor-snapshot", _drop("restoreTime"), ("exactly one",)),
    ("time-not-rfc3339", _bad(restoreTime="2024-01-28 14:30"), ("RFC 3339",)),
    ("time-invalid-date", _bad(restoreTime="2024-02-30T14:30:00Z"), ("not a valid time",)),
    ("database-invalid", _bad(database="app;db"), ("app;db",)),
    ("unknown-field", _bad(schema=["customer_a1"]), ("unknown fields", "schema")),
    ("jobs-zero", _bad(jobs=0), ("jobs",)),
    ("credentials-unknown", _bad(credentials="iam"), ("credentials", "iam")),
    ("source-id-invalid", _source(dbIdentifier="prod_db!"), ("prod_db!",)),
]

# One case per family the engine must refuse in Initialize: names (a system
# schema), time vs snapshot, the time format, unknown fields, the source.
ENGINE_CASES = ("schema-system", "time-and-snapshot", "time-not-rfc3339",
                "unknown-field", "source-id-invalid")


def invalid_cases(only: tuple[str, ...] | None = None) -> list[Any]:
    """pytest.param-ready tuples (mutation, words) with the case ids."""
    import pytest

    return [pytest.param(mutate, says, id=name) for name, mutate, says in INVALID_SPECS
            if only is None or name in only]
