"""The template's functions, run in this process the way Lambda would run them.

Each `AWS::Serverless::Function` becomes a `LocalFunction`: its handler is imported by CodeUri and
Handler (`functions/ingest_api/` + `app.lambda_handler` → `functions.ingest_api.app`), its
environment is the one CloudFormation would give it (local/resources.py), and `invoke()` calls the
handler with a Lambda-shaped context, within the function's Timeout.

Differences from Lambda, all of them because the functions share one process:

* one environment for all functions: the union of their variables, so two functions may not need
  different values for one name (`merged_environment` refuses to start if they ever do);
* one execution environment per function: invocations of one function run one at a time (module
  globals such as Powertools' resolver and batch processor assume that, as they may in Lambda);
* a handler that runs past its Timeout is reported as timed out, as Lambda would, but its thread
  cannot be stopped: it finishes in the background and its result is discarded.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from local.resources import LocalStack

# Lambda's synchronous invocation payload limit, for requests and responses alike.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024


class LocalRuntimeError(RuntimeError):
    """The template asks for something the local stack cannot run; the message says what."""


@dataclasses.dataclass
class LambdaContext:
    """The context object Lambda's Python runtime passes to a handler."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline_epoch_seconds: float
    identity: Any = None
    client_context: Any = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline_epoch_seconds - time.time()) * 1000))


@dataclasses.dataclass
class Invocation:
    """What one invocation produced: a value, or an error shaped as Lambda reports it."""

    request_id: str
    value: Any = None
    error: dict[str, Any] | None = None  # {"errorMessage", "errorType", ...}: Lambda's error payload
    timed_out: bool = False  # ran past the function's Timeout
    abandoned: bool = False  # the caller stopped waiting first (API Gateway's 30 s)
    duration_seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.error is not None


@dataclasses.dataclass
class FunctionStats:
    invocations: int = 0
    errors: int = 0
    timeouts: int = 0
    seconds: float = 0.0


class LocalFunction:
    """One function of the template, importable and invocable in this process."""

    def __init__(self, stack: LocalStack, logical_id: str, template_dir: Path) -> None:
        properties = stack.template["Resources"][logical_id].get("Properties", {})
        self.logical_id = logical_id
        self.properties = properties
        self.name = str(stack.resolve(properties.get("FunctionName", f"{stack.stack_name}-{logical_id}")))
        self.arn = f"arn:aws:lambda:{stack.region}:{stack.account_id}:function:{self.name}"
        self.timeout_seconds = float(stack.function_property(logical_id, "Timeout", 3))  # Lambda's default
        self.memory_mb = int(stack.function_property(logical_id, "MemorySize", 128))
        self.environment = stack.function_environment(logical_id)
        log_group = (stack.function_property(logical_id, "LoggingConfig", {}) or {}).get("LogGroup")
        self.log_group = str(log_group or f"/aws/lambda/{self.name}")
        self.module_name, self.handler_name = _handler_location(stack, logical_id, template_dir)
        self.stats = FunctionStats()
        self._handler: Callable[[Any, Any], Any] | None = None
        # One execution environment: see the module docstring.
        self._environment_lock = threading.Lock()
        self._stats_lock = threading.Lock()

    def load(self) -> None:
        """Import the handler (the cold start), with the environment already in place."""
        try:
            module = importlib.import_module(self.module_name)
        except Exception as exc:
            raise LocalRuntimeError(
                f"{self.logical_id}: importing {self.module_name} failed: {type(exc).__name__}: {exc}"
            ) from exc
        handler = getattr(module, self.handler_name, None)
        if not callable(handler):
            raise LocalRuntimeError(f"{self.logical_id}: {self.module_name} has no function {self.handler_name}")
        self._handler = handler

    def wrap_handler(self, wrapper: Callable[[Callable[[Any, Any], Any]], Callable[[Any, Any], Any]]) -> None:
        """Replace the handler with wrapper(handler): code that runs inside the execution environment,
        around every invocation (the soak test's kills). A harness hook; the stack never uses it."""
        if self._handler is None:
            self.load()
        assert self._handler is not None
        self._handler = wrapper(self._handler)

    def invoke(self, event: Any, *, wait_seconds: float | None = None) -> Invocation:
        """Run the handler once. wait_seconds caps how long the caller waits (API Gateway's 30 s)."""
        if self._handler is None:
            self.load()
        handler = self._handler
        assert handler is not None
        request_id = str(uuid.uuid4())
        invocation = Invocation(request_id=request_id)
        finished = threading.Event()
        self._environment_lock.acquire()  # released by the worker when the handler really returns
        started = time.time()
        context = LambdaContext(
            function_name=self.name,
            function_version="$LATEST",
            invoked_function_arn=self.arn,
            memory_limit_in_mb=self.memory_mb,
            aws_request_id=request_id,
            log_group_name=self.log_group,
            log_stream_name=time.strftime("%Y/%m/%d/[$LATEST]", time.gmtime(started)) + uuid.uuid4().hex,
            deadline_epoch_seconds=started + self.timeout_seconds,
        )
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                print(f"START RequestId: {request_id} Version: $LATEST", flush=True)  # as Lambda logs it
                outcome["value"] = handler(event, context)
            except BaseException as exc:  # a handler's SystemExit is an error too, not our exit
                outcome["error"] = _error_payload(exc, request_id)
                print(_error_log_line(exc), flush=True)
            finally:
                elapsed = time.time() - started
                print(f"END RequestId: {request_id}", flush=True)
                print(
                    f"REPORT RequestId: {request_id}\tDuration: {elapsed * 1000:.2f} ms\t"
                    f"Memory Size: {self.memory_mb} MB",
                    flush=True,
                )
                self._environment_lock.release()
                finished.set()

        worker = threading.Thread(target=run, name=f"invoke-{self.logical_id}", daemon=True)
        worker.start()
        limit = self.timeout_seconds if wait_seconds is None else min(self.timeout_seconds, wait_seconds)
        done = finished.wait(limit)
        invocation.duration_seconds = time.time() - started
        if not done and limit < self.timeout_seconds:
            invocation.abandoned = True
            invocation.error = {"errorType": "Abandoned", "errorMessage": f"no answer within {limit:.0f} s"}
        elif not done:
            invocation.timed_out = True
            invocation.error = {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"RequestId: {request_id} Error: "
                f"Task timed out after {self.timeout_seconds:.2f} seconds",
            }
        elif "error" in outcome:
            invocation.error = outcome["error"]
        else:
            invocation.value = outcome.get("value")
            invocation.error = _marshal_problem(invocation.value)
            if invocation.error is not None:
                invocation.value = None
        with self._stats_lock:
            self.stats.invocations += 1
            self.stats.errors += invocation.failed
            self.stats.timeouts += invocation.timed_out
            self.stats.seconds += invocation.duration_seconds
        return invocation

    def events(self, *types: str) -> list[tuple[str, dict[str, Any]]]:
        """The function's events of these types: (event name, Properties)."""
        return [
            (name, event.get("Properties") or {})
            for name, event in (self.properties.get("Events") or {}).items()
            if event.get("Type") in types
        ]


