"""Settings that cannot work are refused at start-up (issue 16, items 6, 7, 8, 9 and 13): one line
naming the file, the function and the key (or the flag), exit 2, no traceback, whether the value
came from a flag, a variable, a --config file or a --template. And routes mean API Gateway."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import REPO, rie

PY = sys.executable
HTTP_FIX = REPO / "tests" / "http" / "fixtures"


def run_rie(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """rie with a config it must refuse: it exits on its own (a rie that starts is stopped at
    `timeout` and fails the test)."""
    import os

    full_env = {**os.environ, **(env or {})}
    full_env.pop("AWS_LAMBDA_RUNTIME_API", None)
    cmd = [PY, "-m", "rie", "--runtime-interface-emulator-address", "127.0.0.1:0",
           "--runtime-api-address", "127.0.0.1:0", *args]  # fmt: skip
    try:
        return subprocess.run(
            cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"rie started instead of refusing {args}: {exc.stderr!r}") from None


def refused(done: subprocess.CompletedProcess[str], *words: str) -> str:
    """The one line rie printed, after checking it exited 2 with it."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def toml(tmp_path: Path, body: str) -> str:
    (tmp_path / "app.py").write_text("def handler(event, context):\n    return event\n")
    path = tmp_path / "rie.toml"
    path.write_text(textwrap.dedent(body))
    return str(path)


def template(tmp_path: Path, body: str) -> str:
    (tmp_path / "app.py").write_text("def handler(event, context):\n    return event\n")
    path = tmp_path / "template.yaml"
    head = "Transform: AWS::Serverless-2016-10-31\nResources:\n  Fn:\n    Type: AWS::Serverless::Function\n"
    path.write_text(head + textwrap.indent(textwrap.dedent(body), "    "))
    return str(path)


FN = '[functions.fn]\nhandler = "app.handler"\n'
SAM_FN = "Properties:\n  Handler: app.handler\n  Runtime: python3.12\n"


# --- item 6: --max-concurrency and its kin are bounded ----------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--max-concurrency", "5000000"], ["--max-concurrency", "1000"]),
        (["--max-concurrency", str(2**63 - 1)], ["--max-concurrency"]),
        (["--per-environment-concurrency", "100000"], ["--per-environment-concurrency", "1600"]),
    ],
)
def test_concurrency_flags_above_the_maximum_are_refused(args: list[str], words: list[str]) -> None:
    refused(run_rie(*args, "--handler", "app.handler", "--task-root", str(HTTP_FIX)), *words)


def test_concurrency_in_files_above_the_maximum_is_refused(tmp_path: Path) -> None:
    path = toml(tmp_path, FN + "max_concurrency = 5000000\n")
    refused(run_rie("--config", path), path, "function fn", "--max-concurrency")
    path = template(tmp_path, SAM_FN + "  ReservedConcurrentExecutions: 5000000\n")
    refused(run_rie("--template", path), path, "Fn", "--max-concurrency")


@pytest.mark.timeout(60)
def test_the_maximum_concurrency_starts_small_and_stops_at_once() -> None:
    """1,000 environments at most: nothing is made for them ahead of time (rie stays small),
    Event invocations still run, and SIGTERM ends it promptly."""
    with rie(
        "--max-concurrency", "1000", "--task-root", str(HTTP_FIX), "--handler", "apps.dump"
    ) as r:
        assert r.proc is not None
        reply = r.invoke({"x": 1}, headers={"X-Amz-Invocation-Type": "Event"})
        assert reply.status == 202
        r.wait_for(r"REPORT RequestId: ", 30)
        with open(f"/proc/{r.proc.pid}/status") as f:
            rss_kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        assert rss_kb < 150_000, rss_kb
        started = time.monotonic()
        assert r.stop() == 0
        assert time.monotonic() - started < 10


@pytest.mark.timeout(120)
def test_event_workers_are_made_on_demand_up_to_the_limit() -> None:
    """Workers are made as events arrive: a burst of Event invocations still runs in parallel,
    at most --max-concurrency at once, and a second burst after the first is served too."""
    fixtures = REPO / "tests" / "scaling" / "fixtures"
    flags = ["--max-concurrency", "3", "--task-root", str(fixtures), "--handler", "fn.handler"]
    with rie(*flags) as r:
        for _ in range(2):
            start = len(r.lines)
            for i in range(6):
                reply = r.invoke(
                    {"action": "sleep", "s": 1, "n": i}, headers={"X-Amz-Invocation-Type": "Event"}
                )
                assert reply.status == 202
            for _ in range(6):
                r.wait_for(r"REPORT RequestId: ", 60, start)
                start = next(
                    i + 1 for i in range(start, len(r.lines)) if "REPORT RequestId" in r.lines[i]
                )
        text = r.output()
    # 6 environments were never needed: 3 at most ran at once, and each was made once
    assert text.count("Init Duration") == 3, text


# --- item 7: variables a process cannot be given ----------------------------------------------


