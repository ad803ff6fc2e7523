"""The dashboard's feed (rie/observe/feed.py): recording only while attached, the bounded ring,
the byte budget, cutting bodies, and the per-second series CloudWatch's charts are drawn from."""

from __future__ import annotations

from rie.model.invocation import Invocation, Request
from rie.observe import feed as feed_mod
from rie.observe.feed import ALL, BODY_LIMIT, Feed
from rie.observe.metrics import Metrics


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _inv(
    rid: str, payload: bytes = b"{}", answer: bytes = b'{"ok":1}', cold: bool = False
) -> Invocation:
    inv = Invocation(rid, Request(payload=payload), 3.0)
    inv.dispatch()
    if cold:
        inv.init_duration_ms = 123.0
    inv.respond(answer)
    return inv


def _failed(rid: str) -> Invocation:
    inv = Invocation(rid, Request(payload=b"{}"), 3.0)
    inv.dispatch()
    inv.error(b'{"errorType":"ValueError"}', "ValueError")
    return inv


def test_nothing_is_recorded_until_attached_nor_after_detached() -> None:
    metrics = Metrics(128)
    feed = Feed(clock=Clock())
    assert metrics.feed is None  # no page: the environment's hook finds nothing to call
    feed.attach([("fn", metrics)])
    assert metrics.feed is not None
    metrics.feed.reported(_inv("a"), 1, 2.5, 40, None, b"START\nREPORT\n", False)
    feed.detach()
    assert metrics.feed is None
    metrics.throttled(_inv("b"))  # counted by /metrics, not recorded
    assert [r.request_id for r in feed] == ["a"]
    assert metrics.throttles == 1


def test_a_record_has_the_table_row_and_its_log_event_and_answer() -> None:
    metrics = Metrics(128)
    feed = Feed(clock=Clock(1_000_000.25))
    feed.attach([("orders", metrics)])
    assert metrics.feed is not None
    metrics.feed.reported(
        _inv("rid-1", b'{"x":1}', cold=True), 3, 10.5, 42, None, b"START\nhi\nREPORT\n", False
    )
    (record,) = feed
    assert record.row == [
        1, 1_000_000.25, "orders", "rid-1", "RequestResponse", "success",
        10.5, 11, 42, 123.0, None, 3,
    ]  # fmt: skip
    detail = record.detail()
    assert detail["log"] == "START\nhi\nREPORT\n"
    assert detail["event"] == '{"x":1}' and not detail["eventCut"]
    assert detail["answer"] == '{"ok":1}' and not detail["answerCut"]


def test_errors_and_throttles_are_entries_and_counted_per_second() -> None:
    clock = Clock(500.0)
    metrics = Metrics(128)
    feed = Feed(clock=clock)
    feed.attach([("fn", metrics)])
    assert metrics.feed is not None
    metrics.feed.reported(_failed("e"), 1, 4.0, 40, "ValueError", b"", False)
    metrics.throttled(_inv("t"))
    metrics.feed.reported(_inv("c", cold=True), 1, 8.0, 40, None, b"", False)
    statuses = [(r.request_id, r.status, r.error_type) for r in feed]
    assert statuses == [
        ("e", "error", "ValueError"),
        ("t", "throttled", "TooManyRequestsException"),
        ("c", "success", None),
    ]
    (point,) = feed.points()["fn"]
    second, invocations, errors, throttles, _, cold, p50, p99 = point
    assert (second, invocations, errors, throttles, cold) == (500, 2, 1, 1, 1)
    assert (p50, p99) == (4.0, 8.0)
    assert feed.points()[ALL] == [point]


