"""The container story end to end, with a real Docker daemon: examples/Dockerfile builds on the
local Debian base image (examples/container/build-base-image.sh, no registry needed), the image
serves the Invoke API, stops promptly on `docker stop`, runs as any user on a read-only root,
reaps orphans as PID 1, and runs as a runtime client of rie on the host (Lambda mode,
examples/container/lambda-mode.sh).

Skips, saying why, when Docker is not usable: no docker CLI, no reachable daemon, or no base image
and none can be built. `examples/container/ci-prepare.sh` makes it usable on a machine like CI's.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO, RieProcess, rie

# the first test may build the base image (about a minute) and the image: generous guards
pytestmark = pytest.mark.timeout(600)

SCRIPTS = REPO / "examples" / "container"
FUNCTION = Path(__file__).resolve().parent / "function"
BASE_IMAGE = os.environ.get("PYRIE_BASE_IMAGE", "pyrie-base:bookworm")
# one tag per checkout, so that two worktrees testing at once do not build over each other
IMAGE = "pyrie-test-hello:" + hashlib.sha1(str(REPO).encode()).hexdigest()[:12]
INVOKE = "/2015-03-31/functions/function/invocations"
GUARD_S = 60.0  # how long a state may take to come about before the test fails


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    proc = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout.strip()


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def _why_docker_is_unusable() -> str | None:
    if shutil.which("docker") is None:
        return "no docker CLI on PATH"
    try:
        info = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        return "the Docker daemon did not answer `docker info` within 30 s"
    if info.returncode != 0:
        return f"the Docker daemon is not reachable: {_last_line(info.stderr)}"
    inspect = subprocess.run(
        ["docker", "image", "inspect", BASE_IMAGE], capture_output=True, timeout=60
    )
    if inspect.returncode != 0:
        build = subprocess.run(
            [str(SCRIPTS / "build-base-image.sh")], capture_output=True, text=True, timeout=900
        )
        if build.returncode != 0:
            return (
                f"the base image {BASE_IMAGE} is missing and cannot be built here: "
                f"{_last_line(build.stderr)}"
            )
    return None


@pytest.fixture(scope="session")
def image() -> str:
    """The example image, built from the repository as a person would (layers are cached)."""
    reason = _why_docker_is_unusable()
    if reason:
        pytest.skip(f"Docker is not usable: {reason} (examples/container/ci-prepare.sh sets it up)")
    # the wheelhouse lets the build install without reaching an index from inside Docker; without
    # it the build uses the index pip is configured for
    filled = subprocess.run(
        [str(SCRIPTS / "wheelhouse.sh"), BASE_IMAGE],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHON": sys.executable},
    )
    no_index = ["--build-arg", "PIP_NO_INDEX=1"] if filled.returncode == 0 else []
    docker(
        "build", "--quiet", "--file", "examples/Dockerfile", "--tag", IMAGE,
        "--build-arg", f"BASE={BASE_IMAGE}", *no_index, str(REPO),
        timeout=900,
    )  # fmt: skip
    return IMAGE


@pytest.fixture
def label() -> Iterator[str]:
    """A label for this test's containers; whatever carries it is removed afterwards."""
    value = f"pyrie-test={uuid.uuid4().hex}"
    yield value
    leftover = docker("ps", "--all", "--quiet", "--filter", f"label={value}", check=False)
    if leftover:
        docker("rm", "--force", *leftover.split(), check=False)


def start(label: str, *args: str) -> tuple[str, int]:
    """`docker run --detach` with the Invoke API published on a free loopback port."""
    cid = docker("run", "--detach", "--label", label, "--publish", "127.0.0.1::8080", *args)
    port = docker("port", cid, "8080/tcp").splitlines()[0].rsplit(":", 1)[1]
    return cid, int(port)


