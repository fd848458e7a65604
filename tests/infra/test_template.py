"""Invariants of template.yaml that keep the deployed stack safe and correct (ARCHITECTURE.md, Tests).

Written over every resource of a kind, so a function, queue or policy added later is held to the
same rules without anyone remembering to add a test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from braze_forwarder.user_order import HORIZON_DAYS
from local.resources import LocalStack
from sam_template import TEMPLATE, load_template

TEMPLATE_DOC = load_template()
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE_DOC["Resources"]
GLOBAL_FUNCTION = TEMPLATE_DOC.get("Globals", {}).get("Function", {})
FUNCTIONS = {lid: r["Properties"] for lid, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function"}


def defaults() -> LocalStack:
    """Resolve parameters to their defaults (resource references are not needed for these checks)."""
    stack = LocalStack(template=TEMPLATE_DOC, stack_name="test", region="us-east-1")
    stack.parameters = {name: str(spec.get("Default", "")) for name, spec in TEMPLATE_DOC["Parameters"].items()}
    return stack


def function_setting(properties: dict[str, Any], name: str) -> Any:
    return properties.get(name, GLOBAL_FUNCTION.get(name))


def sqs_event_sources() -> list[tuple[str, dict[str, Any]]]:
    return [
        (lid, event["Properties"])
        for lid, properties in FUNCTIONS.items()
        for event in properties.get("Events", {}).values()
        if event["Type"] == "SQS"
    ]


def queue_of(event: dict[str, Any]) -> str:
    queue = event["Queue"]
    assert "Fn::GetAtt" in queue, "SQS events must reference a queue of this template"
    target = queue["Fn::GetAtt"]
    return target[0] if isinstance(target, list) else target.split(".")[0]


def policy_statements(properties: dict[str, Any]) -> list[dict[str, Any]]:
    statements = []
    for policy in properties.get("Policies", []):
        if isinstance(policy, dict) and "Statement" in policy:
            statements.extend(policy["Statement"])
    return statements


def test_cfn_lint_reports_nothing():
    """As make lint runs it: informational checks too (I3011: every stateful resource says Retain or Delete)."""
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run(
        [str(cfn_lint), "--include-checks", "I", "--", str(TEMPLATE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


CHECKOV = TEMPLATE.parent / ".venv-checkov/bin/checkov"


@pytest.mark.skipif(not CHECKOV.exists(), reason="checkov is not installed: make test and make lint install it")
def test_checkov_reports_nothing_offline():
    """As make lint runs it, offline; each check the template skips says why in its Metadata."""
    import json
    import os

    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    environment |= {"CKV_SKIP_PACKAGE_UPDATE_CHECK": "true", "BC_SKIP_MAPPING": "TRUE"}
    command = [str(CHECKOV), "--skip-download", "--framework", "cloudformation", "--quiet", "--compact"]
    result = subprocess.run(
        [*command, "--output", "json", "--file", str(TEMPLATE)],
        capture_output=True,
        text=True,
        check=False,
        env=environment,
    )
    summary = json.loads(result.stdout)["summary"]
    # A template checkov cannot parse exits 0 with nothing checked: the counts say it was read.
    assert summary["parsing_errors"] == 0 and summary["passed"] > 0, result.stdout + result.stderr
    assert summary["failed"] == 0 and result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_every_function_runs_python312_on_arm64(logical_id):
    properties = FUNCTIONS[logical_id]
    assert function_setting(properties, "Runtime") == "python3.12"
    assert function_setting(properties, "Architectures") == ["arm64"]


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_every_function_logs_to_its_own_group_with_retention(logical_id):
    log_group = function_setting(FUNCTIONS[logical_id], "LoggingConfig")["LogGroup"]
    group_id = log_group["Ref"]
    assert RESOURCES[group_id]["Type"] == "AWS::Logs::LogGroup"
    assert "RetentionInDays" in RESOURCES[group_id]["Properties"]


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_every_function_handler_is_a_thin_app_module_that_exists(logical_id):
    properties = FUNCTIONS[logical_id]
    assert properties["Handler"] == "app.lambda_handler"
    assert (TEMPLATE.parent / properties["CodeUri"] / "app.py").is_file()


def test_every_log_group_has_retention():
    for logical_id, resource in RESOURCES.items():
        if resource["Type"] == "AWS::Logs::LogGroup":
            assert "RetentionInDays" in resource["Properties"], logical_id


def test_the_layers_match_the_runtime_and_architecture():
    layer = RESOURCES["SharedLayer"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    # The layer's Makefile builds the arm64 wheels for 3.12 and ships the bytecode (layers/shared/Makefile).
    assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": "arm64"}
    makefile = (TEMPLATE.parent / "layers/shared/Makefile").read_text()
    assert "--platform manylinux2014_aarch64" in makefile and "--python-version 3.12" in makefile
    assert "--invalidation-mode unchecked-hash" in makefile
    assert not (TEMPLATE.parent / "layers/shared/python").exists()  # SAM adds python/ itself
    powertools = str(GLOBAL_FUNCTION["Layers"][0])
    assert "AWSLambdaPowertoolsPythonV3-python312-arm64" in powertools and "PowertoolsLayerVersion" in powertools


@pytest.mark.parametrize(("logical_id", "event"), sqs_event_sources(), ids=lambda v: v if isinstance(v, str) else "")
def test_sqs_consumers_report_partial_failures_and_are_bounded(logical_id, event):
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert "MaximumConcurrency" in event.get("ScalingConfig", {})


@pytest.mark.parametrize(("logical_id", "event"), sqs_event_sources(), ids=lambda v: v if isinstance(v, str) else "")
def test_consumer_queues_hide_messages_six_times_the_timeout_and_redrive_after_five(logical_id, event):
    stack = defaults()
    queue = RESOURCES[queue_of(event)]["Properties"]
    timeout = int(stack.resolve(function_setting(FUNCTIONS[logical_id], "Timeout")))
    window = int(stack.resolve(event.get("MaximumBatchingWindowInSeconds", 0)))
    assert int(stack.resolve(queue["VisibilityTimeout"])) >= 6 * timeout + window
    redrive = queue["RedrivePolicy"]
    assert int(redrive["maxReceiveCount"]) >= 5
    dlq = RESOURCES[redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]]["Properties"]
    # A standard queue's message keeps its enqueue time in the DLQ: the DLQ must keep it longer.
    assert int(dlq["MessageRetentionPeriod"]) > int(queue.get("MessageRetentionPeriod", 345600))
    assert int(dlq["MessageRetentionPeriod"]) == 1209600


def test_every_queue_is_encrypted():
    for logical_id, resource in RESOURCES.items():
        if resource["Type"] == "AWS::SQS::Queue":
            assert resource["Properties"].get("SqsManagedSseEnabled") is True, logical_id


def test_every_bucket_is_encrypted_private_and_tls_only():
    policies = {
        r["Properties"]["Bucket"]["Ref"]: r["Properties"]["PolicyDocument"]
        for r in RESOURCES.values()
        if r["Type"] == "AWS::S3::BucketPolicy"
    }
    for logical_id, resource in RESOURCES.items():
        if resource["Type"] != "AWS::S3::Bucket":
            continue
        properties = resource["Properties"]
        assert properties["BucketEncryption"], logical_id
        assert all(properties["PublicAccessBlockConfiguration"].values()), logical_id
        denies = [s for s in policies[logical_id]["Statement"] if s["Effect"] == "Deny"]
        assert any(s["Condition"]["Bool"]["aws:SecureTransport"] in (False, "false") for s in denies), logical_id


def test_every_table_is_encrypted_and_expires_items():
    for logical_id, resource in RESOURCES.items():
        if resource["Type"] == "AWS::DynamoDB::Table":
            properties = resource["Properties"]
            assert properties["SSESpecification"]["SSEEnabled"] is True, logical_id
            assert properties["TimeToLiveSpecification"]["Enabled"] is True, logical_id
            assert properties["BillingMode"] == "PAY_PER_REQUEST", logical_id


# What deleting or replacing the stack leaves behind (README, Deploy): what the operator set or needs.
# The rest holds transient state or is rebuilt by the template; each resource says why in template.yaml.
KEPT = {
    "WebhookSecrets",
    "GooglePlayServiceAccountSecret",
    "IngestKeysSecret",
    "BrazeApiKeySecret",
    "ExportJobsTable",
    "UserOrderTable",  # the tombstones that keep deleted users deleted while queued objects remain
    "ImportsTable",  # the record of the imports and their ranges
    "ImportBucket",  # files dropped for import
    "RejectedObjectsBucket",
    "LakeBucket",
    "EventsQueue",  # accepted objects not yet delivered
    "EventsDLQ",
}
STATEFUL_TYPES = {
    "AWS::DynamoDB::Table",
    "AWS::S3::Bucket",
    "AWS::SecretsManager::Secret",
    "AWS::SQS::Queue",
    "AWS::Logs::LogGroup",
}


def _policies(logical_id: str) -> tuple[str | None, str | None]:
    resource = RESOURCES[logical_id]
    return resource.get("DeletionPolicy"), resource.get("UpdateReplacePolicy")


@pytest.mark.parametrize("logical_id", sorted(KEPT))
def test_what_the_operator_needs_survives_deleting_or_replacing_the_stack(logical_id):
    assert RESOURCES[logical_id]["Type"] in STATEFUL_TYPES
    assert _policies(logical_id) == ("Retain", "Retain")


def test_every_stateful_resource_says_what_happens_to_it_and_only_the_kept_ones_stay():
    """A new table, queue, bucket, secret or log group must choose; buckets and secrets are always kept."""
    for logical_id, resource in RESOURCES.items():
        if resource["Type"] not in STATEFUL_TYPES:
            continue
        expected = "Retain" if logical_id in KEPT else "Delete"
        assert _policies(logical_id) == (expected, expected), logical_id
        if resource["Type"] in {"AWS::S3::Bucket", "AWS::SecretsManager::Secret"}:
            assert logical_id in KEPT, f"{logical_id}: buckets and secrets hold data, keep them"


def test_every_kept_table_has_point_in_time_recovery():
    tables = [lid for lid in KEPT if RESOURCES[lid]["Type"] == "AWS::DynamoDB::Table"]
    assert "ExportJobsTable" in tables
    for logical_id in tables:
        recovery = RESOURCES[logical_id]["Properties"]["PointInTimeRecoverySpecification"]
        assert recovery["PointInTimeRecoveryEnabled"] is True, logical_id


def test_every_bucket_is_versioned_and_lets_previous_versions_go():
    """Versioning undoes a mistaken delete; the previous versions expire, so deleted personal data goes too."""
    buckets = [lid for lid, r in RESOURCES.items() if r["Type"] == "AWS::S3::Bucket"]
    assert {"RejectedObjectsBucket", "LakeBucket"} <= set(buckets)
    for logical_id in buckets:
        properties = RESOURCES[logical_id]["Properties"]
        assert properties["VersioningConfiguration"]["Status"] == "Enabled", logical_id
        rules = [r for r in properties["LifecycleConfiguration"]["Rules"] if r["Status"] == "Enabled"]
        cleanup = [r for r in rules if "NoncurrentVersionExpiration" in r and "Prefix" not in r]
        assert cleanup, f"{logical_id}: no bucket-wide rule expires previous versions"
        assert all(0 < int(r["NoncurrentVersionExpiration"]["NoncurrentDays"]) <= 30 for r in cleanup), logical_id
        assert any(r.get("ExpiredObjectDeleteMarker") is True for r in cleanup), logical_id


def test_rejected_objects_expire_after_the_retention_parameter():
    rules = RESOURCES["RejectedObjectsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    expiring = [r for r in rules if r.get("ExpirationInDays") == {"Ref": "RejectedObjectsRetentionDays"}]
    assert [r["Prefix"] for r in expiring] == ["rejected/"]
    parameter = TEMPLATE_DOC["Parameters"]["RejectedObjectsRetentionDays"]
    assert int(parameter["MinValue"]) >= 1 and int(parameter["Default"]) >= int(parameter["MinValue"])
    assert int(parameter["Default"]) == 30  # personal data kept no longer than an operator needs to act
    # A tombstone must outlive every rejected object a replay could send after its user's delete.
    assert int(parameter["Default"]) <= int(parameter["MaxValue"]) < HORIZON_DAYS


def test_every_kept_resource_is_named_in_an_output():
    """After `sam delete` the outputs are the operator's list of what stayed behind (README, Deploy)."""

    def referenced(value: Any) -> str | None:
        if isinstance(value, dict) and "Ref" in value:
            return value["Ref"]
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            return target[0] if isinstance(target, list) else target.split(".")[0]
        return None

    named = {referenced(output["Value"]) for output in TEMPLATE_DOC["Outputs"].values()}
    assert sorted(KEPT - named) == []


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_policies_are_least_privilege(logical_id):
    properties = FUNCTIONS[logical_id]
    for policy in properties.get("Policies", []):
        name = policy if isinstance(policy, str) else next(iter(policy))
        assert "FullAccess" not in name
        assert name not in {"S3CrudPolicy", "DynamoDBCrudPolicy", "AdministratorAccess", "PowerUserAccess"}
    for statement in policy_statements(properties):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all("*" not in action for action in actions), statement
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert all(resource != "*" for resource in resources), statement


