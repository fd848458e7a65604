"""The whole local stack in one object: start it, use it, stop it.

    with Stack(StackOptions(api_port=0, lambda_port=0, aws_port=0, sandbox_port=0)) as stack:
        requests.post(stack.api.url + "/users/track", ...)

Start order: the listening ports first (a port in use is reported before anything else starts),
then moto's server, the template's resources in it, the Braze sandbox, the secrets' local values,
the functions' environment and handlers, and last the API, the Invoke API, the SQS pollers and the
schedules. Everything binds to 127.0.0.1. The environment the functions see (AWS_ENDPOINT_URL,
fake credentials, region, the template's variables) is set process-wide and restored by stop().
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

from local.api_gateway import ApiGatewayServer, Route, function_url_target, http_api_routes
from local.braze_sandbox import BrazeSandbox, SandboxConfig
from local.event_sources import Schedule, SqsEventSource, schedules, sqs_event_sources
from local.google_play import GoogleStandIn
from local.lambda_api import LambdaApiServer
from local.resources import LocalStack, create_resources
from local.runtime import LocalFunction, add_to_path, layer_directories, load_functions, merged_environment
from sam_template import TEMPLATE, load_template

if TYPE_CHECKING:
    from local.app_store_ca import SigningChain

logger = logging.getLogger("local.stack")

REGION = "us-east-1"
EVENTS_DIR = TEMPLATE.parent / "events"
LOCAL_CLIENT_NAME = "local-demo"
# The variables (ARCHITECTURE.md, "Configuration") through which the local stack gives the functions
# their endpoint and secrets; a function that has none of them is simply left alone.
BRAZE_ENDPOINT_VARIABLE = "BRAZE_REST_ENDPOINT"
BRAZE_KEY_SECRET_VARIABLE = "BRAZE_API_KEY_SECRET_ARN"  # noqa: S105 (a variable name)
INGEST_KEYS_SECRET_VARIABLE = "INGEST_KEYS_SECRET_ARN"  # noqa: S105 (a variable name)
BRAZE_EXPORT_BUCKET_VARIABLE = "BRAZE_EXPORT_BUCKET"
WEBHOOK_SECRETS_VARIABLE = "WEBHOOK_SECRETS_ARN"
EXPORT_URL_LOOPBACK_VARIABLE = "EXPORT_URL_ALLOW_LOOPBACK"
ORDER_HOLD_DELAY_VARIABLE = "ORDER_HOLD_DELAY_SECONDS"
LOCAL_ORDER_HOLD_DELAY_SECONDS = 2
GOOGLE_PLAY_KEY_SECRET_VARIABLE = "GOOGLE_PLAY_SERVICE_ACCOUNT_SECRET_ARN"  # noqa: S105 (a variable name)
# The template's parameters that point the function at the Google stand-in (local/google_play.py).
GOOGLE_PLAY_PARAMETERS = {
    "GooglePlayPackageName": "GOOGLE_PLAY_PACKAGE_NAME",
    "GooglePlayPushAudience": "GOOGLE_PLAY_PUSH_AUDIENCE",
    "GooglePlayPushServiceAccount": "GOOGLE_PLAY_PUSH_SERVICE_ACCOUNT",
}
APP_STORE_BUNDLE_VARIABLE = "APP_STORE_BUNDLE_ID"
APP_STORE_ROOTS_VARIABLE = "APP_STORE_TRUSTED_ROOT_SHA256"
# The bundle id of the sample notifications in events/app_store_*.json (and of the tests' notifications).
LOCAL_APP_STORE_BUNDLE_ID = "com.example.braze.forwarder"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


class StackError(RuntimeError):
    """The stack cannot start; the message says why and what to change."""


def default_ingest_key() -> str:
    """The key in events/ingest_track.json's Authorization header, so the sample events replay as they are."""
    try:
        event = json.loads((EVENTS_DIR / "ingest_track.json").read_text())
        scheme, _, key = event["headers"]["authorization"].partition(" ")
        if scheme.lower() == "bearer" and key.strip():
            return key.strip()
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    return "local-ingest-key"


