"""`python -m cli`: the operator's command line for a deployed or local braze-forwarder stack.

Not shipped to Lambda. It uses the project's shared code (layers/shared), importable here as the
functions import it from /opt/python.
"""

from __future__ import annotations

import sys
from pathlib import Path

_SHARED = Path(__file__).resolve().parents[1] / "layers" / "shared"
if _SHARED.is_dir() and str(_SHARED) not in sys.path:
    sys.path.append(str(_SHARED))
