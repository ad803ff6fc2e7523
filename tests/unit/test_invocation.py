"""The invocation lifecycle, driven directly: every legal move, and every illegal one refused."""

from __future__ import annotations

import json
import time

import pytest

from rie.model.errors import InvalidStateTransition
from rie.model.invocation import FINAL, Invocation, Request, State


def make(timeout_s: float = 3.0) -> tuple[Invocation, list[Invocation]]:
    seen: list[Invocation] = []
    inv = Invocation("id-1", Request(b"{}"), timeout_s, on_final=seen.append)
    return inv, seen


def test_dispatch_sets_deadline_and_running_state() -> None:
    inv, seen = make(timeout_s=3.0)
    before = time.time() * 1000
    inv.dispatch()
    assert inv.state is State.RUNNING
    assert before + 3000 - 5 <= inv.deadline_ms <= time.time() * 1000 + 3000 + 5
    assert seen == [] and inv.outcome is None


def test_respond_is_final_and_notifies_once() -> None:
    inv, seen = make()
    inv.dispatch()
    inv.respond(b'{"ok":1}')
    assert inv.state is State.RESPONDED and inv.final
    assert (
        inv.outcome is not None
        and inv.outcome.body == b'{"ok":1}'
        and not inv.outcome.function_error
    )
    assert seen == [inv]
    assert inv.report_status is None


def test_error_is_a_function_error_without_report_status() -> None:
    inv, _ = make()
    inv.dispatch()
    inv.error(b'{"errorType":"ValueError"}', "Runtime.Unknown")
    assert inv.state is State.ERRORED
    assert (
        inv.outcome is not None
        and inv.outcome.function_error
        and inv.outcome.error_type == "Runtime.Unknown"
    )
    assert inv.report_status is None


@pytest.mark.parametrize(
    ("first", "second", "source", "target"),
    [
        ("respond", "respond", "ResponseSent", "ResponseSent"),
        ("respond", "error", "ResponseSent", "InvocationErrorResponse"),
        ("error", "respond", "InvocationErrorResponse", "ResponseSent"),
        ("error", "error", "InvocationErrorResponse", "InvocationErrorResponse"),
        ("time_out", "respond", "Timeout", "ResponseSent"),
        ("time_out", "error", "Timeout", "InvocationErrorResponse"),
    ],
)
def test_second_answer_is_refused_and_changes_nothing(
    first: str, second: str, source: str, target: str
) -> None:
    inv, seen = make()
    inv.dispatch()
    if first == "respond":
        inv.respond(b"1")
    elif first == "error":
        inv.error(b"{}", "Function.X")
    else:
        inv.time_out()
    state, outcome = inv.state, inv.outcome
    with pytest.raises(InvalidStateTransition) as info:
        if second == "respond":
            inv.respond(b"2")
        else:
            inv.error(b"{}", "Function.Y")
    assert info.value.status == 403
    assert info.value.message == (
        f"State transition from {source} to {target} failed for runtime. Error: State transition is not allowed"
    )
    assert json.loads(info.value.body())["errorType"] == "InvalidStateTransition"
    assert inv.state is state and inv.outcome is outcome
    assert len(seen) == 1


def test_answer_before_dispatch_is_refused() -> None:
    inv, seen = make()
    with pytest.raises(InvalidStateTransition):
        inv.respond(b"x")
    with pytest.raises(InvalidStateTransition):
        inv.error(b"x", "Runtime.Unknown")
    assert inv.state is State.QUEUED and seen == []


def test_dispatch_twice_is_refused() -> None:
    inv, _ = make()
    inv.dispatch()
    with pytest.raises(InvalidStateTransition):
        inv.dispatch()
    assert inv.state is State.RUNNING


def test_timeout_body_and_status() -> None:
    inv, _ = make(timeout_s=1.5)
    inv.dispatch()
    inv.time_out()
    assert inv.state is State.TIMED_OUT and inv.report_status == "timeout"
    assert inv.outcome is not None
    assert json.loads(inv.outcome.body) == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": "RequestId: id-1 Error: Task timed out after 1.50 seconds",
    }


def test_queued_invocation_can_fail_or_time_out_without_dispatch() -> None:
    inv, seen = make()
    inv.fail("Runtime.ExitError", "Runtime exited with error: exit status 1")
    assert inv.state is State.FAILED and inv.report_status == "error"
    assert inv.outcome is not None and json.loads(inv.outcome.body) == {
        "errorType": "Runtime.ExitError",
        "errorMessage": "RequestId: id-1 Error: Runtime exited with error: exit status 1",
    }
    assert inv.dispatched_at is None and inv.duration_ms >= 0
    other, _ = make()
    other.time_out()
    assert other.state is State.TIMED_OUT
    assert seen == [inv]


def test_fail_keeps_a_given_body() -> None:
    inv, _ = make()
    body = b'{"errorMessage":"Unable to import module","errorType":"Runtime.ImportModuleError"}'
    inv.fail("Runtime.ImportModuleError", body=body)
    assert inv.outcome is not None and inv.outcome.body == body


@pytest.mark.parametrize("final", sorted(FINAL, key=lambda s: s.value))
@pytest.mark.parametrize("move", ["dispatch", "respond", "error", "time_out", "fail"])
def test_final_states_accept_no_move_at_all(final: State, move: str) -> None:
    inv, _ = make()
    inv.state = final
    calls = {
        "dispatch": inv.dispatch,
        "respond": lambda: inv.respond(b""),
        "error": lambda: inv.error(b"", "Runtime.X"),
        "time_out": inv.time_out,
        "fail": lambda: inv.fail("Runtime.ExitError", "x"),
    }
    with pytest.raises(InvalidStateTransition):
        calls[move]()
    assert inv.state is final


def test_duration_runs_from_dispatch_to_answer() -> None:
    inv, _ = make()
    time.sleep(0.02)  # time spent queued (an init, say) is not Duration
    inv.dispatch()
    inv.respond(b"")
    assert inv.duration_ms < 15


def test_a_timeout_lasts_the_whole_timeout_even_when_its_timer_fires_early() -> None:
    # the loop's timer may fire a millisecond early by perf_counter; REPORT must not say 999.95 ms
    durations: list[float] = []
    inv = Invocation(
        "id-1", Request(b"{}"), 1.0, on_final=lambda i: durations.append(i.duration_ms)
    )
    inv.dispatch()
    inv.time_out()  # at once: the earliest a timer could ever fire
    assert durations and durations[0] >= 1000.0
    assert inv.duration_ms >= 1000.0
