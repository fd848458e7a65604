"""Benchmarks that print figures (medians, ratios side by side); never pass/fail timing tests."""

import sys
from pathlib import Path

# The shared layer's package, where Lambda would find it on /opt/python.
_LAYER = str(Path(__file__).resolve().parent.parent / "layers" / "shared")
if _LAYER not in sys.path:
    sys.path.insert(0, _LAYER)
