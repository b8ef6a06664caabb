"""A function whose code does not import yet: the stack still starts, answers 503, and picks the code up later.

The stack runs a copy of template.yaml whose ConnectionFunction points at a temporary code directory; its
``app.py`` imports a module that only appears in the middle of the test, as when someone is still writing it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_stack.stack import LocalStack

from .conftest import TOKEN, Api, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def code_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("connection")
    (directory / "app.py").write_text("from work_in_progress import handler\n", encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def stack(code_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    text = (ROOT / "template.yaml").read_text(encoding="utf-8")
    text = re.sub(r"CodeUri: functions/connection/", f"CodeUri: {code_dir}/", text)
    text = re.sub(r"CodeUri: functions/", f"CodeUri: {ROOT}/functions/", text)
    text = re.sub(r"ContentUri: layers/", f"ContentUri: {ROOT}/layers/", text)
    template = tmp_path_factory.mktemp("template") / "template.yaml"
    template.write_text(text, encoding="utf-8")
    with LocalStack(api_port=0, sink_port=0, aws_port=0, token=TOKEN, template_path=template, log=print) as started:
        yield started


def test_the_stack_starts_and_the_broken_function_answers_503_with_the_reason(stack, api: Api):
    assert "work_in_progress" in stack.unavailable_functions()["ConnectionFunction"]

    status, body = api.request("GET", "/v1/workspaces/demo/segment")

    assert status == 503
    assert body["error"]["code"] == "function_unavailable"
    assert "No module named 'work_in_progress'" in body["error"]["message"]
    # The other functions are not affected.
    assert api.post("/v1/identify", {"workspace_id": "demo", "visitor_id": "v-lifecycle"})[0] == 200


def test_the_function_is_picked_up_once_its_code_imports(stack, api: Api, code_dir: Path):
    (code_dir / "work_in_progress.py").write_text(
        "import json\n\n\n"
        "def handler(event, context):\n"
        '    return {"statusCode": 200, "body": json.dumps({"connected": False, '
        '"workspace": event["pathParameters"]["workspace_id"], "left_ms": context.get_remaining_time_in_millis()})}\n',
        encoding="utf-8",
    )

    status, body = wait_for(lambda: (answer := api.request("GET", "/v1/workspaces/demo/segment"))[0] == 200 and answer)

    assert status == 200
    assert body["workspace"] == "demo"
    assert 25_000 < body["left_ms"] <= 30_000  # the template's Timeout (30 s), counting down