def post(port: int, payload: object, timeout: float = 30.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", INVOKE, body=json.dumps(payload).encode())
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def invoke_when_up(cid: str, port: int, payload: object) -> tuple[int, bytes]:
    """The first invoke, retried until rie in the container listens (Docker's proxy accepts
    connections on the published port before that, then drops them)."""
    deadline = time.monotonic() + GUARD_S
    while True:
        try:
            return post(port, payload)
        except (ConnectionError, http.client.HTTPException) as exc:
            running = docker("inspect", "--format", "{{.State.Running}}", cid)
            if running != "true" or time.monotonic() > deadline:
                raise AssertionError(
                    f"the Invoke API never answered ({exc!r}); logs:\n" + logs(cid)
                ) from exc
            time.sleep(0.1)


def logs(cid: str) -> str:
    proc = subprocess.run(["docker", "logs", cid], capture_output=True, text=True, timeout=60)
    return proc.stdout + proc.stderr


def wait_for_log(cid: str, text: str) -> None:
    deadline = time.monotonic() + GUARD_S
    while text not in logs(cid):
        assert time.monotonic() < deadline, f"{text!r} never logged:\n{logs(cid)}"
        time.sleep(0.1)


def timed_stop(cid: str) -> float:
    """`docker stop` with Docker's default 10 s before SIGKILL; how long it took."""
    started = time.monotonic()
    docker("stop", "--time", "10", cid, timeout=60)
    return time.monotonic() - started


def exit_code(cid: str) -> int:
    return int(docker("inspect", "--format", "{{.State.ExitCode}}", cid))


def test_image_holds_the_venv_and_the_function_but_no_source_tree(image: str) -> None:
    script = (
        "set -e; for p in /src /wheels /opt/pyrie/build /var/task/tests /var/task/.git; do "
        '  if [ -e "$p" ]; then echo "left in the image: $p"; exit 1; fi; done; '
        "python3 -c 'import sys, rie, runtime; print(sys.prefix)'; "
        "python3 -c 'import benchmarks' 2>/dev/null && echo 'benchmarks installed' && exit 1; "
        "python3 -c 'import setuptools' 2>/dev/null && echo 'setuptools left' && exit 1; "
        "ls /var/task"
    )
    out = docker("run", "--rm", "--entrypoint", "/bin/sh", image, "-c", script)
    assert out.splitlines()[0] == "/opt/pyrie"
    assert "app.py" in out.splitlines()[1:]


def test_run_invoke_and_docker_stop(image: str, label: str) -> None:
    cid, port = start(label, image)
    status, body = invoke_when_up(cid, port, {"name": "you"})
    assert status == 200, body
    assert json.loads(body)["message"] == "Hello, you!"
    wait_for_log(cid, "REPORT RequestId")
    # rie is PID 1's child (bootstrap reaps as PID 1) and handles SIGTERM: it must not wait for
    # Docker's SIGKILL after 10 s
    took = timed_stop(cid)
    assert exit_code(cid) == 0, logs(cid)
    assert took < 5.0, f"docker stop took {took:.2f} s"
    assert "rie summary: 1 invocations" in logs(cid)


def test_docker_stop_with_an_invocation_in_flight(image: str, label: str) -> None:
    cid, port = start(
        label,
        "--volume", f"{FUNCTION}:/var/task:ro",
        "--env", "RIE_ARGS=--shutdown-timeout 1",
        image, "fn.slow",
    )  # fmt: skip
    replies: list[tuple[int, bytes]] = []
    client = threading.Thread(target=lambda: replies.append(invoke_when_up(cid, port, {})))
    client.start()
    wait_for_log(cid, "sleeping")
    took = timed_stop(cid)
    client.join(GUARD_S)
    assert exit_code(cid) == 0, logs(cid)
    assert took < 8.0, f"docker stop took {took:.2f} s with --shutdown-timeout 1"
    # the caller is answered, not dropped
    assert replies and replies[0][0] == 200, replies
    assert json.loads(replies[0][1])["errorType"] == "Runtime.ExitError"


def test_any_user_on_a_read_only_root(image: str, label: str) -> None:
    cid, port = start(
        label,
        "--user", "12345:12345", "--read-only", "--tmpfs", "/tmp",
        "--volume", f"{FUNCTION}:/var/task:ro",
        image, "fn.whoami",
    )  # fmt: skip
    status, body = invoke_when_up(cid, port, {"k": 1})
    assert status == 200, body + logs(cid).encode()
    reply = json.loads(body)
    assert reply["uid"] == 12345
    assert reply["tmpdir"].startswith("/tmp/")
    assert reply["event"] == {"k": 1}
    assert timed_stop(cid) < 5.0
    assert exit_code(cid) == 0, logs(cid)


def _zombies_among(cid: str, pids: list[int]) -> list[str]:
    """The states of those processes that still exist in the container (Z: not reaped)."""
    script = 'for p in "$@"; do [ -r /proc/$p/stat ] && cat /proc/$p/stat; done; exit 0'
    out = docker("exec", cid, "sh", "-c", script, "sh", *map(str, pids))
    return [line for line in out.splitlines() if line.strip()]


def test_orphans_are_reaped_in_the_container(image: str, label: str) -> None:
    cid, port = start(label, "--volume", f"{FUNCTION}:/var/task:ro", image, "fn.orphans")
    pids: list[int] = []
    for _ in range(3):
        status, body = invoke_when_up(cid, port, {})
        assert status == 200, body
        pids += json.loads(body)
    deadline = time.monotonic() + GUARD_S
    while left := _zombies_among(cid, pids):
        assert time.monotonic() < deadline, "never reaped:\n" + "\n".join(left)
        time.sleep(0.1)
    assert timed_stop(cid) < 5.0


def wait_for_no_container(label: str, what: str, r: RieProcess) -> None:
    deadline = time.monotonic() + GUARD_S
    while left := docker("ps", "--quiet", "--filter", f"label={label}"):
        if time.monotonic() > deadline:
            cid = left.split()[0]
            raise AssertionError(f"{what}\ncontainer:\n{logs(cid)}\nrie:\n{r.output()}")
        time.sleep(0.1)


def lambda_mode(label: str, image: str, *flags: str) -> RieProcess:
    env = {"PYRIE_DOCKER_ARGS": f"--label {label} --volume {FUNCTION}:/var/task:ro --user 993:990"}
    bootstrap = str(SCRIPTS / "lambda-mode.sh")
    return rie(*flags, "--", bootstrap, image, env=env)


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
def test_lambda_mode_runtime_in_a_container_of_rie_on_the_host(
    image: str, label: str, signal_name: str
) -> None:
    with lambda_mode(label, image, "--handler", "fn.whoami", "--memory", "256") as r:
        reply = r.invoke({"from": "host"}, timeout=GUARD_S)
        seen = f"{reply.status} {reply.body.decode()}\nrie:\n{r.output()}"
        assert reply.status == 200, seen
        body = reply.json()
        assert isinstance(body, dict), seen
        assert body["uid"] == 993, seen
        assert body["runtime_api"].startswith("127.0.0.1:"), seen
        assert body["memory_limit_in_mb"] == "256", seen  # a string, as on Lambda
        assert body["event"] == {"from": "host"}, seen
        cids = docker("ps", "--quiet", "--filter", f"label={label}").split()
        assert len(cids) == 1, f"{cids}\n{seen}"
        memory = docker("inspect", "--format", "{{.HostConfig.Memory}}", cids[0])
        assert memory == str(256 << 20), memory
        # rie stopped, or killed outright: its runtime's `docker run` goes, and the container too
        assert r.proc is not None
        r.proc.send_signal(getattr(signal, signal_name))
        r.proc.wait(GUARD_S)
        if signal_name == "SIGTERM":
            assert r.proc.returncode == 0, f"rie exited {r.proc.returncode}:\n{r.output()}"
        wait_for_no_container(label, f"the runtime's container outlived rie ({signal_name})", r)


def test_lambda_mode_timeout_takes_the_container_with_it(image: str, label: str) -> None:
    with lambda_mode(label, image, "--handler", "fn.slow", "--timeout", "1") as r:
        reply = r.invoke({}, timeout=GUARD_S)
        assert reply.status == 200, reply.body.decode() + r.output()
        body = reply.json()
        assert isinstance(body, dict) and body["errorType"] == "Sandbox.Timedout", r.output()
        # the handler sleeps on in its container unless the reset took the container away
        wait_for_no_container(label, "the timed-out runtime's container is still running", r)
        assert r.proc is not None and r.proc.poll() is None  # rie itself carries on


def test_the_image_as_a_runtime_rie_does_not_start(image: str, label: str, tmp_path: Path) -> None:
    """`rie --external-runtime` on the host, the image run by hand with the variables rie wrote
    (`docker run --env-file`): the container is the runtime; when it goes, rie waits for the
    next one."""
    env_file = tmp_path / "lambda.env"
    flags = ("--external-runtime-env", str(env_file), "--handler", "fn.whoami", "--memory", "256")
    run = (
        "run", "--detach", "--label", label, "--network", "host", "--env-file", str(env_file),
        "--volume", f"{FUNCTION}:/var/task:ro", image, "fn.whoami",
    )  # fmt: skip
    with rie(*flags) as r:
        r.wait_for("rie: waiting for an external runtime on")
        api = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        for n in (1, 2):
            cid = docker(*run)
            reply = r.invoke({"n": n}, timeout=GUARD_S)
            seen = f"{reply.status} {reply.body.decode()}\nrie:\n{r.output()}\n{logs(cid)}"
            assert reply.status == 200, seen
            body = reply.json()
            assert isinstance(body, dict) and body["event"] == {"n": n}, seen
            assert body["runtime_api"] == api["AWS_LAMBDA_RUNTIME_API"], seen
            assert body["memory_limit_in_mb"] == "256", seen
            request_id = reply.header("X-Amzn-RequestId")
            r.wait_for(rf"REPORT RequestId: {request_id}\t", GUARD_S)
            # the container goes (a restart): rie, which did not start it, waits for the next
            docker("rm", "--force", cid)
        assert r.proc is not None and r.proc.poll() is None
