"""A seeded fuzz of the Extensions, Telemetry and Logs APIs' request bodies, bounded in time (issue
16): mutated registration and subscription documents, deep nesting, odd destination URIs and raw
bytes, sent by a real client to a real rie with a registered extension. Every call is answered
with a documented 2xx or 4xx and a JSON `errorType` (never 500, never a traceback), and the
function is still served after every batch. PYRIE_FUZZ_SEED picks the seed (printed on failure).
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

from tests.rie.test_extensions import _call, ext_dir, records, with_exts

SEED = int(os.environ.get("PYRIE_FUZZ_SEED", "20261207"))
BUDGET_S = 4.0
MAX_CASES = 300
BATCH = 25

_URIS: list[object] = [
    "http://sandbox.localdomain:1234/",
    "http://sandbox:1/x?y=1",
    "tcp://sandbox.localdomain:9",
    "sandbox.localdomain:9",
    "http://[::1/",
    "http://[::1]:70000/",
    "http://sandbox.localdomain:port/",
    "http://example.com:80/",
    "http://:80/",
    "http://sandbox.localdomain:-1/",
    "\u00e9://x",
    "",
    5,
    None,
    ["http://sandbox:1/"],
]


def _subscription(rng: random.Random) -> object:
    doc: dict[str, object] = {
        "schemaVersion": rng.choice(["2022-12-13", "2022-07-01", "2021-03-18", "x", 5, None]),
        "types": rng.choice(
            [["platform"], ["function", "extension"], [], ["nope"], "platform", [1], None]
        ),
        "buffering": rng.choice(
            [
                {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 100},
                {"maxItems": -1},
                {"timeoutMs": 10**30},
                {"maxBytes": True},
                [],
                "b",
            ]
        ),
        "destination": rng.choice(
            [
                {"protocol": rng.choice(["HTTP", "TCP", "UDP", 1]), "URI": rng.choice(_URIS)},
                {"protocol": "HTTP"},
                "http://sandbox:1/",
                None,
            ]
        ),
    }
    for key in list(doc):
        if rng.random() < 0.1:
            del doc[key]
    return doc


def _body(rng: random.Random) -> bytes:
    kind = rng.randrange(8)
    if kind == 0:
        return json.dumps(_subscription(rng)).encode()
    if kind == 1:  # nested past any parser's depth
        return rng.choice([b"[", b'{"a":']) * rng.choice([1000, 60_000])
    if kind == 2:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
    if kind == 3:
        return json.dumps(
            {"events": rng.choice([["INVOKE"], ["SHUTDOWN", "x"], "INVOKE", 5])}
        ).encode()
    if kind == 4:  # flipped bytes in a good document
        data = bytearray(json.dumps(_subscription(rng)).encode())
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if kind == 5:
        return rng.choice([b"", b"null", b"[]", b'"s"', b"1e999", b"NaN", b'{"a":"\\ud800"}'])
    if kind == 6:
        return b"9" * rng.choice([10, 5000])
    return json.dumps(rng.choice([{}, {"types": ["platform"]}, [1], {"destination": {}}])).encode()


def test_fuzzed_extensions_api_bodies(tmp_path: Path) -> None:
    log = tmp_path / "log"
    d = ext_dir(tmp_path, "py-ext")
    with with_exts(d, "handler.echo", env={"EXT_LOG": str(log), "EXT_SUBSCRIBE": "none"}) as r:
        assert r.invoke({}).status == 200
        reg = next(x for x in records(log) if x["kind"] == "registered")
        api, ext_id = reg["api"], reg["id"]
        rng = random.Random(SEED)
        started = time.monotonic()
        cases = 0
        try:
            while cases < MAX_CASES and time.monotonic() - started < BUDGET_S:
                body = _body(rng)
                method, path, headers = rng.choice(
                    [
                        ("PUT", "/2022-07-01/telemetry", {"Lambda-Extension-Identifier": ext_id}),
                        ("PUT", "/2020-08-15/logs", {"Lambda-Extension-Identifier": ext_id}),
                        ("POST", "/2020-01-01/extension/register", {"Lambda-Extension-Name": "z"}),
                        ("PUT", "/2022-07-01/telemetry", {}),
                    ]
                )
                status, doc = _call(api, method, path, headers, body)
                what = f"{method} {path} {body[:200]!r}: {status} {doc}"
                assert status in (200, 400, 403, 413), what
                if status != 200:
                    assert isinstance(doc.get("errorType"), str), what
                    assert "Traceback" not in json.dumps(doc), what
                cases += 1
                if cases % BATCH == 0:
                    assert r.invoke({}).status == 200
        except AssertionError as exc:
            raise AssertionError(f"PYRIE_FUZZ_SEED={SEED}: {exc}") from None
        assert r.invoke({}).status == 200
        assert "Traceback" not in r.output()
