"""The HTTP front end to end: real rie processes, this project's runtime, curl and aiohttp clients.

Events are checked field by field against the golden files (AWS's documented example request),
web frameworks run behind each format, and every failure is answered as that front answers it."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers import RieProcess
from tests.http.conftest import Front, front

GOLDEN = Path(__file__).parent / "golden"
DOC_QUERY = "parameter1=value1&parameter1=value2&parameter2=value"
# what differs from request to request, or with the client and the port
VOLATILE_CONTEXT = {
    "requestId",
    "extendedRequestId",
    "time",
    "timeEpoch",
    "requestTime",
    "requestTimeEpoch",
    "accountId",
    "resourceId",
}
VOLATILE_HEADERS = {
    "host",
    "user-agent",
    "x-amzn-trace-id",
    "x-forwarded-port",
    "x-forwarded-for",
    "accept",
    "content-length",
}


def curl(*args: str) -> tuple[int, dict[str, list[str]], bytes]:
    """Run curl; (status, headers by lower-case name, body)."""
    out = subprocess.run(
        ["curl", "-sS", "-D", "-", "--max-time", "60", *args],
        capture_output=True,
        check=True,
        timeout=90,
    ).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return int(lines[0].split()[1]), headers, body


def doc_request(url: str) -> dict[str, Any]:
    """AWS's documented example request, sent with curl to the event-dumping handler."""
    status, _, body = curl(
        "-X", "POST",
        "-H", "User-Agent: agent",
        "-H", "header1: value1", "-H", "header2: value1", "-H", "header2: value2",
        "-H", "Cookie: cookie1; cookie2",
        "-H", "Content-Type: text/plain",
        "--data-binary", "Hello from client!",
        f"{url}/my/path?{DOC_QUERY}",
    )  # fmt: skip
    assert status == 200, body
    result: dict[str, Any] = json.loads(body)
    return result


def check_against_golden(got: dict[str, Any], golden: dict[str, Any], request_id: str) -> None:
    assert set(got) == set(golden), set(got) ^ set(golden)
    for key, want in golden.items():
        if key == "requestContext":
            ctx = got[key]
            assert set(ctx) == set(want)
            for name, value in want.items():
                if name not in VOLATILE_CONTEXT:
                    assert ctx[name] == value, name
            assert ctx["requestId"] == request_id  # the id the function sees
        elif key in ("headers", "multiValueHeaders"):
            mine = {k: v for k, v in got[key].items() if k.lower() not in VOLATILE_HEADERS}
            theirs = {k: v for k, v in want.items() if k.lower() not in VOLATILE_HEADERS}
            assert mine == theirs, key
        else:
            assert got[key] == want, key


@pytest.mark.parametrize(
    ("fmt", "routes"),
    [("function-url", []), ("http-api", ["POST /my/{item}"]), ("rest-api", ["POST /my/{item}"])],
)
def test_events_match_the_golden_files(fmt: str, routes: list[str]) -> None:
    flags = ["--http-format", fmt, "--function-name", "my-function"]
    for route in routes:
        flags += ["--route", route]
    with front(*flags, handler="apps.dump", env={"AWS_REGION": "us-west-2"}) as r:
        f = Front(r)
        got = doc_request(f.url)
    golden = json.loads((GOLDEN / f"{fmt.replace('-', '_')}.json").read_text())
    ctx = golden["requestContext"]
    (ctx.get("http") or ctx.get("identity"))["sourceIp"] = "127.0.0.1"  # the test's own client
    check_against_golden(got["event"], golden, got["aws_request_id"])
    ctx = got["event"]["requestContext"]
    assert ctx["accountId"] == ("anonymous" if fmt == "function-url" else "012345678912")


# --- web frameworks ---------------------------------------------------------------------------

