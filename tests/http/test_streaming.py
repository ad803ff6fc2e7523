"""Response streaming end to end: Python generator handlers (this project's runtime) and a sh + curl
bootstrap, read through a Function URL in RESPONSE_STREAM mode (aiohttp and curl clients) and through
InvokeWithResponseStream. Each handler sends a first chunk, then waits for a file the test creates
only after that chunk has arrived: the order of events proves the bytes came before the end."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from rie.http.eventstream import decode
from tests.helpers import RieProcess, rie
from tests.http.conftest import FIX, Front, front

STREAM_PATH = "/2021-11-15/functions/function/response-streaming-invocations"


async def _read_streamed(url: str, flag: Path) -> tuple[int, dict[str, list[str]], bytes, bytes]:
    async with aiohttp.ClientSession() as s, s.get(url, params={"file": str(flag)}) as resp:
        headers: dict[str, list[str]] = {}
        for k, v in resp.headers.items():
            headers.setdefault(k.lower(), []).append(v)
        first = await resp.content.readuntil(b"\n")
        assert not flag.exists()
        flag.touch()  # only now may the function go on
        return resp.status, headers, first, await resp.read()


def front_with_files(files: Path, *flags: str, handler: str) -> RieProcess:
    """The HTTP front, with the directory of the flags the events name in the function's
    environment: under the sandbox, what its variables name stays reachable (docs/resources.md)."""
    return front(*flags, handler=handler, env={"TEST_FILES": str(files)})


def test_generator_streams_through_a_function_url(tmp_path: Path) -> None:
    with front_with_files(
        tmp_path, "--http-invoke-mode", "RESPONSE_STREAM", handler="streams.http"
    ) as r:
        f = Front(r)
        status, headers, first, rest = asyncio.run(_read_streamed(f.url, tmp_path / "go"))
    assert status == 201
    assert headers["transfer-encoding"] == ["chunked"]
    assert headers["content-type"] == ["text/plain"] and headers["x-streamed"] == ["yes"]
    assert headers["set-cookie"] == ["a=1; Path=/", "b=2"]
    assert (first, rest) == (b"first\n", b"second\n")


def test_async_generator_and_plain_generator_stream(tmp_path: Path) -> None:
    for handler in ("streams.async_generator", "streams.generator"):
        flag = tmp_path / handler
        with front_with_files(
            tmp_path, "--http-invoke-mode", "RESPONSE_STREAM", handler=handler
        ) as r:
            f = Front(r)
            status, headers, first, rest = asyncio.run(_read_streamed(f.url, flag))
        assert status == 200 and headers["content-type"] == ["application/octet-stream"]
        assert first == b"first\n" and rest.startswith(b"second\n")


async def _read_cut(url: str, flag: Path) -> tuple[int, bytes, BaseException | None]:
    async with aiohttp.ClientSession() as s, s.get(url, params={"file": str(flag)}) as resp:
        first = await resp.content.readuntil(b"\n")
        flag.touch()
        try:
            await resp.read()
        except aiohttp.ClientPayloadError as exc:
            return resp.status, first, exc
        return resp.status, first, None


def test_an_error_mid_stream_cuts_the_answer_short(tmp_path: Path) -> None:
    with front_with_files(
        tmp_path, "--http-invoke-mode", "RESPONSE_STREAM", handler="streams.http_failing"
    ) as r:
        f = Front(r)
        status, first, error = asyncio.run(_read_cut(f.url, tmp_path / "go"))
        assert (status, first) == (200, b"first\n")
        assert error is not None  # the client sees an incomplete body, not a clean end
        r.wait_for(r"RuntimeError", 30)
        # the front and the function are fine afterwards: the same again
        status, first, error = asyncio.run(_read_cut(f.url, tmp_path / "again"))
        assert (status, first) == (200, b"first\n") and error is not None


def test_an_error_before_the_first_chunk_is_a_502() -> None:
    with front("--http-invoke-mode", "RESPONSE_STREAM", handler="streams.failing_at_once") as r:
        f = Front(r)
        conn = http.client.HTTPConnection(
            f.url[len("http://") :].split(":")[0], int(f.url.rsplit(":", 1)[1]), timeout=30
        )
        conn.request("GET", "/")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (502, b"Internal Server Error")
        conn.close()


def test_buffered_function_url_reads_a_streamed_response_whole(tmp_path: Path) -> None:
    flag = tmp_path / "go"
    flag.touch()  # no waiting: the answer comes when the stream has ended
    with front_with_files(tmp_path, handler="streams.http") as r:
        f = Front(r)
        out = subprocess.run(
            ["curl", "-sS", "-i", f"{f.url}/?file={flag}"],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 201")
    assert b"content-length: 13" in head.lower()
    assert body == b"first\nsecond\n"


def test_sh_curl_bootstrap_streams_to_curl(tmp_path: Path) -> None:
    flag = tmp_path / "go"
    bootstrap = FIX / "stream_bootstrap.sh"
    with rie("--http", "127.0.0.1:0", "--http-invoke-mode", "RESPONSE_STREAM",
             "--env", f"FLAG_FILE={flag}", "--", str(bootstrap)) as r:  # fmt: skip
        f = Front(r)
        proc = subprocess.Popen(["curl", "-sS", "-N", "-i", f"{f.url}/"], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            line = proc.stdout.readline()
            assert line, head
            head += line
        first = proc.stdout.readline()
        assert not flag.exists()
        flag.touch()
        rest = proc.stdout.read()
        assert proc.wait(60) == 0
    assert head.startswith(b"HTTP/1.1 202") and b"set-cookie: sh=1" in head.lower()
    assert (first, rest) == (b"first\n", b"second\n")


def test_sh_curl_bootstrap_cut_mid_stream(tmp_path: Path) -> None:
    flag = tmp_path / "go"
    bootstrap = FIX / "stream_bootstrap.sh"
    with rie("--http", "127.0.0.1:0", "--http-invoke-mode", "RESPONSE_STREAM",
             "--env", f"FLAG_FILE={flag}", "--env", "CUT=1", "--", str(bootstrap)) as r:  # fmt: skip
        f = Front(r)
        status, first, error = asyncio.run(_read_cut(f"{f.url}/", flag))
        assert (status, first) == (202, b"first\n")
        assert error is not None
        r.wait_for(r"Runtime.TruncatedResponse|TruncatedResponse|REPORT", 30)


def _invoke_stream(port: int, event: object, flag: Path) -> list[tuple[str, bytes]]:
    """InvokeWithResponseStream: (event type, payload) messages; the flag is created once the
    first PayloadChunk has arrived."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", STREAM_PATH, body=json.dumps(event))
    resp = conn.getresponse()
    assert resp.status == 200
    messages: list[tuple[str, bytes]] = []
    buf = b""
    while data := resp.read1(65536):  # type: ignore[attr-defined]
        buf += data
        while len(buf) >= 4 and len(buf) >= int.from_bytes(buf[:4], "big"):
            total = int.from_bytes(buf[:4], "big")
            for headers, payload in decode(buf[:total]):
                messages.append((headers[":event-type"], payload))
                if len(messages) == 1:
                    assert not flag.exists()
                    flag.touch()
            buf = buf[total:]
    conn.close()
    return messages


