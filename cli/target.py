"""Which stack the commands talk to: a deployed one (its CloudFormation outputs) or the local one.

Everything a command needs is resolved here into a `Target`: the API's URL, the buckets, queues and
table by name, and boto3 clients pointed at the right endpoint.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

from cli.errors import CliError

LOCAL_AWS_ENDPOINT = "http://127.0.0.1:5000"
LOCAL_API_URL = "http://127.0.0.1:3000"
LOCAL_LAMBDA_URL = "http://127.0.0.1:3001"  # the local stack's Invoke API (local/lambda_api.py)
LOCAL_STACK_NAME = "braze-forwarder"
LOCAL_REGION = "us-east-1"
# moto accepts any credentials; the operator's real ones are never sent to it.
_LOCAL_CREDENTIALS = dict.fromkeys(("aws_access_key_id", "aws_secret_access_key", "aws_session_token"), "testing")
# The local stack names every resource <stack>-<LogicalId> (local/resources.py); buckets lower-cased.
# Output name → (logical id, kind) for the ones the commands use.
_OUTPUTS = {
    "RejectedObjectsBucketName": ("RejectedObjectsBucket", "bucket"),
    "EventsQueueUrl": ("EventsQueue", "queue"),
    "EventsDLQUrl": ("EventsDLQ", "queue"),
    "CopyTasksQueueUrl": ("CopyTasksQueue", "queue"),
    "CopyTasksDLQUrl": ("CopyTasksDLQ", "queue"),
    "ExportJobsTableName": ("ExportJobsTable", "table"),
    "UserOrderTableName": ("UserOrderTable", "table"),
    "AttributeStateTableName": ("AttributeStateTable", "table"),
    "LakeBucketName": ("LakeBucket", "bucket"),
    "ImportBucketName": ("ImportBucket", "bucket"),
    "ImportsTableName": ("ImportsTable", "table"),
    "ImportStarterFunctionName": ("ImportStarterFunction", "function"),
}


@dataclass
class Target:
    stack_name: str
    api_url: str
    outputs: dict[str, str]
    region: str | None = None
    endpoint_url: str | None = None  # None: AWS itself
    local: bool = False
    lambda_url: str | None = None  # None: AWS's Lambda (the local stack's Invoke API when local)
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    def output(self, name: str) -> str:
        value = self.outputs.get(name)
        if not value:
            raise CliError(f"stack {self.stack_name} has no output {name} (deployed from an older template?)")
        return value

    def client(self, service: str) -> Any:
        if service not in self._clients:
            # Locally, Lambda is the stack's own Invoke API, not moto's.
            endpoint = self.lambda_url if service == "lambda" and self.lambda_url else self.endpoint_url
            self._clients[service] = _client(service, self.region, endpoint, self.local)
        return self._clients[service]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("target (one of)")
    choice = group.add_mutually_exclusive_group()
    choice.add_argument(
        "--stack", metavar="NAME", help="a deployed stack: its CloudFormation outputs name the resources"
    )
    choice.add_argument("--local", action="store_true", help="the local stack (`make run`) on its default ports")
    group.add_argument("--region", help="AWS region of the deployed stack (default: your AWS configuration)")
    group.add_argument(
        "--aws-endpoint-url", metavar="URL", help=f"with --local: moto's URL (default {LOCAL_AWS_ENDPOINT})"
    )
    group.add_argument("--api-url", metavar="URL", help="the ingest API's URL (default: the stack's ApiUrl output)")
    group.add_argument(
        "--lambda-url", metavar="URL", help=f"with --local: the stack's Lambda Invoke API (default {LOCAL_LAMBDA_URL})"
    )
    group.add_argument(
        "--local-stack-name", metavar="NAME", default=LOCAL_STACK_NAME, help=argparse.SUPPRESS
    )  # the local stack's --stack-name, when changed


def resolve(args: argparse.Namespace) -> Target:
    if args.local:
        endpoint = (args.aws_endpoint_url or LOCAL_AWS_ENDPOINT).rstrip("/")
        target = Target(
            stack_name=args.local_stack_name,
            api_url=(args.api_url or LOCAL_API_URL).rstrip("/"),
            outputs={},
            region=LOCAL_REGION,
            endpoint_url=endpoint,
            local=True,
            lambda_url=(getattr(args, "lambda_url", None) or LOCAL_LAMBDA_URL).rstrip("/"),
        )
        target.outputs = _local_outputs(target)
        return target
    if not args.stack:
        raise CliError("choose the stack: --stack NAME (deployed) or --local (the local stack)")
    target = Target(
        stack_name=args.stack, api_url="", outputs={}, region=args.region, endpoint_url=args.aws_endpoint_url
    )
    target.outputs = _stack_outputs(target)
    target.api_url = (args.api_url or target.outputs.get("ApiUrl", "")).rstrip("/")
    return target


def _stack_outputs(target: Target) -> dict[str, str]:
    cloudformation = target.client("cloudformation")
    try:
        stacks = cloudformation.describe_stacks(StackName=target.stack_name)["Stacks"]
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", str(exc))
        if "does not exist" in message:
            raise CliError(f"no stack named {target.stack_name} in this account and region") from None
        raise CliError(f"CloudFormation DescribeStacks failed: {message}") from None
    except (BotoCoreError, NoCredentialsError) as exc:
        raise CliError(aws_problem(exc)) from None
    return {output["OutputKey"]: output["OutputValue"] for output in stacks[0].get("Outputs", [])}


def _local_outputs(target: Target) -> dict[str, str]:
    outputs = {"ApiUrl": target.api_url}
    prefix = target.stack_name
    sqs = target.client("sqs")
    for output, (logical_id, kind) in _OUTPUTS.items():
        name = f"{prefix}-{logical_id}"
        if kind == "bucket":
            outputs[output] = name.lower()
        elif kind == "table":
            outputs[output] = name
        elif kind == "function":
            outputs[output] = logical_id  # the Invoke API takes the logical id, as sam local does
        else:
            try:
                outputs[output] = sqs.get_queue_url(QueueName=name)["QueueUrl"]
            except ClientError:
                raise CliError(
                    f"the local stack has no queue {name}: is `make run` running (stack name {prefix})?"
                ) from None
            except BotoCoreError as exc:
                raise CliError(aws_problem(exc)) from None
    return outputs


def aws_problem(exc: Exception) -> str:
    if isinstance(exc, EndpointConnectionError):
        return f"AWS is unreachable: {exc} (for --local: is `make run` running?)"
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials: configure a profile (AWS_PROFILE) or run `aws sso login`"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"AWS refused: {error.get('Code', '')} {error.get('Message', '')}".strip()
    return f"AWS call failed: {exc}"


def _client(service: str, region: str | None, endpoint_url: str | None, local: bool) -> Any:
    config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30)
    arguments: dict[str, Any] = {"config": config}
    if region:
        arguments["region_name"] = region
    if endpoint_url:
        arguments["endpoint_url"] = endpoint_url
    if local:
        session = boto3.session.Session(**_LOCAL_CREDENTIALS)
        return session.client(service, **arguments)
    return boto3.session.Session().client(service, **arguments)
