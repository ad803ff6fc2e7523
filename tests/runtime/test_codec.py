"""The runtime's two serialisation paths (the standard library before orjson is loaded, orjson
after) must give the same result for the same value, or the first invocation would answer
differently from the rest."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import json
import uuid
from typing import Any

import pytest

from runtime import codec
from runtime.errors import FaultError


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int


Pair = collections.namedtuple("Pair", "a b")

VALUES: list[Any] = [
    None,
    "héllo ☃",
    {"a": [1, 2.5, True, None]},
    (1, 2),
    Pair(1, "b"),
    decimal.Decimal("1.10"),
    decimal.Decimal("NaN"),
    2**70,
    {1: "non-string key"},
    float("nan"),
    [float("inf"), float("-inf")],
    uuid.UUID(int=1),
    Color.RED,
    {"nested": {"u": uuid.UUID(int=2), "e": Color.RED, "n": float("nan")}},
]
UNSERIALISABLE: list[Any] = [datetime.datetime(2024, 1, 2), {1, 2}, Point(1), object()]


def encode(value: Any, with_orjson: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Any]:
    if with_orjson:
        codec.preload()
        assert codec._orjson is not None
    else:
        monkeypatch.setattr(codec, "_orjson", None)
    try:
        body, _ = codec.encode_result(value)
    except FaultError as e:
        return "error", str(e)
    return "ok", json.loads(body, parse_constant=lambda c: f"<{c}>")


@pytest.mark.parametrize("value", VALUES + UNSERIALISABLE, ids=repr)
def test_both_paths_give_the_same_answer(value: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    before = encode(value, with_orjson=False, monkeypatch=monkeypatch)
    monkeypatch.undo()
    after = encode(value, with_orjson=True, monkeypatch=monkeypatch)
    assert before == after
    if any(value is v for v in UNSERIALISABLE):
        assert before[0] == "error" and "is not JSON serializable" in before[1]
    else:
        assert before[0] == "ok"


def test_non_finite_floats_become_null_and_decimal_keeps_its_digits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(codec, "_orjson", None)
    body, content_type = codec.encode_result({"n": float("nan"), "d": decimal.Decimal("1.10")})
    assert content_type == "application/json"
    assert body == b'{"n":null,"d":1.10}'


@pytest.mark.parametrize(
    "body",
    [
        b'{"big": 123456789012345678901234567890, "max": 9223372036854775807}',
        b'{"u64": 18446744073709551616, "neg": -9223372036854775809}',
        '{"s": "12345678901234567890 in a string", "n": 1}',
        b"[1.5, 2, 3]",
    ],
)
def test_events_parse_the_same_before_and_after_orjson(
    body: bytes | str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(codec, "_orjson", None)
    before = codec.loads(body)
    monkeypatch.undo()
    codec.preload()
    after = codec.loads(body)
    assert before == after and type(before) is type(after)
    assert json.dumps(before) == json.dumps(after)  # ints stay ints, exactly


def test_a_module_half_imported_by_the_preload_thread_is_no_trouble(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the preload thread may be importing uuid, enum or decimal at the very moment the first
    # result is serialised: the module is in sys.modules, its classes not yet defined
    import sys
    import types

    monkeypatch.setattr(codec, "_orjson", None)
    for name in ("uuid", "enum", "decimal"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    body, _ = codec.encode_result({"ok": [1, 2]})
    assert body == b'{"ok":[1,2]}'
    with pytest.raises(FaultError) as info:
        codec.encode_result({1, 2})
    assert "Object of type set is not JSON serializable" in str(info.value)


def test_the_preload_thread_leaves_sigterm_to_the_main_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # were SIGTERM delivered to the preload thread, the main thread would stay blocked in `next`
    import signal
    import threading

    from runtime import loop

    seen: list[set[int]] = []
    monkeypatch.setattr(
        codec, "preload", lambda: seen.append(set(signal.pthread_sigmask(signal.SIG_BLOCK, [])))
    )
    thread = threading.Thread(target=loop._preload, args=(False,))
    thread.start()
    thread.join(5)
    assert seen and {signal.SIGTERM, signal.SIGINT} <= seen[0]
    assert signal.SIGTERM not in signal.pthread_sigmask(
        signal.SIG_BLOCK, []
    )  # this thread's own mask is untouched