@dataclass
class StackOptions:
    api_port: int = 3000
    lambda_port: int = 3001
    aws_port: int = 5000
    sandbox_port: int = 4000
    braze_endpoint: str | None = None  # a real Braze (or any Braze-compatible) endpoint instead of the sandbox
    braze_api_key: str | None = None  # required with braze_endpoint
    ingest_key: str = field(default_factory=default_ingest_key)
    parameter_overrides: dict[str, str] = field(default_factory=dict)
    # Function settings without a template parameter (docs/configuration.md), e.g.
    # BRAZE_READ_TIMEOUT_SECONDS, as set on a deployed function's environment. A variable the
    # template sets is refused: its parameter, checked as CloudFormation checks it, is the way.
    function_environment: dict[str, str] = field(default_factory=dict)
    # provider → signing secrets given with --webhook-secret (e.g. stripe's whsec_... of `stripe listen`),
    # used instead of the fresh secret the local stack makes for each provider.
    webhook_secrets: dict[str, list[str]] = field(default_factory=dict)
    sandbox_error_rate: float = 0.0
    sandbox_rate_limited_rate: float = 0.0
    sandbox_latency_seconds: float = 0.0
    sandbox_drop_rate: float = 0.0
    sandbox_timeout_rate: float = 0.0
    sandbox_seed: int | None = None
    stack_name: str = "braze-forwarder"
    template_path: Path = TEMPLATE


class _MotoServer(ThreadedMotoServer):
    """moto's threaded server, but a failed bind is reported instead of hanging start() forever.

    ThreadedMotoServer binds in its thread and only sets its ready event after a successful bind
    (moto 5.2.5, pinned in requirements-dev.txt); a port in use would leave start() waiting.
    """

    def __init__(self, port: int) -> None:
        super().__init__(ip_address="127.0.0.1", port=port, verbose=False)
        self.error: BaseException | None = None

    def _server_entry(self) -> None:
        try:
            super()._server_entry()
        except BaseException as exc:  # reported by start_or_raise
            self.error = exc
            self._server_ready_event.set()

    def start_or_raise(self) -> str:
        if self._port:
            # werkzeug answers a port in use with its own message and sys.exit(1) in the server's
            # thread; trying the port first gives the operator ours, which names the flag.
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((self._ip_address, self._port))
        self.start()
        if isinstance(self.error, SystemExit):
            raise OSError(errno.EADDRINUSE, "moto's server could not listen")
        if self.error is not None:
            raise self.error
        host, port = self.get_host_and_port()
        return f"http://{host}:{port}"


class _EndpointSession:
    """What local/resources.py needs of a boto3 session, with every client pointed at moto.

    One client per service, shared: clients are thread-safe (sessions are not, hence the lock), and
    creating one costs a tenth of a second — a large part of the start-up when made per resource.
    """

    def __init__(self, endpoint_url: str, region: str) -> None:
        self.endpoint_url = endpoint_url
        self.region_name = region
        self._session = boto3.session.Session(region_name=region, **_credential_arguments())
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self._session.client(
                    service, endpoint_url=self.endpoint_url, config=Config(max_pool_connections=32)
                )
            return self._clients[service]


