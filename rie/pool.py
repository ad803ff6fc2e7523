"""Choosing, creating and retiring environments, and the queue of `Event` invocations.

Invariants:
- at most `max_concurrency` environments exist, each taking at most `per_env_concurrency`
  invocations at once; placing an invocation is synchronous (no await between choosing an
  environment and assigning to it), so two callers can never take the same slot;
- a synchronous invoke that finds no slot is throttled (429) unless it may wait, and waiters are
  served first come, first served as slots free up;
- an accepted `Event` invocation ends in exactly one of: success, an on-failure record (retries
  exhausted, too old, or still queued at shutdown). None is dropped without a trace.
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

from . import logs
from .config import Config
from .environment import EndpointFactory, Environment, EnvState
from .errors import ServiceUnavailable, TooManyRequests
from .invocation import Invocation
from .metrics import Metrics

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
        env = Environment(
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
                self._metrics.throttles += 1
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
                    self._metrics.throttles += 1
                    raise TooManyRequests(Reason=THROTTLE_REASON) from None
            if placed.cancelled():
                raise ServiceUnavailable()
        await done

    def _place(self, inv: Invocation, on_done: Callable[[Invocation], None]) -> bool:
        env = self._pick()
        if env is None:
            if len(self.envs) >= self.config.max_concurrency or self.closing:
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
        best: Environment | None = None
        best_key = (False, 0.0)
        for env in self.envs:
            if env.free_slots <= 0 or (self._stale and env in self._stale):
                continue
            key = (env.state is EnvState.READY, env.last_used)
            if best is None or key > best_key:
                best, best_key = env, key
        return best

    def _slot_freed(self, env: Environment) -> None:
        if self._stale and env in self._stale:
            if env.used_slots == 0:
                self._retire_stale(env)
            self._serve_waiters()
            return
        while self._waiters and env.free_slots > 0:
            placed, inv, on_done = self._waiters.popleft()
            if placed.done():
                continue
            env.assign(inv, on_done)
            placed.set_result(None)

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
        self._spawn(self._replace(env))

    async def _replace(self, env: Environment) -> None:
        await env.retire(grace_s=0.5)
        if env.provisioned and not self.closing:
            fresh = self._create(provisioned=True)
            if await fresh.open(self._endpoint_factory):
                await fresh.warm()
            elif fresh in self.envs:
                self.envs.remove(fresh)

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
                await env.retire(grace_s=0.5)
            self._serve_waiters()

    async def close(self, grace_s: float) -> None:
        """Stop taking work, give in-flight invocations `grace_s`, then stop every environment."""
        self.closing = True
        for placed, _, _ in self._waiters:
            placed.cancel()
        self._waiters.clear()
        deadline = time.monotonic() + grace_s
        while any(env.used_slots for env in self.envs) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for task in list(self._tasks):
            task.cancel()
        envs, self.envs = self.envs, []
        await asyncio.gather(*(env.retire(grace_s=0.5) for env in envs))


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
        self._workers: list[asyncio.Task[None]] = []
        self._active = 0
        metrics.gauges["rie_event_queue_depth"] = lambda: self._queue.qsize() + len(self._retrying)

    def start(self) -> None:
        self._workers = [
            asyncio.ensure_future(self._work()) for _ in range(self._config.max_concurrency)
        ]

    def submit(self, inv: Invocation) -> None:
        self._queue.put_nowait(QueuedEvent(inv, time.time()))

    @property
    def pending(self) -> int:
        return self._queue.qsize() + len(self._retrying) + self._active

    async def _work(self) -> None:
        while True:
            item = await self._queue.get()
            self._active += 1
            try:
                await self._attempt(item)
            except Exception:  # a worker must never die: log and go on with the next event
                log.exception("event %s: unexpected failure", item.inv.request_id)
            finally:
                self._active -= 1

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
        if item.attempts <= self._config.event_retries and not self._pool.closing:
            self._metrics.event_retries += 1
            delay = self._config.event_retry_delay_s * 2 ** (item.attempts - 1)
            handle = asyncio.get_running_loop().call_later(delay, self._requeue, item)
            self._retrying[inv.request_id] = (handle, item)
        else:
            self._give_up(item, "RetriesExhausted")

    def _requeue(self, item: QueuedEvent) -> None:
        self._retrying.pop(item.inv.request_id, None)
        self._queue.put_nowait(item)

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

    async def close(self, grace_s: float) -> None:
        """At shutdown: let running events finish (bounded), write out every event still waiting."""
        for handle, _ in self._retrying.values():
            handle.cancel()
        waiting = [item for _, item in self._retrying.values()]
        self._retrying.clear()
        while not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        deadline = time.monotonic() + grace_s
        while self._active and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for worker in self._workers:
            worker.cancel()
        for item in waiting:
            self._give_up(item, "EmulatorShutdown")


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
