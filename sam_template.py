"""template.yaml, read as CloudFormation reads it (its short-form intrinsics included).

Below both its readers: the local stack (local/, which creates the template's resources and runs its
functions) and the API document (apidoc/, which documents the template's routes). The local stack
imports apidoc to serve the document, so the template is read here rather than in either of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cfnlint.decode import cfn_yaml

TEMPLATE = Path(__file__).resolve().parent / "template.yaml"


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    return cfn_yaml.load(str(path))
