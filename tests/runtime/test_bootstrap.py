"""The root `bootstrap` script: runtime client on Lambda, emulator anywhere else.

There is no container engine here, so the entrypoint logic is exercised directly: with the
Runtime API address set it must serve invocations; without it, it must exec rie (stubbed here,
real in test_with_rie.py) with itself as the function's bootstrap."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.runtime.fake_api import PYTHON, REPO, FakeRuntimeApi, child_env, stop

BOOTSTRAP = REPO / "bootstrap"


def test_bootstrap_is_posix_sh() -> None:
    assert os.access(BOOTSTRAP, os.X_OK)
    assert BOOTSTRAP.read_text().startswith("#!/bin/sh\n")
    subprocess.run(["dash", "-n", str(BOOTSTRAP)], check=True)


@pytest.mark.parametrize("via", ["argument", "_HANDLER"])
def test_with_runtime_api_it_runs_the_runtime_client(via: str) -> None:
    with FakeRuntimeApi() as api:
        ev = api.push({"kind": "dict"})
        env = child_env(api, {"PYRIE_PYTHON": PYTHON})
        args = [str(BOOTSTRAP)]
        if via == "argument":
            args.append("results.handler")
        else:
            env["_HANDLER"] = "results.handler"
        proc = subprocess.Popen(
            args, cwd="/", env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            assert ev.done.wait(10), stop(proc)
            # exec'd, not forked: the runtime is the bootstrap's own process
            assert proc.poll() is None
        finally:
            out = stop(proc)
    assert ev.outcome is not None and json.loads(ev.outcome.body)["c"] == {"d": "e"}, out
    assert ev.outcome.header(
        "user-agent",
    ).startswith("pyrie-runtime/")  # type: ignore[union-attr]


def _stub(path: Path, record: Path) -> None:
    path.write_text(f'#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > {record}\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _run_without_api(tmp_path: Path, env_extra: dict[str, str], *args: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "AWS_LAMBDA_RUNTIME_API"}
    env.update(env_extra)
    subprocess.run([str(BOOTSTRAP), *args], cwd=tmp_path, env=env, check=True, timeout=10)
    return (tmp_path / "argv").read_text().splitlines()


def test_without_runtime_api_it_execs_rie_with_itself(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    _stub(bindir / "rie", tmp_path / "argv")
    argv = _run_without_api(tmp_path, {"PATH": f"{bindir}:/usr/bin:/bin"}, "app.handler")
    assert argv == [
        "--runtime-interface-emulator-address", "0.0.0.0:8080", "--", str(BOOTSTRAP), "app.handler",
    ]  # fmt: skip


def test_without_rie_on_path_it_uses_python_m_rie(tmp_path: Path) -> None:
    _stub(tmp_path / "python", tmp_path / "argv")
    env = {
        "PATH": "/usr/bin:/bin",
        "PYRIE_PYTHON": str(tmp_path / "python"),
        "RIE_ADDRESS": "127.0.0.1:9000",
        "RIE_ARGS": "--timeout 5",
    }
    # invoked through a relative path: it must still hand rie its absolute path
    rel = os.path.relpath(BOOTSTRAP, tmp_path)
    env["PWD"] = str(tmp_path)
    subprocess.run(
        [rel],
        cwd=tmp_path,
        env={**os.environ, **env, "AWS_LAMBDA_RUNTIME_API": ""},
        check=True,
        timeout=10,
    )
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv == [
        "-P",
        "-m",
        "rie",
        "--timeout",
        "5",
        "--runtime-interface-emulator-address",
        "127.0.0.1:9000",
        "--",
        str(BOOTSTRAP),
    ]
