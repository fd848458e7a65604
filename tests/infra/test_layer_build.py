"""The shared layer ships its bytecode (layers/shared/Makefile): on Lambda /opt is read-only, so a
module without it is compiled again on every cold start. bench/coldstart.py measures cold starts on
a copy built the same way (deployed_code), tested here too."""

from __future__ import annotations

import os
import subprocess
import sys

from bench.coldstart import deployed_code


def test_the_layer_bytecode_is_used_as_shipped_and_nothing_is_compiled_at_import(tmp_path):
    layer, task = deployed_code(tmp_path)
    sources = sorted((layer / "braze_forwarder").rglob("*.py"))
    assert sources
    for source in sources:
        compiled = source.parent / "__pycache__" / f"{source.stem}.{sys.implementation.cache_tag}.pyc"
        # PEP 552 flags: 0b01 = hash-based, 0b10 = check the source. Unchecked: a zip's file times
        # cannot make Python judge it stale.
        assert int.from_bytes(compiled.read_bytes()[4:8], "little") == 0b01, source
    assert not list(task.rglob("*.pyc"))  # the functions ship none (SAM's builder leaves it out)
    # The files' times changed as a deployment changes them: the bytecode is still what is loaded.
    for source in sources:
        os.utime(source, (0, 0))
    verbose = subprocess.run(
        [sys.executable, "-v", "-c", "import braze_forwarder.ingest.api, braze_forwarder.delivery.sender"],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(layer), *sys.path[1:]]), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    loaded = [line for line in verbose.splitlines() if line.startswith("# code object from") and str(layer) in line]
    assert len(loaded) > 20
    assert all(".pyc" in line for line in loaded), [line for line in loaded if ".pyc" not in line]
