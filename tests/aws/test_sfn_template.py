"""stepfunctions/template.yaml: cfn-lint clean, least privilege, and deployable:
moto's CloudFormation creates the stack and an execution of the state machine
it deployed (its definition read from S3, as CloudFormation reads
DefinitionS3Location) runs to its end."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import boto3
import pytest
import yaml

from pg_schema_restore.stepfunctions import definition, function
from support import sfn_moto
from support.aws import REGION

TEMPLATE = Path(definition.PATH).with_name("template.yaml")


class _Loader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub, …) as plain mappings."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node):
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_Loader.add_multi_constructor("!", _tag)


def template() -> dict:
    return yaml.load(TEMPLATE.read_text(), Loader=_Loader)   # noqa: S506 - SafeLoader subclass


def test_cfn_lint_is_clean():
    """Errors and warnings, as the `cfn-lint` command reports by default."""
    from cfnlint.api import lint_all

    matches = [m for m in lint_all(TEMPLATE.read_text()) if m.rule.id[0] in "EW"]
    assert not matches, "\n".join(str(m) for m in matches)


def _statements(doc: dict) -> list[dict]:
    out = []
    for resource in doc["Resources"].values():
        for policy in resource.get("Properties", {}).get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                if isinstance(statement, dict) and "Fn::If" in statement:
                    statement = statement["Fn::If"][1]
                out.append(statement)
    return out


def test_roles_are_least_privilege():
    statements = _statements(template())
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [
            statement["Action"]]
        assert "*" not in actions and not any(a.endswith(":*") for a in actions), statement
    tag = "pg-schema-restore/restore-id"
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [
            statement["Action"]]
        if any(a.split(":")[1].startswith(("Restore", "Modify", "Delete", "Stop"))
               for a in actions if a.startswith(("rds:", "dms:"))):
            assert tag in json.dumps(statement.get("Condition", {})), statement


def test_the_stack_deploys_and_runs_what_it_deployed(mocked_aws, monkeypatch):
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.30.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="pgsr", Description="pgsr",
                                      VpcId=vpc)["GroupId"]
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="pgsr-deploy",
                     CreateBucketConfiguration={"LocationConstraint": REGION})
    # The packaging step of docs/stepfunctions.md: the files as they are, to S3.
    s3.put_object(Bucket="pgsr-deploy", Key="restore.asl.json", Body=definition.PATH.read_bytes())
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("pg_schema_restore/stepfunctions/function.py",
                         Path(function.__file__).read_text())
    s3.put_object(Bucket="pgsr-deploy", Key="function.zip", Body=package.getvalue())
    body = template()
    # moto's CloudFormation knows DefinitionString only: read the S3 object as
    # CloudFormation does for DefinitionS3Location, and apply DefinitionSubstitutions
    # as it does (each `${Key}` literally replaced; `$$.Map…` untouched).
    machine = body["Resources"]["StateMachine"]["Properties"]
    location = machine.pop("DefinitionS3Location")
    assert location == {"Bucket": {"Ref": "DefinitionBucket"}, "Key": {"Ref": "DefinitionKey"}}
    parts: list = [s3.get_object(Bucket="pgsr-deploy",
                                 Key="restore.asl.json")["Body"].read().decode()]
    for key, value in machine.pop("DefinitionSubstitutions").items():
        pieces: list = []
        for part in parts:
            if not isinstance(part, str):
                pieces.append(part)
                continue
            split = part.split("${" + key + "}")
            for index, text in enumerate(split):
                pieces += [text] + ([value] if index + 1 < len(split) else [])
        parts = pieces
    machine["DefinitionString"] = {"Fn::Join": ["", parts]}
    # Step Functions executes for real from here (moto's parser backend).
    sfn_moto.install(monkeypatch, lambda: boto3.Session(region_name=REGION), function.handler,
                     lambda command: pytest.fail(f"no data-plane step may run: {command}"))
    from moto.stepfunctions import models as sfn_models
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    # moto's CloudFormation creates state machines in the backend that does not
    # execute them; point it at the one that does.
    monkeypatch.setattr(sfn_models, "stepfunctions_backends", stepfunctions_parser_backends)
    cfn = boto3.client("cloudformation", region_name=REGION)
    parameters = {"DefinitionBucket": "pgsr-deploy", "DefinitionKey": "restore.asl.json",
                  "FunctionCodeBucket": "pgsr-deploy", "FunctionCodeKey": "function.zip",
                  "DdlJobImage": "pg-schema-restore/ddl-job:test", "SubnetIds": subnet,
                  "SecurityGroupIds": group,
                  "ProductionSecretArns": f"arn:aws:secretsmanager:{REGION}:123456789012:"
                                          "secret:prod/appdb"}
    cfn.create_stack(StackName="pgsr", TemplateBody=json.dumps(body),
                     Parameters=[{"ParameterKey": k, "ParameterValue": v}
                                 for k, v in parameters.items()],
                     Capabilities=["CAPABILITY_IAM"])
    stack = cfn.describe_stacks(StackName="pgsr")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    sfn = boto3.client("stepfunctions", region_name=REGION)
    deployed = json.loads(sfn.describe_state_machine(
        stateMachineArn=outputs["StateMachineArn"])["definition"])
    function_arn = outputs["FunctionArn"]
    expected = json.loads(definition.PATH.read_text().replace(
        "${RestoreFunctionArn}", function_arn))
    assert deployed == expected, "the deployed definition is not restore.asl.json"
    lambda_env = boto3.client("lambda", region_name=REGION).get_function_configuration(
        FunctionName=function_arn)["Environment"]["Variables"]
    for name, value in lambda_env.items():
        monkeypatch.setenv(name, value)
    # An execution of what was deployed: a restore refused by validation runs
    # Initialize, the whole cleanup and the final audit item, and fails.
    execution = sfn.start_execution(
        stateMachineArn=outputs["StateMachineArn"], name="deployed1",
        input=json.dumps({"restoreId": "deployed1", "spec": {
            "database": "appdb", "schemas": ["customer_a1"], "restoreTime": "2024-01-28T14:30:00Z",
            "source": {"dbIdentifier": "no-such-db",
                       "secretArn": parameters["ProductionSecretArns"]},
            "temporaryDatabase": {"subnetGroup": "isolated", "securityGroupIds": [group]}},
            "waits": {"seconds": 0, "maxPolls": 3}}))
    described = sfn_moto.wait_for(sfn, execution["executionArn"], timeout=120)
    assert described["status"] == "FAILED"
    assert described["error"] == "SourceNotFound", described.get("cause")
    item = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName=outputs["AuditTableName"], Key={"restoreId": {"S": "deployed1"}})["Item"]
    assert item["status"]["S"] == "Failed"
