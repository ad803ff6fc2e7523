"""The Runtime API endpoint with a real Environment and a real socket, but no runtime process: the
test plays the runtime, so that invocations no caller could send any more (the Invoke API refuses
them) can still be handed over, and every state can be checked directly."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable

import pytest

from rie.api import runtime as runtime_api
from rie.model.invocation import Invocation, Request, State
from rie.observe.logs import Sink
from rie.observe.metrics import Metrics
from rie.sandbox.environment import Environment, EnvState
from rie.settings.config import Config

NEXT = b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n"


def run(
    test: Callable[[Environment, int], Awaitable[None]],
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)

    async def main() -> None:
        config = Config(command=(sys.executable,), handler="h")
        env = Environment(1, config, {}, Sink(devnull), Metrics(128), lambda e: None)
        endpoint = await runtime_api.bind(env, "127.0.0.1", 0)
        env.endpoint = endpoint
        env.state = EnvState.READY  # as if its runtime had started: the test is the runtime
        try:
            await asyncio.wait_for(test(env, endpoint.port), 20)
        finally:
            await env.retire()

    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(main())
    finally:
        os.close(devnull)


async def until(pred: Callable[[], object]) -> None:
    for _ in range(2000):
        if pred():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("timed out waiting for a state")


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split(" ")[1]), headers, body


def invocation(request_id: str, **request: str) -> Invocation:
    return Invocation(request_id, Request(b'{"n":1}', **request), 5.0)  # type: ignore[arg-type]


BAD_REQUESTS = [
    {"content_type": "application/json; x=\udce9"},  # a raw 0xe9 byte, as aiohttp decodes it
    {"cognito_identity": "\u20ac"},  # not Latin-1
    {"trace_id": "Root=1\r\nX-Injected: 1"},  # would split the head
]


def test_an_invocation_that_cannot_be_handed_over_ends_and_the_runtime_waits_on() -> None:
    async def test(env: Environment, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        done: list[Invocation] = []
        for n, bad in enumerate(BAD_REQUESTS):
            writer.write(NEXT)
            await until(lambda: env._waiters)  # the runtime waits in `next` (warm)
            inv = invocation(f"bad-{n}", **bad)
            env.assign(inv, done.append)  # must not raise into the Invoke API
            assert inv.state is State.FAILED and done[-1] is inv
            assert inv.outcome is not None and inv.outcome.function_error
            assert json.loads(inv.outcome.body)["errorType"] == runtime_api.HAND_OVER_ERROR
            # the runtime saw nothing and still waits: the next invocation reaches it
            good = invocation(f"good-{n}")
            env.assign(good, done.append)
            status, headers, body = await read_answer(reader)
            assert status == 200 and body == b'{"n":1}'
            assert headers["lambda-runtime-aws-request-id"] == f"good-{n}"
            writer.write(
                f"POST /2018-06-01/runtime/invocation/good-{n}/response HTTP/1.1\r\n"
                "Content-Length: 2\r\n\r\nok".encode()
            )
            assert (await read_answer(reader))[0] == 202
            assert good.state is State.RESPONDED and not env.running
        writer.close()

    run(test)


def test_a_cold_runtime_never_spins_on_an_invocation_it_cannot_be_given() -> None:
    async def test(env: Environment, port: int) -> None:
        done: list[Invocation] = []
        bad = [invocation(f"bad-{n}", **b) for n, b in enumerate(BAD_REQUESTS)]
        for inv in bad:
            env.assign(inv, done.append)  # queued before the runtime's first `next`
        good = invocation("good")
        env.assign(good, done.append)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(NEXT)
        status, headers, _ = await read_answer(reader)
        assert status == 200 and headers["lambda-runtime-aws-request-id"] == "good"
        assert all(inv.state is State.FAILED for inv in bad) and done[:3] == bad
        writer.write(
            b"POST /2018-06-01/runtime/invocation/good/response HTTP/1.1\r\n"
            b"Content-Length: 2\r\n\r\nok" + NEXT
        )
        assert (await read_answer(reader))[0] == 202
        # nothing more queued: the runtime waits, it is not answered
        await until(lambda: env._waiters)
        writer.close()

    run(test)


def test_an_answer_that_cannot_be_taken_ends_its_invocation_and_the_runtime_gets_500(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(body: bytes, content_type: str | None, error_type: str) -> bytes:
        raise RuntimeError("cannot shape this")

    monkeypatch.setattr(runtime_api, "shape_error_body", broken)

    async def test(env: Environment, port: int) -> None:
        inv = invocation("doomed")
        env.assign(inv, lambda i: None)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(NEXT)
        assert (await read_answer(reader))[0] == 200
        writer.write(
            b"POST /2018-06-01/runtime/invocation/doomed/error HTTP/1.1\r\n"
            b"Content-Length: 2\r\n\r\n{}"
        )
        status, headers, _ = await read_answer(reader)
        assert status == 500 and headers["connection"] == "close"
        assert inv.state is State.FAILED and inv.outcome is not None
        assert json.loads(inv.outcome.body)["errorType"] == runtime_api.HAND_OVER_ERROR
        assert not env.running  # nothing left waiting for a timeout
        writer.close()

    run(test)