def test_pushes_get_only_what_changed() -> None:
    clock = Clock(100.0)
    metrics = Metrics(128)
    feed = Feed(clock=clock)
    feed.attach([("fn", metrics)])
    assert metrics.feed is not None
    metrics.feed.reported(_inv("a"), 1, 1.0, 1, None, b"", False)
    assert [r.request_id for r in feed.take_new()] == ["a"]
    assert feed.changed_points() == {
        "fn": [[100, 1, 0, 0, 0, 0, 1.0, 1.0]],
        ALL: [[100, 1, 0, 0, 0, 0, 1.0, 1.0]],
    }
    assert feed.take_new() == []
    # the second being counted is sent again (it may still grow); no older one is
    clock.t = 101.0
    metrics.feed.reported(_inv("b"), 1, 3.0, 1, None, b"", False)
    feed.concurrency("fn", 3)
    feed.concurrency(ALL, 5)
    changed = feed.changed_points()
    assert [p[0] for p in changed["fn"]] == [101]
    assert changed["fn"][0][4] == 3 and changed[ALL][0][4] == 5


def test_all_sums_the_functions() -> None:
    clock = Clock(100.0)
    a, b = Metrics(128), Metrics(128)
    feed = Feed(clock=clock)
    feed.attach([("a", a), ("b", b)])
    assert a.feed is not None and b.feed is not None
    a.feed.reported(_inv("1"), 1, 2.0, 1, None, b"", False)
    b.feed.reported(_failed("2"), 1, 4.0, 1, "ValueError", b"", False)
    b.throttled(_inv("3"))
    points = feed.points()
    assert points[ALL] == [[100, 2, 1, 1, 0, 0, 2.0, 4.0]]
    assert points["a"] == [[100, 1, 0, 0, 0, 0, 2.0, 2.0]]


def test_the_window_is_fifteen_minutes() -> None:
    clock = Clock(10_000.0)
    metrics = Metrics(128)
    feed = Feed(clock=clock)
    feed.attach([("fn", metrics)])
    assert metrics.feed is not None
    metrics.feed.reported(_inv("old"), 1, 1.0, 1, None, b"", False)
    clock.t += feed_mod.WINDOW_S + 1
    metrics.feed.reported(_inv("new"), 1, 1.0, 1, None, b"", False)
    assert [p[0] for p in feed.points()["fn"]] == [int(clock.t)]


def test_the_ring_keeps_the_last_records_only() -> None:
    metrics = Metrics(128)
    feed = Feed(clock=Clock(), max_records=5)
    feed.attach([("fn", metrics)])
    assert metrics.feed is not None
    for i in range(12):
        metrics.feed.reported(_inv(f"r{i}"), 1, 1.0, 1, None, b"log", False)
    assert [r.request_id for r in feed] == [f"r{i}" for i in range(7, 12)]
    assert feed.get(1) is None and feed.get(12) is not None
    assert feed.kept_bytes == sum(r.kept for r in feed)
    # nothing else holds on to the records that left the ring
    assert len(feed._heavy) <= 5 and len(feed._by_seq) == 5


def test_bodies_are_cut_at_256_kb_saying_so() -> None:
    metrics = Metrics(128)
    feed = Feed(clock=Clock())
    feed.attach([("fn", metrics)])
    assert metrics.feed is not None
    big = b'"' + b"x" * (BODY_LIMIT + 10) + b'"'
    metrics.feed.reported(_inv("big", big, big), 1, 1.0, 1, None, b"", False)
    detail = next(iter(feed)).detail()
    assert detail["eventCut"] and detail["answerCut"]
    assert len(detail["event"]) == BODY_LIMIT and detail["eventSize"] == len(big)


def test_past_the_byte_budget_the_oldest_lose_their_bodies_not_their_rows() -> None:
    metrics = Metrics(128)
    feed = Feed(clock=Clock(), bytes_budget=3000)
    feed.attach([("fn", metrics)])
    assert metrics.feed is not None
    for i in range(5):
        metrics.feed.reported(_inv(f"r{i}", b"e" * 500, b"a" * 500), 1, 1.0, 1, None, b"", False)
    assert feed.kept_bytes <= 3000
    records = list(feed)
    assert len(records) == 5
    assert records[0].detail()["dropped"] and records[0].event is None
    assert records[-1].event == b"e" * 500