def test_the_api_has_explicit_routes_access_logs_and_throttling():
    apis = [r for r in RESOURCES.values() if r["Type"] == "AWS::Serverless::HttpApi"]
    assert apis
    for api in apis:
        assert api["Properties"]["AccessLogSettings"]["DestinationArn"]
        settings = api["Properties"]["DefaultRouteSettings"]
        assert settings["ThrottlingRateLimit"] and settings["ThrottlingBurstLimit"]
    for properties in FUNCTIONS.values():
        for event in properties.get("Events", {}).values():
            if event["Type"] == "HttpApi":
                assert event["Properties"]["Method"] != "ANY"
                assert "proxy+" not in event["Properties"]["Path"]


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_every_environment_variable_the_settings_read_is_set(logical_id):
    """A function's settings class finds every required variable in its template environment."""
    from braze_forwarder import config

    environment = set(defaults().template["Globals"]["Function"]["Environment"]["Variables"])
    environment |= set(FUNCTIONS[logical_id].get("Environment", {}).get("Variables", {}))
    settings_classes = [c for c in vars(config).values() if isinstance(c, type) and issubclass(c, config.Settings)]
    for cls in settings_classes:
        required = {name.upper() for name in cls.required()}
        if required and required <= environment:
            return  # this function's settings are complete
    if not any(name.endswith(("_URL", "_ARN", "_TABLE", "_BUCKET")) for name in environment):
        return  # a function without settings
    pytest.fail(f"{logical_id}: no settings class finds all its required variables in {sorted(environment)}")


