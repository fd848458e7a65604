"""Write the cut-down botocore service models the shared layer ships (`make models`).

botocore parses a service's whole model when a client is created: DynamoDB's is 94 KB of gzip,
about 0.6 MB of JSON, most of it documentation and operations this package never calls. Every
function that uses DynamoDB paid that parse on its cold start (~9 ms of CPU for the ingest
function, `make bench`). braze_forwarder.aws points its session at the models written here, so its
clients know only these operations; any other service, and boto3 used directly, keep botocore's own.

A call to an operation missing here fails in the tests (every DynamoDB call the package makes goes
through these models there too): add the operation below and run `make models`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import botocore.loaders

OPERATIONS = {
    "dynamodb": (
        "BatchGetItem",
        "BatchWriteItem",
        "DeleteItem",
        "GetItem",
        "PutItem",
        "Query",
        "Scan",
        "TransactWriteItems",
        "UpdateItem",
    ),
    "s3": (
        "AbortMultipartUpload",
        "CompleteMultipartUpload",
        "CopyObject",
        "CreateMultipartUpload",
        "DeleteObject",
        "DeleteObjects",
        "GetObject",
        "HeadObject",
        "ListObjectsV2",
        "PutObject",
        "UploadPart",
        "UploadPartCopy",
    ),
    "secretsmanager": ("GetSecretValue",),
    "sqs": ("GetQueueAttributes", "SendMessage", "SendMessageBatch"),
}
OUT = Path(__file__).resolve().parent / "braze_forwarder" / "botocore_models"


def trimmed(model: dict[str, Any], keep: tuple[str, ...]) -> dict[str, Any]:
    """The model with only `keep`'s operations, the shapes they reach, and no documentation."""
    shapes = model["shapes"]
    needed: set[str] = set()
    pending = []
    for name in keep:
        operation = model["operations"][name]
        pending += [operation[part]["shape"] for part in ("input", "output") if part in operation]
        pending += [error["shape"] for error in operation.get("errors", [])]
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        needed.add(name)
        shape = shapes[name]
        pending += [shape[part]["shape"] for part in ("member", "key", "value") if part in shape]
        pending += [member["shape"] for member in shape.get("members", {}).values()]
    operations = {name: _undocumented(model["operations"][name]) for name in keep}
    kept_shapes = {name: _undocumented(shapes[name]) for name in sorted(needed)}
    for shape in kept_shapes.values():
        for member_name, member in shape.get("members", {}).items():
            shape["members"][member_name] = _undocumented(member)
    metadata = model["metadata"]
    return {
        "version": model.get("version", "2.0"),
        "metadata": metadata,
        "operations": operations,
        "shapes": kept_shapes,
    }


def _undocumented(part: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in part.items() if key not in ("documentation", "documentationUrl")}


def main() -> None:
    loader = botocore.loaders.Loader()
    for service, keep in OPERATIONS.items():
        version = loader.determine_latest_version(service, "service-2")
        model = trimmed(loader.load_service_model(service, "service-2", version), keep)
        path = OUT / service / version / "service-2.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(model, separators=(",", ":"), sort_keys=True) + "\n")
        print(
            f"{path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}: "
            f"{len(keep)} operations, {len(model['shapes'])} shapes, {path.stat().st_size:,} bytes",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
