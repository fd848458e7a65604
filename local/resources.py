"""Create template.yaml's queues, tables, secrets and buckets in a local AWS (moto), from their own
definitions, and give each function the environment CloudFormation would give it.

Used by the tests (moto in-process) and the local stack (moto's server), so neither can drift from
the template. Only what the template uses is resolved: Ref, Fn::GetAtt, Fn::Sub and the resource
types below; anything else is reported, not guessed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cfnlint.decode import cfn_yaml

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"
_SUB_VARIABLE = re.compile(r"\$\{([^}!]+)\}")


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    return cfn_yaml.load(str(path))


@dataclass
class LocalStack:
    """Physical names of the template's resources in the local AWS."""

    template: dict[str, Any]
    stack_name: str
    region: str
    account_id: str = "123456789012"
    parameters: dict[str, str] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)

    def resolve(self, value: Any) -> Any:
        """Resolve the intrinsic functions this template uses into plain values."""
        if isinstance(value, dict) and len(value) == 1:
            ((name, argument),) = value.items()
            if name == "Ref":
                return self._ref(argument)
            if name == "Fn::GetAtt":
                logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
                return self.attributes[(logical_id, attribute)]
            if name == "Fn::Sub":
                return self._sub(argument)
        if isinstance(value, dict):
            return {key: self.resolve(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        return value

    def function_environment(self, logical_id: str) -> dict[str, str]:
        """The environment variables CloudFormation would set for a function (Globals merged in)."""
        globals_env = self.template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
        resource = self.template["Resources"][logical_id]["Properties"]
        own_env = resource.get("Environment", {}).get("Variables", {})
        return {name: str(self.resolve(value)) for name, value in {**globals_env, **own_env}.items()}

    def functions(self) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource["Properties"]
            for logical_id, resource in self.template["Resources"].items()
            if resource["Type"] == "AWS::Serverless::Function"
        }

    def _ref(self, name: str) -> str:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::StackName": self.stack_name,
            "AWS::AccountId": self.account_id,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return self.refs[name]

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else (argument[0], argument[1])
        resolved = {key: str(self.resolve(item)) for key, item in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in resolved:
                return resolved[name]
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return self.attributes[(logical_id, attribute)]
            return str(self._ref(name))

        return _SUB_VARIABLE.sub(replace, text)


def create_resources(
    session: Any,
    *,
    stack_name: str = "braze-forwarder",
    parameter_overrides: dict[str, str] | None = None,
    template: dict[str, Any] | None = None,
) -> LocalStack:
    """Create the template's stateful resources with a boto3 session pointed at the local AWS."""
    template = template or load_template()
    stack = LocalStack(template=template, stack_name=stack_name, region=session.region_name)
    defaults = {name: str(spec.get("Default", "")) for name, spec in template.get("Parameters", {}).items()}
    stack.parameters = {**defaults, **(parameter_overrides or {})}
    resources = template["Resources"]
    # Dead-letter queues first: their ARNs appear in the other queues' redrive policies.
    ordered = sorted(resources, key=lambda lid: "RedrivePolicy" in resources[lid].get("Properties", {}))
    for logical_id in ordered:
        resource = resources[logical_id]
        creator = _CREATORS.get(resource["Type"])
        if creator is not None:
            creator(session, stack, logical_id, resource.get("Properties", {}))
    return stack


def _physical_name(stack: LocalStack, logical_id: str) -> str:
    return f"{stack.stack_name}-{logical_id}"


def _create_queue(session: Any, stack: LocalStack, logical_id: str, properties: dict[str, Any]) -> None:
    sqs = session.client("sqs")
    attributes = {}
    for name in ("VisibilityTimeout", "MessageRetentionPeriod", "MaximumMessageSize", "DelaySeconds"):
        if name in properties:
            attributes[name] = str(stack.resolve(properties[name]))
    if "RedrivePolicy" in properties:
        attributes["RedrivePolicy"] = json.dumps(stack.resolve(properties["RedrivePolicy"]))
    name = _physical_name(stack, logical_id)
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    stack.refs[logical_id] = url
    stack.attributes[(logical_id, "QueueName")] = name
    stack.attributes[(logical_id, "QueueUrl")] = url
    stack.attributes[(logical_id, "Arn")] = f"arn:aws:sqs:{stack.region}:{stack.account_id}:{name}"


def _create_table(session: Any, stack: LocalStack, logical_id: str, properties: dict[str, Any]) -> None:
    dynamodb = session.client("dynamodb")
    name = _physical_name(stack, logical_id)
    dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=stack.resolve(properties["AttributeDefinitions"]),
        KeySchema=stack.resolve(properties["KeySchema"]),
        BillingMode=properties.get("BillingMode", "PAY_PER_REQUEST"),
    )
    ttl = properties.get("TimeToLiveSpecification")
    if ttl:
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True}
        )
    stack.refs[logical_id] = name
    stack.attributes[(logical_id, "Arn")] = f"arn:aws:dynamodb:{stack.region}:{stack.account_id}:table/{name}"


def _create_secret(session: Any, stack: LocalStack, logical_id: str, properties: dict[str, Any]) -> None:
    secrets = session.client("secretsmanager")
    value = stack.resolve(properties.get("SecretString", "")) or "unset-local-placeholder"
    arn = secrets.create_secret(Name=_physical_name(stack, logical_id), SecretString=value)["ARN"]
    stack.refs[logical_id] = arn


def _create_bucket(session: Any, stack: LocalStack, logical_id: str, properties: dict[str, Any]) -> None:
    name = _physical_name(stack, logical_id).lower()
    session.client("s3").create_bucket(Bucket=name)
    stack.refs[logical_id] = name
    stack.attributes[(logical_id, "Arn")] = f"arn:aws:s3:::{name}"


_CREATORS = {
    "AWS::SQS::Queue": _create_queue,
    "AWS::DynamoDB::Table": _create_table,
    "AWS::SecretsManager::Secret": _create_secret,
    "AWS::S3::Bucket": _create_bucket,
}
