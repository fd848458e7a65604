"""Cold start: fresh interpreter → first answer of a representative event, each handler next to a
minimal function (import boto3, send one SQS message) measured the same way.

A Lambda cold start runs the handler module's imports and then the first event, which pays for
whatever was left for first use (clients, settings, secrets, lazily imported modules). So the
figure is both: bench/coldstart_probe.py starts its clock at its first line (interpreter start-up
is Lambda's, the same on both sides) and stops it when the handler returns. Moving an import into
the first call cannot improve it; only removing work does.

The events are representative: the ingest function gets a /users/track with 75 objects, the sender
an SQS batch that makes one Braze call, the export functions their sample events from events/. Every
call they make goes to loopback stand-ins — moto's server for SQS, DynamoDB, S3 and Secrets Manager
(AWS_ENDPOINT_URL), the Braze sandbox for Braze — started once per run, the template's resources
created in it by the local stack's own code. Round after round the minimal function and each handler
alternate, so a slow spell on this shared machine lands on both sides; medians with the spread.

The code runs as Lambda holds it: /opt and /var/task are read-only there, so a module without
bytecode in its package is compiled on every cold start. The handlers run from a copy made like
the deployment package: the layer's braze_forwarder with the bytecode its build ships
(layers/shared/Makefile, `bytecode`), the functions' app modules without any (SAM's builder leaves
it out), and nothing written back (PYTHONDONTWRITEBYTECODE). Third-party packages come from the
environment, compiled as pip installs them: boto3 is precompiled in Lambda's runtime, the layer's
requirements ship their bytecode with the layer, and the Powertools layer is taken to ship its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import print_table

ROOT = Path(__file__).resolve().parent.parent
PROBE = Path(__file__).resolve().parent / "coldstart_probe.py"
# (row name, module, template logical id, what a right answer looks like)
HANDLERS = (
    ("ingest", "functions.ingest_api.app", "IngestApiFunction"),
    ("sender", "functions.braze_sender.app", "BrazeSenderFunction"),
    ("export starter", "functions.export_starter.app", "ExportStarterFunction"),
    ("export callback", "functions.export_callback.app", "ExportCallbackFunction"),
    ("export copier", "functions.export_copier.app", "ExportCopierFunction"),
)
ROUNDS = 7
INGEST_OBJECTS = 75
# Powertools' Tracer (and the X-Ray SDK) only trace inside Lambda, with a trace header to hang on.
_LAMBDA_ENVIRONMENT = {
    "AWS_LAMBDA_FUNCTION_NAME": "bench",
    "LAMBDA_TASK_ROOT": str(ROOT),
    "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
}


@contextlib.contextmanager
def quiet_stack(sandbox_latency_seconds: float = 0.0) -> Iterator[Any]:
    """The local stack (moto's server, the template's resources and secrets, the Braze sandbox) with
    its event sources and schedules stopped: nothing but the measured function's calls runs in it."""
    from local.stack import Stack, StackOptions

    options = StackOptions(
        api_port=0, lambda_port=0, aws_port=0, sandbox_port=0, sandbox_latency_seconds=sandbox_latency_seconds
    )
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet), Stack(options) as stack:
        for source in stack.sqs_sources:
            source.signal_stop()
        for source in stack.sqs_sources:
            source.stop()
        for schedule in stack.schedules:
            schedule.stop()
        yield stack


def events(stack: Any, directory: Path) -> dict[str, Path]:
    """Each handler's representative event, written to a file the probe reads before its clock runs."""
    from bench.ingest import _body, _event

    track = _event(_body(INGEST_OBJECTS))
    track["headers"]["authorization"] = f"Bearer {stack.options.ingest_key}"
    chosen = {
        "functions.ingest_api.app": track,
        "functions.braze_sender.app": _just_queued(json.loads((ROOT / "events" / "braze_sender_sqs.json").read_text())),
        "functions.export_starter.app": json.loads((ROOT / "events" / "export_starter.json").read_text()),
        "functions.export_callback.app": json.loads((ROOT / "events" / "export_callback.json").read_text()),
        "functions.export_copier.app": json.loads((ROOT / "events" / "export_copier_sqs.json").read_text()),
        "boto3": {},
    }
    paths = {}
    for module, event in chosen.items():
        paths[module] = directory / f"{module}.json"
        paths[module].write_text(json.dumps(event))
    return paths


def _just_queued(event: dict[str, Any]) -> dict[str, Any]:
    """The sample SQS batch as a sender meets it: queued a moment ago, not on the sample's fixed date.

    The order gate reads the order records from the batch's oldest accept time, one Query per day:
    a batch dated weeks back would make the cold start pay for weeks of Queries that a backlog of
    that age is rare enough not to represent (docs/performance.md)."""
    now = datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    for record in event["Records"]:
        body = json.loads(record["body"])
        for field in ("received_at", "accepted_at"):
            if field in body:
                body[field] = stamp
        record["body"] = json.dumps(body)
        for attribute in ("SentTimestamp", "ApproximateFirstReceiveTimestamp"):
            if attribute in record.get("attributes", {}):
                record["attributes"][attribute] = str(int(now.timestamp() * 1000))
    return event


