"""The `lambda_function` fixture, as users use it: their test files run under a subprocess pytest."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from tests.helpers import REPO

USER_TESTS = """
import json
import pytest
from rie.testing import InvokeError

def test_handler_env_and_errors(lambda_function):
    fn = lambda_function(handler="app.handler", task_root="src", env={"STAGE": "test"}, timeout=2)
    ok = fn.invoke({"name": "x"})
    assert ok.payload == {"stage": "test", "name": "x"} and ok.function_error is None
    assert ok.request_id and f"START RequestId: {ok.request_id}" in ok.log
    failed = fn.invoke({"fail": True})
    assert failed.function_error == "Unhandled"
    assert failed.payload["errorType"] == "KeyError"
    text = fn.invoke("not an object")
    assert text.function_error == "Unhandled"
    raw = fn.invoke({"raw": True})
    assert raw.payload == b"plain text"
    with pytest.raises(InvokeError) as info:
        fn.invoke({}, function="nobody")
    assert info.value.status == 404 and info.value.error_type == "ResourceNotFoundException"
    fn.wait_for_log(r"REPORT RequestId: " + failed.request_id)

def test_template_and_name(lambda_function):
    fn = lambda_function(template="template.yaml", name="Greeter")
    assert fn.invoke({"name": "t"}).payload == {"stage": "from-template", "name": "t"}
    assert fn.invoke({"name": "o"}, function="Other").payload["stage"] == "other"

def test_a_bad_start_is_a_clear_error(lambda_function):
    with pytest.raises(RuntimeError, match=r"(?s)rie exited.*nowhere is not a directory"):
        lambda_function(handler="app.handler", task_root="nowhere")

def test_http(lambda_function):
    try:
        fn = lambda_function(handler="app.handler", task_root="src", http=True)
    except RuntimeError as exc:
        assert "HTTP front" in str(exc)
        return
    import urllib.request
    with urllib.request.urlopen(fn.http_url + "/hello") as reply:
        assert reply.status == 200

def test_http_with_a_template_and_a_config(lambda_function):
    import urllib.error, urllib.request
    fn = lambda_function(template="template.yaml", name="Greeter", http=True)
    assert fn.invoke({"name": "i"}).payload["stage"] == "from-template"
    # several functions: each at /lambda-url/NAME/, its events as a Function URL sends them
    with urllib.request.urlopen(fn.http_url + "/lambda-url/Other/x?name=q") as reply:
        assert reply.status == 200
        assert json.loads(reply.read()) == {"stage": "other", "name": None}
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(fn.http_url + "/nowhere")
    assert info.value.code == 404 and json.loads(info.value.read()) == {"message": "Not Found"}
    one = lambda_function(config="rie.toml", name="one", http=True)
    assert one.invoke({"name": "c"}).payload["name"] == "c"
    with urllib.request.urlopen(one.http_url + "/one") as reply:
        assert reply.status == 200 and json.loads(reply.read())["stage"] is None
"""

APP = """
import os
def handler(event, context):
    if isinstance(event, dict) and event.get("fail"):
        return {}["missing"]
    if isinstance(event, dict) and event.get("raw"):
        return b"plain text"
    return {"stage": os.environ.get("STAGE"), "name": event.get("name")}
"""

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.12
    Handler: app.handler
    CodeUri: src/
Resources:
  Greeter:
    Type: AWS::Serverless::Function
    Properties:
      Environment: {Variables: {STAGE: from-template}}
  Other:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: Other
      Environment: {Variables: {STAGE: other}}
"""

CONFIG = """
[functions.one]
handler = "app.handler"
task_root = "src"
http_format = "http-api"
routes = ["GET /one"]
"""


def run_pytest(path: Path, rootdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(path),
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(rootdir),
            "-c",
            str(rootdir / "pytest.ini"),
        ],
        capture_output=True,
        text=True,
        cwd=rootdir,
        timeout=180,
    )


@pytest.fixture(autouse=True)
def _plugin_installed() -> None:
    assert any(e.name == "rie" for e in entry_points(group="pytest11")), (
        "reinstall pyrie (pip install -e .) so that its pytest11 entry point exists"
    )


def test_a_users_test_file_runs_green(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text(APP)
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    (tmp_path / "rie.toml").write_text(CONFIG)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_user.py").write_text(textwrap.dedent(USER_TESTS))
    done = run_pytest(tmp_path / "test_user.py", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 passed" in done.stdout


def test_the_example_test_runs_green(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    done = run_pytest(REPO / "examples" / "hello" / "test_app.py", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_a_failing_user_test_fails_and_leaves_no_rie_behind(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("def handler(e, c):\n    return 1\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_fail.py").write_text(
        "def test_wrong(lambda_function):\n"
        "    fn = lambda_function(handler='app.handler', task_root='.')\n"
        "    print('PID', fn._proc.pid)\n"
        "    assert fn.invoke({}).payload == 2\n"
    )
    done = run_pytest(tmp_path / "test_fail.py", tmp_path)
    assert done.returncode == 1 and "assert 1 == 2" in done.stdout
    pid = int(done.stdout.split("PID ", 1)[1].split()[0])
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
