"""`rie invoke` against a real rie: output, tail, exit codes; `rie event` from the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO, RieProcess, rie

HANDLER = """
import json, os, time
def handler(event, context):
    print("handler saw", json.dumps(event)[:60])
    if event.get("fail"):
        raise ValueError("failed on purpose")
    if event.get("block"):
        deadline = time.monotonic() + 20
        while not os.path.exists(event["block"]) and time.monotonic() < deadline:
            time.sleep(0.01)
    return {"event": event, "fn": context.function_name}
"""


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RieProcess]:
    code = tmp_path_factory.mktemp("code")
    (code / "app.py").write_text(HANDLER)
    with rie(
        "--task-root", str(code), "--handler", "app.handler", "--max-concurrency", "1",
        "--function-name", "echo",
    ) as r:  # fmt: skip
        yield r


def run_rie(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "rie", *args],
        input=stdin,
        capture_output=True,
        cwd=REPO,
        timeout=60,
    )


def invoke(
    r: RieProcess, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return run_rie("invoke", *args, "--endpoint", r.endpoint, stdin=stdin)


def test_payload_from_a_file_stdin_or_a_sample(running: RieProcess, tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text('{"from": "file"}')
    done = invoke(running, "echo", "--event", str(event))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"event": {"from": "file"}, "fn": "echo"}
    assert done.stderr == b""
    done = invoke(running, "--event", "-", "--set", "extra=1", stdin=b'{"from": "stdin"}')
    assert json.loads(done.stdout)["event"] == {"from": "stdin", "extra": 1}
    done = invoke(running, "echo", "--sample", "sqs", "--set", "Records.0.body=hello")
    record = json.loads(done.stdout)["event"]["Records"][0]
    assert record["eventSource"] == "aws:sqs" and record["body"] == "hello"


def test_tail_goes_to_stderr(running: RieProcess) -> None:
    done = invoke(running, "--tail", "--sample", "eventbridge-scheduled")
    assert done.returncode == 0
    log = done.stderr.decode()
    assert log.startswith("START RequestId: ") and "handler saw" in log
    assert "\nEND RequestId: " in log and "\nREPORT RequestId: " in log
    assert json.loads(done.stdout)["event"]["detail-type"] == "Scheduled Event"


def test_a_function_error_exits_1_with_the_error_on_stdout(running: RieProcess) -> None:
    done = invoke(running, "--event", "-", stdin=b'{"fail": true}')
    assert done.returncode == 1
    error = json.loads(done.stdout)
    assert error["errorType"] == "ValueError" and error["errorMessage"] == "failed on purpose"


def test_event_and_dry_run(running: RieProcess) -> None:
    done = invoke(running, "--type", "DryRun")
    assert (done.returncode, done.stdout) == (0, b"") and b"DryRun" in done.stderr
    done = invoke(running, "--type", "Event", "--event", "-", stdin=b'{"async": 1}')
    assert done.returncode == 0 and b"queued (Event), request id " in done.stderr
    running.wait_for(r'handler saw \{"async": 1\}')


def test_refusals_exit_3_with_the_aws_error(running: RieProcess, tmp_path: Path) -> None:
    done = invoke(running, "nobody")
    assert done.returncode == 3
    assert done.stderr.decode().startswith("rie: ResourceNotFoundException: Function not found:")
    assert done.stderr.decode().rstrip().endswith("(this rie serves: echo)")
    # the only environment is busy with a blocked Event invoke: a synchronous one is throttled
    release = tmp_path / "release"
    start = len(running.lines)
    blocked = json.dumps({"block": str(release)}).encode()
    assert invoke(running, "--type", "Event", "--event", "-", stdin=blocked).returncode == 0
    running.wait_for(r"handler saw \{\"block\"", start=start)
    try:
        done = invoke(running)
        assert done.returncode == 3
        assert b"TooManyRequestsException" in done.stderr
        assert b"ReservedFunctionConcurrentInvocationLimitExceeded" in done.stderr
    finally:
        release.touch()


def test_usage_errors_and_no_rie() -> None:
    done = run_rie("invoke", "--endpoint", "http://127.0.0.1:1")
    assert done.returncode == 4 and b"cannot reach rie at http://127.0.0.1:1" in done.stderr
    done = run_rie("invoke", "--event", "/nonexistent.json")
    assert done.returncode == 2 and b"No such file" in done.stderr
    done = run_rie("invoke", "--sample", "nope")
    assert done.returncode == 2 and b"no sample event 'nope'" in done.stderr


def test_rie_event_prints_samples() -> None:
    listed = run_rie("event", "list")
    assert listed.returncode == 0 and b"cloudwatch-logs" in listed.stdout
    done = run_rie("event", "s3-put", "--set", "Records.0.s3.bucket.name=b")
    assert json.loads(done.stdout)["Records"][0]["s3"]["bucket"]["name"] == "b"


def test_subcommands_only_as_the_first_word(tmp_path: Path) -> None:
    # after a flag, `event` is the bootstrap command, as with the official emulator
    done = run_rie("--task-root", str(tmp_path), "event")
    assert done.returncode == 2
    assert b"bootstrap 'event' is not an executable file" in done.stderr
