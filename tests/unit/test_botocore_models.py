"""The cut-down service models the shared layer ships (layers/shared/trim_botocore_models.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import botocore.loaders
import pytest

from braze_forwarder import aws

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "layers" / "shared" / "braze_forwarder" / "botocore_models"


def _trimmer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("trim", ROOT / "layers" / "shared" / "trim_botocore_models.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


OPERATIONS: dict[str, tuple[str, ...]] = _trimmer().OPERATIONS


@pytest.fixture
def fresh_clients(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    aws.reset()
    yield
    aws.reset()


@pytest.mark.parametrize("service", sorted(OPERATIONS))
def test_the_package_clients_know_exactly_the_listed_operations(fresh_clients, service):
    client = aws.client(service)
    assert sorted(client.meta.service_model.operation_names) == sorted(OPERATIONS[service])


def test_a_service_not_cut_down_keeps_botocores_whole_model(fresh_clients):
    assert hasattr(aws.client("sts"), "get_caller_identity")
    assert not hasattr(aws.client("dynamodb"), "create_table")  # while DynamoDB's copy is ours


@pytest.mark.parametrize("service", sorted(OPERATIONS))
def test_each_kept_shape_is_botocores_own(service):
    """What is kept means what botocore's full model means: same type, no member it does not know."""
    [version_dir] = (MODELS / service).iterdir()
    full = botocore.loaders.Loader().load_service_model(service, "service-2", version_dir.name)["shapes"]
    ours = json.loads((version_dir / "service-2.json").read_text())["shapes"]

    for name, shape in ours.items():
        assert shape["type"] == full[name]["type"], name
        assert set(shape.get("members", {})) <= set(full[name].get("members", {})), name
        assert "documentation" not in shape
