"""The functions one emulator serves, and finding them by name.

A `Function` is everything one function owns: its frozen config, its pool of environments, its
queue of `Event` invocations, its counters and its view of the log. `Functions` is the registry the
fronts (the Invoke API, the HTTP front) look functions up in.

Invariants:
- names are unique; with exactly one function, the official emulator's name `function` also
  finds it (so `rie` stays a drop-in), with several it is only a name like any other;
- looking a function up is one dict lookup after the name is parsed: nothing is built per invoke;
- functions share nothing mutable but the emulator's stdout: one function's throttles, failures
  or reloads never touch another's environments.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from urllib.parse import unquote

from rie.functions.pool import EventQueue, Pool
from rie.model.errors import ResourceNotFound
from rie.observe import logs
from rie.observe.metrics import Metrics
from rie.sandbox.environment import EndpointFactory
from rie.settings.config import Config

OFFICIAL_NAME = "function"  # the only name the official emulator answers


class Function:
    """One function: config, pool, Event queue, metrics and log prefix."""

    def __init__(
        self,
        config: Config,
        environ: Mapping[str, str],
        sink: logs.Sink,
        endpoint_factory: EndpointFactory,
        log_prefix: str = "",
    ) -> None:
        self.config = config
        self.name = config.function_name
        self.metrics = Metrics(config.memory_mb)
        # with one function its log is exactly what it was; with several each line says whose
        self.sink = logs.PrefixedSink(sink, log_prefix) if log_prefix else sink
        base_env = dict(environ)
        if config.watch:
            # a file rewritten within the same second at the same size would otherwise be run
            # from its stale cached bytecode after a reload
            base_env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
        self.pool = Pool(config, base_env, self.sink, self.metrics, endpoint_factory)
        self.events = EventQueue(self.pool, config, self.metrics, self.sink)

    async def start(self) -> None:
        await self.pool.start()  # provisioned environments are ready before the first caller

    def __repr__(self) -> str:
        return f"Function({self.name!r})"


def split_name(raw_name: str) -> tuple[str, str | None]:
    """A FunctionName as the Invoke API takes it (name, ARN or partial ARN, each with an optional
    `:qualifier`; URL-encoded or not) as (name, qualifier)."""
    name = unquote(raw_name) if "%" in raw_name else raw_name
    parts = name.split(":")
    if parts[0] == "arn" and len(parts) >= 7 and parts[5] == "function":
        return parts[6], (parts[7] if len(parts) > 7 else None)
    if len(parts) >= 3 and parts[1] == "function":
        return parts[2], (parts[3] if len(parts) > 3 else None)
    if len(parts) == 2:
        return parts[0], parts[1]
    return name, None


class Functions:
    """The registry: every function by name, in the order they were configured."""

    def __init__(self, functions: Sequence[Function]) -> None:
        if not functions:
            raise ValueError("an emulator serves at least one function")
        self.all = tuple(functions)
        self._by_name: dict[str, Function] = {}
        for fn in functions:
            if fn.name in self._by_name:
                raise ValueError(f"two functions are named {fn.name!r}")
            self._by_name[fn.name] = fn
        if len(functions) == 1:
            self._by_name.setdefault(OFFICIAL_NAME, functions[0])
        # the HTTP front's answers to requests it could give to no function (several functions)
        self.unrouted = Metrics(128)
        first = functions[0].config
        self._arn_prefix = f"arn:aws:lambda:{first.region}:{first.account_id}:function:"

    def __iter__(self) -> Iterator[Function]:
        return iter(self.all)

    def __len__(self) -> int:
        return len(self.all)

    def get(self, name: str) -> Function | None:
        return self._by_name.get(name)

    def resolve(self, raw_name: str, qualifier: str | None = None) -> Function:
        """The function a FunctionName (and `Qualifier`) designates; 404 if none, as Lambda."""
        name, qualifier_in_name = split_name(raw_name)
        wanted = qualifier or qualifier_in_name
        fn = self._by_name.get(name)
        if fn is None or wanted not in (None, fn.config.function_version):
            raise ResourceNotFound(
                f"Function not found: {self._arn_prefix}{name}" + (f":{wanted}" if wanted else "")
            )
        return fn
