"""``python -m local_stack`` (what ``make run`` runs) and ``python -m local_stack.send_sqs`` as a developer uses them.

The stack runs in its own process group on free ports; Ctrl-C is a SIGINT to the whole group, as a terminal
sends it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import urllib3

from local_stack.http_api import port_is_free
from segment_forwarder_client import ForwarderClient, Status
from tests.support.stack_client import DEFAULT_SETTINGS, new_id

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment(**ports: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCAL_", "SEGMENT_"))}
    env.update({name: str(port) for name, port in ports.items()})
    env["LOCAL_API_TOKEN"] = "cli-token"
    return env


class Running:
    """A ``python -m local_stack`` process and the lines it printed (read by a thread as they come)."""

    def __init__(self, process: subprocess.Popen[str], ports: dict[str, int]) -> None:
        self.process = process
        self.ports = ports
        self.lines: list[str] = []
        self._new_line = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @classmethod
    def start(cls, **extra_env: str) -> Running:
        """``python -m local_stack`` on free ports in a process group of its own, with ``extra_env`` set."""
        ports = {"LOCAL_API_PORT": _free_port(), "LOCAL_SINK_PORT": _free_port(), "LOCAL_AWS_PORT": _free_port()}
        process = subprocess.Popen(
            [sys.executable, "-m", "local_stack"],
            cwd=ROOT,
            env={**_environment(**ports), **extra_env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        return cls(process, ports)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._new_line:
                self.lines.append(line.rstrip("\n"))
                self._new_line.notify_all()

    def read_until(self, pattern: str, timeout_s: float = 20.0) -> re.Match[str]:
        """Wait for an output line matching ``pattern`` (also among the lines already printed)."""
        compiled = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        with self._new_line:
            while True:
                alive = self._reader.is_alive()
                for line in self.lines:
                    if found := compiled.search(line):
                        return found
                left = deadline - time.monotonic()
                if left <= 0 or not alive:
                    break
                self._new_line.wait(min(left, 0.2))
        pytest.fail(f"no line matching {pattern!r}; output so far:\n" + "\n".join(self.lines))


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    stack = Running.start()
    process = stack.process
    try:
        stack.read_until(r"Ctrl-C stops everything")
        yield stack
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_the_banner_tells_where_everything_is_and_how_long_startup_took(running):
    banner = "\n".join(running.lines)
    api, sink, aws = (running.ports[k] for k in ("LOCAL_API_PORT", "LOCAL_SINK_PORT", "LOCAL_AWS_PORT"))

    seconds = float(running.read_until(r"ready in ([0-9.]+)s").group(1))
    assert seconds < 15
    assert f"http://127.0.0.1:{api}" in banner
    assert f"http://127.0.0.1:{sink}/" in banner
    assert f"http://127.0.0.1:{aws}" in banner
    assert "Bearer cli-token" in banner
    assert "demo -> the sink" in banner and "demo-eu -> the sink" in banner
    assert "IAM check     on: each function's AWS calls are checked against its policy in template.yaml" in banner


def test_without_node_make_run_says_the_iam_check_is_off_and_still_delivers(tmp_path):
    stack = Running.start(PATH=str(tmp_path))  # no node on PATH (the stack itself runs from sys.executable)
    process, ports = stack.process, stack.ports
    try:
        stack.read_until(r"Ctrl-C stops everything")
        http = urllib3.PoolManager(retries=False, timeout=20)
        answer = http.request(
            "POST",
            f"http://127.0.0.1:{ports['LOCAL_API_PORT']}/v1/identify",
            body=json.dumps({"workspace_id": "demo", "visitor_id": new_id("v")}),
            headers={"Authorization": "Bearer cli-token", "Content-Type": "application/json"},
        )
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=20)

    banner = "\n".join(stack.lines)
    assert "IAM check     OFF: node is not on PATH" in banner and "make iam-evaluator" in banner
    assert answer.status == 200 and json.loads(answer.data)["status"] == "delivered"


def test_the_curl_of_the_banner_is_delivered_to_the_sink(running):
    curl = running.read_until(r"curl -s -X POST (\S+) -H 'Authorization: ([^']+)' -H '([^']+)' -d '([^']+)'")
    url, authorization, content_type, data = curl.groups()
    http = urllib3.PoolManager(retries=False, timeout=20)
    header, value = content_type.split(": ", 1)
    body = json.loads(data)
    body["visitor_id"] = new_id("v")  # the banner's own visitor may have been used by a person already

    response = http.request("POST", url, body=json.dumps(body), headers={"Authorization": authorization, header: value})

    assert response.status == 200, response.data
    assert json.loads(response.data)["status"] == "delivered"
    running.read_until(r"POST /v1/assignments 200 delivered 2 msg \d+ms")
    sink = f"http://127.0.0.1:{running.ports['LOCAL_SINK_PORT']}"
    events = json.loads(http.request("GET", f"{sink}/events?region=us").data)
    mine = [e["message"] for e in events if e["message"].get("anonymousId") == body["visitor_id"]]
    assert [(m["type"], m.get("event")) for m in mine] == [("identify", None), ("track", "Experiment Viewed")]


def test_the_python_line_of_the_banner_signs_and_is_delivered(running):
    found = running.read_until(
        r"python: ForwarderClient\('([^']+)', region='([^']+)', credentials=\('(\w+)', '(\w+)'\)\)"
    )
    url, region, access_key, secret_key = found.groups()
    client = ForwarderClient(url, region=region, credentials=(access_key, secret_key))

    result = client.identify("demo", new_id("v"))

    assert result.status == Status.DELIVERED
    running.read_until(r"POST /v1/identify 200 delivered 1 msg \d+ms")


def test_send_sqs_puts_a_message_on_the_running_stacks_queue(running):
    visitor = new_id("v")
    env = _environment(LOCAL_AWS_PORT=running.ports["LOCAL_AWS_PORT"])
    body = json.dumps({"workspace_id": "demo", "visitor_id": visitor})

    sent = subprocess.run(
        [sys.executable, "-m", "local_stack.send_sqs", "identify", body],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert sent.returncode == 0, sent.stderr
    assert "segment-forwarder-local-IdentifyQueue" in sent.stdout
    running.read_until(r"IdentifyQueue: 1 record -> 1 ok, 0 retry")
    sink = f"http://127.0.0.1:{running.ports['LOCAL_SINK_PORT']}"
    http = urllib3.PoolManager(retries=False, timeout=10)
    events = json.loads(http.request("GET", f"{sink}/events").data)
    assert [e["message"]["type"] for e in events if e["message"].get("anonymousId") == visitor] == ["identify"]


def _children(pid: int) -> list[int]:
    listed = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False)
    return [int(line) for line in listed.stdout.split()]


def test_ctrl_c_stops_everything_and_frees_the_ports(running):
    group = running.process.pid
    workers = _children(group)
    assert len(workers) >= 4  # one execution environment per function at least

    os.killpg(group, signal.SIGINT)

    assert running.process.wait(timeout=20) == 0
    running.read_until(r"Stopped in [0-9.]+s")
    assert not any("Traceback" in line or "KeyboardInterrupt" in line for line in running.lines)
    with pytest.raises(ProcessLookupError):  # nothing is left in the stack's process group
        os.killpg(group, 0)
    for pid in workers:  # nor any worker (each runs in a process group of its own)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    for port in running.ports.values():
        assert port_is_free("127.0.0.1", port)


def test_a_busy_port_is_one_clear_line_and_exit_status_2():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = _environment(LOCAL_API_PORT=port, LOCAL_SINK_PORT=_free_port(), LOCAL_AWS_PORT=_free_port())

        result = subprocess.run(
            [sys.executable, "-m", "local_stack"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    assert result.returncode == 2
    errors = result.stderr.strip().splitlines()
    assert errors == [
        f"local_stack: error: port {port} (the HTTP API) is already in use; set LOCAL_API_PORT to another port"
    ]
    assert "Traceback" not in result.stdout


def test_send_sqs_without_a_running_stack_says_so():
    env = _environment(LOCAL_AWS_PORT=_free_port())

    result = subprocess.run(
        [sys.executable, "-m", "local_stack.send_sqs", "assignment", "{}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert "is `make run` running?" in result.stderr
    assert "Traceback" not in result.stderr


def test_with_segment_write_key_demo_goes_to_the_real_segment_and_the_key_is_never_printed():
    key = "real-write-key-" + new_id("k")
    stack = Running.start(SEGMENT_WRITE_KEY=key, SEGMENT_REGION="eu")
    process, ports = stack.process, stack.ports
    try:
        stack.read_until(r"Ctrl-C stops everything")
        http = urllib3.PoolManager(retries=False, timeout=20)
        answer = http.request(
            "GET",
            f"http://127.0.0.1:{ports['LOCAL_API_PORT']}/v1/workspaces/demo/segment",
            headers={"Authorization": "Bearer cli-token"},
        )
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=20)
    banner = "\n".join(stack.lines)

    assert "demo -> the REAL Segment (eu) with the write key from SEGMENT_WRITE_KEY" in banner
    assert "demo-eu not connected" in banner  # a local demo key never goes to the real Segment
    assert key not in banner
    assert answer.status == 200
    assert json.loads(answer.data) == {
        "connected": True,
        "region": "eu",
        "write_key_hint": "…" + key[-4:],
        "settings": DEFAULT_SETTINGS,
        "health": {"last_delivery": None, "last_failure": None, "last_24h": {"delivered": 0, "failed": 0, "parked": 0}},
    }


# -- LOCAL_PARAMETERS: template parameters for drills -------------------------------------------------------------


def test_local_parameters_reach_the_stack_and_the_banner_lists_them():
    stack = Running.start(LOCAL_PARAMETERS="RetryHorizonMinutes=2, RetryBackoffCapSeconds=5,MaxReceiveCount=7")
    process, ports = stack.process, stack.ports
    try:
        stack.read_until(r"Ctrl-C stops everything")
        sqs = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        ).client("sqs", endpoint_url=f"http://127.0.0.1:{ports['LOCAL_AWS_PORT']}")
        url = sqs.get_queue_url(QueueName="segment-forwarder-local-ConversionQueue")["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=20)

    banner = "\n".join(stack.lines)
    assert (
        "Parameters    RetryHorizonMinutes=2, RetryBackoffCapSeconds=5, MaxReceiveCount=7   "
        "(LOCAL_PARAMETERS; every other parameter at the template's default)"
    ) in banner
    assert json.loads(attributes["RedrivePolicy"])["maxReceiveCount"] == 7  # the template's queue, overridden
    assert attributes["MessageRetentionPeriod"] == "1209600"  # not overridden: the template's


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("RetryHorizon=2", "RetryHorizon is not a parameter of the template (known: AlarmEmail, "),
        (
            "RetryHorizonMinutes=2;RetryBackoffCapSeconds=5",
            "RetryHorizonMinutes='2;RetryBackoffCapSeconds=5' is not a number",
        ),
        ("RetryHorizonMinutes", "'RetryHorizonMinutes' is not Name=Value (pairs are separated by commas)"),
        ("RetryHorizonMinutes=0", "RetryHorizonMinutes='0' is below MinValue 1"),
        ("RetryBackoffCapSeconds=5,RetryBackoffCapSeconds=6", "RetryBackoffCapSeconds is given twice"),
        ("ApplicationLogLevel=LOUD", "ApplicationLogLevel='LOUD' is not one of DEBUG, INFO, WARN, ERROR"),
        ("AlarmEmail=not-an-address", "AlarmEmail='not-an-address' does not match"),
    ],
)
def test_a_bad_local_parameter_is_one_clear_line_and_exit_status_2(value, error):
    env = {**_environment(LOCAL_API_PORT=_free_port(), LOCAL_SINK_PORT=_free_port()), "LOCAL_PARAMETERS": value}

    result = subprocess.run(
        [sys.executable, "-m", "local_stack"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"local_stack: error: LOCAL_PARAMETERS: {error}"), line
    assert "Starting" not in result.stdout  # refused before anything starts