def test_samconfig_has_dev_and_prod_and_no_account_values():
    text = (Path(TEMPLATE).parent / "samconfig.toml").read_text()
    for section in ("[dev.deploy.parameters]", "[prod.deploy.parameters]", "[default.validate.parameters]"):
        assert section in text
    assert "resolve_s3 = true" in text and "lint = true" in text
    assert "s3_bucket" not in text and "123456789012" not in text


def _code_text() -> str:
    root = TEMPLATE.parent
    files = [*(root / "layers/shared/braze_forwarder").rglob("*.py"), *(root / "functions").rglob("*.py")]
    return "\n".join(path.read_text() for path in files)


def _watched_custom_metrics() -> set[str]:
    """Every BrazeForwarder metric an alarm or the dashboard reads."""
    import json
    import re

    names: set[str] = set()
    for resource in RESOURCES.values():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            if properties.get("Namespace") == "BrazeForwarder":
                names.add(properties["MetricName"])
            for query in properties.get("Metrics", []):
                metric = query.get("MetricStat", {}).get("Metric", {})
                if metric.get("Namespace") == "BrazeForwarder":
                    names.add(metric["MetricName"])
        if resource["Type"] == "AWS::CloudWatch::Dashboard":
            template = properties["DashboardBody"]["Fn::Sub"]  # a string, or [string, variables]
            template = template[0] if isinstance(template, list) else template
            body = json.loads(re.sub(r"\$\{[^}]+\}", "x", template))
            for widget in body["widgets"]:
                namespace = None
                for row in widget["properties"].get("metrics", []):
                    if isinstance(row[0], dict):
                        names.update(re.findall(r'MetricName=\\?"(\w+)\\?"', row[0]["expression"]))
                        continue
                    namespace = namespace if row[0] == "." else row[0]
                    if namespace == "BrazeForwarder":
                        names.add(row[1])
    return names


