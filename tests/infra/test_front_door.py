"""FrontDoor: the HTTP API or a Lambda function URL in front of the ingest function (docs/ingest-api.md).

SAM cannot make some of one function's events conditional, so the template holds two copies of the
ingest function, each under its condition: IngestApiFunction (HttpApi events) and IngestUrlFunction
(FunctionUrlConfig). These tests keep the copies equal and both stacks lint-clean.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from local.resources import LocalStack
from sam_template import TEMPLATE, load_template

TEMPLATE_DOC = load_template()
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE_DOC["Resources"]
HTTP_API, FUNCTION_URL = "IngestApiFunction", "IngestUrlFunction"
# What only one copy may have: how it is reached, and what caps it.
FRONT_DOOR_ONLY = {"Events", "FunctionUrlConfig", "ReservedConcurrentExecutions", "Description"}


def stack_with(front_door: str) -> LocalStack:
    stack = LocalStack(template=TEMPLATE_DOC, stack_name="test", region="us-east-1")
    stack.parameters = {name: str(spec.get("Default", "")) for name, spec in TEMPLATE_DOC["Parameters"].items()}
    stack.parameters["FrontDoor"] = front_door
    return stack


def test_the_front_door_is_a_parameter_defaulting_to_the_http_api():
    parameter = TEMPLATE_DOC["Parameters"]["FrontDoor"]
    assert parameter["Default"] == "HttpApi"
    assert parameter["AllowedValues"] == ["HttpApi", "FunctionUrl"]
    assert RESOURCES[HTTP_API]["Condition"] == "IngestOnHttpApi"
    assert RESOURCES[FUNCTION_URL]["Condition"] == "IngestOnFunctionUrl"


@pytest.mark.parametrize(("front_door", "created"), [("HttpApi", HTTP_API), ("FunctionUrl", FUNCTION_URL)])
def test_each_value_creates_exactly_one_ingest_function(front_door: str, created: str):
    stack = stack_with(front_door)
    ingest = {lid for lid in (HTTP_API, FUNCTION_URL) if stack.condition(RESOURCES[lid]["Condition"])}
    assert ingest == {created}


def test_the_two_copies_differ_only_in_how_they_are_reached():
    http, url = RESOURCES[HTTP_API], RESOURCES[FUNCTION_URL]
    assert http["Type"] == url["Type"] == "AWS::Serverless::Function"
    same = {name: value for name, value in http["Properties"].items() if name not in FRONT_DOOR_ONLY}
    assert same == {name: value for name, value in url["Properties"].items() if name not in FRONT_DOOR_ONLY}
    assert set(http["Properties"]) - set(url["Properties"]) == {"Events"}
    assert set(url["Properties"]) - set(http["Properties"]) == {"FunctionUrlConfig", "ReservedConcurrentExecutions"}


def test_the_function_url_authenticates_in_the_function_and_is_capped_by_reserved_concurrency():
    properties = RESOURCES[FUNCTION_URL]["Properties"]
    # AuthType NONE: SAM adds the public lambda:InvokeFunctionUrl permission it needs; the function
    # checks bearer keys and provider signatures itself, as behind the HTTP API (which has no authorizer).
    assert properties["FunctionUrlConfig"] == {"AuthType": "NONE"}
    assert properties["ReservedConcurrentExecutions"] == {"Ref": "IngestReservedConcurrency"}
    assert "Cors" not in properties["FunctionUrlConfig"]  # the HTTP API answers no CORS either
    skipped = {skip["id"]: skip["comment"] for skip in RESOURCES[FUNCTION_URL]["Metadata"]["checkov"]["skip"]}
    assert "CKV_AWS_258" in skipped and "CKV_AWS_115" not in skipped


def test_the_export_callback_stays_on_the_http_api_either_way():
    """Braze calls back once per export: the HTTP API costs nothing for that, and keeps its logs and throttling."""
    assert "Condition" not in RESOURCES["IngestHttpApi"]
    assert "Condition" not in RESOURCES["ExportCallbackFunction"]
    events = RESOURCES["ExportCallbackFunction"]["Properties"]["Events"]
    assert {event["Properties"]["ApiId"]["Ref"] for event in events.values()} == {"IngestHttpApi"}


@pytest.mark.parametrize("front_door", ["HttpApi", "FunctionUrl"])
def test_the_outputs_give_the_ingest_urls_either_way(front_door: str):
    stack = stack_with(front_door)
    stack.refs["IngestHttpApi"] = "abc123"
    stack.attributes[("IngestUrlFunctionUrl", "FunctionUrl")] = "https://xyz.lambda-url.us-east-1.on.aws/"
    outputs = TEMPLATE_DOC["Outputs"]
    host = (
        "abc123.execute-api.us-east-1.amazonaws.com" if front_door == "HttpApi" else "xyz.lambda-url.us-east-1.on.aws"
    )
    # No trailing slash, so the README's "$API_URL/users/track" stays one slash either way.
    assert stack.resolve(outputs["ApiUrl"]["Value"]) == f"https://{host}"
    assert stack.resolve(outputs["StripeWebhookUrl"]["Value"]) == f"https://{host}/webhooks/stripe"
    assert stack.resolve(outputs["PaddleWebhookUrl"]["Value"]) == f"https://{host}/webhooks/paddle"
    callback = stack.resolve(outputs["ExportCallbackUrl"]["Value"])
    assert callback.startswith("https://abc123.execute-api.")


COMPLEMENTS = {"IngestOnHttpApi": "IngestOnFunctionUrl", "IngestOnFunctionUrl": "IngestOnHttpApi"}


def _unguarded_references(value: Any, name: str, assumed: dict[str, bool]) -> list[str]:
    """References to `name` not inside the Fn::If branch where its Condition holds."""
    condition = RESOURCES[name]["Condition"]
    if isinstance(value, dict):
        if set(value) == {"Fn::If"}:
            tested, if_true, if_false = value["Fn::If"]
            other = COMPLEMENTS.get(tested)  # FrontDoor has two values: one condition is the other's negation
            when_true = {tested: True, **({other: False} if other else {})}
            when_false = {tested: False, **({other: True} if other else {})}
            return _unguarded_references(if_true, name, {**assumed, **when_true}) + _unguarded_references(
                if_false, name, {**assumed, **when_false}
            )
        found = []
        if value.get("Ref") == name or (value.get("Fn::GetAtt") or [""])[0] == name:
            found.append(repr(value))
        for item in value.values():
            found += _unguarded_references(item, name, assumed)
        return [reference for reference in found if not assumed.get(condition)]
    if isinstance(value, list):
        return [found for item in value for found in _unguarded_references(item, name, assumed)]
    if isinstance(value, str) and re.search(rf"\$\{{{name}[.}}]", value):
        return [] if assumed.get(condition) else [value[:60]]
    return []


def test_nothing_references_an_ingest_function_where_it_may_not_exist():
    """cfn-lint checks this too; here it is the rule, whatever cfn-lint's version finds."""
    for name in (HTTP_API, FUNCTION_URL):
        condition = RESOURCES[name]["Condition"]
        for logical_id, resource in {**RESOURCES, **{"Outputs": TEMPLATE_DOC["Outputs"]}}.items():
            if logical_id == name or resource.get("Condition") == condition:
                continue
            assert _unguarded_references(resource, name, {}) == [], f"{logical_id} references {name} unguarded"
    assert "IngestUrlFunctionUrl.FunctionUrl" in TEMPLATE.read_text()


