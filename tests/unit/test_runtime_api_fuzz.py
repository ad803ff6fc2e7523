"""A seeded fuzz of the Runtime API's HTTP/1.1 parser: real endpoint, real Environment, real
socket, in-process (so any exception inside the server is seen). Valid requests of every kind are
mutated (bytes flipped, inserted, cut; headers duplicated; framing changed), sent in random pieces,
then the client half-closes: each must get only well-formed answers (errors as JSON), the server
must close within a bound, and after every batch a good next/response exchange still works.

PYRIE_FUZZ_SEED picks the seed (printed on failure); the run is bounded to a few seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time

import pytest
import uvloop

from rie.model.invocation import Invocation, Request, State
from rie.sandbox.environment import Environment
from tests.unit.test_runtime_api_endpoint import NEXT, read_answer, run

SEED = int(os.environ.get("PYRIE_FUZZ_SEED", "20261126"))
BUDGET_S = 4.0
MIN_CASES = 100
MAX_CASES = 600
BATCH = 25
ALLOWED = {100, 200, 202, 400, 403, 404, 405, 408, 413, 431}
BASE = "/2018-06-01/runtime"


def templates(live: str) -> list[bytes]:
    """Valid requests of every kind the Runtime API serves, aimed at the live invocation."""
    inv = f"{BASE}/invocation/{live}"
    return [
        NEXT,
        b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n",
        f'POST {inv}/response HTTP/1.1\r\nContent-Length: 7\r\n\r\n"hello"'.encode(),
        f"POST {inv}/error HTTP/1.1\r\nLambda-Runtime-Function-Error-Type: Function.X\r\n"
        'Content-Type: application/json\r\nContent-Length: 38\r\n\r\n{"errorMessage":"m","errorType":"X"}  '.encode(),
        f"POST {inv}/response HTTP/1.1\r\nLambda-Runtime-Function-Response-Mode: streaming\r\n"
        "Transfer-Encoding: chunked\r\nTrailer: Lambda-Runtime-Function-Error-Type\r\n\r\n"
        "3\r\nabc\r\n0\r\nLambda-Runtime-Function-Error-Type: Function.Late\r\n"
        "Lambda-Runtime-Function-Error-Body: e30=\r\n\r\n".encode(),
        f"POST {BASE}/init/error HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n".encode(),
        f"POST {inv}/response HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok".encode(),
    ]


def mutate(rng: random.Random, data: bytes, live: str) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(9)
        i = rng.randrange(len(out) + 1)
        if kind == 0 and out:  # flip a byte
            out[min(i, len(out) - 1)] = rng.randrange(256)
        elif kind == 1:  # insert junk
            out[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif kind == 2:  # cut a stretch
            del out[i : i + rng.randint(1, 20)]
        elif kind == 3:  # cut the end off
            del out[i:]
        elif kind == 4:  # duplicate a header line
            lines = bytes(out).split(b"\r\n")
            if len(lines) > 2:
                k = rng.randrange(1, len(lines) - 1)
                lines.insert(k, lines[k])
                out = bytearray(b"\r\n".join(lines))
        elif kind == 5:  # a hostile framing header
            header = rng.choice(
                [
                    b"Content-Length: \xb2",
                    b"Content-Length: +5",
                    b"Content-Length: -1",
                    b"Content-Length: 5, 6",
                    b"Content-Length: 99999999999999999999",
                    b"Transfer-Encoding: chunked",
                    b"Transfer-Encoding: gzip",
                    b"Expect: 100-continue",
                    b"Connection: close",
                    b"X-Long: " + b"a" * rng.choice([100, 9000, 70000]),
                ]
            )
            end = out.find(b"\r\n")
            if end >= 0:
                out[end + 2 : end + 2] = header + b"\r\n"
        elif kind == 6:  # pipeline another request behind it
            out += rng.choice(templates(live))
        elif kind == 7:  # a bad chunk size
            out = bytearray(
                bytes(out).replace(
                    b"\r\n3\r\n",
                    b"\r\n" + rng.choice([b"zz", b"-1", b"ffffffffffffffff", b""]) + b"\r\n",
                )
            )
        else:  # another method or path
            out = bytearray(
                rng.choice([b"PUT", b"DELETE", b"GET", b"POST", b"\x00", b"get"])
                + bytes(out[out.find(b" ") :] if b" " in out else out)
            )
    return bytes(out)


def check_answers(data: bytes, what: bytes) -> None:
    """Every answer well-formed; every error JSON with an errorType."""
    rest = data
    while rest:
        head, sep, rest = rest.partition(b"\r\n\r\n")
        assert sep, f"a cut-off answer {data[:300]!r} to {what[:300]!r}"
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0].startswith("HTTP/1.1 "), (data[:300], what[:300])
        status = int(lines[0].split(" ")[1])
        assert status in ALLOWED, (data[:300], what[:300])
        if status == 100:
            continue
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        length = int(headers["content-length"])
        body, rest = rest[:length], rest[length:]
        assert len(body) == length, (data[:300], what[:300])
        if status >= 400:
            assert headers["content-type"] == "application/json", (data[:300], what[:300])
            assert json.loads(body)["errorType"], (data[:300], what[:300])


async def exchange(port: int, data: bytes, rng: random.Random) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        try:
            i = 0
            while i < len(data):  # in random pieces, sometimes a byte at a time
                n = rng.choice([1, 7, 64, len(data)])
                writer.write(data[i : i + n])
                i += n
                if rng.random() < 0.2:
                    await asyncio.sleep(0)
            # with nothing more to come, everything must be answered and the connection closed
            writer.write_eof()
        except OSError:
            pass  # the server has answered and closed already: read what it said
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def good_exchange(env: Environment, port: int, n: int) -> None:
    """A good runtime still gets an invocation and answers it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    inv = Invocation(f"good-{n}", Request(b'{"good":1}'), 5.0)
    env.assign(inv, lambda i: None)
    writer.write(NEXT)
    status, headers, body = await asyncio.wait_for(read_answer(reader), 5)
    assert status == 200 and headers["lambda-runtime-aws-request-id"] == f"good-{n}", body
    writer.write(
        f"POST {BASE}/invocation/good-{n}/response HTTP/1.1\r\nContent-Length: 2\r\n\r\nok".encode()
    )
    assert (await asyncio.wait_for(read_answer(reader), 5))[0] == 202
    assert inv.state is State.RESPONDED
    writer.close()


