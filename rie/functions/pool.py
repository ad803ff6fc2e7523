"""Choosing, creating and retiring environments, and the queue of `Event` invocations.

Invariants:
- at most `max_concurrency` environments hold or await invocations, each taking at most
  `per_env_concurrency` at once; an environment being torn down with nothing left in it (after a
  timeout) does not count: it is replaced at once and retired once its reset is over, so the limit
  counts invocations in flight, as Lambda's does;
- placing an invocation is synchronous (no await between choosing an environment and assigning to
  it), so two callers can never take the same slot;
- a synchronous invoke that finds no slot is throttled (429) unless it may wait, and waiters are
  served first come, first served as slots free up;
- an accepted `Event` invocation ends in exactly one of: success, a retry, an on-failure record
  (retries exhausted, too old, or cut by shutdown: still queued, waiting for a retry, still
  running when the grace period ends, or failed during it). None is dropped without a trace.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from rie.model.errors import ServiceUnavailable, TooManyRequests
from rie.model.invocation import Invocation
from rie.observe import logs
from rie.observe.metrics import Metrics
from rie.sandbox.environment import EndpointFactory, Environment, EnvState
from rie.sandbox.external import ExternalEnvironment
from rie.settings.config import Config

log = logging.getLogger("rie")

THROTTLE_REASON = "ReservedFunctionConcurrentInvocationLimitExceeded"

_Waiter = tuple["asyncio.Future[None]", Invocation, Callable[[Invocation], None]]


class Pool:
    def __init__(
        self,
        config: Config,
        base_env: Mapping[str, str],
        sink: logs.Sink,
        metrics: Metrics,
        endpoint_factory: EndpointFactory,
    ) -> None:
        self.config = config
        self.envs: list[Environment] = []
        self.closing = False
        self._base_env = base_env
        self._sink = sink
        self._metrics = metrics
        self._endpoint_factory = endpoint_factory
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._next_id = 0
        self._tasks: set[asyncio.Task[None]] = set()
        # environments running old code (see recycle): they take no new work and retire when done
        self._stale: set[Environment] = set()
        self._retiring: set[asyncio.Task[None]] = set()  # awaited at close, never cancelled
        metrics.gauges["rie_concurrent_executions"] = lambda: sum(len(e.running) for e in self.envs)
        metrics.gauges["rie_environments"] = lambda: len(self.envs)
        metrics.gauges["rie_waiting_invocations"] = lambda: len(self._waiters)

    # --- start-up --------------------------------------------------------------------------

    async def start(self) -> None:
        """Create provisioned environments (in parallel) or one eager one; start the reaper."""
        warm = [self._create(provisioned=True) for _ in range(self.config.provisioned)]
        if not warm and self.config.init_eagerly:
            warm.append(self._create(provisioned=False))
        opened = await asyncio.gather(*(env.open(self._endpoint_factory) for env in warm))
        warm = [env for env, ok in zip(warm, opened, strict=True) if ok]
        self.envs = [env for env in self.envs if env.state is not EnvState.RETIRED]
        if warm:
            ready = await asyncio.gather(*(env.warm() for env in warm))
            if not all(ready):
                log.warning(
                    "%d of %d environments failed their init ahead of time",
                    ready.count(False),
                    len(ready),
                )
        if self.config.idle_timeout_s > 0:
            self._spawn(self._reap_idle())

    def _spawn(self, coro: collections.abc.Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _create(self, provisioned: bool) -> Environment:
        self._next_id += 1
        kind = ExternalEnvironment if self.config.external_runtime else Environment
        env = kind(
            self._next_id,
            self.config,
            self._base_env,
            self._sink,
            self._metrics,
            self._slot_freed,
            provisioned=provisioned,
        )
        self.envs.append(env)
        return env

    # --- placing invocations ---------------------------------------------------------------

    async def invoke(self, inv: Invocation, wait_s: float) -> None:
        """Run `inv` to its final state, waiting up to `wait_s` for a free slot, else 429."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def on_done(_: Invocation) -> None:
            if not done.done():
                done.set_result(None)

        if self.closing:
            raise ServiceUnavailable()
        if not self._place(inv, on_done):
            if wait_s <= 0:
                self._metrics.throttled(inv)
                raise TooManyRequests(Reason=THROTTLE_REASON)
            placed: asyncio.Future[None] = loop.create_future()
            self._waiters.append((placed, inv, on_done))
            try:
                await asyncio.wait_for(
                    asyncio.shield(placed), None if math.isinf(wait_s) else wait_s
                )
            except TimeoutError:
                if not placed.done():
                    placed.cancel()
                    self._metrics.throttled(inv)
                    raise TooManyRequests(Reason=THROTTLE_REASON) from None
            if placed.cancelled():
                raise ServiceUnavailable()
        await done

    THROTTLE_REASON = THROTTLE_REASON

    def try_place(self, inv: Invocation, on_done: Callable[[Invocation], None]) -> bool:
        """Place `inv` now if a slot is free (no task, no future: `on_done` is called when it
        ends); False when it would have to wait for one. Raises 503 once the pool is closing."""
        if self.closing:
            raise ServiceUnavailable()
        return self._place(inv, on_done)

    def throttled(self, inv: Invocation) -> None:
        """`inv` was refused for want of a slot (counted as Lambda's throttles)."""
        self._metrics.throttled(inv)

    def _place(self, inv: Invocation, on_done: Callable[[Invocation], None]) -> bool:
        env = self._pick()
        if env is None:
            if self._counted() >= self.config.max_concurrency or self.closing:
                return False
            env = self._create(provisioned=False)
            self._spawn(self._open(env))
        env.assign(inv, on_done)
        return True

    async def _open(self, env: Environment) -> None:
        if not await env.open(self._endpoint_factory) and env in self.envs:
            self.envs.remove(env)  # its invocations were answered; the slot is free again
            self._serve_waiters()

    def _pick(self) -> Environment | None:
        """A warm environment with a free slot, most recently used first (so others can retire)."""
        # (ready, last_used) compared field by field: no tuple per environment, once per invoke
        best: Environment | None = None
        best_ready, best_used = False, 0.0
        stale = self._stale
        ready_state = EnvState.READY
        for env in self.envs:
            if env.free_slots <= 0 or (stale and env in stale):
                continue
            ready = env.state is ready_state
            if (
                best is None
                or ready > best_ready
                or (ready == best_ready and env.last_used > best_used)
            ):
                best, best_ready, best_used = env, ready, env.last_used
        return best

    def _counted(self) -> int:
        """Environments that count against the limit: all but those torn down with nothing in
        them, which are replaced rather than waited for."""
        return sum(1 for e in self.envs if e.state is not EnvState.RESETTING or e.used_slots)

    def _slot_freed(self, env: Environment) -> None:
        if self._stale and env in self._stale:
            if env.used_slots == 0:
                self._retire_stale(env)
            self._serve_waiters()
            return
        if (
            len(self.envs) > self.config.max_concurrency  # cheap: only ever true after a reset
            and env.idle
            and not env.provisioned
            and env in self.envs
            and self._counted() > self.config.max_concurrency
        ):
            # it was replaced while it was being reset: one too many now
            self.envs.remove(env)
            self._retire_later(env, grace_s=0.0)
            return
        while self._waiters and env.free_slots > 0:
            placed, inv, on_done = self._waiters.popleft()
            if placed.done():
                continue
            env.assign(inv, on_done)
            placed.set_result(None)
        if self._waiters:
            self._serve_waiters()  # the slot freed by a reset is taken by a fresh environment

    def _serve_waiters(self) -> None:
        while self._waiters:
            placed, inv, on_done = self._waiters[0]
            if placed.done():
                self._waiters.popleft()
                continue
            if not self._place(inv, on_done):
                return
            self._waiters.popleft()
            placed.set_result(None)

    # --- retiring --------------------------------------------------------------------------

    def recycle(self) -> int:
        """Retire every environment so that the next invocation starts the code afresh (the code
        changed): idle ones at once, busy ones as soon as their invocations end; provisioned
        ones are replaced. The number of environments recycled."""
        envs = list(self.envs)
        for env in envs:
            if env.used_slots == 0:
                self._retire_stale(env)
            else:
                self._stale.add(env)
        return len(envs)

    def _retire_stale(self, env: Environment) -> None:
        self._stale.discard(env)
        if env in self.envs:
            self.envs.remove(env)
        self._retire_later(env, grace_s=0.5)
        if env.provisioned and not self.closing:
            self._spawn(self._provision())

    async def _provision(self) -> None:
        fresh = self._create(provisioned=True)
        if await fresh.open(self._endpoint_factory):
            await fresh.warm()
        elif fresh in self.envs:
            self.envs.remove(fresh)

    def _retire_later(self, env: Environment, grace_s: float) -> None:
        """Retire an environment the pool has let go of; `close` waits for it (a retirement cut
        short could leave its processes or its TMPDIR behind)."""
        task = asyncio.ensure_future(env.retire(grace_s))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _reap_idle(self) -> None:
        period = min(1.0, self.config.idle_timeout_s / 2)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for env in list(self.envs):
                if (
                    env.provisioned
                    or not env.idle
                    or now - env.last_used < self.config.idle_timeout_s
                ):
                    continue
                self.envs.remove(env)
                log.info("environment %d retired after %.0f s idle", env.id, now - env.last_used)
                self._retire_later(env, grace_s=0.5)
            self._serve_waiters()

    async def close(self, deadline: float, term_s: float) -> None:
        """Stop taking work; let in-flight invocations run until `term_s` before `deadline`
        (time.monotonic()), then stop every environment: SIGTERM, SIGKILL after `term_s`.
        Whatever was still running is answered with the error, so this ends by `deadline`."""
        self.closing = True
        for placed, _, _ in self._waiters:
            placed.cancel()
        self._waiters.clear()
        while any(env.used_slots for env in self.envs) and time.monotonic() < deadline - term_s:
            await asyncio.sleep(0.02)
        for task in list(self._tasks):
            task.cancel()
        if self._retiring:  # environments replaced after a reset: let them clean up
            await asyncio.wait(list(self._retiring), timeout=max(0.0, deadline - time.monotonic()))
        envs, self.envs = self.envs, []
        term_s = max(0.0, min(term_s, deadline - time.monotonic()))
        await asyncio.gather(*(env.retire(grace_s=term_s) for env in envs))


