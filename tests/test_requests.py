"""Step requests: one argv form both ways, one rule per field on both sides.

No server: the engine builds requests from a parsed spec, the data plane
reads them back from argv; the same values must pass or fail on both sides.
"""

from __future__ import annotations

import argparse

import pytest

from ddl_job import requests
from ddl_job.errors import InvalidRequest, InvalidSpec
from pg_schema_restore.commands import add_spec_args, spec_from_args

SAMPLES = [
    requests.Precheck(("customer_a1", "Tenant B", "kündé"), "_20240128143000"),
    requests.Precheck(("a",), "_x", grant_membership=True),
    requests.Rights(("a", "-b"), "_x", grant_membership=True),
    requests.Membership("production", ("app owner", "-x")),
    requests.Membership("copy", ("a",), revoke=True),
    requests.Extract(("a",), "_x", "s3://bucket/restores/r1", "r1", mode="dms",
                     disposable_source=True),
    requests.ApplyPre("/tmp/artifacts"),
    requests.ApplyPost("/tmp/artifacts", jobs=3, maintenance_work_mem="128MB"),
    requests.ApplyPost("/tmp/artifacts", invalid_foreign_keys="fail"),
    requests.Copy("/tmp/artifacts", jobs=4, restart=True),
    requests.Copy("/tmp/artifacts", sequences_only=True),
    requests.Verify("/tmp/artifacts"),
    requests.Drop("ab12-cd"),
]


@pytest.mark.parametrize("request_", SAMPLES, ids=lambda r: r.step)
def test_argv_round_trip(request_):
    assert requests.from_argv(request_.to_argv()) == request_


def test_every_request_kind_is_covered():
    assert {type(r) for r in SAMPLES} == set(requests.REQUESTS.values())


def test_sequences_only_copy_is_its_own_step():
    """Its Kubernetes Job must not be mistaken for a row copy's."""
    assert requests.Copy("/a", sequences_only=True).step == "sequences"
    assert requests.Copy("/a").step == "copy"
    assert requests.ApplyPost("/a").step == "apply-post"


@pytest.mark.parametrize("build", [
    lambda: requests.Precheck(("a", "a"), "_x"),
    lambda: requests.Precheck(("a", ""), "_x"),
    lambda: requests.Precheck(("a",), "-x!"),
    lambda: requests.Extract(("a",), "_x", "/t", "Bad Id"),
    lambda: requests.Drop("x" * 21),
    lambda: requests.ApplyPost("/t", jobs=0),
    lambda: requests.ApplyPost("/t", invalid_foreign_keys="ignore"),
    lambda: requests.Membership("elsewhere", ("a",)),
    lambda: requests.Membership("copy", ()),
])
def test_bad_values_are_refused_on_construction(build):
    with pytest.raises(InvalidRequest):
        build()


def _operator_cli(argv: list[str]):
    parser = argparse.ArgumentParser()
    add_spec_args(parser)
    return spec_from_args(parser.parse_args(argv))


@pytest.mark.parametrize("schemas", ["a,,b", "a, ,b", "a,a", "a,pg_catalog"])
def test_both_command_lines_refuse_the_same_lists(schemas):
    """`a,,b` once passed the operator's CLI (empty items dropped) and failed the
    data plane's; now both apply ddl_job.names."""
    with pytest.raises(InvalidSpec):
        _operator_cli(["--database", "d", "--schemas", schemas, "--snapshot-id", "s"])
    with pytest.raises(InvalidRequest):
        requests.from_argv(["precheck", "--schemas", schemas, "--suffix", "_x"])


def test_both_command_lines_accept_the_same_lists():
    spec = _operator_cli(["--database", "d", "--schemas", "a, Tenant B", "--schema", "c,d",
                          "--snapshot-id", "s", "--suffix", "_x"])
    assert spec.schemas == ("a", "Tenant B", "c,d")
    argv = requests.Precheck(spec.schemas, "_x").to_argv()
    assert requests.from_argv(argv).schemas == spec.schemas