class Failures(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_fuzzed_requests_get_well_formed_answers_and_the_endpoint_keeps_working(loop: str) -> None:
    factory = uvloop.new_event_loop if loop == "uvloop" else None
    rng = random.Random(SEED)
    failures = Failures()
    logging.getLogger("rie").addHandler(failures)
    loop_errors: list[dict[str, object]] = []
    cases = 0

    async def test(env: Environment, port: int) -> None:
        nonlocal cases
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: loop_errors.append(ctx))
        started = time.monotonic()
        batch = 0
        # at least MIN_CASES however loaded the machine is; then until the budget is spent
        while cases < MIN_CASES or (cases < MAX_CASES and time.monotonic() - started < BUDGET_S):
            # a live invocation for the fuzzed requests to aim at, fetched by a good runtime
            live = Invocation(f"live-{batch}", Request(b"{}"), 5.0)
            env.assign(live, lambda i: None)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(NEXT)
            assert (await asyncio.wait_for(read_answer(reader), 5))[0] == 200
            writer.close()
            for _ in range(BATCH):
                data = mutate(rng, rng.choice(templates(live.request_id)), live.request_id)
                check_answers(await exchange(port, data, rng), data)
                cases += 1
            if not live.final:
                live.fail("Runtime.Test", "the fuzz batch is over")
            await good_exchange(env, port, batch)
            batch += 1

    try:
        run(test, factory)
    except AssertionError as exc:
        raise AssertionError(f"PYRIE_FUZZ_SEED={SEED}: {exc}") from exc
    finally:
        logging.getLogger("rie").removeHandler(failures)
    unexpected = [r for r in failures.records if "handed to the runtime" not in r.getMessage()]
    assert not unexpected, [r.getMessage() for r in unexpected]
    assert not loop_errors, loop_errors
