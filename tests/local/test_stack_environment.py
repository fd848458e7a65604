"""StackOptions.function_environment: the functions' settings that have no template parameter."""

from __future__ import annotations

import os

import pytest

from local.stack import Stack, StackError, StackOptions

pytestmark = pytest.mark.local

FREE_PORTS = {"api_port": 0, "lambda_port": 0, "aws_port": 0, "sandbox_port": 0}


def test_a_setting_without_a_parameter_reaches_the_functions_while_the_stack_runs() -> None:
    assert "BRAZE_READ_TIMEOUT_SECONDS" not in os.environ
    options = StackOptions(**FREE_PORTS, function_environment={"BRAZE_READ_TIMEOUT_SECONDS": "1.5"})

    with Stack(options) as stack:
        assert os.environ["BRAZE_READ_TIMEOUT_SECONDS"] == stack.environment["BRAZE_READ_TIMEOUT_SECONDS"] == "1.5"

    assert "BRAZE_READ_TIMEOUT_SECONDS" not in os.environ


def test_a_variable_the_template_sets_from_a_parameter_is_refused() -> None:
    options = StackOptions(**FREE_PORTS, function_environment={"BRAZE_MAX_IN_FLIGHT": "2"})

    with pytest.raises(StackError, match=r"BRAZE_MAX_IN_FLIGHT: set by template.yaml .*parameter_overrides"):
        Stack(options).start()
    assert "BRAZE_MAX_IN_FLIGHT" not in os.environ


def test_given_webhook_secrets_are_the_ones_the_functions_read_and_the_app_store_trusts_this_runs_ca() -> None:
    import json

    options = StackOptions(**FREE_PORTS, webhook_secrets={"stripe": ["whsec_given1", "whsec_given2"]})

    with Stack(options) as stack:
        arn = stack.environment["WEBHOOK_SECRETS_ARN"]
        document = json.loads(stack.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"])
        assert document["stripe"] == ["whsec_given1", "whsec_given2"]
        assert document["paddle"][0].startswith("local_paddle_")  # not given: made for this run
        assert stack.app_store_chain is not None
        trusted = stack.environment["APP_STORE_TRUSTED_ROOT_SHA256"].split(",")
        assert trusted[1] == stack.app_store_chain.root_sha256 and len(trusted) == 2


def test_a_webhook_secret_for_a_provider_without_secrets_is_refused_naming_it() -> None:
    options = StackOptions(**FREE_PORTS, webhook_secrets={"app_store": ["x"]})

    with pytest.raises(StackError, match=r"--webhook-secret app_store=\.\.\.: not a provider"):
        Stack(options).start()