def test_generator_through_invoke_with_response_stream(tmp_path: Path) -> None:
    with front_with_files(tmp_path, handler="streams.generator") as r:
        flag = tmp_path / "go"
        messages = _invoke_stream(r.port, {"file": str(flag)}, flag)
        kinds = [k for k, _ in messages]
        assert kinds[0] == "PayloadChunk" and kinds[-1] == "InvokeComplete"
        body = b"".join(p for k, p in messages if k == "PayloadChunk")
        assert body == b"first\nsecond\nthird\n"
        assert json.loads(messages[-1][1]) == {}
        # mid-stream error: reported in the trailers, so InvokeComplete carries it
    with front_with_files(tmp_path, handler="streams.failing") as r:
        flag = tmp_path / "go2"
        messages = _invoke_stream(r.port, {"file": str(flag)}, flag)
        assert messages[0] == ("PayloadChunk", b"first\n")
        complete = json.loads(messages[-1][1])
        # Lambda keeps only Runtime.* / Function.* error types; the body says what it was
        assert complete["ErrorCode"] == "Runtime.Unknown"
        details = json.loads(complete["ErrorDetails"])
        assert details["errorMessage"] == "broke midway" and details["errorType"] == "ValueError"
        # the buffered Invoke API gets the whole stream of a generator handler
        done = tmp_path / "go3"
        done.touch()
    with front_with_files(tmp_path, handler="streams.generator") as r:
        reply = r.invoke({"file": str(done)})
        assert (reply.status, reply.body) == (200, b"first\nsecond\nthird\n")


PEER = os.environ.get("PYRIE_PEER_RIE")


@pytest.mark.skipif(not PEER, reason="set PYRIE_PEER_RIE to the official Go emulator's binary")
def test_generator_under_the_official_emulator(tmp_path: Path) -> None:
    """The Go emulator buffers a streamed response: the caller gets it whole."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    flag = tmp_path / "go"
    flag.touch()
    env = dict(os.environ, LAMBDA_TASK_ROOT=str(FIX), _HANDLER="streams.generator")
    entry = "import sys; from runtime.loop import main; sys.exit(main(sys.argv))"
    assert PEER is not None and shutil.which(PEER)
    proc = subprocess.Popen(
        [PEER, "--runtime-interface-emulator-address", f"127.0.0.1:{port}",
         sys.executable, "-c", entry, "streams.generator"],
        env=env, cwd=FIX, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        body = b""
        for _ in range(200):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request(
                    "POST",
                    "/2015-03-31/functions/function/invocations",
                    body=json.dumps({"file": str(flag)}),
                )
                body = conn.getresponse().read()
                break
            except ConnectionRefusedError:
                import time

                time.sleep(0.05)  # the emulator is starting: bounded retries
        assert body == b"first\nsecond\nthird\n"
    finally:
        proc.terminate()
        proc.wait(10)