FRAMEWORKS = [
    ("function-url", "web.mangum_handler", []),
    ("http-api", "web.mangum_handler", ["ANY /{proxy+}"]),
    ("function-url", "web.url_handler", []),
    ("http-api", "web.http_handler",
     ["GET /items/{item_id}", "POST /echo", "GET /cookies", "POST /binary"]),
    ("rest-api", "web.rest_handler", []),
]  # fmt: skip


@pytest.fixture(scope="module", params=FRAMEWORKS, ids=lambda p: f"{p[0]}-{p[1]}")
def web(request: pytest.FixtureRequest) -> Iterator[Front]:
    fmt, handler, routes = request.param
    flags = ["--http-format", fmt]
    for route in routes:
        flags += ["--route", route]
    with front(*flags, handler=handler) as r:
        yield Front(r)


async def _framework_calls(url: str) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{url}/items/a-b?q=hello&tag=x&tag=y") as resp:
            assert resp.status == 200, await resp.text()
            assert await resp.json() == {"item_id": "a-b", "q": "hello", "tags": ["x", "y"]}
        async with s.post(f"{url}/echo", json={"n": 1, "s": "é"}) as resp:
            assert resp.status == 200
            assert await resp.json() == {"got": {"n": 1, "s": "é"}, "seen": True}
        async with s.get(f"{url}/cookies", headers={"Cookie": "session=abc; x=1"}) as resp:
            assert resp.status == 200
            assert await resp.json() == {"session": "abc"}
            cookies = [c.split(";")[0] for c in resp.headers.getall("Set-Cookie")]
            assert sorted(cookies) == ["other=2", "seen=1"]
        data = bytes(range(256)) * 64 + b"\x00\xff"
        headers = {"Content-Type": "application/octet-stream"}
        async with s.post(f"{url}/binary", data=data, headers=headers) as resp:
            assert resp.status == 200
            assert await resp.read() == data[::-1]


def test_web_frameworks(web: Front) -> None:
    asyncio.run(_framework_calls(web.url))


# --- failures, as each front answers them -----------------------------------------------------


@pytest.fixture(scope="module")
def url_front() -> Iterator[Front]:
    with front("--timeout", "1") as r:
        yield Front(r)


@pytest.mark.parametrize(
    ("fmt", "route_flags"),
    [("function-url", []), ("http-api", ["--route", "ANY /{p+}"]), ("rest-api", [])],
)
def test_failures(fmt: str, route_flags: list[str], tmp_path: Path) -> None:
    api_gw = fmt != "function-url"
    internal = b'{"message": "Internal server error"}'
    flags = ["--http-format", fmt, "--timeout", "2", "--max-concurrency", "1", *route_flags]
    if api_gw:
        flags += ["--http-integration-timeout", "1"]
    # the function waits for a file the request names: its directory is named in the function's
    # environment too, so that the sandbox keeps it reachable (docs/resources.md)
    with front(*flags, env={"TEST_FILES": str(tmp_path)}) as r:
        f = Front(r)
        # a function error, and a result that is not a response
        for path in ("/raise", "/malformed"):
            status, _, body = curl(f"{f.url}{path}")
            assert status == 502
            assert body == (internal if api_gw else b"Internal Server Error")
        # a request over the limit is refused before the function is invoked
        big = tmp_path / "big"
        big.write_bytes(b"x" * (11 if api_gw else 7) * 1024 * 1024)
        status, _, body = curl("--data-binary", f"@{big}", "-H", "Expect:", f"{f.url}/big")
        assert status == 413
        # a throttle: one environment at most, busy with a request waiting for a file
        flag = tmp_path / "go"
        start = len(r.lines)  # before the request, so that its START line cannot be missed
        hold = subprocess.Popen(
            [
                "curl",
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                f"{f.url}/wait-file?file={flag}",
            ],
            stdout=subprocess.PIPE,
        )
        try:
            r.wait_for(r"START RequestId", 30, start)
            status, _, body = curl(f"{f.url}/x")
            if api_gw:
                assert (status, body) == (500, internal)
            else:
                assert status == 429
        finally:
            flag.touch()
            out, _ = hold.communicate(timeout=60)
        assert out == b"200"
        # the function's own timeout (2 s) is a function error; API Gateway's (1 s) comes first
        status, _, body = curl(f"{f.url}/sleep/3")
        if fmt == "function-url":
            assert (status, body) == (502, b"Internal Server Error")
        elif fmt == "rest-api":
            assert (status, body) == (504, b'{"message": "Endpoint request timed out"}')
        else:
            assert (status, body) == (503, b'{"message": "Service Unavailable"}')
        # the invocation API Gateway gave up on still runs to its end
        r.wait_for(r"Task timed out after 2.00 seconds", 30)
        metrics = r.request("GET", "/metrics").body.decode()
        errors = 2 if api_gw else 3  # a Function URL's timeout is one of its 502s
        assert (
            f'rie_http_requests_total{{function="test_function",front="http",format="{fmt}",code="502"}} {errors}'
            in metrics
        )


