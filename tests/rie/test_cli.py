"""REFERENCE §3: flags, the function's environment and bad configurations."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import REPO
from tests.rie.conftest import CURL_SH, PY, SCRIPTED, do, good_invoke, rie


def function_env(r) -> dict[str, str]:  # type: ignore[no-untyped-def]
    reply = do(r, {"post": "response", "env": True})
    assert reply.status == 200, reply.body
    return reply.json()  # type: ignore[return-value]


def test_official_flags_are_accepted() -> None:
    # the harness gives --runtime-interface-emulator-address and --runtime-api-address
    with rie("--log-level", "debug", "--", PY, str(SCRIPTED)) as r:
        good_invoke(r)


def test_the_functions_environment(tmp_path) -> None:
    with rie("--memory", "256", "--", PY, str(SCRIPTED), env={"AWS_ACCESS_KEY_ID": ""}) as r:
        env = function_env(r)
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "test_function"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/test_function"
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"]
    assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert env["AWS_REGION"] == "us-east-1"
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["TZ"] == ":UTC"
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        assert env[key] == "", key
    assert env["LAMBDA_TASK_ROOT"]
    assert env["LAMBDA_RUNTIME_DIR"]
    host, _, port = env["AWS_LAMBDA_RUNTIME_API"].rpartition(":")
    assert host == "127.0.0.1" and port.isdigit()
    assert env["_HANDLER"] == str(SCRIPTED)  # the last argument of the command


def test_function_name_shapes_the_environment() -> None:
    with rie("--function-name", "other-fn", "--", PY, str(SCRIPTED)) as r:
        env = function_env(r)
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "other-fn"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/other-fn"


def test_last_argument_is_the_handler() -> None:
    with rie("--", PY, str(SCRIPTED), "--some-arg", "pkg/mod.handler") as r:
        assert function_env(r)["_HANDLER"] == "pkg/mod.handler"


def test_env_flags_and_env_file(tmp_path) -> None:
    env_file = tmp_path / "vars.env"
    env_file.write_text("# a comment\n\nFROM_FILE=file value\nOVERRIDDEN=from file\nURL=a=b=c\n")
    args = ["--env", "A=1", "--env", "WITH_EQ=x=y==z", "--env", "OVERRIDDEN=from flag"]
    with rie(*args, "--env-file", str(env_file), "--", PY, str(SCRIPTED)) as r:
        env = function_env(r)
    assert env["A"] == "1"
    assert env["WITH_EQ"] == "x=y==z"
    assert env["FROM_FILE"] == "file value"
    assert env["URL"] == "a=b=c"
    assert env["OVERRIDDEN"] == "from flag"


def test_given_credentials_are_passed_on() -> None:
    with rie("--env", "AWS_ACCESS_KEY_ID=AKIDEXAMPLE", "--", PY, str(SCRIPTED)) as r:
        assert function_env(r)["AWS_ACCESS_KEY_ID"] == "AKIDEXAMPLE"


def run_rie(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, "-m", "rie", *args],
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--timeout", "0", "--", PY, str(SCRIPTED)], "timeout"),
        (["--timeout", "901", "--", PY, str(SCRIPTED)], "timeout"),
        (["--memory", "64", "--", PY, str(SCRIPTED)], "memory"),
        (["--memory", "20000", "--", PY, str(SCRIPTED)], "memory"),
        (["--", "/no/such/bootstrap"], "bootstrap"),
        (["--env", "NOEQUALS", "--", PY, str(SCRIPTED)], "--env"),
        (["--env-file", "/no/such/file.env", "--", PY, str(SCRIPTED)], "--env-file"),
        (["--runtime-interface-emulator-address", "nonsense", "--", PY, str(SCRIPTED)], "address"),
    ],
)
def test_bad_config_exits_2_with_a_clear_message(args: list[str], words: str) -> None:
    done = run_rie(*args)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert words in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_no_bootstrap_at_all_exits_2(tmp_path) -> None:
    done = run_rie("--task-root", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "bootstrap" in done.stderr


def test_custom_runtime_gets_no_execution_env() -> None:
    with rie("--", PY, str(SCRIPTED), env={"AWS_EXECUTION_ENV": ""}) as r:
        assert not function_env(r).get("AWS_EXECUTION_ENV")


def deadline_left_ms(r) -> int:  # type: ignore[no-untyped-def]
    nxt = do(r).json()["next"]  # type: ignore[index]
    return int(nxt["headers"]["lambda-runtime-deadline-ms"]) - nxt["received_ms"]


def test_timeout_defaults_to_300_s() -> None:
    with rie("--", PY, str(SCRIPTED), env={"AWS_LAMBDA_FUNCTION_TIMEOUT": ""}) as r:
        assert 298_000 <= deadline_left_ms(r) <= 300_500


def test_timeout_from_the_environment() -> None:
    with rie("--", PY, str(SCRIPTED), env={"AWS_LAMBDA_FUNCTION_TIMEOUT": "7"}) as r:
        assert 5_000 <= deadline_left_ms(r) <= 7_500


def test_bootstrap_found_in_the_task_root(tmp_path) -> None:
    (tmp_path / "bootstrap").write_bytes(CURL_SH.read_bytes())
    (tmp_path / "bootstrap").chmod(0o755)
    with rie("--task-root", str(tmp_path), cwd=tmp_path) as r:
        reply = r.invoke({"found": "bootstrap"})
        assert reply.status == 200, (reply, r.output())
        assert reply.json() == {"found": "bootstrap"}, (reply, r.output())
        r.wait_for(f"sh handled {reply.header('X-Amzn-RequestId')}")


def test_per_environment_concurrency_sets_max_concurrency_for_the_runtime() -> None:
    with rie("--per-environment-concurrency", "2", "--", PY, str(SCRIPTED)) as r:
        assert function_env(r)["AWS_LAMBDA_MAX_CONCURRENCY"] == "2"
    with rie("--", PY, str(SCRIPTED)) as r:
        assert "AWS_LAMBDA_MAX_CONCURRENCY" not in function_env(r)