# --- Event invocations ------------------------------------------------------------------------


@dataclass(slots=True)
class QueuedEvent:
    inv: Invocation
    received_at: float  # epoch seconds
    attempts: int = 0
    last: Invocation | None = None


class EventQueue:
    """Runs `Event` invocations in order, at up to the concurrency limit, with Lambda's retries."""

    def __init__(self, pool: Pool, config: Config, metrics: Metrics, sink: logs.Sink) -> None:
        self._pool = pool
        self._config = config
        self._metrics = metrics
        self._sink = sink
        self._queue: asyncio.Queue[QueuedEvent] = asyncio.Queue()
        self._retrying: dict[str, tuple[asyncio.TimerHandle, QueuedEvent]] = {}
        # made on demand, one per event being run, up to the concurrency limit; each ends when
        # the queue is empty (so an idle function, whatever its limit, holds none)
        self._workers: set[asyncio.Task[None]] = set()
        self._active = 0
        self._closing = False
        metrics.gauges["rie_event_queue_depth"] = lambda: self._queue.qsize() + len(self._retrying)

    def submit(self, inv: Invocation) -> None:
        item = QueuedEvent(inv, time.time())
        if self._closing:  # accepted on a connection that was open when shutdown began
            self._give_up(item, "EmulatorShutdown")
            return
        self._queue.put_nowait(item)
        self._wake()

    def _wake(self) -> None:
        """Enough workers for the queued events, within the concurrency limit. A worker that has
        not started yet is the only kind not running an event: every other one is in `_attempt`
        whenever the loop can get here."""
        while (
            len(self._workers) < self._config.max_concurrency
            and len(self._workers) - self._active < self._queue.qsize()
        ):
            worker = asyncio.ensure_future(self._work())
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)

    @property
    def pending(self) -> int:
        return self._queue.qsize() + len(self._retrying) + self._active

    async def _work(self) -> None:
        try:
            while not self._queue.empty():
                item = self._queue.get_nowait()
                self._active += 1
                try:
                    await self._attempt(item)
                except asyncio.CancelledError:
                    # only the awaited invoke can be cut: its event has no record yet
                    self._give_up(item, "EmulatorShutdown")
                    raise
                except Exception:  # a worker must never die: log and go on with the next event
                    log.exception("event %s: unexpected failure", item.inv.request_id)
                finally:
                    self._active -= 1
        finally:
            # at once, not in a done callback: an event submitted meanwhile must see it gone
            task = asyncio.current_task()
            if task is not None:
                self._workers.discard(task)

    async def _attempt(self, item: QueuedEvent) -> None:
        if time.time() - item.received_at > self._config.event_max_age_s:
            self._give_up(item, "EventAgeExceeded")
            return
        item.attempts += 1
        inv = item.inv if item.attempts == 1 else _retry_of(item.inv)
        item.last = inv
        try:
            await self._pool.invoke(inv, wait_s=math.inf)
        except ServiceUnavailable:
            self._give_up(item, "EmulatorShutdown")
            return
        outcome = inv.outcome
        if outcome is None or not outcome.function_error:
            return
        log.info(
            "event %s: attempt %d failed: %s",
            inv.request_id,
            item.attempts,
            outcome.body[:1024].decode("utf-8", "replace"),
        )
        if self._closing or self._pool.closing:
            self._give_up(item, "EmulatorShutdown")  # it would have been retried
        elif item.attempts <= self._config.event_retries:
            self._metrics.event_retries += 1
            delay = self._config.event_retry_delay_s * 2 ** (item.attempts - 1)
            handle = asyncio.get_running_loop().call_later(delay, self._requeue, item)
            self._retrying[inv.request_id] = (handle, item)
        else:
            self._give_up(item, "RetriesExhausted")

    def _requeue(self, item: QueuedEvent) -> None:
        self._retrying.pop(item.inv.request_id, None)
        self._queue.put_nowait(item)
        self._wake()

    def _give_up(self, item: QueuedEvent, condition: str) -> None:
        self._metrics.event_failures += 1
        record = failure_record(item, condition, self._config)
        line = json.dumps(record, separators=(",", ":")) + "\n"
        path = self._config.event_failure_file
        if path:
            try:
                with open(path, "a", encoding="utf-8") as f:
                    f.write(line)
                log.warning(
                    "event %s: %s, on-failure record written to %s",
                    item.inv.request_id,
                    condition,
                    path,
                )
                return
            except OSError as exc:
                log.error("event %s: cannot write %s: %s", item.inv.request_id, path, exc)
        self._sink.write(f"ON_FAILURE {line}".encode())

    def stop_intake(self) -> None:
        """Shutdown, first step: nothing more starts; every event still queued or waiting for a
        retry is written out at once. Running ones go on (the pool bounds them)."""
        self._closing = True
        for handle, _ in self._retrying.values():
            handle.cancel()
        waiting = [item for _, item in self._retrying.values()]
        self._retrying.clear()
        while not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        for item in waiting:
            self._give_up(item, "EmulatorShutdown")

    async def close(self, within_s: float) -> None:
        """Shutdown, last step (after the pool has answered every invocation): the workers record
        the outcomes of the events they ran, then stop. A worker is never cancelled while it
        holds an event, unless it overruns `within_s` (then its event is written out here)."""
        deadline = time.monotonic() + within_s
        while self._active and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        for worker in list(self._workers):
            worker.cancel()


def _retry_of(first: Invocation) -> Invocation:
    # a retry keeps the request id, as Lambda's do
    return Invocation(first.request_id, first.request, first.timeout_s)


def _json_or_text(data: bytes) -> object:
    try:
        return json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace")


def failure_record(item: QueuedEvent, condition: str, config: Config) -> dict[str, object]:
    """An on-failure destination record, in Lambda's shape."""
    record: dict[str, object] = {
        "version": "1.0",
        "timestamp": logs.utc_timestamp(),
        "requestContext": {
            "requestId": item.inv.request_id,
            "functionArn": f"{config.function_arn}:{config.function_version}",
            "condition": condition,
            "approximateInvokeCount": item.attempts,
        },
        "requestPayload": _json_or_text(item.inv.request.payload),
    }
    last = item.last
    if last is not None and last.outcome is not None:
        record["responseContext"] = {
            "statusCode": 200,
            "executedVersion": config.function_version,
            **({"functionError": "Unhandled"} if last.outcome.function_error else {}),
        }
        record["responsePayload"] = _json_or_text(last.outcome.body)
    return record