def test_no_route_is_404() -> None:
    with front("--http-format", "http-api", "--route", "GET /items/{id}") as r:
        f = Front(r)
        assert curl(f"{f.url}/nothing")[0::2] == (404, b'{"message": "Not Found"}')
        assert curl("-X", "POST", f"{f.url}/items/1")[0] == 404
        assert curl(f"{f.url}/items/1")[0] == 200


def test_answers_by_result_kind(url_front: Front) -> None:
    url = url_front.url
    status, headers, body = curl(f"{url}/plain")
    assert (status, body) == (200, b'"just a string"')  # a string keeps its JSON quotes
    assert headers["content-type"] == ["application/json"]
    status, _, body = curl(f"{url}/list")
    assert (status, json.loads(body)) == (200, [1, 2, 3])
    status, _, body = curl(f"{url}/object")
    assert (status, json.loads(body)) == (200, {"hello": "world"})
    status, headers, body = curl(f"{url}/cookies")
    assert (status, body) == (201, b"ok")
    assert headers["set-cookie"] == ["a=1; Path=/", "b=2"]


# --- concurrency ------------------------------------------------------------------------------


async def _many(url: str, n: int) -> list[tuple[int, str]]:
    async with aiohttp.ClientSession() as s:

        async def one(i: int) -> tuple[int, str]:
            async with s.get(f"{url}/n/{i}") as resp:
                return resp.status, await resp.text()

        return await asyncio.gather(*(one(i) for i in range(n)))


def test_twenty_concurrent_requests_answered_once_each() -> None:
    with front("--max-concurrency", "4", "--queue-timeout", "60", handler="apps.dump") as r:
        f = Front(r)
        answers = asyncio.run(_many(f.url, 20))
        assert all(status == 200 for status, _ in answers)
        events = [json.loads(text) for _, text in answers]
        ids = {e["aws_request_id"] for e in events}
        assert len(ids) == 20
        assert sorted(e["event"]["rawPath"] for e in events) == sorted(f"/n/{i}" for i in range(20))
        r.stop()
        assert r.output().count("REPORT RequestId") == 20


def test_clients_at_once_run_in_several_environments(tmp_path: Path) -> None:
    flag = tmp_path / "go"
    # the directory is named in the function's environment: the sandbox keeps it reachable
    with front("--max-concurrency", "3", env={"FLAGS": str(tmp_path)}) as r:
        f = Front(r)

        async def three() -> list[str]:
            async with aiohttp.ClientSession() as s:

                async def one() -> str:
                    async with s.get(f"{f.url}/wait-file", params={"file": str(flag)}) as resp:
                        return await resp.text()

                tasks = [asyncio.ensure_future(one()) for _ in range(3)]
                # all three are running before any may finish: three environments at once
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, _three_started, r)
                flag.touch()
                return await asyncio.gather(*tasks)

        pids = asyncio.run(three())
        assert all(pid.isdigit() for pid in pids), pids  # each saw the flag
        assert len(set(pids)) == 3


