"""Create template.yaml's queues, tables, secrets and buckets in a local AWS (moto), from their own
definitions, and give each function the environment CloudFormation would give it.

Used by the tests (moto in-process) and the local stack (moto's server), so neither can drift from
the template. Only what the template uses is resolved: Ref, Fn::GetAtt, Fn::Sub and the resource
types below; anything else is reported, not guessed.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from sam_template import load_template

_SUB_VARIABLE = re.compile(r"\$\{([^}!]+)\}")


class UnresolvedReference(KeyError):
    """A Ref or GetAtt to something the local AWS does not have (a resource type without a creator)."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


class InvalidParameter(ValueError):
    """A parameter override that CloudFormation would refuse."""


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
    api_base_url: str | None = None  # where the local stack serves the template's HTTP APIs
    local_api_urls: dict[str, str] = field(default_factory=dict)  # API id → api_base_url

    def resolve(self, value: Any) -> Any:
        """Resolve the intrinsic functions this template uses into plain values."""
        if isinstance(value, dict) and len(value) == 1:
            ((name, argument),) = value.items()
            if name == "Ref":
                return self._ref(argument)
            if name == "Fn::GetAtt":
                logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
                return self._attribute(logical_id, attribute)
            if name == "Fn::Sub":
                return self._sub(argument)
            if name == "Fn::If":
                condition, if_true, if_false = argument
                return self.resolve(if_true if self.condition(condition) else if_false)
            if name == "Fn::Select":
                index, items = argument
                return self.resolve(items)[int(self.resolve(index))]
            if name == "Fn::FindInMap":
                mapping, top, second = (self.resolve(item) for item in argument)
                return self.template["Mappings"][mapping][top][second]
            if name == "Fn::Split":
                delimiter, text = argument
                return str(self.resolve(text)).split(str(delimiter))
            if name.startswith("Fn::") or name == "Condition":
                # Resolving it into something plausible would be a guess: say what to add instead.
                raise UnresolvedReference(f"{name} is not resolved locally; add it to LocalStack.resolve")
        if isinstance(value, dict):
            return {key: self.resolve(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        return value

    def condition(self, name: str) -> bool:
        """The value of one of the template's Conditions, as CloudFormation evaluates it."""
        conditions = self.template.get("Conditions", {})
        if name not in conditions:
            raise UnresolvedReference(f"Condition {name}: no such condition in the template")
        return self._evaluate(conditions[name])

    def _evaluate(self, expression: Any) -> bool:
        ((name, argument),) = expression.items()
        if name == "Condition":
            return self.condition(argument)
        if name == "Fn::Equals":
            left, right = (str(self.resolve(item)) for item in argument)
            return left == right
        if name == "Fn::Not":
            return not self._evaluate(argument[0])
        if name == "Fn::And":
            return all(self._evaluate(item) for item in argument)
        if name == "Fn::Or":
            return any(self._evaluate(item) for item in argument)
        raise UnresolvedReference(f"{name} in a condition is not evaluated locally; add it to LocalStack._evaluate")

    def function_environment(self, logical_id: str) -> dict[str, str]:
        """The environment variables CloudFormation would set for a function (Globals merged in)."""
        globals_env = self.template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
        resource = self.template["Resources"][logical_id]["Properties"]
        own_env = resource.get("Environment", {}).get("Variables", {})
        environment = {}
        for name, value in {**globals_env, **own_env}.items():
            try:
                environment[name] = self._local_url(str(self.resolve(value)))
            except UnresolvedReference as exc:
                raise UnresolvedReference(f"{logical_id}'s environment variable {name}: {exc}") from None
        return environment

    def function_property(self, logical_id: str, name: str, default: Any = None) -> Any:
        """A function's property as SAM sees it: its own value, else Globals.Function's, resolved."""
        own = self.template["Resources"][logical_id].get("Properties", {})
        globals_function = self.template.get("Globals", {}).get("Function", {})
        return self.resolve(own.get(name, globals_function.get(name, default)))

    def _local_url(self, value: str) -> str:
        # The template builds its HTTP API's URL from the API id (https://<id>.execute-api.<region>...);
        # locally that API is served on loopback, so the functions get the URL that answers.
        for api_id, local_url in self.local_api_urls.items():
            value = value.replace(f"https://{api_id}.execute-api.{self.region}.amazonaws.com", local_url)
        return value

    def functions(self) -> dict[str, dict[str, Any]]:
        """The functions CloudFormation would create: a function whose Condition is false is left out."""
        return {
            logical_id: resource["Properties"]
            for logical_id, resource in self.template["Resources"].items()
            if resource["Type"] == "AWS::Serverless::Function"
            and ("Condition" not in resource or self.condition(resource["Condition"]))
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
        if name not in self.refs:
            raise UnresolvedReference(f"Ref {name}: {self._not_created(name)}")
        return self.refs[name]

    def _attribute(self, logical_id: str, attribute: str) -> str:
        if (logical_id, attribute) not in self.attributes:
            raise UnresolvedReference(f"GetAtt {logical_id}.{attribute}: {self._not_created(logical_id)}")
        return self.attributes[(logical_id, attribute)]

    def _not_created(self, logical_id: str) -> str:
        resource = self.template.get("Resources", {}).get(logical_id)
        if resource is None:
            return "no such parameter or resource in the template"
        return (
            f"the local stack does not create {resource['Type']} resources; "
            "add a creator for that type to local/resources.py"
        )

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else (argument[0], argument[1])
        resolved = {key: str(self.resolve(item)) for key, item in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in resolved:
                return resolved[name]
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return self._attribute(logical_id, attribute)
            return str(self._ref(name))

        return _SUB_VARIABLE.sub(replace, text)


def create_resources(
    session: Any,
    *,
    stack_name: str = "braze-forwarder",
    parameter_overrides: dict[str, str] | None = None,
    template: dict[str, Any] | None = None,
    api_base_url: str | None = None,
) -> LocalStack:
    """Create the template's stateful resources with a boto3 session pointed at the local AWS.

    api_base_url: where the template's HTTP APIs are served locally; the functions' environment then
    holds that URL wherever the template builds the API's AWS URL.
    """
    template = template or load_template()
    stack = LocalStack(template=template, stack_name=stack_name, region=session.region_name, api_base_url=api_base_url)
    specs = template.get("Parameters", {})
    defaults = {name: str(spec.get("Default", "")) for name, spec in specs.items()}
    for name, value in (parameter_overrides or {}).items():
        _check_parameter(name, str(value), specs)
    stack.parameters = {**defaults, **{name: str(value) for name, value in (parameter_overrides or {}).items()}}
    _register_implicit_http_api(stack)
    _register_function_urls(stack)
    resources = template["Resources"]
    # Dead-letter queues first: their ARNs appear in the other queues' redrive policies; buckets that
    # notify a queue last, after the queue.
    ordered = sorted(
        resources,
        key=lambda lid: (
            "NotificationConfiguration" in resources[lid].get("Properties", {}),
            "RedrivePolicy" in resources[lid].get("Properties", {}),
        ),
    )
    for logical_id in ordered:
        resource = resources[logical_id]
        creator = _CREATORS.get(resource["Type"])
        if creator is not None:
            creator(session, stack, logical_id, resource.get("Properties", {}))
    return stack


def _check_parameter(name: str, value: str, specs: dict[str, Any]) -> None:
    """Refuse what CloudFormation would refuse, so a local run cannot use a value a deploy cannot."""
    if name not in specs:
        raise InvalidParameter(f"{name}: no such parameter in template.yaml (known: {', '.join(sorted(specs))})")
    spec = specs[name]
    allowed = [str(option) for option in spec.get("AllowedValues", [])]
    if allowed and value not in allowed:
        raise InvalidParameter(f"{name}={value}: must be one of {', '.join(allowed)}")
    pattern = spec.get("AllowedPattern")
    if pattern and not re.fullmatch(str(pattern), value):
        raise InvalidParameter(f"{name}={value}: must match {pattern}")
    if spec.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            raise InvalidParameter(f"{name}={value}: must be a number") from None
        if "MinValue" in spec and number < float(spec["MinValue"]):
            raise InvalidParameter(f"{name}={value}: must be at least {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            raise InvalidParameter(f"{name}={value}: must be at most {spec['MaxValue']}")


def _physical_name(stack: LocalStack, logical_id: str) -> str:
    return f"{stack.stack_name}-{logical_id}"


def _api_id(logical_id: str) -> str:
    # API Gateway ids are 10 lower-case letters and digits; a stable one keeps local URLs predictable.
    return hashlib.sha256(logical_id.encode()).hexdigest()[:10]


def _create_http_api(session: Any, stack: LocalStack, logical_id: str, properties: dict[str, Any]) -> None:
    """Nothing to create in moto: the local stack serves the routes itself (local/api_gateway.py)."""
    api_id = _api_id(logical_id)
    stack.refs[logical_id] = api_id
    stack.attributes[(logical_id, "ApiId")] = api_id
    stack.attributes[(logical_id, "ApiEndpoint")] = f"https://{api_id}.execute-api.{stack.region}.amazonaws.com"
    if stack.api_base_url:
        stack.local_api_urls[api_id] = stack.api_base_url


def _register_implicit_http_api(stack: LocalStack) -> None:
    # SAM creates ServerlessHttpApi for HttpApi events that name no ApiId.
    for properties in stack.functions().values():
        for event in (properties.get("Events") or {}).values():
            if event.get("Type") == "HttpApi" and "ApiId" not in (event.get("Properties") or {}):
                _create_http_api(None, stack, "ServerlessHttpApi", {})
                return


def _register_function_urls(stack: LocalStack) -> None:
    # SAM creates <Function>Url (AWS::Lambda::Url) for a function's FunctionUrlConfig; locally the
    # API port serves it (local/api_gateway.py), under the id and URL shape Lambda gives one.
    for logical_id, properties in stack.functions().items():
        if properties.get("FunctionUrlConfig"):
            url_id = _api_id(f"{logical_id}Url") + "0" * 22  # Lambda's url ids are 32 characters
            url = f"https://{url_id}.lambda-url.{stack.region}.on.aws/"
            stack.attributes[(f"{logical_id}Url", "FunctionUrl")] = url
            stack.attributes[(f"{logical_id}Url", "FunctionArn")] = (
                f"arn:aws:lambda:{stack.region}:{stack.account_id}:function:{_physical_name(stack, logical_id)}"
            )


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
    recovery = properties.get("PointInTimeRecoverySpecification")
    if recovery:
        dynamodb.update_continuous_backups(TableName=name, PointInTimeRecoverySpecification=stack.resolve(recovery))
    stack.refs[logical_id] = name
    stack.attributes[(logical_id, "Arn")] = f"arn:aws:dynamodb:{stack.region}:{stack.account_id}:table/{name}"


def _create_secret(session: Any, stack: LocalStack, logical_id: str, properties: dict[str, Any]) -> None:
    secrets = session.client("secretsmanager")
    value = stack.resolve(properties.get("SecretString", "")) or "unset-local-placeholder"
    arn = secrets.create_secret(Name=_physical_name(stack, logical_id), SecretString=value)["ARN"]
    stack.refs[logical_id] = arn


def _create_bucket(session: Any, stack: LocalStack, logical_id: str, properties: dict[str, Any]) -> None:
    name = _physical_name(stack, logical_id).lower()
    s3 = session.client("s3")
    s3.create_bucket(Bucket=name)
    versioning = properties.get("VersioningConfiguration")
    if versioning:  # deleting then leaves a delete marker, as in AWS (the lifecycle rules are not run locally)
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": stack.resolve(versioning["Status"])})
    notifications = (properties.get("NotificationConfiguration") or {}).get("QueueConfigurations")
    if notifications:  # CloudFormation's shape → the API's; moto's S3 then sends the events to the queue
        s3.put_bucket_notification_configuration(
            Bucket=name,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": stack.resolve(entry["Queue"]),
                        "Events": [entry["Event"]],
                        **_key_filter(entry.get("Filter")),
                    }
                    for entry in notifications
                ]
            },
        )
    stack.refs[logical_id] = name
    stack.attributes[(logical_id, "Arn")] = f"arn:aws:s3:::{name}"


def _key_filter(spec: dict[str, Any] | None) -> dict[str, Any]:
    rules = ((spec or {}).get("S3Key") or {}).get("Rules") or []
    if not rules:
        return {}
    return {"Filter": {"Key": {"FilterRules": [{"Name": rule["Name"], "Value": rule["Value"]} for rule in rules]}}}


def _create_log_group(session: Any, stack: LocalStack, logical_id: str, properties: dict[str, Any]) -> None:
    name = str(stack.resolve(properties.get("LogGroupName", f"/{stack.stack_name}/{logical_id}")))
    logs = session.client("logs")
    logs.create_log_group(logGroupName=name)
    if "RetentionInDays" in properties:
        logs.put_retention_policy(logGroupName=name, retentionInDays=int(stack.resolve(properties["RetentionInDays"])))
    stack.refs[logical_id] = name
    stack.attributes[(logical_id, "Arn")] = f"arn:aws:logs:{stack.region}:{stack.account_id}:log-group:{name}:*"


_CREATORS = {
    "AWS::Serverless::HttpApi": _create_http_api,
    "AWS::Logs::LogGroup": _create_log_group,
    "AWS::SQS::Queue": _create_queue,
    "AWS::DynamoDB::Table": _create_table,
    "AWS::SecretsManager::Secret": _create_secret,
    "AWS::S3::Bucket": _create_bucket,
}