def load_functions(stack: LocalStack, template_dir: Path) -> dict[str, LocalFunction]:
    return {logical_id: LocalFunction(stack, logical_id, template_dir) for logical_id in stack.functions()}


def merged_environment(functions: Mapping[str, LocalFunction]) -> dict[str, str]:
    """One process-wide environment for all functions; refuse if two need different values."""
    merged: dict[str, str] = {}
    owner: dict[str, str] = {}
    clashes = []
    for function in functions.values():
        for name, value in function.environment.items():
            if name in merged and merged[name] != value:
                clashes.append(f"{name} is {merged[name]!r} for {owner[name]} but {value!r} for {function.logical_id}")
            merged.setdefault(name, value)
            owner.setdefault(name, function.logical_id)
    if clashes:
        raise LocalRuntimeError(
            "the local stack runs every function in one process, so a variable name needs one value; "
            + "; ".join(clashes)
            + ". Give the variables distinct names in template.yaml."
        )
    return merged


def layer_directories(stack: LocalStack, template_dir: Path) -> list[Path]:
    """ContentUri of every layer of the template the functions use (Lambda's /opt/python)."""
    used: list[str] = []
    for logical_id in stack.functions():
        own = stack.template["Resources"][logical_id].get("Properties", {}).get("Layers", [])
        global_layers = stack.template.get("Globals", {}).get("Function", {}).get("Layers", [])
        for layer in [*global_layers, *own]:  # SAM prepends the global layers
            if isinstance(layer, dict) and set(layer) == {"Ref"} and layer["Ref"] not in used:
                used.append(layer["Ref"])
    directories = []
    for logical_id in used:
        resource = stack.template["Resources"].get(logical_id, {})
        content = (resource.get("Properties") or {}).get("ContentUri")
        if resource.get("Type") == "AWS::Serverless::LayerVersion" and isinstance(content, str):
            directories.append((template_dir / content).resolve())
    return directories


def _handler_location(stack: LocalStack, logical_id: str, template_dir: Path) -> tuple[str, str]:
    properties = stack.template["Resources"][logical_id].get("Properties", {})
    if properties.get("PackageType") == "Image" or "InlineCode" in properties:
        raise LocalRuntimeError(f"{logical_id}: only zip functions with a CodeUri directory run locally")
    code_uri = stack.function_property(logical_id, "CodeUri")
    handler = stack.function_property(logical_id, "Handler")
    if not isinstance(code_uri, str) or not isinstance(handler, str) or "." not in handler:
        raise LocalRuntimeError(f"{logical_id}: needs a CodeUri directory and a Handler such as app.lambda_handler")
    code_dir = (template_dir / code_uri).resolve()
    try:
        relative = code_dir.relative_to(template_dir.resolve())
    except ValueError:
        raise LocalRuntimeError(f"{logical_id}: CodeUri {code_uri} is outside the template's directory") from None
    module_path, handler_name = handler.rsplit(".", 1)
    # Imported as a package path from the repository root, so two functions' app.py never collide.
    return ".".join([*relative.parts, module_path]), handler_name


def _error_payload(exc: BaseException, request_id: str) -> dict[str, Any]:
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "requestId": request_id,
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


def _error_log_line(exc: BaseException) -> str:
    return f"[ERROR] {type(exc).__name__}: {exc}\n" + "".join(
        traceback.format_exception(type(exc), exc, exc.__traceback__)
    )


def _marshal_problem(value: Any) -> dict[str, Any] | None:
    """Lambda serialises the handler's return value to JSON; what it cannot send is an error."""
    try:
        size = len(json.dumps(value).encode("utf-8"))
    except (TypeError, ValueError) as exc:
        return {"errorType": "Runtime.MarshalError", "errorMessage": f"Unable to marshal response: {exc}"}
    if size > MAX_PAYLOAD_BYTES:
        return {
            "errorType": "Function.ResponseSizeTooLarge",
            "errorMessage": f"Response payload size ({size} bytes) exceeded maximum allowed payload size "
            f"({MAX_PAYLOAD_BYTES} bytes).",
        }
    return None


def add_to_path(directories: list[Path]) -> None:
    for directory in reversed(directories):
        if str(directory) not in sys.path:
            sys.path.insert(0, str(directory))