def test_every_metric_an_alarm_or_the_dashboard_watches_is_emitted_by_the_code():
    code = _code_text()
    watched = _watched_custom_metrics()
    assert {"ObjectsAccepted", "BrazeCalls", "ExportsCompleted"} <= watched  # the parsing found them
    missing = sorted(name for name in watched if f'"{name}"' not in code)
    assert missing == [], f"watched but never emitted: {missing}"


def test_every_alarm_notifies_the_topic_and_has_a_runbook_entry():
    runbook = (TEMPLATE.parent / "docs" / "operations.md").read_text()
    alarms = {lid: r["Properties"] for lid, r in RESOURCES.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert {"EventsDLQNotEmptyAlarm", "EventsBacklogAgeAlarm", "SenderErrorsAlarm", "Api5xxAlarm"} <= set(alarms)
    notify = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    for logical_id, properties in alarms.items():
        assert properties["AlarmActions"] == notify
        assert "TreatMissingData" in properties
        assert f"`{logical_id}`" in runbook, f"docs/operations.md (the runbook) lacks {logical_id}"
        description = properties["AlarmDescription"]
        assert "docs/operations.md" in description and logical_id in description, f"{logical_id} names no runbook entry"


@pytest.mark.parametrize(
    ("enabled", "tracing", "disabled"), [("false", "PassThrough", "true"), ("true", "Active", "false")]
)
def test_one_parameter_turns_tracing_on_for_lambda_and_powertools_together(
    enabled: str, tracing: str, disabled: str
) -> None:
    stack = defaults()
    stack.parameters["TracingEnabled"] = enabled
    assert stack.resolve(GLOBAL_FUNCTION["Tracing"]) == tracing
    assert stack.resolve(GLOBAL_FUNCTION["Environment"]["Variables"]["POWERTOOLS_TRACE_DISABLED"]) == disabled


def test_tracing_is_off_unless_asked_for() -> None:
    """The X-Ray SDK costs ~150 ms of every cold start (make bench)."""
    assert TEMPLATE_DOC["Parameters"]["TracingEnabled"]["Default"] == "false"


@pytest.mark.parametrize("logical_id", ["IngestApiFunction", "IngestUrlFunction"])
@pytest.mark.parametrize(("log_level", "lambda_level"), [("DEBUG", "DEBUG"), ("INFO", "INFO"), ("WARNING", "WARN")])
def test_the_ingest_drops_lambdas_per_request_lines_and_keeps_the_chosen_log_level(
    logical_id: str, log_level: str, lambda_level: str
) -> None:
    """Lambda's level filter takes precedence over Powertools' (POWERTOOLS_LOG_LEVEL): it must say the same."""
    stack = defaults()
    stack.parameters["LogLevel"] = log_level
    logging_config = {
        name: stack.resolve(value)
        for name, value in TEMPLATE_DOC["Resources"][logical_id]["Properties"]["LoggingConfig"].items()
        if name != "LogGroup"  # a resource the local stack does not create
    }
    assert logging_config["LogFormat"] == "JSON"  # Lambda filters by level only in JSON
    assert logging_config["ApplicationLogLevel"] == lambda_level
    assert logging_config["SystemLogLevel"] == "WARN"  # no START/END/REPORT per request, unless asked for
    assert TEMPLATE_DOC["Parameters"]["IngestSystemLogLevel"]["AllowedValues"] == ["WARN", "INFO", "DEBUG"]