def _three_started(r: RieProcess) -> None:
    """Wait for the third START line (each wait starts after the line the last one found)."""
    after = 0
    for _ in range(3):
        r.wait_for(r"START RequestId", 30, after)
        after = next(i for i, line in enumerate(r.lines) if i >= after and "START" in line) + 1


def test_http_is_loopback_by_default_and_port_zero_prints_the_url() -> None:
    with front() as r:
        f = Front(r)
        assert f.url.startswith("http://127.0.0.1:")
        assert int(f.url.rsplit(":", 1)[1]) > 0
        assert curl(f"{f.url}/")[0] == 200


# --- CORS (Function URLs) ---------------------------------------------------------------------


def test_cors_preflight_is_answered_without_the_function() -> None:
    flags = [
        "--cors-allow-origin", "https://app.example",
        "--cors-allow-methods", "GET,POST",
        "--cors-allow-headers", "content-type,x-api-key",
        "--cors-expose-headers", "x-total",
        "--cors-max-age", "300",
        "--cors-allow-credentials",
    ]  # fmt: skip
    with front(*flags) as r:
        f = Front(r)
        status, headers, body = curl(
            "-X", "OPTIONS",
            "-H", "Origin: https://app.example",
            "-H", "Access-Control-Request-Method: POST",
            "-H", "Access-Control-Request-Headers: content-type",
            f"{f.url}/raise",
        )  # fmt: skip
        assert (status, body) == (200, b"")
        assert headers["access-control-allow-origin"] == ["https://app.example"]
        assert headers["access-control-allow-methods"] == ["GET,POST"]
        assert headers["access-control-allow-headers"] == ["content-type,x-api-key"]
        assert headers["access-control-max-age"] == ["300"]
        assert headers["access-control-allow-credentials"] == ["true"]
        # an actual request gets the allow-origin and expose headers added to its answer
        status, headers, _ = curl("-H", "Origin: https://app.example", f"{f.url}/cookies")
        assert status == 201
        assert headers["access-control-allow-origin"] == ["https://app.example"]
        assert headers["access-control-expose-headers"] == ["x-total"]
        # another origin gets no CORS headers
        status, headers, _ = curl("-H", "Origin: https://evil.example", f"{f.url}/cookies")
        assert status == 201 and "access-control-allow-origin" not in headers
        r.stop()
        # the preflight (to /raise) never reached the function: only the two requests ran
        assert r.output().count("START RequestId") == 2


def test_shutdown_answers_the_request_in_flight(tmp_path: Path) -> None:
    """SIGTERM stops accepting, lets the invocation in flight finish within the grace period and
    answers it, then closes: as for the Invoke API."""
    flag = tmp_path / "go"
    r = front("--shutdown-timeout", "20", env={"TEST_FILES": str(tmp_path)}).start()
    try:
        f = Front(r)
        hold = subprocess.Popen(
            ["curl", "-sS", "-w", " %{http_code}", f"{f.url}/wait-file?file={flag}"],
            stdout=subprocess.PIPE,
        )
        r.wait_for(r"START RequestId", 30)
        assert r.proc is not None
        r.proc.send_signal(15)
        r.wait_for(r"shutting down", 30)
        flag.touch()
        out, _ = hold.communicate(timeout=60)
        assert out.endswith(b" 200")
    finally:
        assert r.stop() == 0


def test_a_truncated_body_is_refused_and_the_function_not_invoked(url_front: Front) -> None:
    import socket

    host, port = url_front.url[len("http://") :].split(":")
    started = url_front.proc.output().count("START RequestId")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n" + b"a" * 10)
        sock.shutdown(socket.SHUT_WR)  # fewer bytes than announced, then the end of input
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400")
    assert answer.endswith(b'{"message": "Bad Request"}')
    assert url_front.proc.output().count("START RequestId") == started
