"""The admission webhook's decisions and the report of an ignored spec
change, as pure functions (the webhook itself on the control plane:
tests/kube/test_admission.py)."""

from __future__ import annotations

import copy

import pytest

from pg_schema_restore.config import OperatorConfig
from pg_schema_restore.crd import SPEC_RULES
from pg_schema_restore.engine.admission import IMMUTABLE, refuse_create, refuse_update
from pg_schema_restore.k8s.admission import WebhookSettings
from pg_schema_restore.k8s.spec_change import (CONDITION, REASON, running_generation,
                                               with_spec_change)
from support.specs import invalid_cases

VALID = {"database": "app", "schemas": ["customer_a1"], "restoreTime": "2024-01-28T14:30:00Z",
         "source": {"dbIdentifier": "prod-db"}}


def test_a_valid_spec_is_admitted():
    assert refuse_create(copy.deepcopy(VALID)) is None


@pytest.mark.parametrize("mutate,says", invalid_cases())
def test_create_refuses_what_the_parser_refuses_with_its_message(mutate, says):
    spec = copy.deepcopy(VALID)
    mutate(spec)
    refused = refuse_create(spec)
    # The parser's reason first: InvalidSpec, or NameTooLong for a suffixed name.
    assert refused is not None and refused.startswith(("InvalidSpec: ", "NameTooLong: "))
    for words in says:
        assert words in refused


def test_create_is_judged_with_the_operators_defaults():
    config = OperatorConfig(spec_defaults={"snapshotId": "nightly"})
    refused = refuse_create(config.effective_spec(copy.deepcopy(VALID)))
    assert refused == "InvalidSpec: exactly one of restoreTime and snapshotId is required"
    minimal = {"database": "app", "schemas": ["a"]}
    assert refuse_create(config.effective_spec(minimal)) is None


def test_update_refuses_any_spec_change_and_names_the_fields():
    new = {**VALID, "schemas": ["customer_b2"], "jobs": 4}
    assert refuse_update(VALID, new) == f"{IMMUTABLE} (changed: jobs, schemas)"
    removed = {k: v for k, v in VALID.items() if k != "source"}
    assert refuse_update(VALID, removed) == f"{IMMUTABLE} (changed: source)"


def test_update_of_metadata_or_status_only_passes():
    assert refuse_update(VALID, copy.deepcopy(VALID)) is None
    assert refuse_update(None, None) is None


def test_the_webhook_and_the_cel_rule_say_the_same():
    assert {"rule": "self == oldSelf", "message": IMMUTABLE} in SPEC_RULES


def test_webhook_settings_off_by_default_and_policy_checked():
    assert not WebhookSettings.from_env({}).enabled
    on = WebhookSettings.from_env({"PGSR_WEBHOOK_PORT": "9443",
                                   "PGSR_WEBHOOK_FAILURE_POLICY": "Fail"})
    assert on.enabled and on.port == 9443 and on.failure_policy == "Fail"
    assert on.managed == "" and on.addr == "0.0.0.0"
    with pytest.raises(ValueError, match="Ignore or Fail"):
        WebhookSettings.from_env({"PGSR_WEBHOOK_PORT": "1", "PGSR_WEBHOOK_FAILURE_POLICY": "no"})


# -- a spec changed anyway (no webhook) ------------------------------------------
def _body(generation: int, observed: int | None, conditions=()) -> dict:
    status = {"conditions": list(conditions)}
    if observed is not None:
        status["observedGeneration"] = observed
    return {"metadata": {"generation": generation}, "status": status}


def test_the_running_generation_is_the_one_status_reports():
    assert running_generation(_body(3, 1)) == 1
    assert running_generation(_body(2, None)) == 2        # nothing written yet: the current one
    assert running_generation({"metadata": {"generation": 1}}) == 1


def test_no_condition_while_the_spec_is_the_one_run():
    succeeded = {"type": "Succeeded", "status": "Unknown"}
    assert with_spec_change([succeeded], _body(1, 1), 1) == [succeeded]


def test_a_later_generation_adds_the_condition_once_and_keeps_its_time():
    succeeded = {"type": "Succeeded", "status": "Unknown"}
    first = with_spec_change([succeeded], _body(2, 1), 1)
    assert first[0] == succeeded
    ignored = first[1]
    assert (ignored["type"], ignored["status"], ignored["reason"]) == (CONDITION, "True", REASON)
    assert ignored["observedGeneration"] == 2
    assert "generation 2" in ignored["message"] and "generation 1" in ignored["message"]
    assert "status.record.spec" in ignored["message"]
    again = with_spec_change([succeeded, ignored], _body(2, 1, first), 1)
    assert again == first                                  # one condition, same transition time
