"""openapi.json: what the code generates, a valid OpenAPI 3.1 document, every route and answer documented."""

from __future__ import annotations

import ast
import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import OpenAPIV31SpecValidator

from apidoc.answers import error_answers
from apidoc.document import OPENAPI_JSON, OPERATIONS, REFUSED, ROOT, build, dumps, template_routes


@pytest.fixture(scope="module")
def generated() -> dict[str, Any]:
    return build()


@pytest.fixture(scope="module")
def committed() -> dict[str, Any]:
    return json.loads(OPENAPI_JSON.read_text(encoding="utf-8"))


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def without_refused(example: dict[str, Any]) -> Any:
    """The example's value without the objects it marks as refused by the API (REFUSED)."""
    value = copy.deepcopy(example["value"])
    for position in sorted(example.get(REFUSED, []), reverse=True):
        array, index = position.removesuffix("]").split("[")
        del value[array][int(index)]
    return value


def _all_refused(value: Any) -> bool:
    arrays = [item for item in value.values() if isinstance(item, list)] if isinstance(value, dict) else []
    return bool(arrays) and not any(arrays)


def test_the_committed_document_is_what_the_code_generates(generated: dict[str, Any]) -> None:
    committed = OPENAPI_JSON.read_text(encoding="utf-8") if OPENAPI_JSON.exists() else ""
    assert committed == dumps(generated), (
        f"{OPENAPI_JSON.name} is not what the code generates: run make openapi, and commit the result"
    )


def test_the_check_command_names_the_fix(tmp_path: Path) -> None:
    stale = tmp_path / "openapi.json"
    stale.write_text("{}\n")
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "shared"), str(ROOT)])}
    run = subprocess.run(
        [sys.executable, "-m", "apidoc", "--check", "--output", str(stale)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=ROOT,
        timeout=120,
    )
    assert run.returncode == 1 and "run make openapi" in run.stderr
    assert stale.read_text() == "{}\n"  # --check writes nothing


def test_it_is_a_valid_openapi_3_1_document(committed: dict[str, Any]) -> None:
    errors = [
        f"{'/'.join(map(str, error.path))}: {error.message}"
        for error in OpenAPIV31SpecValidator(committed).iter_errors()
    ]
    assert committed["openapi"].startswith("3.1") and not errors


def test_every_route_of_the_template_is_documented_and_nothing_else(committed: dict[str, Any]) -> None:
    exposed = {(route.method, route.path) for route in template_routes()}
    documented = {(method, path) for method, path, _ in operations(committed)}
    assert documented == exposed
    assert {operation["operationId"] for *_, operation in operations(committed)} == set(OPERATIONS)


def test_every_operation_says_who_may_call_what_it_takes_and_every_answer(committed: dict[str, Any]) -> None:
    schemes = committed["components"]["securitySchemes"]
    assert schemes["ingestKey"] == {**schemes["ingestKey"], "type": "http", "scheme": "bearer"}
    for method, path, operation in operations(committed):
        where = f"{method} {path}"
        assert operation["summary"] and operation["description"] and operation["tags"], where
        assert all(name in schemes for requirement in operation["security"] for name in requirement), where
        assert operation["requestBody"]["content"]["application/json"]["examples"], where
        answers = operation["responses"]
        assert any(status.startswith("2") for status in answers), where
        for status, answer in answers.items():
            media = answer["content"]["application/json"]
            assert answer["description"] and "schema" in media, f"{where} {status}"
            assert media.get("examples") or "example" in media, f"{where} {status} has no example"
    ingest = [operation for _, path, operation in operations(committed) if path.startswith("/users/")]
    assert ingest and all(operation["security"] == [{"ingestKey": []}] for operation in ingest)
    assert all(
        any(parameter["name"] == "Idempotency-Key" and parameter["in"] == "header" for parameter in op["parameters"])
        for op in ingest
    )
    assert "Retry-After" in committed["paths"]["/users/track"]["post"]["responses"]["503"]["headers"]


def test_each_error_answer_lists_exactly_the_types_the_code_gives(committed: dict[str, Any]) -> None:
    for method, path, operation in operations(committed):
        in_code: dict[str, set[str]] = {}
        for answer in error_answers(OPERATIONS[operation["operationId"]].answered_by):
            in_code.setdefault(str(answer.status), set()).add(answer.type)
        documented = {
            status: set(answer["content"]["application/json"].get("examples", {}))
            for status, answer in operation["responses"].items()
            if not status.startswith("2") and status != "429"  # 429 is API Gateway's own
        }
        assert documented == in_code, f"{method} {path}"


def test_every_request_rejected_in_the_layer_is_read_by_the_answer_inventory() -> None:
    # The inventory reads literal statuses and types; a computed one would silently go undocumented.
    layer = ROOT / "layers" / "shared"
    built: dict[str, int] = {}
    for source in sorted((layer / "braze_forwarder").rglob("*.py")):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        calls = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "RequestRejected"
        ]
        if calls:
            built[".".join(source.relative_to(layer).with_suffix("").parts)] = len(calls)
    read = {
        module: sum(answer.built_by == "RequestRejected" for answer in error_answers((module,))) for module in built
    }
    assert read == built
    routed = {module for doc in OPERATIONS.values() for module in doc.answered_by}
    assert set(built) <= routed, "a module that answers errors is in no operation's answered_by"


def test_every_example_is_valid_for_its_schema(committed: dict[str, Any]) -> None:
    checked = 0
    for method, path, operation in operations(committed):
        media_types = [("request", operation["requestBody"]["content"]["application/json"])]
        media_types += [
            (status, answer["content"]["application/json"]) for status, answer in operation["responses"].items()
        ]
        for name, media in media_types:
            validator = OAS31Validator({**media["schema"], "components": committed["components"]})
            # An example whose every object is refused is a request the document says is refused whole.
            values = [without_refused(example) for example in media.get("examples", {}).values()]
            values = [value for value in values if name != "request" or not _all_refused(value)]
            values += [media["example"]] if "example" in media else []
            for value in values:
                errors = [error.message for error in validator.iter_errors(value)]
                assert not errors, f"{method} {path} {name}: {errors[:3]}"
                checked += 1
        for parameter in operation.get("parameters", []):
            if "example" in parameter:
                OAS31Validator(parameter["schema"]).validate(parameter["example"])
    assert checked > 40


def test_the_webhook_samples_of_events_are_the_webhook_examples(committed: dict[str, Any]) -> None:
    examples = committed["paths"]["/webhooks/{provider}"]["post"]["requestBody"]["content"]["application/json"]
    samples = sorted(path.stem.removeprefix("webhook_") for path in (ROOT / "events").glob("webhook_*.json"))
    assert sorted(examples["examples"]) == samples


def test_the_handlers_do_not_import_the_documentation_at_cold_start() -> None:
    # The document is built outside Lambda: importing a handler must not pull in apidoc, the pydantic
    # documentation models or Powertools' OpenAPI models.
    script = (
        "import sys, functions.ingest_api.app, functions.export_callback.app\n"
        "heavy = [m for m in sys.modules if m.startswith('apidoc') "
        "or m == 'aws_lambda_powertools.event_handler.openapi.models']\n"
        "print(heavy)\n"
    )
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "shared"), str(ROOT)]),
        "POWERTOOLS_SERVICE_NAME": "braze-forwarder",
        "POWERTOOLS_METRICS_NAMESPACE": "BrazeForwarderTests",
    }
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=environment, cwd=ROOT, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
