"""The whole forwarder on one machine: AWS endpoint (moto), functions, HTTP API, SQS pollers and Segment sink.

Everything comes from ``template.yaml``: the table, queues and dead-letter queues (with their redrive policies),
each function's environment, handler, timeout and layers, the HTTP routes and the SQS event sources::

    from local_stack.stack import LocalStack

    with LocalStack(api_port=0, sink_port=0, aws_port=0, token="t") as stack:   # 0: any free port
        stack.api_url                          # "http://127.0.0.1:<port>"  (SigV4 testing/testing, or Bearer t)
        stack.sink                             # the SegmentSink: .events(), .set_fault(...), .url
        stack.aws_endpoint                     # "http://127.0.0.1:<port>" for boto3 (dummy credentials)
        stack.client("sqs")                    # a boto3 client on that endpoint
        stack.queue_url("AssignmentQueue")     # any queue of the template, by logical id
        stack.dlq_url("AssignmentQueue")       # the dead-letter queue of that queue's redrive policy
        stack.write_key("demo")                # the demo workspaces' local write keys
        with stack.pollers_paused():           # no SQS record is taken by a function meanwhile
            ...

``python -m local_stack`` (``make run``) runs the same in the foreground on ports 3000 (API), 3001 (sink) and
4566 (AWS).

Overrides for tests, all of which override the template (the defaults keep it as it is):

* ``parameters``: template parameters, e.g. ``{"MaxReceiveCount": "2", "HttpDeliveryBudgetSeconds": "1"}``;
* ``environment``: function environment variables set after the template's, e.g. ``{"LEASE_SECONDS": "5"}``;
* ``visibility_timeout_s``: the VisibilityTimeout of every queue that sets one (the template says 180 s);
* ``function_timeout_s``: every function's Timeout (the template says 30 s);
* ``integration_timeout_s``: the HTTP API's integration timeout (30 s, an HTTP API's maximum; 0.05 to 30);
* ``max_workers``: execution environments per function (Lambda's concurrency, small here);
* ``iam_check``: each function's AWS calls allowed only by its policy in the template (``local_stack.iam``; each
  function signs with its own key, see ``function_credentials``). None (the default): on when the evaluator (node
  and ``node_tools/node_modules``) is installed, else off with the reason in ``iam_off_reason`` and the banner; True:
  required (RuntimeError without the evaluator); False: off. ``stack.iam`` records every decision.

Workspaces ``demo`` (region us) and ``demo-eu`` (region eu) are connected to the sink. With
``segment_write_key``, ``demo`` is connected to the real Segment instead (region ``segment_region``): that
region's functions then use the template's real Segment URL, and ``demo-eu`` is only connected when its region
still points at the sink.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import boto3
import urllib3
from botocore.config import Config
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

from . import moto_dynamodb, strict_sqs
from .http_api import INTEGRATION_TIMEOUT_S, HttpApi, Route, port_is_free
from .iam import EvaluatorError, IamCheck, PolicyEvaluator, access_key_id, evaluator_unavailable, function_identities
from .lambda_pool import FunctionPool, FunctionSpec
from .segment_sink import SegmentSink
from .sqs_poller import LONG_POLL_S, SqsPoller
from .template import ACCOUNT_ID, TEMPLATE_PATH, Resource, Template

LogFn = Callable[[str], None]

DEFAULT_TOKEN = "local-dev-token"  # noqa: S105 - the documented local bearer token, not a secret
REGION = "us-east-1"
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
DEMO_WORKSPACES = {"demo": "us", "demo-eu": "eu"}
DEMO_WRITE_KEYS = {"demo": "local-demo-write-key-us", "demo-eu": "local-demo-write-key-eu"}
SEGMENT_ENDPOINT_VARS = {"us": "SEGMENT_US_ENDPOINT", "eu": "SEGMENT_EU_ENDPOINT"}
# Port variables: (what listens there, environment variable of `python -m local_stack`).
PORT_VARIABLES = {
    "api": ("the HTTP API", "LOCAL_API_PORT"),
    "sink": ("the Segment sink", "LOCAL_SINK_PORT"),
    "aws": ("the AWS endpoint (moto)", "LOCAL_AWS_PORT"),
}


_running: LocalStack | None = None  # the stack running in this process, if any
_running_lock = threading.Lock()


def _quietly(step: Callable[[], None]) -> None:
    with contextlib.suppress(Exception):
        step()


class PortInUseError(OSError):
    """A port of the local stack cannot be bound; the message names the port and the variable to change."""

    def __init__(self, port: int, role: str) -> None:
        what, variable = PORT_VARIABLES[role]
        super().__init__(f"port {port} ({what}) is already in use; set {variable} to another port")
        self.port = port
        self.role = role
        self.variable = variable


class _MotoServer(ThreadedMotoServer):
    """ThreadedMotoServer that reports a failed bind instead of waiting for it forever, with DynamoDB as strict as
    AWS (``moto_dynamodb``: atomic item operations, batch limits; stale reads and engine faults as
    ``LOCAL_DYNAMODB_STALE_READS`` / ``LOCAL_DYNAMODB_FAULTS`` ask, switchable at ``/_local/dynamodb``), SQS
    refusing what SQS refuses (``strict_sqs``) and moto's WSGI app behind ``wrap`` (the IAM check)."""

    error: BaseException | None = None

    def __init__(self, *args: Any, wrap: Callable[[Any], Any] | None = None, **kwargs: Any) -> None:
        moto_dynamodb.make_strict()
        moto_dynamodb.configure_from_environment()
        strict_sqs.make_strict()
        super().__init__(*args, **kwargs)
        self._wrap = wrap

    def _server_entry(self) -> None:
        try:
            app: Any = moto_dynamodb.control_middleware(DomainDispatcherApplication(create_backend_app))
            if self._wrap is not None:
                app = self._wrap(app)
            self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
            self._server_ready_event.set()
            self._server.serve_forever()
        except BaseException as exc:
            self.error = exc
            self._server_ready_event.set()

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self.stop()
            self._server.server_close()


