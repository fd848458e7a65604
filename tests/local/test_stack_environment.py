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