@pytest.mark.parametrize(
    ("env_line", "word"),
    [
        ('env = { "A=B" = "x" }', "A=B"),
        ('env = { A = "x\\u0000y" }', "NUL"),
        ('env = { "" = "x" }', "''"),
    ],
)
def test_a_config_with_an_impossible_variable_is_refused(
    tmp_path: Path, env_line: str, word: str
) -> None:
    path = toml(tmp_path, FN + env_line + "\n")
    refused(run_rie("--config", path), path, "function fn", "env", word)


def test_a_template_with_an_impossible_variable_is_refused(tmp_path: Path) -> None:
    path = template(tmp_path, SAM_FN + '  Environment:\n    Variables:\n      "A=B": x\n')
    refused(run_rie("--template", path), path, "Fn", "env", "A=B")


def test_an_env_file_with_a_nul_is_refused(tmp_path: Path) -> None:
    env_file = tmp_path / "vars.env"
    env_file.write_bytes(b"GOOD=1\nBAD=x\x00y\n")
    refused(
        run_rie(
            "--env-file", str(env_file), "--handler", "app.handler", "--task-root", str(HTTP_FIX)
        ),
        str(env_file),
        "BAD",
    )


# --- item 8: NaN and infinity -----------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--queue-timeout", "nan"],
        ["--event-retry-delay", "nan"],
        ["--event-max-age", "inf"],
        ["--idle-timeout=-inf"],
        ["--shutdown-timeout", "nan"],
        ["--keepalive-timeout", "inf"],
        ["--timeout", "nan"],
    ],
)
def test_non_finite_flags_are_refused(args: list[str]) -> None:
    flag = args[0].partition("=")[0]
    line = refused(run_rie(*args, "--handler", "app.handler", "--task-root", str(HTTP_FIX)), flag)
    assert "finite" in line or "timeout" in line


def test_a_non_finite_variable_is_refused() -> None:
    done = run_rie(
        "--handler", "app.handler", "--task-root", str(HTTP_FIX),
        env={"AWS_LAMBDA_FUNCTION_TIMEOUT": "nan"},
    )  # fmt: skip
    refused(done, "AWS_LAMBDA_FUNCTION_TIMEOUT", "finite")


@pytest.mark.parametrize(
    ("line", "word"),
    [("queue_timeout = nan", "--queue-timeout"), ("idle_timeout = inf", "--idle-timeout"),
     ("event_retry_delay = -nan", "--event-retry-delay"), ("env = { X = inf }", "env.X")],
)  # fmt: skip
def test_non_finite_numbers_in_a_config_are_refused(tmp_path: Path, line: str, word: str) -> None:
    path = toml(tmp_path, FN + line + "\n")
    refused(run_rie("--config", path), path, "function fn", word, "finite")


def test_non_finite_numbers_in_a_template_are_refused(tmp_path: Path) -> None:
    path = template(tmp_path, SAM_FN + "  Timeout: .inf\n")
    refused(run_rie("--template", path), path, "Fn", "timeout")


# --- item 9: a config's routes are checked at load --------------------------------------------


@pytest.mark.parametrize("http", [[], ["--http", "127.0.0.1:0"]])
def test_a_bad_route_in_a_config_is_one_line(tmp_path: Path, http: list[str]) -> None:
    path = toml(tmp_path, FN + 'routes = ["FOO /x"]\n')
    refused(run_rie("--config", path, *http), path, "function fn", "FOO /x", "method")


# --- item 13: routes mean API Gateway ---------------------------------------------------------


def test_routes_without_a_format_give_their_path_parameters(tmp_path: Path) -> None:
    (tmp_path / "apps.py").write_text((HTTP_FIX / "apps.py").read_text())
    path = tmp_path / "rie.toml"
    path.write_text('[functions.py]\nhandler = "apps.dump"\nroutes = ["GET /py/{name}"]\n')
    with rie("--config", str(path), "--http", "127.0.0.1:0") as r:
        m = r.wait_for(r"HTTP front \(([a-z-]+)\) listening on (http://[\d.]+:\d+)", 15)
        assert m.group(1) == "http-api"
        with urllib.request.urlopen(f"{m.group(2)}/py/bob", timeout=30) as resp:
            event = json.loads(resp.read())["event"]
    assert event["pathParameters"] == {"name": "bob"}
    assert event["routeKey"] == "GET /py/{name}"


def test_function_url_with_path_parameters_is_refused(tmp_path: Path) -> None:
    path = toml(tmp_path, FN + 'http_format = "function-url"\nroutes = ["GET /py/{name}"]\n')
    refused(run_rie("--config", path), path, "function fn", "GET /py/{name}", "Function URL")
    done = run_rie(
        "--http", "127.0.0.1:0", "--http-format", "function-url", "--route", "GET /py/{name}",
        "--handler", "app.handler", "--task-root", str(HTTP_FIX),
    )  # fmt: skip
    refused(done, "--route", "Function URL")


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_rie_invoke_refuses_a_non_finite_timeout(value: str) -> None:
    done = subprocess.run(
        [PY, "-m", "rie", "invoke", "--timeout", value, "--endpoint", "http://127.0.0.1:9"],
        cwd=REPO, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    refused(done, "--timeout", "finite")