class _EndpointSession:
    """A boto3 session whose clients all talk to the local endpoint (what ``Template.create_resources`` needs)."""

    def __init__(self, endpoint: str, region: str) -> None:
        self._session = boto3.session.Session(
            aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=region,
        )
        self._endpoint = endpoint
        self._lock = threading.Lock()

    def client(self, service: str, **kwargs: Any) -> Any:
        """A client of ``service`` on the local endpoint."""
        with self._lock:  # creating clients from one session is not thread-safe
            # boto3-stubs type clients of literal service names only; this factory serves any service
            return self._session.client(service, endpoint_url=self._endpoint, **kwargs)  # type: ignore[call-overload]


class LocalStack:
    """The local stack; see the module docstring. ``start()`` returns self; ``stop()`` is idempotent."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        api_port: int = 3000,
        sink_port: int = 3001,
        aws_port: int = 4566,
        token: str = DEFAULT_TOKEN,
        parameters: dict[str, str] | None = None,
        environment: dict[str, str] | None = None,
        visibility_timeout_s: int | None = None,
        function_timeout_s: float | None = None,
        integration_timeout_s: float = INTEGRATION_TIMEOUT_S,
        max_workers: int = 3,
        segment_write_key: str | None = None,
        segment_region: str = "us",
        template_path: Path = TEMPLATE_PATH,
        log: LogFn | None = None,
        function_logs: bool = True,
        iam_check: bool | None = None,
    ) -> None:
        if segment_region not in SEGMENT_ENDPOINT_VARS:
            raise ValueError(f"segment_region must be us or eu, not {segment_region!r}")
        self.host = host
        self.token = token
        self._ports = {"api": api_port, "sink": sink_port, "aws": aws_port}
        self._parameters = dict(parameters or {})
        self._environment = dict(environment or {})
        self._visibility_timeout_s = visibility_timeout_s
        self._function_timeout_s = function_timeout_s
        self._integration_timeout_s = integration_timeout_s
        self._max_workers = max_workers
        self.segment_write_key = segment_write_key or None
        self.segment_region = segment_region
        self._template_path = template_path
        self._log = log
        self._function_logs = function_logs
        self._log_lock = threading.Lock()

        self._template: Template | None = None
        self.resources: dict[str, Resource] = {}
        self.ready_s: float | None = None
        self._moto: _MotoServer | None = None
        self._session: _EndpointSession | None = None
        self._sink: SegmentSink | None = None
        self._pools: dict[str, FunctionPool] = {}
        self._api: HttpApi | None = None
        self._pollers: list[SqsPoller] = []
        self._connected: dict[str, tuple[str, str]] = {}  # workspace -> (write key, region)
        self._init_errors: dict[str, str] = {}
        self._iam_check = iam_check
        self.iam: IamCheck | None = None
        self.iam_off_reason: str | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start everything; PortInUseError when a port is taken. Everything started is stopped on failure.

        One LocalStack runs per process at a time (moto's state is per process): RuntimeError otherwise.
        """
        global _running
        with _running_lock:
            if _running is not None:
                raise RuntimeError("another LocalStack is running in this process; stop it first")
            _running = self
        started = time.monotonic()
        try:
            self._check_ports()
            self._prepare_iam()
            self._sink = SegmentSink(self.host, self._ports["sink"], log=self._sink_log).start()
            self._start_aws()
            self._create_resources()
            self._start_functions()
            self._connect_workspaces()
            self._api = HttpApi(
                [Route.parse(method, path, function) for method, path, function in self.template.http_routes()],
                invoke=self._invoke,
                token=self.token,
                credentials=(DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"], DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]),
                host=self.host,
                port=self._ports["api"],
                log=self.emit,
                region=REGION,
                integration_timeout_s=self._integration_timeout_s,
            ).start()
            self._init_errors = {}
            for name, pool in self._pools.items():
                error = pool.wait_ready()
                if error is not None:
                    self._init_errors[name] = error
            self._start_pollers()
        except BaseException:
            self.stop()
            raise
        self.ready_s = time.monotonic() - started
        return self

    def stop(self) -> None:
        """Stop pollers, API, workers, sink and AWS endpoint; frees every port. Safe to call twice."""
        global _running
        try:
            self._stop()
        finally:
            with _running_lock:
                if _running is self:
                    _running = None

    def _stop(self) -> None:
        for poller in self._pollers:
            poller.stop(timeout_s=0)  # signal only; joined below
        if self._api is not None:
            with contextlib.suppress(Exception):
                self._api.stop()
            self._api = None
        for pool in self._pools.values():
            pool.begin_stop()  # idle workers exit at once; busy ones finish or are terminated
        # The rest waits on different things (worker exits, a poller's long poll, server poll loops): in parallel.
        steps: list[Callable[[], None]] = [pool.stop for pool in self._pools.values()]
        # A poller inside a long poll (up to LONG_POLL_S) is not waited for: it sees the stop flag when the poll
        # returns and ends (a daemon thread); what it may have received is discarded with the endpoint.
        steps += [functools.partial(poller.stop, timeout_s=0.25) for poller in self._pollers]
        if self._sink is not None:
            steps.append(self._sink.stop)
        if self._moto is not None:
            steps.append(self._moto.close)
        threads = [threading.Thread(target=_quietly, args=(step,), daemon=True) for step in steps]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=15)
        self._pools, self._pollers, self._sink, self._moto = {}, [], None, None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what tests and the banner use ------------------------------------------------------------------------

    @property
    def template(self) -> Template:
        """The template as loaded with the overrides (after ``start``)."""
        if self._template is None:
            raise RuntimeError("LocalStack not started")
        return self._template

    @property
    def api_url(self) -> str:
        """Base URL of the HTTP API."""
        if self._api is None:
            raise RuntimeError("LocalStack not started")
        return self._api.url

    @property
    def sink(self) -> SegmentSink:
        """The local Segment sink."""
        if self._sink is None:
            raise RuntimeError("LocalStack not started")
        return self._sink

    @property
    def aws_endpoint(self) -> str:
        """The AWS endpoint URL (moto) for boto3's ``endpoint_url`` or ``AWS_ENDPOINT_URL``."""
        if self._moto is None:
            raise RuntimeError("LocalStack not started")
        host, port = self._moto.get_host_and_port()
        return f"http://{host}:{port}"

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client on the local AWS endpoint (dummy credentials, us-east-1)."""
        if self._session is None:
            raise RuntimeError("LocalStack not started")
        return self._session.client(service, **kwargs)

    def function_credentials(self, function: str) -> dict[str, str]:
        """The credentials a function's workers sign with (its own access key id), as environment variables."""
        return {
            "AWS_ACCESS_KEY_ID": access_key_id(self.template.stack_name, function),
            "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "AWS_SESSION_TOKEN": f"local-session-of-{function}",
        }

    def function_client(self, function: str, service: str, **kwargs: Any) -> Any:
        """A boto3 client signing as the function does (what its IAM policy allows, when the check is on)."""
        credentials = self.function_credentials(function)
        return boto3.session.Session(
            aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=credentials["AWS_SESSION_TOKEN"],
            region_name=REGION,
        ).client(service, endpoint_url=self.aws_endpoint, **kwargs)  # type: ignore[call-overload]  # any service

    def queue_url(self, logical_id: str) -> str:
        """URL of a queue of the template, by logical id (``AssignmentQueue``, ``AssignmentDeadLetterQueue``)."""
        return self.resources[logical_id].ref

    def dlq_url(self, logical_id: str) -> str:
        """URL of the dead-letter queue that the queue ``logical_id``'s redrive policy targets."""
        policy = self.template.resources[logical_id]["Properties"]["RedrivePolicy"]
        target = policy["deadLetterTargetArn"]["Fn::GetAtt"][0]
        return self.resources[target].ref

    @property
    def table_name(self) -> str:
        """The dedup table's name."""
        tables = self.template.of_type("AWS::DynamoDB::Table")
        return self.resources[next(iter(tables))].ref

    @property
    def secret_prefix(self) -> str:
        """Workspace secrets are ``<prefix>/<workspace_id>`` (the template's effective prefix)."""
        return self.template.secret_prefix

    def write_key(self, workspace: str) -> str:
        """Write key a connected demo workspace sends with (a local key, or the real one for ``demo``)."""
        return self._connected[workspace][0]

    def connected_workspaces(self) -> dict[str, str]:
        """Connected demo workspaces and their regions."""
        return {name: region for name, (_key, region) in self._connected.items()}

    def unavailable_functions(self) -> dict[str, str]:
        """Functions whose INIT failed at start (for instance code that does not import yet), with the reason."""
        return {name: pool.init_error for name, pool in self._pools.items() if pool.init_error is not None}

    def worker_pids(self, function: str) -> list[int]:
        """Process ids of a function's live workers (its execution environments)."""
        return self._pools[function].pids()

    def pause_pollers(self) -> None:
        """Stop feeding queues to the functions (waits for batches in hand)."""
        for poller in self._pollers:
            poller.request_pause()
        for poller in self._pollers:
            poller.wait_paused()

    def resume_pollers(self) -> None:
        """Feed the queues again."""
        for poller in self._pollers:
            poller.resume()

    @contextlib.contextmanager
    def pollers_paused(self) -> Iterator[None]:
        """``with stack.pollers_paused(): ...``: no function takes SQS records inside the block."""
        self.pause_pollers()
        try:
            yield
        finally:
            self.resume_pollers()

    def emit(self, line: str) -> None:
        """Send one line to the log (thread-safe)."""
        if self._log is not None:
            with self._log_lock:
                self._log(line)

    def _sink_log(self, line: str) -> None:
        self.emit(f"sink: {line}")

    def _function_log(self, line: str) -> None:
        if self._function_logs:
            self.emit(line)

    # -- steps ----------------------------------------------------------------------------------------------

    def _check_ports(self) -> None:
        for role, port in self._ports.items():
            if port and not port_is_free(self.host, port):
                raise PortInUseError(port, role)

    def _prepare_iam(self) -> None:
        self.iam, self.iam_off_reason = None, None
        if self._iam_check is False:
            self.iam_off_reason = "turned off (iam_check=False)"
            return
        reason = evaluator_unavailable()
        evaluator = None
        if reason is None:
            try:
                evaluator = PolicyEvaluator.shared()
            except EvaluatorError as exc:
                reason = str(exc)
        if evaluator is None:
            if self._iam_check:
                raise RuntimeError(f"the IAM check is required but cannot run: {reason}")
            self.iam_off_reason = reason
            return
        self.iam = IamCheck(evaluator, log=self.emit)

    def _start_aws(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log line per AWS call
        wrap = self.iam.wsgi if self.iam is not None else None
        moto = _MotoServer(ip_address=self.host, port=self._ports["aws"], verbose=False, wrap=wrap)
        self._moto = moto
        moto.start()
        if moto.error is not None:
            if self._ports["aws"]:
                raise PortInUseError(self._ports["aws"], "aws")
            raise OSError(f"the AWS endpoint could not start: {moto.error}")
        # moto keeps its state per process: start from an empty account, whatever ran here before.
        urllib3.request("POST", f"{self.aws_endpoint}/moto-api/reset", timeout=10, retries=False)
        self._session = _EndpointSession(self.aws_endpoint, REGION)

    def _create_resources(self) -> None:
        template = Template.load(self._template_path, parameters=self._parameters, region=REGION)
        if self._visibility_timeout_s is not None:
            for spec in template.of_type("AWS::SQS::Queue").values():
                if "VisibilityTimeout" in spec.get("Properties", {}):
                    spec["Properties"]["VisibilityTimeout"] = int(self._visibility_timeout_s)
        self._template = template
        assert self._session is not None
        self.resources = template.create_resources(self._session)
        if self.iam is not None:
            self.iam.configure(function_identities(template, self.resources).values())

    def _segment_endpoints(self) -> dict[str, str]:
        endpoints = {region: self.sink.region_url(region) for region in SEGMENT_ENDPOINT_VARS}
        if self.segment_write_key:
            del endpoints[self.segment_region]  # that region keeps the template's real Segment URL
        return endpoints

    def _function_spec(self, name: str) -> FunctionSpec:
        template = self.template
        base = self._template_path.parent
        code_dir = (base / str(template.function_property(name, "CodeUri"))).resolve()
        layer_dirs = []
        for layer in template.function_property(name, "Layers") or []:
            layer_id = layer.get("Ref") if isinstance(layer, dict) else None
            if layer_id in template.resources:
                layer_dirs.append((base / template.resources[layer_id]["Properties"]["ContentUri"]).resolve())
        timeout_s = self._function_timeout_s or float(template.function_property(name, "Timeout") or 3)
        memory_mb = int(template.function_property(name, "MemorySize") or 128)
        handler = str(template.function_property(name, "Handler"))
        physical = f"{template.stack_name}-{name}"
        environment = {
            # What the Lambda runtime sets; nothing of the developer's own environment leaks in.
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "TZ": ":UTC",
            "LAMBDA_TASK_ROOT": str(code_dir),
            "_HANDLER": handler,
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
            "AWS_LAMBDA_FUNCTION_NAME": physical,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{physical}",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true",
            **template.function_environment(name, self.resources),
            # What Lambda sets from the LoggingConfig (AWS_LAMBDA_LOG_FORMAT, AWS_LAMBDA_LOG_LEVEL): reserved, so
            # after the function's own variables.
            **template.logging_config(name).environment(),
            **self.function_credentials(name),
            "AWS_ENDPOINT_URL": self.aws_endpoint,
            **{SEGMENT_ENDPOINT_VARS[region]: url for region, url in self._segment_endpoints().items()},
            "POWERTOOLS_METRICS_DISABLED": "true",
            **self._environment,
        }
        return FunctionSpec(
            name=name,
            code_dir=code_dir,
            handler=handler,
            timeout_s=timeout_s,
            memory_mb=memory_mb,
            environment=environment,
            layer_dirs=tuple(layer_dirs),
            function_name=physical,
            region=REGION,
            account_id=ACCOUNT_ID,
        )

    def _start_functions(self) -> None:
        for name in self.template.functions():
            pool = FunctionPool(self._function_spec(name), max_workers=self._max_workers, log=self._function_log)
            self._pools[name] = pool
            pool.start()  # INIT runs in the worker while the rest starts

    def _invoke(self, function: str, event: dict[str, Any]) -> Any:
        return self._pools[function].invoke(event)

    def _connect_workspaces(self) -> None:
        secrets = self.client("secretsmanager")
        endpoints = self._segment_endpoints()
        wanted: dict[str, tuple[str, str]] = {}
        for workspace, region in DEMO_WORKSPACES.items():
            if workspace == "demo" and self.segment_write_key:
                wanted[workspace] = (self.segment_write_key, self.segment_region)
            elif region in endpoints:  # never send a local demo key to the real Segment
                wanted[workspace] = (DEMO_WRITE_KEYS[workspace], region)
        for workspace, (write_key, region) in wanted.items():
            secrets.create_secret(
                Name=f"{self.secret_prefix}/{workspace}",
                SecretString=json.dumps({"write_key": write_key, "region": region}),
            )
        self._connected = wanted

    def _start_pollers(self) -> None:
        for source in self.template.sqs_sources():
            queue = self.resources[source.queue]
            sqs = self.client("sqs", config=Config(read_timeout=LONG_POLL_S + 10, retries={"max_attempts": 1}))
            pool = self._pools[source.function]
            poller = SqsPoller(
                source,
                queue.ref,
                queue.attributes["Arn"],
                sqs,
                invoke=pool.invoke,
                log=self.emit,
                region=REGION,
            )
            self._pollers.append(poller)
            poller.start()

    # -- banner ---------------------------------------------------------------------------------------------

    def banner(self, ready_s: float | None = None, overrides: Mapping[str, str] | None = None) -> str:
        """What ``make run`` prints once ready: addresses, token, a curl to paste, connected workspaces.

        ``ready_s`` is the start-up time to show (default: the time ``start()`` took); ``overrides`` are the template
        parameters the user set (``LOCAL_PARAMETERS``), listed as such.
        """
        example = json.dumps(
            {"workspace_id": "demo", "visitor_id": "v-1001", "test_id": "t-checkout", "variant_id": "b"},
            separators=(",", ":"),
        )
        lines = [
            f"Segment forwarder local stack ready in {ready_s or self.ready_s or 0:.1f}s (from template.yaml)",
            f"  HTTP API      {self.api_url}   (SigV4: execute-api, {REGION}, the AWS endpoint's dummy credentials;"
            f" or Authorization: Bearer {self.token})",
            f"  Segment sink  {self.sink.url}/   (events: {self.sink.url}/events)",
            f"  AWS endpoint  {self.aws_endpoint}   (moto; AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing)",
            (
                "  IAM check     on: each function's AWS calls are checked against its policy in template.yaml"
                " (a denial is logged as 'iam: DENIED ...')"
                if self.iam is not None
                else f"  IAM check     OFF: {self.iam_off_reason}"
            ),
            "  Routes        "
            + ", ".join(
                f"{route.method} {route.path}" for route in (self._api.routes if self._api is not None else ())
            ),
            "  Queues        "
            + ", ".join(
                f"{poller.source.queue} -> {poller.source.function} (batch {poller.source.batch_size})"
                for poller in self._pollers
            ),
        ]
        if overrides:
            lines.append(
                "  Parameters    "
                + ", ".join(f"{name}={value}" for name, value in overrides.items())
                + "   (LOCAL_PARAMETERS; every other parameter at the template's default)"
            )
        for workspace, (_key, region) in self._connected.items():
            if workspace == "demo" and self.segment_write_key:
                where = f"the REAL Segment ({region}) with the write key from SEGMENT_WRITE_KEY"
            else:
                where = f"the sink ({self.sink.region_url(region)})"
            lines.append(f"  Workspace     {workspace} -> {where}")
        for workspace in DEMO_WORKSPACES:
            if workspace not in self._connected:
                lines.append(f"  Workspace     {workspace} not connected (its region uses the real Segment)")
        for name, error in self.unavailable_functions().items():
            lines.append(f"  NOT RUNNING   {name}: {error} (retried on its next request)")
        lines += [
            "",
            "Try:",
            f"  curl -s -X POST {self.api_url}/v1/assignments -H 'Authorization: Bearer {self.token}' "
            f"-H 'Content-Type: application/json' -d '{example}'",
            '  make send-sqs KIND=identify BODY=\'{"workspace_id":"demo","visitor_id":"v-1002"}\'   (the queue path)',
            f"  python: ForwarderClient({self.api_url!r}, region={REGION!r}, credentials=('testing', 'testing'))"
            "   (segment_forwarder_client, signed as on AWS)",
            f"  open {self.sink.url}/   (what Segment received)",
            "Ctrl-C stops everything.",
        ]
        return "\n".join(lines)