def cold_start(module: str, event_path: Path, environment: dict[str, str]) -> tuple[float, float, Any]:
    """(wall-clock seconds, CPU seconds, the answer) of one fresh interpreter's import and first event."""
    answer = subprocess.run(
        [sys.executable, str(PROBE), module, str(event_path)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=ROOT,
    )
    lines = answer.stdout.strip().splitlines()
    if answer.returncode != 0 or len(lines) < 2:
        raise RuntimeError(f"cold start of {module} failed: {answer.stderr[-2000:]}")
    wall, cpu = lines[-2].split()
    return float(wall), float(cpu), json.loads(lines[-1])


def deployed_code(directory: Path) -> list[Path]:
    """A copy of the code as Lambda holds it (see the module's docstring); the import path to use."""
    layer, task = directory / "layer" / "python", directory / "task"
    no_bytecode = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "layers" / "shared" / "braze_forwarder", layer / "braze_forwarder", ignore=no_bytecode)
    shutil.copytree(ROOT / "functions", task / "functions", ignore=no_bytecode)
    subprocess.run(
        [
            *("make", "--silent", "-C", str(ROOT / "layers" / "shared"), "bytecode"),
            f"LAYER_PYTHON={layer}",
            f"PYTHON312={sys.executable}",
        ],
        check=True,
        capture_output=True,
    )
    return [layer, task]


def _environment(stack: Any, tracing: bool, code: list[Path] | None = None) -> dict[str, str]:
    # The local stack's environment: every function's variables (one value per name, see
    # local/runtime.py), with the Braze endpoint and AWS pointed at the stand-ins. `code`: the
    # import path of a deployed copy (deployed_code), read-only as on Lambda; else this tree.
    path = code or [ROOT / "layers" / "shared", ROOT]
    return {
        **os.environ,
        **stack.environment,
        **_LAMBDA_ENVIRONMENT,
        "POWERTOOLS_TRACE_DISABLED": "false" if tracing else "true",
        "PYTHONPATH": os.pathsep.join(map(str, path)),
        **({"PYTHONDONTWRITEBYTECODE": "1"} if code else {}),
        # The functions log at INFO in Lambda; here their lines go to a pipe nobody reads.
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }


def _check(name: str, answer: Any) -> str:
    """The answer the table shows next to the figure: proof the first event was really handled."""
    if isinstance(answer, dict) and "statusCode" in answer:
        return str(answer["statusCode"])
    if isinstance(answer, dict) and "batchItemFailures" in answer:
        return f"{len(answer['batchItemFailures'])} failed"
    return json.dumps(answer)[:40]


def measure(rounds: int = ROUNDS, tracing_modes: tuple[bool, ...] = (False, True)) -> list[dict[str, Any]]:
    results = []
    with quiet_stack() as stack, tempfile.TemporaryDirectory() as directory:
        paths = events(stack, Path(directory))
        code = deployed_code(Path(directory))
        sandbox_calls_before = len(stack.sandbox.requests)
        for tracing in tracing_modes:
            environment = _environment(stack, tracing, code)
            for name, module, _logical_id in HANDLERS:
                result: dict[str, Any] = {"handler": name, "tracing": tracing, "answers": set()}
                for key in ("minimal_wall", "minimal_cpu", "handler_wall", "handler_cpu"):
                    result[key] = []
                for _ in range(rounds):
                    wall, cpu, _answer = cold_start("boto3", paths["boto3"], environment)
                    result["minimal_wall"].append(wall)
                    result["minimal_cpu"].append(cpu)
                    wall, cpu, answer = cold_start(module, paths[module], environment)
                    result["handler_wall"].append(wall)
                    result["handler_cpu"].append(cpu)
                    result["answers"].add(_check(name, answer))
                result["answers"] = sorted(result["answers"])
                results.append(result)
        results.append({"braze_calls": len(stack.sandbox.requests) - sandbox_calls_before})
    return results


def _spread(values: list[float], scale: float = 1000.0, digits: int = 0) -> str:
    return f"{min(values) * scale:.{digits}f}–{max(values) * scale:.{digits}f}"


def rows(results: list[dict[str, Any]]) -> list[list[str]]:
    table = []
    for result in results:
        if "handler" not in result:
            continue
        ratios = [h / b for h, b in zip(result["handler_cpu"], result["minimal_cpu"], strict=True)]
        wall_ratios = [h / b for h, b in zip(result["handler_wall"], result["minimal_wall"], strict=True)]
        table.append(
            [
                result["handler"],
                "on" if result["tracing"] else "off",
                f"{statistics.median(result['minimal_cpu']) * 1000:.0f} ({_spread(result['minimal_cpu'])})",
                f"{statistics.median(result['handler_cpu']) * 1000:.0f} ({_spread(result['handler_cpu'])})",
                f"{statistics.median(ratios):.2f}x ({_spread(ratios, 1, 2)})",
                f"{statistics.median(wall_ratios):.2f}x",
                ", ".join(result["answers"]),
            ]
        )
    return table


def run(rounds: int = ROUNDS) -> list[list[str]]:
    """The measurement in its own process: the stack's functions are imported there, not here."""
    answer = subprocess.run(
        [sys.executable, "-m", "bench.coldstart", "--measure", str(rounds)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if answer.returncode != 0:
        raise RuntimeError(f"cold-start measurement failed: {answer.stderr[-3000:]}")
    return rows(json.loads(answer.stdout.strip().splitlines()[-1]))


def main(rounds: int = ROUNDS) -> None:
    print_table(
        "Cold start: fresh interpreter → first answer (loopback moto + Braze sandbox)",
        ["handler", "X-Ray", "minimal fn CPU ms", "handler CPU ms", "ratio", "wall ratio", "answer"],
        run(rounds),
        f"median (min–max) of {rounds} alternating runs, CPU time of the fresh process (all its threads) from its "
        "first line to the handler's return — the stand-ins' work is theirs, and on this shared machine wall "
        "time is mostly waiting for a core (wall ratio shown too); minimal fn = import boto3 + one SQS send_message; "
        f"events: /users/track with {INGEST_OBJECTS} objects, an SQS batch making one Braze call, "
        "the export samples of events/; target ≤ 1.5x with tracing off (TracingEnabled=false, the default)",
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--measure"]:
        print(json.dumps(measure(int(sys.argv[2]))))
    else:
        main()
