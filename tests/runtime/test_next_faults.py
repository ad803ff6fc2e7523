"""The runtime client never runs the handler without a real event: a `next` answered with an
error, or with a 200 that names no request id, is asked again with a short backoff; if it goes on,
the runtime exits non-zero with a clear message (real runtime process, fake Runtime API)."""

from __future__ import annotations

import pytest

from tests.runtime.fake_api import FakeRuntimeApi, start, stop

ERROR = (500, b'{"errorMessage":"boom","errorType":"ServiceException"}')
NO_ID = (200, b'{"looks": "like an event"}')


@pytest.mark.parametrize("fault", [ERROR, NO_ID], ids=["500", "200-without-id"])
def test_a_passing_fault_on_next_is_retried_and_the_real_event_is_served(
    fault: tuple[int, bytes],
) -> None:
    with FakeRuntimeApi(next_answers=[fault, fault]) as api:
        ev = api.push({"k": "v"})
        proc = start("ours", "results.echo", api)
        try:
            assert ev.done.wait(15), "the real event was not answered"
            api.wait_waiting(1)
        finally:
            out = stop(proc)
        posts = api.posts()
        assert [p.path for p in posts] == [
            f"/2018-06-01/runtime/invocation/{ev.request_id}/response"
        ]
        assert posts[0].json()["event"] == {"k": "v"}
        assert out.count("asking again") == 2, out


@pytest.mark.parametrize("fault", [ERROR, NO_ID], ids=["500", "200-without-id"])
def test_a_lasting_fault_on_next_ends_the_runtime_without_running_the_handler(
    fault: tuple[int, bytes],
) -> None:
    with FakeRuntimeApi(next_answers=[fault] * 20) as api:
        proc = start("ours", "results.echo", api)
        try:
            code = proc.wait(15)
        finally:
            out = stop(proc)
        assert code == 1, out
        assert not api.posts(), "the handler ran, or something was posted"
        assert "exiting without running the handler" in out, out
        assert len([r for r in api.requests if r.method == "GET"]) == 5
