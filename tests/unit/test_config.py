"""Configuration: flags over environment over defaults, and refusals with a clear message."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from rie.settings.config import RUNTIME_ENTRY, load
from rie.settings.errors import ConfigError


@pytest.fixture
def bootstrap(tmp_path: Path) -> Path:
    path = tmp_path / "bootstrap"
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def test_defaults_match_the_official_emulator(bootstrap: Path, tmp_path: Path) -> None:
    c = load(["--task-root", str(tmp_path), str(bootstrap)], {})
    assert c.command == (str(bootstrap),)
    assert c.timeout_s == 300 and c.memory_mb == 3008 and c.function_name == "test_function"
    assert (
        str(c.invoke_address) == "127.0.0.1:8080" and str(c.runtime_api_address) == "127.0.0.1:9001"
    )
    assert c.max_concurrency == 10 and c.per_env_concurrency == 1 and not c.init_eagerly
    assert c.function_arn == "arn:aws:lambda:us-east-1:012345678912:function:test_function"


def test_environment_variables_then_flags(bootstrap: Path, tmp_path: Path) -> None:
    env = {
        "AWS_LAMBDA_FUNCTION_TIMEOUT": "7",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_NAME": "fromenv",
        "_HANDLER": "env.handler",
    }
    c = load(["--task-root", str(tmp_path), str(bootstrap)], env)
    assert (c.timeout_s, c.memory_mb, c.function_name, c.handler) == (
        7,
        256,
        "fromenv",
        "env.handler",
    )
    c = load(
        [
            "--task-root",
            str(tmp_path),
            "--timeout",
            "2.5",
            "--memory",
            "512",
            "--function-name",
            "flag",
            str(bootstrap),
        ],
        env,
    )
    assert (c.timeout_s, c.memory_mb, c.function_name) == (2.5, 512, "flag")


def test_last_argument_is_the_handler(bootstrap: Path, tmp_path: Path) -> None:
    c = load(
        ["--task-root", str(tmp_path), "--", str(bootstrap), "-m", "awslambdaric", "app.handler"],
        {},
    )
    assert c.handler == "app.handler" and c.command[-1] == "app.handler"
    c = load(["--task-root", str(tmp_path), "--handler", "x.y", str(bootstrap), "a", "b.c"], {})
    assert c.handler == "x.y"


def test_env_pairs_keep_equals_signs_and_env_file(bootstrap: Path, tmp_path: Path) -> None:
    env_file = tmp_path / "vars.env"
    env_file.write_text("# comment\n\nA=1\nB=x=y\n")
    c = load(
        [
            "--task-root",
            str(tmp_path),
            "--env-file",
            str(env_file),
            "--env",
            "B=override=2",
            "--env",
            "C=",
            str(bootstrap),
        ],
        {},
    )
    assert dict(c.user_env) == {"A": "1", "B": "override=2", "C": ""}


def test_runtime_environment(bootstrap: Path, tmp_path: Path) -> None:
    c = load(
        [
            "--task-root",
            str(tmp_path),
            "--handler",
            "app.handler",
            "--env",
            "MINE=1",
            str(bootstrap),
        ],
        {},
    )
    env = c.runtime_environment({"PATH": "/bin", "AWS_LAMBDA_RUNTIME_API": "leak:1"})
    assert env["PATH"] == "/bin" and "AWS_LAMBDA_RUNTIME_API" not in env
    assert env["_HANDLER"] == "app.handler" and env["LAMBDA_TASK_ROOT"] == str(tmp_path)
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST" and env["TZ"] == ":UTC"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/test_function"
    assert env["AWS_ACCESS_KEY_ID"] == "" and env["MINE"] == "1"
    assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert "AWS_EXECUTION_ENV" not in env and "AWS_LAMBDA_MAX_CONCURRENCY" not in env


def test_handler_without_command_runs_the_python_runtime(tmp_path: Path) -> None:
    c = load(["--task-root", str(tmp_path), "--handler", "app.handler"], {})
    assert c.command[1:] == ("-c", RUNTIME_ENTRY)
    assert os.path.samefile(c.command[0], sys.executable)


def test_bootstrap_in_task_root_is_found(bootstrap: Path, tmp_path: Path) -> None:
    c = load(["--task-root", str(tmp_path)], {})
    assert c.command == (str(bootstrap),)


def test_runtime_api_is_forced_onto_loopback(bootstrap: Path, tmp_path: Path) -> None:
    c = load(
        ["--task-root", str(tmp_path), "--runtime-api-address", "0.0.0.0:9001", str(bootstrap)], {}
    )
    assert c.runtime_api_address.host == "127.0.0.1" and c.warnings


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--timeout", "0"], "timeout"),
        (["--timeout", "901"], "timeout"),
        (["--memory", "64"], "memory"),
        (["--memory", "20000"], "memory"),
        (["--max-concurrency", "0"], "--max-concurrency"),
        (["--provisioned", "11"], "--provisioned"),
        (["--per-environment-concurrency", "0"], "--per-environment-concurrency"),
        (["--runtime-interface-emulator-address", "nonsense"], "HOST:PORT"),
        (["--env", "NOEQUALS"], "KEY=VALUE"),
        (["--function-name", "bad name!"], "function name"),
        (["--log-level", "loud"], "--log-level"),
        (["--event-retries", "3"], "--event-retries"),
        (["--queue-timeout", "-1"], "--queue-timeout"),
    ],
)
def test_bad_values_are_refused_with_a_reason(
    bootstrap: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load(["--task-root", str(tmp_path), *args, str(bootstrap)], {})


def test_missing_bootstrap_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no bootstrap"):
        load(["--task-root", str(tmp_path)], {})
    with pytest.raises(ConfigError, match="not an executable"):
        load(["--task-root", str(tmp_path), str(tmp_path / "missing")], {})


def test_bad_environment_number_is_refused(bootstrap: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="AWS_LAMBDA_FUNCTION_TIMEOUT"):
        load(
            ["--task-root", str(tmp_path), str(bootstrap)], {"AWS_LAMBDA_FUNCTION_TIMEOUT": "soon"}
        )