@pytest.mark.parametrize("front_door", ["HttpApi", "FunctionUrl"])
def test_cfn_lint_reports_nothing_for_either_front_door(front_door: str, tmp_path: Path):
    """A copy of the template with FrontDoor's default changed, linted as make lint lints the original."""
    text = TEMPLATE.read_text()
    rendered, count = re.subn(
        r"(  FrontDoor:\n    Type: String\n    Default: )HttpApi\n", rf"\g<1>{front_door}\n", text
    )
    assert count == 1
    copy = tmp_path / "template.yaml"
    copy.write_text(rendered)
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run(
        [str(cfn_lint), "--include-checks", "I", "--", str(copy)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("front_door", "function"), [("HttpApi", HTTP_API), ("FunctionUrl", FUNCTION_URL)])
def test_the_dashboard_is_json_and_watches_the_function_url_of_the_ingest_function(front_door: str, function: str):
    import json

    stack = stack_with(front_door)
    stack.refs |= {"IngestHttpApi": "abc123", HTTP_API: "fn-http", FUNCTION_URL: "fn-url", "BrazeSenderFunction": "s"}
    stack.attributes |= {
        (queue, "QueueName"): queue for queue in ("EventsQueue", "EventsDLQ", "ImportTasksQueue", "ImportTasksDLQ")
    }
    body = json.loads(stack.resolve(RESOURCES["OperationsDashboard"]["Properties"]["DashboardBody"]))
    rows = [row for widget in body["widgets"] for row in widget["properties"].get("metrics", [])]
    [requests_row] = [row for row in rows if row[:2] == ["AWS/Lambda", "UrlRequestCount"]]
    assert requests_row[2:4] == ["FunctionName", stack.refs[function]]


CHECKOV = TEMPLATE.parent / ".venv-checkov/bin/checkov"


@pytest.mark.skipif(not CHECKOV.exists(), reason="checkov is not installed: make test and make lint install it")
def test_checkov_reports_nothing_with_the_function_url(tmp_path: Path):
    """As make lint runs it, on a copy with FrontDoor FunctionUrl (its AuthType NONE skip says why)."""
    import os

    copy = tmp_path / "template.yaml"
    copy.write_text(TEMPLATE.read_text().replace("    Default: HttpApi\n", "    Default: FunctionUrl\n", 1))
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    environment |= {"CKV_SKIP_PACKAGE_UPDATE_CHECK": "true", "BC_SKIP_MAPPING": "TRUE"}
    command = [str(CHECKOV), "--skip-download", "--framework", "cloudformation", "--quiet", "--compact"]
    result = subprocess.run(
        [*command, "--file", str(copy)], capture_output=True, text=True, check=False, env=environment, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