class Stack:
    """moto + the template's resources + Braze sandbox + API + Invoke API + event sources."""

    def __init__(self, options: StackOptions | None = None) -> None:
        self.options = options or StackOptions()
        self.api: ApiGatewayServer | None = None
        self.lambda_api: LambdaApiServer | None = None
        self.moto: _MotoServer | None = None
        self.aws_url = ""
        self.sandbox: BrazeSandbox | None = None
        self.braze_url = ""
        self.resources: LocalStack | None = None
        self.functions: dict[str, LocalFunction] = {}
        self.routes: list[Route] = []
        self.function_url: LocalFunction | None = None  # FrontDoor=FunctionUrl: served on the API port
        self.sqs_sources: list[SqsEventSource] = []
        self.schedules: list[Schedule] = []
        self.environment: dict[str, str] = {}
        self.startup_seconds = 0.0
        self.notes: list[str] = []  # what the operator should know (printed by __main__)
        self.webhook_secrets: dict[str, str] = {}  # provider → this run's signing secret (for the demo)
        self.google: GoogleStandIn | None = None  # Google's keys and Play Developer API, on loopback
        self.app_store_chain: SigningChain | None = (
            None  # this run's stand-in for Apple's chain (the demo signs with it)
        )
        self._braze_key = ""
        self._session: _EndpointSession | None = None
        self._serving: list[Any] = []
        self._saved_environ: dict[str, str | None] = {}
        self._started = False

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Stack:
        started = time.monotonic()
        self._started = True
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _start(self) -> None:
        options = self.options
        if options.braze_endpoint and not options.braze_api_key:
            raise StackError(
                "--braze-endpoint needs the workspace's REST API key in the BRAZE_API_KEY environment variable "
                "(an environment variable, not a flag, so it does not show in the process list): "
                "BRAZE_API_KEY=... make run ARGS='--braze-endpoint https://rest.fra-01.braze.eu'"
            )
        template_dir = options.template_path.resolve().parent
        add_to_path([template_dir])
        # Listening sockets first, so a port in use stops the start before anything else runs.
        self.api = _bind("--api-port", options.api_port, ApiGatewayServer)
        self.lambda_api = _bind("--lambda-port", options.lambda_port, LambdaApiServer)
        self.moto = _MotoServer(options.aws_port)
        try:
            self.aws_url = self.moto.start_or_raise()
        except OSError as exc:
            self.moto = None
            raise StackError(_port_problem("--aws-port", options.aws_port, exc)) from None
        # moto's server logs every request through werkzeug; the functions' own logs say more.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)

        session = self._session = _EndpointSession(self.aws_url, REGION)
        template = load_template(options.template_path)
        # Google's keys and Play Developer API stand in on loopback, so the demo's push verifies and
        # looks its purchase up as in AWS; only the local stack and the tests start it.
        self.google = GoogleStandIn()
        self.google.start()
        try:
            self.resources = create_resources(
                session,
                stack_name=options.stack_name,
                parameter_overrides={
                    **self._local_parameters(template),
                    **self._google_parameters(template),
                    **self._app_store_parameters(template),
                    **options.parameter_overrides,
                },
                template=template,
                api_base_url=self.api.url,
            )
            self.functions = load_functions(self.resources, template_dir)
            environment = merged_environment(self.functions)
            self.routes = http_api_routes(self.resources, self.functions)
            self.function_url = function_url_target(self.functions)
        except (KeyError, ValueError) as exc:  # UnresolvedReference, InvalidParameter, ...
            raise StackError(f"template.yaml: {exc}") from None
        add_to_path(layer_directories(self.resources, template_dir))

        templated = sorted(set(options.function_environment) & set(environment))
        if templated:
            raise StackError(
                f"{', '.join(templated)}: set by template.yaml from a parameter; use parameter_overrides "
                "(--parameter-overrides) instead"
            )
        environment.update(self._google_endpoints(environment))
        environment.update(self._order_hold_delay(options.function_environment))
        environment.update(options.function_environment)
        environment.update(self._braze(environment))
        if self.sandbox is not None and environment.get(BRAZE_EXPORT_BUCKET_VARIABLE) == "":
            # No export bucket: the sandbox hands out its download url, which is plain http on
            # loopback; the export functions accept that only when told to (config.py).
            environment[EXPORT_URL_LOOPBACK_VARIABLE] = "true"
            self.notes.append(f"{EXPORT_URL_LOOPBACK_VARIABLE}=true: exports come as the sandbox's http url")
        environment.update(self._app_store_test_ca(environment))
        self._create_named_buckets(environment, session)
        self.environment = {**environment, **self._aws_environment()}
        # Before anything imports the layer: its modules read the environment at import (Powertools'
        # Metrics its namespace, for one), as they would in Lambda.
        self._apply_environment(self.environment)
        if options.braze_endpoint:
            from braze_forwarder.braze.endpoints import check_rest_endpoint  # the sender's own rule

            try:
                check_rest_endpoint(options.braze_endpoint)
            except ValueError as exc:
                raise StackError(f"--braze-endpoint {options.braze_endpoint}: {exc}") from None
        self._put_secrets(environment, session)
        for function in self.functions.values():
            function.load()  # the cold start, now, so an import error stops the start with its cause

        api_ids = {route.api: self.resources.refs.get(route.api, "local") for route in self.routes}
        self.api.account_id = self.resources.account_id
        self.api.configure(self.routes, api_ids, api_docs=self._api_docs)
        if self.function_url is not None:
            self.api.function_url = self.function_url
            public = self.resources.attributes[(f"{self.function_url.logical_id}Url", "FunctionUrl")]
            self.api.function_url_id = public.split("//", 1)[1].split(".", 1)[0]
        self.lambda_api.configure(self.functions, REGION, self.resources.account_id)
        for server, name in ((self.api, "api"), (self.lambda_api, "lambda-api")):
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=name, daemon=True).start()
            self._serving.append(server)
        self.sqs_sources = sqs_event_sources(self.resources, self.functions, lambda: session.client("sqs"))
        for source in self.sqs_sources:
            source.start()
        self.schedules = schedules(self.resources, self.functions)
        for schedule in self.schedules:
            schedule.start()

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        for schedule in self.schedules:
            schedule.stop()
        for source in self.sqs_sources:
            source.signal_stop()
        for source in self.sqs_sources:
            source.stop(timeout=3.0)
        for server in (self.api, self.lambda_api):
            if server is not None:
                if server in self._serving:
                    server.shutdown()  # waits for serve_forever to return: only for a serving server
                server.server_close()
        self._serving.clear()
        if self.sandbox is not None:
            self.sandbox.stop()
        if self.google is not None:
            self.google.stop()
            self.google = None
        if self.moto is not None:
            self._reset_moto()
            self.moto.stop()
            self.moto = None
        self._restore_environment()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- helpers for the demo, tests and operators ----------------------------------------------

    def client(self, service: str) -> Any:
        """A boto3 client of the local AWS (shared; clients are thread-safe)."""
        if self._session is None:
            self._session = _EndpointSession(self.aws_url, REGION)
        return self._session.client(service)

    def function(self, logical_id: str) -> LocalFunction:
        return self.functions[logical_id]

    def queue_depths(self) -> dict[str, dict[str, int]]:
        """Visible, in-flight and delayed messages of every queue of the template."""
        assert self.resources is not None
        sqs = self.client("sqs")
        depths = {}
        for logical_id, resource in self.resources.template["Resources"].items():
            if resource["Type"] != "AWS::SQS::Queue" or logical_id not in self.resources.refs:
                continue
            attributes = sqs.get_queue_attributes(
                QueueUrl=self.resources.refs[logical_id],
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            )["Attributes"]
            depths[logical_id] = {name: int(value) for name, value in attributes.items()}
        return depths

    def wait_until_drained(
        self, timeout: float = 60.0, settle: float = 0.3, queues: Collection[str] | None = None
    ) -> tuple[bool, int]:
        """Wait until no event source has work now; return (drained, messages awaiting a retry).

        `queues`: only the event sources of these queues (logical ids, e.g. "EventsQueue")."""
        sqs = self.client("sqs")
        sources = [
            source
            for source in self.sqs_sources
            if queues is None or any(source.queue_name.endswith(f"-{name}") for name in queues)
        ]
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        awaiting = 0
        while time.monotonic() < deadline:
            states = []
            for source in sources:
                attributes = sqs.get_queue_attributes(
                    QueueUrl=source.queue_url,
                    AttributeNames=[
                        "ApproximateNumberOfMessages",
                        "ApproximateNumberOfMessagesNotVisible",
                        "ApproximateNumberOfMessagesDelayed",
                    ],
                )["Attributes"]
                states.append(source.drained(attributes))
            awaiting = sum(waiting for _, waiting in states)
            if all(done for done, _ in states):
                # Twice in a row, a moment apart: a message may be between two functions.
                if quiet_since is not None and time.monotonic() - quiet_since >= settle:
                    return True, awaiting
                quiet_since = quiet_since or time.monotonic()
            else:
                quiet_since = None
            time.sleep(0.1)
        return False, awaiting

    def describe(self) -> list[str]:
        """What runs where, for the console."""
        assert self.api is not None and self.lambda_api is not None
        lines = [f"  API (HTTP API)      {self.api.url}"]
        lines += [f"      {route.key:<34} → {route.function.logical_id}" for route in self.routes]
        if self.function_url is not None:
            target = self.function_url.logical_id
            lines.append(f"      {'any other request (function URL)':<34} → {target}")
        lines.append(f"  API docs            {self.api.url}/docs   (OpenAPI: /openapi.json; local only)")
        lines.append(f"  Lambda Invoke API   {self.lambda_api.url}   (functions: {', '.join(self.functions)})")
        lines.append(f"  local AWS (moto)    {self.aws_url}")
        if self.sandbox is not None:
            lines.append(f"  Braze sandbox       {self.braze_url}   (GET /sandbox/users, /sandbox/stats)")
        else:
            lines.append(f"  Braze               {self.braze_url}   (a real endpoint: key from BRAZE_API_KEY)")
        for source in self.sqs_sources:
            lines.append(f"  SQS event source    {source.describe()}")
        for schedule in self.schedules:
            lines.append(f"  schedule            {schedule.describe()}")
        return lines

    # -- internals ------------------------------------------------------------------------------

    def _api_docs(self) -> dict[str, Any]:
        """The HTTP API's OpenAPI document, from the code this stack runs, with this stack as its server."""
        from apidoc.document import build, default_servers

        assert self.api is not None
        local = {"url": self.api.url, "description": "This local stack"}
        deployed = [server for server in default_servers() if "127.0.0.1" not in server["url"]]
        return build(self.options.template_path, servers=[local, *deployed])

    def _local_parameters(self, template: dict[str, Any]) -> dict[str, str]:
        """Parameter values the local stack chooses where the template's default cannot work here."""
        if self.options.braze_endpoint:
            return {}
        chosen = {}
        # Braze's export bucket: empty by default (Braze then hands out a download url). The sandbox
        # would serve that url over plain http on loopback, which the export functions rightly refuse;
        # with a bucket (in moto) the sandbox writes the files there, as Braze with own storage does.
        for resource in template.get("Resources", {}).values():
            variables = (resource.get("Properties") or {}).get("Environment", {}).get("Variables", {})
            reference = variables.get(BRAZE_EXPORT_BUCKET_VARIABLE)
            if not (isinstance(reference, dict) and set(reference) == {"Ref"}):
                continue
            parameter = reference["Ref"]
            spec = template.get("Parameters", {}).get(parameter)
            if (
                spec is not None
                and not str(spec.get("Default", ""))
                and parameter not in self.options.parameter_overrides
            ):
                chosen[parameter] = f"{self.options.stack_name}-braze-exports"
        for parameter, value in chosen.items():
            self.notes.append(f"{parameter}={value}: Braze's exports land in that bucket (in moto)")
        return chosen

    def _google_parameters(self, template: dict[str, Any]) -> dict[str, str]:
        """The Google Play parameters the stand-in answers to (package, push audience and account)."""
        assert self.google is not None
        stand_in = self.google.environment()
        known = template.get("Parameters", {})
        return {
            parameter: stand_in[variable]
            for parameter, variable in GOOGLE_PLAY_PARAMETERS.items()
            if parameter in known and parameter not in self.options.parameter_overrides
        }

    def _order_hold_delay(self, given: dict[str, str]) -> dict[str, str]:
        """Objects held behind a delete, alias or merge go back to the queue for ORDER_HOLD_DELAY_SECONDS
        (20 s by default); locally 2 s, so they follow it within seconds (the demo's deletion). The
        fence itself stays: the sender needs it for its Braze timeouts (docs/ordering.md)."""
        if ORDER_HOLD_DELAY_VARIABLE in given:
            return {}
        self.notes.append(
            f"{ORDER_HOLD_DELAY_VARIABLE}={LOCAL_ORDER_HOLD_DELAY_SECONDS}: objects held behind a delete, alias or "
            "merge follow it within seconds (20 s by default); deletes and merges still wait ORDER_FENCE_SECONDS "
            "(about a minute with the sender's default Braze timeouts) before they reach Braze"
        )
        return {ORDER_HOLD_DELAY_VARIABLE: str(LOCAL_ORDER_HOLD_DELAY_SECONDS)}

    def _google_endpoints(self, environment: dict[str, str]) -> dict[str, str]:
        """Google's key, token and API URLs of the stand-in, for the functions that read Google Play pushes."""
        if self.google is None or "GOOGLE_PLAY_PACKAGE_NAME" not in environment:
            return {}
        stand_in = self.google.environment()
        return {name: value for name, value in stand_in.items() if name.endswith("_URL")}

    def _app_store_parameters(self, template: dict[str, Any]) -> dict[str, str]:
        """The sample notifications' bundle id, so the demo's App Store replay is taken (the template's
        default, empty, refuses every App Store notification)."""
        parameters = template.get("Parameters", {})
        if "AppStoreBundleId" not in parameters or "AppStoreBundleId" in self.options.parameter_overrides:
            return {}
        self.notes.append(f"AppStoreBundleId={LOCAL_APP_STORE_BUNDLE_ID}: the bundle id of events/app_store_*.json")
        return {"AppStoreBundleId": LOCAL_APP_STORE_BUNDLE_ID}

    def _app_store_test_ca(self, environment: dict[str, str]) -> dict[str, str]:
        """A test CA made for this run, trusted here beside Apple's root: only the local stack (and the
        tests) ever add one; a deployment's setting is Apple Root CA - G3 alone."""
        if (
            APP_STORE_BUNDLE_VARIABLE not in environment
            or APP_STORE_ROOTS_VARIABLE in self.options.function_environment
        ):
            return {}
        from braze_forwarder.config import APPLE_ROOT_CA_G3_SHA256
        from local.app_store_ca import build_chain

        self.app_store_chain = build_chain()
        root = self.app_store_chain.root_sha256
        self.notes.append(
            f"App Store: notifications signed by this run's test CA (root SHA-256 {root[:16]}…) "
            "are trusted beside Apple's root"
        )
        return {APP_STORE_ROOTS_VARIABLE: f"{APPLE_ROOT_CA_G3_SHA256},{self.app_store_chain.root_sha256}"}

    def _braze(self, environment: dict[str, str]) -> dict[str, str]:
        """Start the sandbox (or take the given endpoint); the endpoint for the functions' environment."""
        options = self.options
        if options.braze_endpoint:
            self.braze_url = options.braze_endpoint.strip().rstrip("/")
            self._braze_key = options.braze_api_key or ""
        else:
            config = SandboxConfig(
                api_key=f"sandbox-{secrets.token_hex(16)}",
                error_rate=options.sandbox_error_rate,
                rate_limited_rate=options.sandbox_rate_limited_rate,
                latency_seconds=options.sandbox_latency_seconds,
                drop_rate=options.sandbox_drop_rate,
                timeout_rate=options.sandbox_timeout_rate,
                seed=options.sandbox_seed,
                export_bucket=environment.get(BRAZE_EXPORT_BUCKET_VARIABLE) or None,
                s3_endpoint_url=self.aws_url,
                s3_region=REGION,
                # Braze's own control group: the demo's export then lands real users in the lake.
                control_group_users=json.loads((EVENTS_DIR / "sandbox_control_group.json").read_text()),
            )
            try:
                self.sandbox = BrazeSandbox(config, port=options.sandbox_port).start()
            except OSError as exc:
                raise StackError(_port_problem("--sandbox-port", options.sandbox_port, exc)) from None
            self.braze_url = self.sandbox.url
            self._braze_key = config.api_key
        return {BRAZE_ENDPOINT_VARIABLE: self.braze_url} if BRAZE_ENDPOINT_VARIABLE in environment else {}

    def _create_named_buckets(self, environment: dict[str, str], session: _EndpointSession) -> None:
        # A bucket a function is given by name but the template does not create (the customer's own,
        # such as Braze's export bucket) exists in a deployment; locally it is created empty.
        assert self.resources is not None
        own = {value for key, value in self.resources.refs.items() if self._type(key) == "AWS::S3::Bucket"}
        s3 = session.client("s3")
        for name, value in environment.items():
            if name.endswith("_BUCKET") and value and value not in own:
                s3.create_bucket(Bucket=value)
                self.notes.append(f"created bucket {value} ({name}; in AWS it is yours, not the template's)")

    def _put_secrets(self, environment: dict[str, str], session: _EndpointSession) -> None:
        from braze_forwarder.ingest.auth import hash_key

        values = {
            INGEST_KEYS_SECRET_VARIABLE: json.dumps(
                {"clients": [{"name": LOCAL_CLIENT_NAME, "key_sha256": hash_key(self.options.ingest_key)}]}
            ),
            BRAZE_KEY_SECRET_VARIABLE: self._braze_key,
        }
        client = session.client("secretsmanager")
        if WEBHOOK_SECRETS_VARIABLE in environment:
            values[WEBHOOK_SECRETS_VARIABLE] = self._webhook_secrets(client, environment[WEBHOOK_SECRETS_VARIABLE])
        if self.google is not None:
            values[GOOGLE_PLAY_KEY_SECRET_VARIABLE] = self.google.service_account_key()
        for variable, value in values.items():
            if variable in environment:
                client.put_secret_value(SecretId=environment[variable], SecretString=value)

    def _webhook_secrets(self, client: Any, secret_arn: str) -> str:
        """A fresh signing secret for every provider the template's secret lists, so the local stack
        verifies webhooks exactly as in AWS, and the demo can sign its samples for now."""
        try:
            document = json.loads(client.get_secret_value(SecretId=secret_arn)["SecretString"])
        except ValueError:
            document = {}
        providers = [name for name in document if isinstance(name, str)] if isinstance(document, dict) else []
        given = self.options.webhook_secrets
        unknown = sorted(set(given) - set(providers))
        if unknown:
            raise StackError(
                f"--webhook-secret {unknown[0]}=...: not a provider of the webhook-secrets secret "
                f"({', '.join(providers)}); App Store notifications need no secret (the local test CA signs them)"
            )
        listed = {
            provider: given.get(provider) or [f"local_{provider}_{secrets.token_hex(20)}"] for provider in providers
        }
        listed.update({provider: values for provider, values in given.items() if values})
        self.webhook_secrets = {provider: values[0] for provider, values in listed.items()}
        for provider in sorted(given):
            self.notes.append(f"{provider}: signing secret from --webhook-secret")
        return json.dumps(listed)

    def _aws_environment(self) -> dict[str, str]:
        """What makes the unchanged functions talk to moto, and never to a real account."""
        no_proxy = {"127.0.0.1", "localhost", *filter(None, os.environ.get("NO_PROXY", "").split(","))}
        return {
            "AWS_ENDPOINT_URL": self.aws_url,
            **FAKE_CREDENTIALS,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            # Ignore the operator's ~/.aws: a profile or a per-service endpoint there would win.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            # An HTTP proxy in the operator's environment must not see loopback traffic.
            "NO_PROXY": ",".join(sorted(no_proxy)),
            "no_proxy": ",".join(sorted(no_proxy)),
        }

    def _apply_environment(self, environment: dict[str, str]) -> None:
        removed = [
            name
            for name in os.environ
            if name.startswith("AWS_ENDPOINT_URL_")
            or name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
        ]
        for name in [*environment, *removed]:
            self._saved_environ.setdefault(name, os.environ.get(name))
        for name in removed:
            del os.environ[name]
        os.environ.update(environment)

    def _restore_environment(self) -> None:
        for name, value in self._saved_environ.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_environ.clear()

    def _reset_moto(self) -> None:
        # moto's state lives in this process; a later stack (or test) must not find this one's.
        import requests

        try:
            requests.post(f"{self.aws_url}/moto-api/reset", timeout=5)
        except requests.RequestException as exc:
            logger.debug("moto reset failed: %s", exc)

    def _type(self, logical_id: str) -> str:
        assert self.resources is not None
        return str(self.resources.template["Resources"].get(logical_id, {}).get("Type", ""))


def _credential_arguments() -> dict[str, str]:
    return {
        "aws_access_key_id": FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "aws_session_token": FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
    }


def _bind(flag: str, port: int, server_class: Callable[[int], Any]) -> Any:
    try:
        return server_class(port)
    except OSError as exc:
        raise StackError(_port_problem(flag, port, exc)) from None


def _port_problem(flag: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} on 127.0.0.1 is already in use ({flag}): another `make run`, or another server? "
            f"Stop it, or choose another port with {flag} PORT ({flag} 0 takes any free port)."
        )
    if exc.errno == errno.EACCES:
        return f"port {port} needs privileges ({flag}); choose a port above 1023, or {flag} 0 for any free port."
    return f"cannot listen on 127.0.0.1:{port} ({flag}): {exc}"
