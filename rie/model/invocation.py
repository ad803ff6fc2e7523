"""One invocation and its lifecycle, as a pure state machine (no asyncio, no aiohttp).

Invariant: an invocation reaches exactly one final state, once, and the move into it is the only
place its `outcome` is set. Every move goes through one table lookup (`_TRANSITIONS`); an illegal
move raises `InvalidStateTransition` and leaves the invocation unchanged, so "second response",
"error after response" and "response after timeout" are the same code path.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rie.model.errors import InvalidStateTransition


class State(enum.Enum):
    # values are the names used in InvalidStateTransition messages
    QUEUED = "Queued"  # accepted, not yet fetched by the runtime's `next`
    RUNNING = "Running"  # handed to the runtime
    STREAMING = "Streaming"  # the runtime is streaming its response
    RESPONDED = "ResponseSent"
    ERRORED = "InvocationErrorResponse"
    TIMED_OUT = "Timeout"
    FAILED = "Failed"  # ended by the platform: runtime exit, init failure, reset, shutdown

    # members are singletons compared by identity: hashed by identity too, in C (Enum's own
    # __hash__ is a Python call, and states are looked up several times per invocation)
    __hash__ = object.__hash__


class Move(enum.Enum):
    DISPATCH = "dispatch"
    RESPOND = "respond"
    ERROR = "error"
    TIME_OUT = "time_out"
    FAIL = "fail"
    STREAM = "stream"  # first bytes of a streamed response
    STREAM_END = "stream_end"
    STREAM_ERROR = "stream_error"  # error trailers after the first bytes

    __hash__ = object.__hash__  # as State's


_TARGET = {
    Move.DISPATCH: State.RUNNING,
    Move.RESPOND: State.RESPONDED,
    Move.ERROR: State.ERRORED,
    Move.TIME_OUT: State.TIMED_OUT,
    Move.FAIL: State.FAILED,
    Move.STREAM: State.STREAMING,
    Move.STREAM_END: State.RESPONDED,
    Move.STREAM_ERROR: State.ERRORED,
}

_TRANSITIONS: dict[tuple[State, Move], State] = {
    (State.QUEUED, Move.DISPATCH): State.RUNNING,
    (State.QUEUED, Move.TIME_OUT): State.TIMED_OUT,  # an init that used up the invoke's time
    (State.QUEUED, Move.FAIL): State.FAILED,  # init failed, or shutdown before dispatch
    (State.RUNNING, Move.RESPOND): State.RESPONDED,
    (State.RUNNING, Move.ERROR): State.ERRORED,
    (State.RUNNING, Move.TIME_OUT): State.TIMED_OUT,
    (State.RUNNING, Move.FAIL): State.FAILED,
    (State.RUNNING, Move.STREAM): State.STREAMING,
    (State.STREAMING, Move.STREAM_END): State.RESPONDED,
    (State.STREAMING, Move.STREAM_ERROR): State.ERRORED,
    (State.STREAMING, Move.TIME_OUT): State.TIMED_OUT,
    (State.STREAMING, Move.FAIL): State.FAILED,
}

FINAL = frozenset({State.RESPONDED, State.ERRORED, State.TIMED_OUT, State.FAILED})

# REPORT's `Status:` field: only for invocations the platform ended
_REPORT_STATUS = {State.TIMED_OUT: "timeout", State.FAILED: "error"}


@dataclass(frozen=True, slots=True)
class Outcome:
    """The one final answer an invocation gives its caller."""

    body: bytes
    function_error: bool = False  # rendered as X-Amz-Function-Error: Unhandled
    error_type: str | None = None


@dataclass(frozen=True, slots=True)
class Request:
    """What the caller asked for, as the runtime will see it."""

    payload: bytes
    content_type: str = "application/json"
    trace_id: str = ""
    client_context: str | None = None  # decoded JSON text
    cognito_identity: str | None = None
    tenant_id: str | None = None
    invoked_function_arn: str = ""
    invocation_type: str = "RequestResponse"
    want_tail: bool = False


def error_body(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


@dataclass(eq=False, slots=True)
class Invocation:
    request_id: str
    request: Request
    timeout_s: float
    state: State = State.QUEUED
    outcome: Outcome | None = None
    accepted_at: float = field(default_factory=time.perf_counter)
    dispatched_at: float | None = None  # perf_counter when `next` handed it to the runtime
    finished_at: float | None = None
    deadline_ms: int = 0  # epoch ms, set at dispatch
    init_duration_ms: float | None = None  # set on the invocation that waited for an init
    tail: bytes = b""  # the last 4 KB of its log, when the caller asked for it
    on_final: Callable[[Invocation], None] | None = None
    on_chunk: Callable[[bytes], None] | None = None  # set when the caller reads a stream
    # set by the stream's producer (the Runtime API): hold(True) stops taking the runtime's
    # chunks, hold(False) takes them again; a caller that falls behind holds the stream, so a
    # slow reader slows the runtime (as a socket would), never grows rie's memory
    on_hold: Callable[[bool], None] | None = None
    stream_content_type: str | None = None  # the Content-Type of a streamed response

    # --- the moves -------------------------------------------------------------------------

    def _move(self, move: Move) -> None:
        target = _TRANSITIONS.get((self.state, move))
        if target is None:
            raise InvalidStateTransition(self.state.value, _TARGET[move].value)
        self.state = target

    def dispatch(self, now: float | None = None) -> None:
        self._move(Move.DISPATCH)
        self.dispatched_at = time.perf_counter() if now is None else now
        self.deadline_ms = int(time.time() * 1000 + self.timeout_s * 1000)

    def respond(self, body: bytes) -> None:
        self._finish(Move.RESPOND, Outcome(body))

    def error(self, body: bytes, error_type: str) -> None:
        self._finish(Move.ERROR, Outcome(body, function_error=True, error_type=error_type))

    def time_out(self) -> None:
        message = (
            f"RequestId: {self.request_id} Error: Task timed out after {self.timeout_s:.2f} seconds"
        )
        body = error_body("Sandbox.Timedout", message)
        # the timer runs on the event loop's clock (millisecond-grained under uvloop) and may
        # fire a hair early by perf_counter: a timed-out invocation lasted its whole timeout
        lasted = None if self.dispatched_at is None else self.dispatched_at + self.timeout_s
        self._finish(
            Move.TIME_OUT,
            Outcome(body, function_error=True, error_type="Sandbox.Timedout"),
            not_before=lasted,
        )

    def fail(self, error_type: str, message: str | None = None, body: bytes | None = None) -> None:
        """End the invocation from the platform side (runtime exit, init failure, shutdown)."""
        if body is None:
            body = error_body(error_type, f"RequestId: {self.request_id} Error: {message}")
        self._finish(Move.FAIL, Outcome(body, function_error=True, error_type=error_type))

    def start_stream(self) -> None:
        """The runtime has started a streamed response; chunks follow through `on_chunk`."""
        self._move(Move.STREAM)

    def stream_chunk(self, data: bytes) -> None:
        if self.on_chunk is not None:
            self.on_chunk(data)

    def hold_stream(self, hold: bool) -> None:
        """The streaming caller is behind (True) or has caught up (False)."""
        if self.on_hold is not None:
            self.on_hold(hold)

    def end_stream(self, body: bytes) -> None:
        """The stream ended; `body` is what was buffered of it (empty for a streaming caller)."""
        self._finish(Move.STREAM_END, Outcome(body))

    def fail_stream(self, body: bytes, error_type: str) -> None:
        self._finish(Move.STREAM_ERROR, Outcome(body, function_error=True, error_type=error_type))

    def _finish(self, move: Move, outcome: Outcome, not_before: float | None = None) -> None:
        self._move(move)
        self.outcome = outcome
        now = time.perf_counter()
        self.finished_at = now if not_before is None else max(now, not_before)
        if self.on_final is not None:
            self.on_final(self)

    # --- derived facts ---------------------------------------------------------------------

    @property
    def final(self) -> bool:
        return self.state in FINAL

    @property
    def duration_ms(self) -> float:
        """From handing the event to the runtime to its answer; from acceptance if never handed."""
        start = self.dispatched_at if self.dispatched_at is not None else self.accepted_at
        end = self.finished_at if self.finished_at is not None else time.perf_counter()
        return max(0.0, (end - start) * 1000)

    @property
    def report_status(self) -> str | None:
        return _REPORT_STATUS.get(self.state)
