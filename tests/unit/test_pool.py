"""The pool when an environment cannot even get a Runtime API endpoint (a fake factory: no process
is involved, this is the pool's own bookkeeping)."""

from __future__ import annotations

import asyncio
import json

from rie.functions.pool import Pool
from rie.model.invocation import Invocation, Request, State
from rie.observe.logs import Sink
from rie.observe.metrics import Metrics
from rie.sandbox.environment import Endpoint, Environment
from rie.settings.config import Config


def test_an_environment_without_an_endpoint_answers_its_invocation_and_frees_its_slot(
    tmp_path,
) -> None:  # type: ignore[no-untyped-def]
    config = Config(command=("/bin/true",), handler="", task_root=str(tmp_path), max_concurrency=1)
    calls = []

    async def failing_factory(env: Environment) -> Endpoint:
        calls.append(env.id)
        raise OSError(98, "Address already in use")

    async def scenario() -> tuple[Invocation, Invocation, Pool]:
        pool = Pool(
            config,
            {},
            Sink(fd=(tmp_path / "log").open("wb").fileno()),
            Metrics(128),
            failing_factory,
        )
        first = Invocation("a", Request(b"{}"), 3.0)
        second = Invocation("b", Request(b"{}"), 3.0)
        await asyncio.wait_for(pool.invoke(first, wait_s=0), 5)
        # the broken environment is gone, so the limit of 1 does not throttle the next invoke
        await asyncio.wait_for(pool.invoke(second, wait_s=0), 5)
        return first, second, pool

    first, second, pool = asyncio.run(scenario())
    for inv in (first, second):
        assert inv.state is State.FAILED
        assert inv.outcome is not None and inv.outcome.function_error
        assert "could not listen" in json.loads(inv.outcome.body)["errorMessage"]
    assert calls == [1, 2] and pool.envs == []
